"""Post-hoc calibration: the calibrators alone and inside the estimator."""

import copy
from dataclasses import replace

import numpy as np
import pytest
from conftest import fast_classifier
from scipy.special import log_softmax, softmax

from sk_dualhead.calibration import PlattScaling, TemperatureScaling


def _draw(proba, rng):
    cumulative = proba.cumsum(axis=1)
    return (rng.rand(len(proba), 1) > cumulative).sum(axis=1)


def test_temperature_recovers_the_true_temperature():
    rng = np.random.RandomState(0)
    logits = rng.normal(scale=3.0, size=(20000, 4))
    y = _draw(softmax(logits / 2.0, axis=1), rng)
    cal = TemperatureScaling().fit(logits, y)
    assert cal.temperature_ == pytest.approx(2.0, rel=0.05)
    expected = log_softmax(logits / cal.temperature_, axis=1)
    np.testing.assert_allclose(cal.transform(logits), expected)


def test_temperature_keeps_every_row_order():
    rng = np.random.RandomState(1)
    logits = rng.normal(size=(50, 3))
    cal = TemperatureScaling().fit(logits, rng.randint(3, size=50))
    np.testing.assert_array_equal(
        np.argsort(cal.transform(logits), axis=1), np.argsort(logits, axis=1)
    )


def test_platt_recovers_slope_and_intercept():
    rng = np.random.RandomState(0)
    margin = rng.normal(scale=2.0, size=20000)
    p1 = 1 / (1 + np.exp(-(0.5 * margin - 1.0)))
    y = (rng.rand(20000) < p1).astype(int)
    logits = np.column_stack([np.zeros_like(margin), margin])
    cal = PlattScaling().fit(logits, y)
    assert cal.slope_ == pytest.approx(0.5, rel=0.05)
    assert cal.intercept_ == pytest.approx(-1.0, abs=0.05)
    expected = 1 / (1 + np.exp(-(cal.slope_ * margin + cal.intercept_)))
    np.testing.assert_allclose(np.exp(cal.transform(logits))[:, 1], expected)


def test_platt_needs_two_classes():
    with pytest.raises(ValueError, match="2 classes"):
        PlattScaling().fit(np.zeros((4, 3)), np.array([0, 1, 2, 0]))


@pytest.mark.parametrize("calibrator", [TemperatureScaling, PlattScaling])
def test_integer_weights_equal_repeated_rows(calibrator):
    rng = np.random.RandomState(2)
    logits = rng.normal(scale=2.0, size=(60, 2))
    y = rng.randint(2, size=60)
    weight = rng.randint(0, 3, size=60)
    weighted = calibrator().fit(logits, y, weight)
    repeated = calibrator().fit(np.repeat(logits, weight, 0), np.repeat(y, weight))
    np.testing.assert_allclose(
        weighted.transform(logits), repeated.transform(logits), atol=1e-4
    )


def test_calibration_never_raises_held_out_log_loss():
    rng = np.random.RandomState(3)
    logits = rng.normal(scale=4.0, size=(200, 2))
    y = _draw(softmax(logits / 3.0, axis=1), rng)
    for cal in (TemperatureScaling().fit(logits, y), PlattScaling().fit(logits, y)):
        before = -log_softmax(logits, axis=1)[np.arange(200), y].mean()
        after = -cal.transform(logits)[np.arange(200), y].mean()
        assert after < before


# ------------------------------------------------------------- estimator


@pytest.mark.parametrize("calibration", ["temperature", "platt"])
def test_estimator_applies_its_calibrator(binary, calibration):
    X, y = binary
    clf = fast_classifier(calibration=calibration).fit(X, y)
    (calibrator,) = (member.calibrator for member in clf.members_)
    assert type(calibrator).__name__.lower().startswith(calibration[:4])
    (member,) = fast_classifier(calibration=None).fit(X, y).members_
    assert member.calibrator is None
    # The same network without its calibrator: calibration is the only
    # difference (refitting with calibration=None could stop at another epoch,
    # since early stopping scores the calibrated probabilities).
    raw = copy.deepcopy(clf)
    raw.members_ = [replace(clf.members_[0], calibrator=None)]
    expected = calibrator.transform(raw.predict_log_proba(X))
    np.testing.assert_allclose(clf.predict_log_proba(X), expected, rtol=1e-10)
    proba = clf.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(clf.predict(X), clf.classes_[proba.argmax(axis=1)])
    # decision_function ranks exactly as predict_proba[:, 1] (which may tie
    # where float64 saturates).
    order = np.argsort(clf.decision_function(X), kind="stable")
    assert np.all(np.diff(proba[order, 1]) >= 0)


def test_temperature_calibrates_three_classes(three_class):
    X, y = three_class
    clf = fast_classifier().fit(X, y)
    assert clf.members_[0].calibrator.temperature_ > 0
    assert clf.predict_proba(X).shape == (300, 3)


def test_platt_with_three_classes_is_refused_before_training(three_class):
    X, y = three_class
    clf = fast_classifier(calibration="platt")
    with pytest.raises(ValueError, match="platt"):
        clf.fit(X, y)
    assert not hasattr(clf, "network_")


def test_no_held_out_split_means_no_calibration(binary):
    X, y = binary
    clf = fast_classifier(early_stopping=False, n_networks=2).fit(X, y)
    assert [member.calibrator for member in clf.members_] == [None, None]


def test_confidence_aware_always_calibrates(binary):
    X, y = binary
    clf = fast_classifier("confidence_aware", calibration=None).fit(X, y)
    assert isinstance(clf.members_[0].calibrator, TemperatureScaling)


def test_auto_calibration_is_platt_for_two_classes_temperature_else(
    binary, three_class
):
    two = fast_classifier(calibration="auto").fit(*binary)
    assert isinstance(two.members_[0].calibrator, PlattScaling)
    three = fast_classifier(calibration="auto").fit(*three_class)
    assert isinstance(three.members_[0].calibrator, TemperatureScaling)
    default = fast_classifier().fit(*binary)
    assert isinstance(default.members_[0].calibrator, TemperatureScaling)


def test_fitted_calibrator_is_the_held_out_optimum(binary, monkeypatch):
    # Each member's calibrator is fitted on its own early-stopping rows, not on
    # the rows it trained on, once per epoch; the one kept is that of the
    # best epoch, whose log-likelihood there beats no calibration.
    fits = []
    original = TemperatureScaling.fit

    def spy(self, logits, y, sample_weight=None):
        fits.append((self, logits, y))
        return original(self, logits, y, sample_weight)

    monkeypatch.setattr(TemperatureScaling, "fit", spy)
    X, y = binary
    clf = fast_classifier(validation_fraction=0.2, n_networks=2).fit(X, y)
    epochs = sum(member.n_epochs for member in clf.members_)
    assert len(fits) == epochs and {len(y) for _, _, y in fits} == {60}
    for member in clf.members_:
        ((logits, target),) = [
            (logits, target) for cal, logits, target in fits if cal is member.calibrator
        ]
        np.testing.assert_array_equal(target, y[member.valid_rows])
        rows = np.arange(60)
        before = -log_softmax(logits, axis=1)[rows, target].mean()
        after = -member.calibrator.transform(logits)[rows, target].mean()
        assert after <= before


@pytest.mark.parametrize("calibrator", [TemperatureScaling, PlattScaling])
def test_separable_held_out_split_does_not_saturate(calibrator):
    # A small held-out split that the network ranks perfectly: the likelihood
    # alone would sharpen to the bound (scale exp(5)) and saturate every
    # probability; the prior keeps the scale within a factor of a few.
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 40)
    margin = np.where(y == 1, 1.0, -1.0) * rng.uniform(2.0, 6.0, size=80)
    logits = np.column_stack([np.zeros(80), margin])
    cal = calibrator().fit(logits, y)
    scale = 1 / cal.temperature_ if calibrator is TemperatureScaling else cal.slope_
    assert 1.0 < scale < 5.0
    proba = np.exp(cal.transform(logits))[:, 1]
    assert np.all((proba > 1e-12) & (proba < 1 - 1e-12))
