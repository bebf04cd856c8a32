"""Well-kept libraries that take a fitted DualHeadClassifier: MAPIE and dcurves."""

import numpy as np
import pandas as pd
import pytest
from conftest import fast_classifier
from sklearn.datasets import make_classification
from sklearn.model_selection import train_test_split


def _split(n_classes):
    X, y = make_classification(
        n_samples=600,
        n_features=6,
        n_informative=4,
        n_classes=n_classes,
        n_clusters_per_class=1,
        flip_y=0.05,
        random_state=0,
    )
    return train_test_split(X, y, test_size=0.5, stratify=y, random_state=0)


def test_mapie_conformal_prediction_sets():
    classification = pytest.importorskip("mapie.classification")
    X_train, X_rest, y_train, y_rest = _split(n_classes=3)
    X_conf, X_test, y_conf, y_test = train_test_split(
        X_rest, y_rest, test_size=0.5, stratify=y_rest, random_state=0
    )
    clf = fast_classifier(max_epochs=30).fit(X_train, y_train)
    mapie = classification.SplitConformalClassifier(
        estimator=clf, confidence_level=0.9, conformity_score="lac", prefit=True
    ).conformalize(X_conf, y_conf)
    y_pred, y_sets = mapie.predict_set(X_test)
    np.testing.assert_array_equal(y_pred, clf.predict(X_test))
    sets = y_sets[:, :, 0]
    assert sets.shape == (len(y_test), 3)
    # Split conformal guarantees 90% coverage in expectation; 150 test rows
    # leave a few points of sampling noise.
    coverage = sets[np.arange(len(y_test)), y_test].mean()
    assert coverage >= 0.8
    assert sets.sum(axis=1).mean() < 3  # the sets are informative


def test_dcurves_net_benefit():
    dcurves = pytest.importorskip("dcurves")
    X_train, X_test, y_train, y_test = _split(n_classes=2)
    clf = fast_classifier(max_epochs=30).fit(X_train, y_train)
    data = pd.DataFrame(
        {"outcome": y_test, "dualhead": clf.predict_proba(X_test)[:, 1]}
    )
    thresholds = [0.1, 0.2, 0.3]
    curves = dcurves.dca(
        data=data, outcome="outcome", modelnames=["dualhead"], thresholds=thresholds
    )
    model = curves[curves["model"] == "dualhead"].set_index("threshold")["net_benefit"]
    for t in thresholds:
        treated = data["dualhead"] >= t
        tp = (treated & (data["outcome"] == 1)).mean()
        fp = (treated & (data["outcome"] == 0)).mean()
        assert model.loc[t] == pytest.approx(tp - fp * t / (1 - t))
    # A useful model beats treating no one (net benefit 0) at these thresholds.
    assert (model > 0).all()
