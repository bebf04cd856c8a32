"""Libraries that take a DualHeadClassifier: scikit-learn's wrappers, MAPIE, dcurves, SHAP."""

import numpy as np
import pandas as pd
import pytest
import sklearn
from conftest import fast_classifier
from sklearn.calibration import CalibratedClassifierCV
from sklearn.datasets import make_classification
from sklearn.inspection import permutation_importance
from sklearn.metrics import balanced_accuracy_score, log_loss
from sklearn.model_selection import (
    FixedThresholdClassifier,
    TunedThresholdClassifierCV,
    train_test_split,
)
from sklearn.utils.fixes import parse_version


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


@pytest.fixture(scope="module")
def fitted_binary():
    X_train, X_test, y_train, y_test = _split(n_classes=2)
    return fast_classifier(max_epochs=30).fit(X_train, y_train), X_test, y_test


def test_fixed_threshold_classifier():
    X_train, X_test, y_train, _ = _split(n_classes=2)
    wrapped = FixedThresholdClassifier(
        fast_classifier(max_epochs=30), threshold=0.3, response_method="predict_proba"
    ).fit(X_train, y_train)
    proba = wrapped.estimator_.predict_proba(X_test)[:, 1]
    np.testing.assert_array_equal(wrapped.predict(X_test), (proba >= 0.3).astype(int))


def test_tuned_threshold_classifier_cv():
    X_train, X_test, y_train, y_test = _split(n_classes=2)
    tuned = TunedThresholdClassifierCV(
        fast_classifier(max_epochs=30), scoring="balanced_accuracy", cv=2, random_state=0
    ).fit(X_train, y_train)
    assert 0 < tuned.best_threshold_ < 1
    proba = tuned.estimator_.predict_proba(X_test)[:, 1]
    np.testing.assert_array_equal(
        tuned.predict(X_test), (proba >= tuned.best_threshold_).astype(int)
    )
    assert balanced_accuracy_score(y_test, tuned.predict(X_test)) > 0.7


@pytest.mark.skipif(
    parse_version(sklearn.__version__).release < (1, 8),
    reason="method='temperature' and FrozenEstimator need scikit-learn >= 1.8",
)
def test_temperature_calibration_of_a_frozen_model():
    from sklearn.frozen import FrozenEstimator

    X_train, X_rest, y_train, y_rest = _split(n_classes=2)
    X_cal, X_test, y_cal, y_test = train_test_split(
        X_rest, y_rest, test_size=0.5, stratify=y_rest, random_state=0
    )
    clf = fast_classifier(max_epochs=30).fit(X_train, y_train)
    before = clf.predict_proba(X_test)
    calibrated = CalibratedClassifierCV(FrozenEstimator(clf), method="temperature")
    calibrated.fit(X_cal, y_cal)
    # The frozen model was not refitted, and its ranking survives the temperature.
    np.testing.assert_array_equal(clf.predict_proba(X_test), before)
    after = calibrated.predict_proba(X_test)
    assert np.all(np.diff(after[np.argsort(before[:, 1]), 1]) >= -1e-12)
    assert log_loss(y_cal, calibrated.predict_proba(X_cal)) <= log_loss(
        y_cal, clf.predict_proba(X_cal)
    ) + 1e-9


def test_permutation_importance(fitted_binary):
    clf, X_test, y_test = fitted_binary
    result = permutation_importance(
        clf, X_test, y_test, scoring="roc_auc", n_repeats=3, random_state=0
    )
    assert result.importances.shape == (X_test.shape[1], 3)
    # shuffling an informative column costs ROC AUC (0.04 for the strongest here)
    assert np.isfinite(result.importances).all()
    assert result.importances_mean.max() > 0.02


def test_shap_permutation_explainer(fitted_binary):
    shap = pytest.importorskip("shap")
    clf, X_test, _ = fitted_binary
    background = X_test[:50]
    explainer = shap.PermutationExplainer(
        lambda X: clf.predict_proba(X)[:, 1], background, seed=0
    )
    explanation = explainer(X_test[:8])
    assert explanation.values.shape == (8, X_test.shape[1])
    # Efficiency: the attributions add up to the prediction minus the base value.
    np.testing.assert_allclose(
        explanation.values.sum(axis=1) + explanation.base_values,
        clf.predict_proba(X_test[:8])[:, 1],
        atol=1e-6,
    )
