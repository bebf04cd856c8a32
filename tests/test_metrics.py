import numpy as np
import pytest
from scipy.optimize import brentq
from scipy.special import expit, logit
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss, log_loss

from sk_dualhead import metrics
from sk_dualhead.metrics import calibration_report, expected_calibration_error

REPORT_KEYS = [
    "calibration_in_the_large",
    "calibration_slope",
    "brier_score",
    "log_loss",
    "ece",
    "observed_rate",
    "mean_predicted",
    "n_samples",
]


@pytest.fixture(scope="module")
def calibrated():
    """Large binary sample drawn from its own probabilities: calibrated by design."""
    rng = np.random.default_rng(0)
    p = rng.uniform(0.01, 0.99, size=200_000)
    return rng.random(p.size) < p, p


@pytest.fixture(scope="module")
def small_binary():
    rng = np.random.default_rng(1)
    p = rng.uniform(size=300)
    y = (rng.random(300) < expit(0.4 + 0.7 * logit(p))).astype(int)
    return y, p, rng.integers(0, 4, size=300)


@pytest.fixture(scope="module")
def small_multiclass():
    rng = np.random.default_rng(2)
    proba = rng.dirichlet(np.ones(4), size=300)
    y = np.array([rng.choice(4, p=row) for row in proba])
    return y, proba, rng.integers(0, 4, size=300)


def _binned_ece(outcome, score, bins):
    """The textbook formula, bin by bin, for bins given as sets of indices."""
    return sum(
        len(b) / len(score) * abs(np.mean(outcome[b]) - np.mean(score[b])) for b in bins
    )


# expected_calibration_error: hand-computed values


def test_ece_binary_hand_computed():
    y = np.array([0, 0, 1, 1, 0, 1])
    p = np.array([0.1, 0.2, 0.3, 0.6, 0.9, 1.0])
    # 4 bins [0, .25), [.25, .5), [.5, .75), [.75, 1]
    expected = _binned_ece(y, p, [[0, 1], [2], [3], [4, 5]])
    assert expected == pytest.approx(2.3 / 6)
    assert expected_calibration_error(y, p, n_bins=4) == pytest.approx(expected)


def test_ece_default_is_15_equal_width_bins():
    y = np.array([0, 1, 1, 0, 1])
    p = np.array([0.05, 0.1, 0.55, 0.62, 0.97])  # bins 0, 1, 8, 9 and 14 of 15
    expected = (0.05 + 0.9 + 0.45 + 0.62 + 0.03) / 5
    assert expected_calibration_error(y, p) == pytest.approx(expected)
    # with 5 bins 0.05 and 0.1 share [0, 0.2), which changes the value
    assert expected_calibration_error(y, p, n_bins=5) == pytest.approx(
        (0.85 + 0.45 + 0.62 + 0.03) / 5
    )


def test_ece_multiclass_top_label_hand_computed():
    y = np.array(["a", "b", "c", "a"])
    proba = np.array(
        [
            [0.5, 0.3, 0.2],  # predicts a, right, confidence .5
            [0.1, 0.2, 0.7],  # predicts c, wrong, .7
            [0.3, 0.3, 0.4],  # predicts c, right, .4
            [0.2, 0.75, 0.05],  # predicts b, wrong, .75
        ]
    )
    expected = _binned_ece(
        np.array([1, 0, 1, 0]), np.array([0.5, 0.7, 0.4, 0.75]), [[2], [0, 1, 3]]
    )
    assert expected == pytest.approx(0.3875)
    assert expected_calibration_error(y, proba, n_bins=2) == pytest.approx(expected)


def test_ece_multiclass_labels_name_missing_classes():
    y = [0, 2, 2]
    proba = [[0.6, 0.3, 0.1], [0.2, 0.2, 0.6], [0.1, 0.1, 0.8]]
    with pytest.raises(ValueError, match="pass labels"):
        expected_calibration_error(y, proba)
    expected = _binned_ece(np.array([1, 1, 1]), np.array([0.6, 0.6, 0.8]), [[0, 1, 2]])
    got = expected_calibration_error(y, proba, labels=[2, 1, 0], n_bins=1)
    assert got == pytest.approx(expected)


# expected_calibration_error: binary conventions


def test_ece_two_column_matrix_uses_column_one(small_binary):
    y, p, _ = small_binary
    proba = np.column_stack([1 - p, p])
    assert expected_calibration_error(y, proba) == expected_calibration_error(y, p)
    # pos_label=0 picks column 0 and the outcome y == 0
    assert expected_calibration_error(y, proba, pos_label=0) == pytest.approx(
        expected_calibration_error(1 - y, 1 - p)
    )


def test_ece_pos_label():
    p = np.array([0.2, 0.7, 0.9, 0.4])
    expected = expected_calibration_error([0, 1, 1, 0], p)
    assert expected_calibration_error([-1, 1, 1, -1], p) == expected
    assert expected_calibration_error([False, True, True, False], p) == expected
    strings = np.array(["no", "yes", "yes", "no"])
    assert expected_calibration_error(strings, p, pos_label="yes") == expected
    # a sample with a single class is fine when the positive class is unambiguous
    assert expected_calibration_error([0, 0], [0.25, 0.25]) == pytest.approx(0.25)


# expected_calibration_error: binning


@pytest.mark.parametrize(
    "y, p, expected",
    [
        # 1.0 belongs to the last bin, with 0.75
        ([0, 1], [1.0, 0.75], (1.0 - 0.25) / 2),
        # 0.5 is the left edge of the upper bin, so it joins 0.9
        ([1, 0], [0.5, 0.9], abs(0.5 - 0.9) / 2),
        # 0.0 belongs to the first bin, with 0.25
        ([1, 0], [0.0, 0.25], abs(1.0 - 0.25) / 2),
    ],
)
def test_ece_uniform_bins_closed_on_the_left(y, p, expected):
    assert expected_calibration_error(y, p, n_bins=2) == pytest.approx(expected)


def test_ece_probability_one():
    assert expected_calibration_error([1, 1], [1.0, 1.0]) == 0.0
    assert expected_calibration_error([0, 0], [1.0, 1.0]) == 1.0


def test_ece_quantile_hand_computed():
    y = np.array([0, 1, 0, 1])
    p = np.array([0.1, 0.2, 0.3, 0.9])
    quantile = expected_calibration_error(y, p, n_bins=2, strategy="quantile")
    assert quantile == pytest.approx(_binned_ece(y, p, [[0, 1], [2, 3]]))
    uniform = expected_calibration_error(y, p, n_bins=2)
    assert uniform == pytest.approx(_binned_ece(y, p, [[0, 1, 2], [3]]))


def test_ece_quantile_one_sample_per_bin(small_binary):
    y, p, _ = small_binary
    got = expected_calibration_error(y, p, n_bins=len(p), strategy="quantile")
    assert got == pytest.approx(np.mean(np.abs(y - p)))


def test_ece_quantile_tied_probabilities_share_a_bin():
    y = [0, 1, 1, 1]
    assert expected_calibration_error(
        y, [0.5] * 4, n_bins=3, strategy="quantile"
    ) == pytest.approx(0.25)


@pytest.mark.parametrize("strategy", ["uniform", "quantile"])
def test_ece_one_bin_is_mean_difference(small_binary, strategy):
    y, p, _ = small_binary
    got = expected_calibration_error(y, p, n_bins=1, strategy=strategy)
    assert got == pytest.approx(abs(y.mean() - p.mean()))


# expected_calibration_error: behaviour on large samples


@pytest.mark.parametrize("strategy", ["uniform", "quantile"])
def test_ece_calibrated_is_near_zero_distorted_is_large(calibrated, strategy):
    y, p = calibrated
    assert expected_calibration_error(y, p, strategy=strategy) < 0.01
    assert expected_calibration_error(y, p**0.3, strategy=strategy) > 0.2


# expected_calibration_error: sample weights


@pytest.mark.parametrize("strategy", ["uniform", "quantile"])
@pytest.mark.parametrize("data", ["small_binary", "small_multiclass"])
def test_ece_integer_weights_equal_repeated_rows(request, data, strategy):
    y, proba, weights = request.getfixturevalue(data)
    weighted = expected_calibration_error(
        y, proba, n_bins=7, strategy=strategy, sample_weight=weights
    )
    repeated = expected_calibration_error(
        np.repeat(y, weights, axis=0),
        np.repeat(proba, weights, axis=0),
        n_bins=7,
        strategy=strategy,
    )
    assert weighted == pytest.approx(repeated, rel=1e-12)
    unweighted = expected_calibration_error(y, proba, n_bins=7, strategy=strategy)
    assert weighted != pytest.approx(unweighted)


# expected_calibration_error: invalid input


@pytest.mark.parametrize(
    "y, p, kwargs, match",
    [
        ([0, 1, 1], [0.2, 0.3], {}, "different lengths: 3 and 2"),
        ([0, 1], [0.2, 1.2], {}, r"probabilities in \[0, 1\]"),
        ([0, 1], [-0.1, 0.3], {}, r"probabilities in \[0, 1\]"),
        ([0, 1], [0.2, np.nan], {}, "y_prob contains NaN"),
        pytest.param(
            [0.0, np.nan],
            [0.2, 0.3],
            {},
            "y_true contains NaN",
            # scikit-learn's type_of_target warns before it raises
            marks=pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning"),
        ),
        ([0.5, 1.5], [0.2, 0.3], {}, "must hold class labels"),
        ([0, 1], [0.2, 0.3], {"n_bins": 0}, "n_bins must be an integer >= 1"),
        ([0, 1], [0.2, 0.3], {"n_bins": 2.5}, "n_bins must be an integer >= 1"),
        ([0, 1], [0.2, 0.3], {"strategy": "kmeans"}, "strategy must be one of"),
        ([0, 1, 2], [0.2, 0.3, 0.4], {}, "3 classes but y_prob is 1-D"),
        (["a", "b"], [0.2, 0.3], {}, "pass pos_label"),
        ([0, 1], [0.2, 0.3], {"pos_label": 2}, "pos_label=2 is not one of"),
        ([0, 1], [[0.2], [0.3]], {}, "at least 2; got 1"),
        ([0, 1], [[0.2, 0.3, 0.5]] * 2, {}, "3 columns but y_true has 2"),
        ([0, 1], [[0.2, 0.8]] * 2, {"labels": [0, 1, 2]}, "but labels has 3"),
        ([0, 3], [[0.2, 0.8]] * 2, {"labels": [0, 1]}, r"not in labels: \[3\]"),
        ([0, 1, 2], [[0.2, 0.3, 0.5]] * 3, {"pos_label": 1}, "only used in binary"),
        ([0, 1], [0.2, 0.3], {"sample_weight": [1.0]}, r"expected \(2,\)"),
        ([0, 1], [0.2, 0.3], {"sample_weight": [1, -1]}, "non-negative"),
        ([0, 1], [0.2, 0.3], {"sample_weight": [0, 0]}, "positive sum"),
    ],
)
def test_ece_invalid_input(y, p, kwargs, match):
    with pytest.raises(ValueError, match=match):
        expected_calibration_error(y, p, **kwargs)


# calibration_report


def _fit_intercept_with_offset(y, logit_p, weights):
    """Independent calibration-in-the-large: the root of the likelihood score."""

    def score(a):
        # y - expit(eta), written to stay accurate where expit(eta) is within 1e-15 of y
        eta = a + logit_p
        return weights @ np.where(y == 1, expit(-eta), -expit(eta))

    return brentq(score, -100, 100, xtol=1e-12)


def test_report_calibrated(calibrated):
    y, p = calibrated
    report = calibration_report(y, p)
    assert list(report) == REPORT_KEYS
    assert report["calibration_in_the_large"] == pytest.approx(0, abs=0.05)
    assert report["calibration_slope"] == pytest.approx(1, abs=0.05)
    assert report["ece"] < 0.01
    assert report["n_samples"] == len(p)


def test_report_over_confident(calibrated):
    y, p = calibrated
    report = calibration_report(y, expit(2 * logit(p)))
    assert report["calibration_slope"] == pytest.approx(0.5, abs=0.05)
    assert report["calibration_in_the_large"] == pytest.approx(0, abs=0.05)


def test_report_too_low(calibrated):
    y, p = calibrated
    report = calibration_report(y, expit(logit(p) - 1))
    assert report["calibration_in_the_large"] == pytest.approx(1, abs=0.05)
    assert report["calibration_slope"] == pytest.approx(1, abs=0.05)
    assert report["mean_predicted"] < report["observed_rate"]


@pytest.mark.parametrize("weighted", [False, True])
def test_report_matches_independent_fits(small_binary, weighted):
    y, p, weights = small_binary
    weights = weights if weighted else np.ones_like(p)
    report = calibration_report(y, p, sample_weight=weights)

    logit_p = logit(p)
    reference = LogisticRegression(C=np.inf, tol=1e-12, max_iter=10_000)
    reference.fit(logit_p[:, None], y, sample_weight=weights)
    assert report["calibration_slope"] == pytest.approx(reference.coef_[0, 0], abs=1e-4)
    intercept = _fit_intercept_with_offset(y, logit_p, weights)
    assert report["calibration_in_the_large"] == pytest.approx(intercept, abs=1e-4)

    assert report["brier_score"] == pytest.approx(
        brier_score_loss(y, p, sample_weight=weights)
    )
    assert report["log_loss"] == pytest.approx(log_loss(y, p, sample_weight=weights))
    assert report["ece"] == expected_calibration_error(y, p, sample_weight=weights)
    assert report["observed_rate"] == pytest.approx(np.average(y, weights=weights))
    assert report["mean_predicted"] == pytest.approx(np.average(p, weights=weights))
    assert report["n_samples"] == len(p)


def test_report_integer_weights_equal_repeated_rows(small_binary):
    y, p, weights = small_binary
    weighted = calibration_report(y, p, sample_weight=weights)
    repeated = calibration_report(np.repeat(y, weights), np.repeat(p, weights))
    assert weighted.pop("n_samples") == len(p)
    assert repeated.pop("n_samples") == weights.sum()
    assert weighted == pytest.approx(repeated, rel=1e-6)


def test_report_pos_label_and_two_columns(small_binary):
    y, p, _ = small_binary
    expected = calibration_report(y, p)
    strings = np.where(y == 1, "event", "none")
    assert calibration_report(strings, p, pos_label="event") == expected
    assert calibration_report(y, np.column_stack([1 - p, p])) == expected


@pytest.mark.filterwarnings("error")
def test_report_probabilities_zero_and_one_are_clipped():
    y = [0, 1, 0, 1, 1, 0]
    report = calibration_report(y, [0.0, 1.0, 0.3, 0.4, 0.8, 0.6])
    assert np.isfinite(list(report.values())).all()


def test_report_slope_limits():
    # logit(p) separates the classes: the likelihood grows without bound in the slope
    assert calibration_report([0, 1], [0.2, 0.8])["calibration_slope"] == np.inf
    assert calibration_report([0, 1], [0.8, 0.2])["calibration_slope"] == -np.inf
    # ties at the border still separate
    report = calibration_report([0, 1, 1, 0], [0.3, 0.3, 0.5, 0.1])
    assert report["calibration_slope"] == np.inf
    # a constant prediction has no slope, but still an intercept
    report = calibration_report([0, 1, 1, 1], [0.5] * 4)
    assert np.isnan(report["calibration_slope"])
    assert report["calibration_in_the_large"] == pytest.approx(logit(0.75))


def test_report_saturated_predictions():
    # Predictions of exactly 0 and 1 are clipped to logits of about -34.5 and +34.5,
    # where every sample sits in the flat tails of the logistic curve.
    logit_low, logit_high = logit(1e-15), logit(1 - 1e-15)
    report = calibration_report([0] * 27 + [1] * 3, [0.0] * 27 + [1.0] * 3)
    # the score equation 3 exp(-a - logit_high) = 27 exp(a + logit_low), solved for a
    expected = (np.log(3 / 27) - logit_high - logit_low) / 2
    assert report["calibration_in_the_large"] == pytest.approx(expected, abs=1e-6)
    assert report["calibration_slope"] == np.inf

    # all but one sample saturated: the Hessian is singular along the way
    y = np.array([1] * 196 + [0] + [1] * 3)
    p = np.array([0.0] * 196 + [0.8] + [1.0] * 3)
    weights = np.array([1.5] * 196 + [1.0] + [2.5] * 3)
    logit_p = logit(np.clip(p, 1e-15, 1 - 1e-15))
    report = calibration_report(y, p, sample_weight=weights)
    reference = LogisticRegression(C=np.inf, tol=1e-12, max_iter=10_000)
    reference.fit(logit_p[:, None], y, sample_weight=weights)
    assert report["calibration_slope"] == pytest.approx(reference.coef_[0, 0], abs=1e-4)
    intercept = _fit_intercept_with_offset(y, logit_p, weights)
    assert report["calibration_in_the_large"] == pytest.approx(intercept, abs=1e-4)


def test_report_warns_when_a_fit_does_not_converge(small_binary, monkeypatch):
    monkeypatch.setattr(metrics, "_MAX_NEWTON_ITER", 1)
    y, p, _ = small_binary
    with pytest.warns(ConvergenceWarning, match="did not converge in 1 Newton"):
        calibration_report(y, p)


@pytest.mark.parametrize(
    "y, p, kwargs, match",
    [
        ([0, 0, 0], [0.2, 0.3, 0.4], {}, "needs both classes"),
        ([1, 1], [[0.8, 0.2]] * 2, {}, "needs both classes"),
        ([0, 1, 0], [0.2, 0.3, 0.4], {"sample_weight": [1, 0, 1]}, "both classes"),
        ([0, 1, 2], [[0.2, 0.3, 0.5]] * 3, {}, "binary outcomes; y_prob has 3 columns"),
        ([0, 1], [0.2, 0.3], {"n_bins": 0}, "n_bins must be an integer >= 1"),
        (["a", "b"], [0.2, 0.3], {}, "pass pos_label"),
    ],
)
def test_report_invalid_input(y, p, kwargs, match):
    with pytest.raises(ValueError, match=match):
        calibration_report(y, p, **kwargs)


# batched recalibration fits (the bootstrap's path)


def test_batched_fits_equal_one_fit_per_row_of_weights(small_binary):
    y, p, weights = small_binary
    logit_p = logit(p)
    outcome = y.astype(bool)
    rows = np.vstack([np.ones_like(p), weights, weights[::-1] + 1])
    intercept, slope = metrics._weak_calibration(logit_p, outcome, rows)
    citl = metrics._calibration_in_the_large(logit_p, outcome, rows)
    for k, row in enumerate(rows):
        report = calibration_report(y, p, sample_weight=row)
        assert slope[k] == pytest.approx(report["calibration_slope"], abs=1e-10)
        assert citl[k] == pytest.approx(report["calibration_in_the_large"], abs=1e-10)
    # a row of weights that keeps one class only has no fit, and says so
    one_class = np.where(outcome, 0.0, 1.0)[None]
    assert np.isnan(metrics._weak_calibration(logit_p, outcome, one_class)).all()
    assert np.isnan(metrics._calibration_in_the_large(logit_p, outcome, one_class)).all()


# score_probabilities: the one scoring function of the CLI and the benchmarks


def test_score_probabilities_binary(small_binary):
    y, p, _ = small_binary
    labels = np.where(y == 1, "yes", "no")
    scores = metrics.score_probabilities(labels, np.column_stack([1 - p, p]), ["no", "yes"])
    assert scores == metrics.score_probabilities(y, p, [0, 1])
    assert scores["ece"] == expected_calibration_error(y, p, n_bins=15)
    assert scores["log_loss"] == pytest.approx(log_loss(y, p))
    assert scores["brier"] == pytest.approx(brier_score_loss(y, p))
    # a probability of exactly 0 for a positive is clipped at 1e-15, not infinite
    hard = metrics.score_probabilities([1, 0], [0.0, 0.0], [0, 1])
    assert hard["log_loss"] == pytest.approx(-np.log(1e-15) / 2)


def test_score_probabilities_multiclass(small_multiclass):
    y, proba, _ = small_multiclass
    scores = metrics.score_probabilities(y, proba, [0, 1, 2, 3])
    assert scores["ece"] == expected_calibration_error(y, proba, n_bins=15)
    assert scores["log_loss"] == pytest.approx(log_loss(y, proba))
    assert set(scores) == {"roc_auc", "average_precision", "brier", "ece", "log_loss"}


# smooth calibration curve, ICI and net benefit


def _exactly_recalibrated(a, b, n=400):
    """Each prediction twice, as a positive weighted q and a negative weighted 1 - q.

    With q = expit(a + b logit(p)) the weighted likelihood is maximised exactly at the
    true curve, which the spline contains (its non-linear terms at 0): the fitted curve
    is the true one, and its ICI can be computed by hand.
    """
    p = np.linspace(0.02, 0.9, n)
    q = expit(a + b * logit(p))
    y = np.r_[np.ones(n), np.zeros(n)]
    return y, np.r_[p, p], np.r_[q, 1 - q], p, q


@pytest.mark.parametrize("n_knots", [3, 4, 5])
def test_ici_known_answer(n_knots):
    y, p_rows, weights, p, q = _exactly_recalibrated(0.3, 0.7)
    errors = np.abs(q - p)
    summary = metrics.integrated_calibration_index(
        y, p_rows, n_knots=n_knots, sample_weight=weights
    )
    assert summary["ici"] == pytest.approx(errors.mean(), abs=1e-8)
    # every p has total weight 1: the weighted quantiles are those of the n errors
    assert summary["e50"] == pytest.approx(np.quantile(errors, 0.5, method="inverted_cdf"), abs=1e-8)
    assert summary["e90"] == pytest.approx(np.quantile(errors, 0.9, method="inverted_cdf"), abs=1e-8)
    assert summary["emax"] == pytest.approx(errors.max(), abs=1e-8)
    curve = metrics.smooth_calibration_curve(
        y, p_rows, n_knots=n_knots, sample_weight=weights, n_points=7
    )
    np.testing.assert_allclose(curve.prob_true, expit(0.3 + 0.7 * logit(curve.prob_pred)), atol=1e-8)
    assert np.all(curve.lower < curve.prob_true) and np.all(curve.prob_true < curve.upper)


def test_ici_is_small_for_calibrated_and_grows_with_miscalibration(calibrated):
    y, p = calibrated
    y, p = y[:20_000], p[:20_000]
    near = metrics.integrated_calibration_index(y, p)["ici"]
    far = metrics.integrated_calibration_index(y, expit(1.5 * logit(p)))["ici"]
    assert near < 0.01 < 0.05 < far


def test_smooth_band_narrows_with_more_data(calibrated):
    y, p = calibrated
    small = metrics.smooth_calibration_curve(y[:1000], p[:1000], n_points=5)
    large = metrics.smooth_calibration_curve(y[:100_000], p[:100_000], n_points=5)
    middle = slice(1, 4)
    assert np.all(
        (large.upper - large.lower)[middle] < (small.upper - small.lower)[middle] / 5
    )


def test_net_benefit_hand_computed():
    y = np.array([1, 1, 0, 0, 0, 1, 0, 0])
    p = np.array([0.9, 0.4, 0.35, 0.1, 0.5, 0.05, 0.2, 0.3])
    # at t = 0.3: treated 0.9, 0.4, 0.35, 0.5, 0.3: TP 2, FP 3 of 8
    expected = 2 / 8 - 3 / 8 * 0.3 / 0.7
    np.testing.assert_allclose(metrics.net_benefit(y, p, [0.3]), [expected])
    treat_all = metrics.net_benefit(y, np.ones(8), [0.0, 0.2])
    np.testing.assert_allclose(treat_all, [3 / 8, 3 / 8 - 5 / 8 * 0.25])
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        metrics.net_benefit(y, p, [1.0])


@pytest.mark.parametrize(
    "function", [metrics.smooth_calibration_curve, metrics.integrated_calibration_index]
)
def test_smooth_calibration_input_errors(function):
    with pytest.raises(ValueError, match="Both classes"):
        function([0, 0, 0], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="n_knots must be one of"):
        function([0, 1, 0, 1], [0.1, 0.2, 0.3, 0.4], n_knots=7)
