"""Calibration diagnostics for predicted probabilities.

This module scores probabilities the way clinical prediction modelling reports them:

- :func:`expected_calibration_error` bins the predictions and averages the gap between
  the observed frequency and the mean prediction of each bin (binary, or top-label for
  multiclass problems);
- :func:`calibration_report` adds the logistic recalibration intercept
  ("calibration-in-the-large") and slope, the Brier score and the log loss for a binary
  outcome.

The functions take labels and probabilities only; they know nothing of the model that
produced them.
"""

import numbers
import warnings

import numpy as np
from scipy.special import expit, logit
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import brier_score_loss, log_loss
from sklearn.utils import check_array, column_or_1d
from sklearn.utils.multiclass import type_of_target

__all__ = ["calibration_report", "expected_calibration_error"]

# Probabilities are clipped to [_EPS, 1 - _EPS] before the logit, so that a prediction
# of exactly 0 or 1 gives a large finite logit rather than an infinite one.
_EPS = 1e-15

_STRATEGIES = ("uniform", "quantile")

# Newton's method for the recalibration fits needs a handful of iterations; more means
# the fit is hopeless.
_MAX_NEWTON_ITER = 50


def expected_calibration_error(
    y_true,
    y_prob,
    *,
    n_bins=15,
    strategy="uniform",
    pos_label=None,
    labels=None,
    sample_weight=None,
):
    r"""Compute the expected calibration error (ECE) of predicted probabilities.

    The predictions are grouped into bins by the probability they state; each bin
    contributes the absolute gap between its observed frequency and its mean predicted
    probability, weighted by its share of the samples:

    .. math::

        \mathrm{ECE} = \sum_{b=1}^{B} \frac{n_b}{n}
        \left| \bar{y}_b - \bar{p}_b \right|

    where :math:`n_b` is the (weighted) number of samples in bin :math:`b`, and
    :math:`\bar{y}_b` and :math:`\bar{p}_b` their (weighted) mean outcome and mean
    predicted probability. Empty bins contribute nothing. 0 is perfect calibration; the
    worst value is 1.

    What is binned depends on the shape of `y_prob`:

    - binary problem, `y_prob` of shape (n_samples,) or (n_samples, 2): the predicted
      probability of the positive class, against the outcome "the label is `pos_label`";
    - multiclass problem, `y_prob` of shape (n_samples, n_classes) with
      ``n_classes > 2``: the top-label (confidence) ECE of Guo et al. (2017), which bins
      the largest probability of each row against the outcome "the class with the
      largest probability is the true label".

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True class labels.

    y_prob : array-like of shape (n_samples,) or (n_samples, n_classes)
        Predicted probabilities, all in [0, 1]. A 1-D array holds the probability of the
        positive class of a binary problem. Column ``j`` of a 2-D array holds the
        probability of ``labels[j]``; with two columns the problem is binary and
        column 1 is the positive class by default.

    n_bins : int, default=15
        Number of bins.

    strategy : {"uniform", "quantile"}, default="uniform"
        How the bin edges are placed.

        - "uniform": equal-width bins on [0, 1], with edges
          ``np.linspace(0, 1, n_bins + 1)``. Every bin is closed on the left and open
          on the right, ``[edge_k, edge_{k+1})``, except the last,
          ``[edge_{B-1}, 1]``, which also holds the probabilities equal to 1. With the
          default this is "ECE, 15 equal-width bins".
        - "quantile": equal-frequency bins. The inner edges are the smallest predicted
          probabilities whose cumulative (weighted) share of the samples, in increasing
          order of probability, exceeds ``1 / n_bins``, ``2 / n_bins``, ...; the bins
          are then formed as for "uniform", so each holds about ``n / n_bins`` samples.
          Tied probabilities always share a bin, which can leave some bins empty.

    pos_label : int, float, bool or str, default=None
        The positive class of a binary problem. If None, it is 1 when the labels are
        {0, 1} or {-1, 1} (or a subset of them) and `y_prob` is 1-D, and ``labels[1]``
        (column 1) when `y_prob` has two columns. Must be None for a multiclass problem.

    labels : array-like of shape (n_classes,), default=None
        The class labels of the columns of a 2-D `y_prob`, which are taken in sorted
        order, as in :func:`sklearn.metrics.log_loss`. If None, the sorted unique values
        of `y_true`, which then must contain every class. Only used with a 2-D `y_prob`.

    sample_weight : array-like of shape (n_samples,), default=None
        Non-negative sample weights. The bin counts and means, and the quantile edges,
        are weighted, so an integer weight acts as that many copies of the sample.

    Returns
    -------
    ece : float
        The expected calibration error, in [0, 1].

    See Also
    --------
    calibration_report : Calibration intercept, slope and scores of a binary outcome.
    sklearn.calibration.calibration_curve : The per-bin frequencies and mean
        probabilities of a binary problem.

    Notes
    -----
    The ECE depends on the number and placement of the bins and is biased upwards in
    small samples: even perfectly calibrated probabilities give a positive ECE, of the
    order of ``sqrt(n_bins / n)``. Quote it with its binning.

    With ties for the largest probability of a row, the first class in column order is
    the predicted one, as in :func:`numpy.argmax`.

    References
    ----------
    .. [1] M. P. Naeini, G. F. Cooper and M. Hauskrecht, "Obtaining well calibrated
       probabilities using Bayesian binning", AAAI 2015.
    .. [2] C. Guo, G. Pleiss, Y. Sun and K. Q. Weinberger, "On calibration of modern
       neural networks", ICML 2017.

    Examples
    --------
    >>> from sk_dualhead.metrics import expected_calibration_error
    >>> y_true = [0, 0, 1, 1]
    >>> y_prob = [0.1, 0.4, 0.6, 0.8]
    >>> round(expected_calibration_error(y_true, y_prob, n_bins=2), 4)
    0.275

    In the top-label ECE of a multiclass problem the confidences 0.7, 0.65, 0.55 and
    0.85 fall in separate bins, and only the third prediction is wrong:

    >>> y_true = [0, 1, 2, 2]
    >>> y_prob = [[0.7, 0.2, 0.1],
    ...           [0.25, 0.65, 0.1],
    ...           [0.2, 0.55, 0.25],
    ...           [0.05, 0.1, 0.85]]
    >>> round(expected_calibration_error(y_true, y_prob), 4)
    0.3375
    """
    _check_binning(n_bins, strategy)
    y_true, y_prob, weights = _check_inputs(y_true, y_prob, sample_weight)
    outcome, score = _outcome_and_score(y_true, y_prob, pos_label, labels)
    return _ece(outcome, score, weights, n_bins, strategy)


def calibration_report(
    y_true, y_prob, *, pos_label=None, n_bins=15, sample_weight=None
):
    r"""Summarise the calibration of probabilities for a binary outcome.

    The intercept and slope come from logistic recalibration (Cox, 1958): the outcome is
    regressed on the logit of the predicted probability ``p``,

    .. math::

        \operatorname{logit} P(y = 1) = a + b \operatorname{logit}(p),

    by unpenalised, weighted maximum likelihood, with ``p`` clipped to
    ``[1e-15, 1 - 1e-15]`` before the logit.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True labels of a binary outcome. Both classes must be present.

    y_prob : array-like of shape (n_samples,) or (n_samples, 2)
        Predicted probabilities of the positive class, in [0, 1]; of a 2-D array, the
        column of `pos_label` (column 1 by default) is used.

    pos_label : int, float, bool or str, default=None
        The positive class, as in :func:`expected_calibration_error`.

    n_bins : int, default=15
        Number of equal-width bins of the ECE.

    sample_weight : array-like of shape (n_samples,), default=None
        Non-negative sample weights, used by every entry but `n_samples`.

    Returns
    -------
    report : dict
        The entries, in this order:

        - "calibration_in_the_large" : float. The intercept ``a`` of the recalibration
          model with the slope fixed at 1, that is with ``logit(p)`` as an offset.
          Positive when the predictions are too low on average, negative when too high.
          Ideal: 0.
        - "calibration_slope" : float. The slope ``b`` of the two-parameter
          recalibration model. Below 1 the predictions are too extreme (over-confident,
          typical of overfitting); above 1 too moderate. Ideal: 1. When ``logit(p)``
          separates the classes (every positive at or above every negative, or the
          reverse) the estimate is infinite and ``inf`` (or ``-inf``) is returned; when
          all predicted probabilities with a positive weight are equal it is undefined
          and NaN is returned.
        - "brier_score" : float. Mean squared difference between the outcome and ``p``,
          :func:`sklearn.metrics.brier_score_loss`. Lower is better; ideal 0.
        - "log_loss" : float. Mean negative log-likelihood of the outcome,
          :func:`sklearn.metrics.log_loss`. Lower is better; ideal 0.
        - "ece" : float. :func:`expected_calibration_error` with `n_bins` equal-width
          bins. Ideal: 0.
        - "observed_rate" : float. (Weighted) frequency of the positive class.
        - "mean_predicted" : float. (Weighted) mean of ``p``; equal to "observed_rate"
          when the predictions are calibrated in the large.
        - "n_samples" : int. Number of samples, not weighted.

    Warns
    -----
    ConvergenceWarning
        If a recalibration fit does not converge.

    Notes
    -----
    Both recalibration models are fitted by Newton's method with backtracking, to
    about 1e-8 in the coefficients; a generic logistic regression solver at a tight
    tolerance gives the same values.

    See Also
    --------
    expected_calibration_error : Binned calibration error, also for multiclass problems.

    References
    ----------
    .. [1] D. R. Cox, "Two further applications of a model for binary regression",
       Biometrika 45, 1958.
    .. [2] B. Van Calster, D. J. McLernon, M. van Smeden, L. Wynants and
       E. W. Steyerberg, "Calibration: the Achilles heel of predictive analytics",
       BMC Medicine 17, 2019.

    Examples
    --------
    >>> import numpy as np
    >>> from scipy.special import expit, logit
    >>> from sk_dualhead.metrics import calibration_report
    >>> rng = np.random.default_rng(0)
    >>> p = rng.uniform(0.05, 0.95, size=20_000)
    >>> y = rng.random(20_000) < p

    Doubling the logits makes the predictions over-confident; the slope shows it:

    >>> report = calibration_report(y, expit(2 * logit(p)))
    >>> round(report["calibration_slope"], 1)
    0.5
    >>> sorted(report)  # doctest: +NORMALIZE_WHITESPACE
    ['brier_score', 'calibration_in_the_large', 'calibration_slope', 'ece',
     'log_loss', 'mean_predicted', 'n_samples', 'observed_rate']
    """
    _check_binning(n_bins, "uniform")
    y_true, y_prob, weights = _check_inputs(y_true, y_prob, sample_weight)
    if y_prob.ndim == 2 and y_prob.shape[1] != 2:
        raise ValueError(
            "calibration_report is for binary outcomes; y_prob has "
            f"{y_prob.shape[1]} columns."
        )
    if len(np.unique(y_true[weights > 0])) < 2:
        raise ValueError(
            "calibration_report needs both classes in y_true, with a positive weight."
        )
    outcome, score = _outcome_and_score(y_true, y_prob, pos_label, None)

    logit_p = logit(np.clip(score, _EPS, 1 - _EPS))
    intercept = _logistic_fit(np.ones((len(score), 1)), logit_p, outcome, weights)[0]
    y01 = outcome.astype(int)
    return {
        "calibration_in_the_large": float(intercept),
        "calibration_slope": _calibration_slope(logit_p, outcome, weights),
        "brier_score": float(
            brier_score_loss(y01, score, sample_weight=weights, pos_label=1)
        ),
        "log_loss": float(log_loss(y01, score, sample_weight=weights, labels=[0, 1])),
        "ece": _ece(outcome, score, weights, n_bins, "uniform"),
        "observed_rate": float(np.average(outcome, weights=weights)),
        "mean_predicted": float(np.average(score, weights=weights)),
        "n_samples": len(score),
    }


def _check_binning(n_bins, strategy):
    if not isinstance(n_bins, numbers.Integral) or n_bins < 1:
        raise ValueError(f"n_bins must be an integer >= 1; got {n_bins!r}.")
    if strategy not in _STRATEGIES:
        raise ValueError(f"strategy must be one of {_STRATEGIES}; got {strategy!r}.")


def _check_inputs(y_true, y_prob, sample_weight):
    """Validate the arrays; return them with the weights (ones if none are given)."""
    y_true = column_or_1d(y_true)
    target_type = type_of_target(y_true, input_name="y_true")
    if target_type not in ("binary", "multiclass"):
        raise ValueError(
            f"y_true must hold class labels; got a {target_type!r} target."
        )
    y_prob = check_array(y_prob, ensure_2d=False, dtype=np.float64, input_name="y_prob")
    if y_prob.shape[0] != y_true.shape[0]:
        raise ValueError(
            f"y_true and y_prob have different lengths: {y_true.shape[0]} and "
            f"{y_prob.shape[0]}."
        )
    if y_prob.min() < 0 or y_prob.max() > 1:
        raise ValueError(
            "y_prob must hold probabilities in [0, 1]; got values in "
            f"[{y_prob.min():g}, {y_prob.max():g}]."
        )
    if sample_weight is None:
        return y_true, y_prob, np.ones(y_true.shape[0])
    weights = check_array(
        sample_weight, ensure_2d=False, dtype=np.float64, input_name="sample_weight"
    )
    if weights.shape != y_true.shape:
        raise ValueError(
            f"sample_weight has shape {weights.shape}; expected ({y_true.shape[0]},)."
        )
    if weights.min() < 0 or weights.sum() == 0:
        raise ValueError("sample_weight must be non-negative with a positive sum.")
    return y_true, y_prob, weights


def _outcome_and_score(y_true, y_prob, pos_label, labels):
    """Reduce to a boolean outcome and the probability stated for it.

    Binary: "the label is the positive class" and its probability. Multiclass: "the
    most probable class is the true one" and the largest probability.
    """
    classes = np.unique(y_true)
    if y_prob.ndim == 1:
        if len(classes) > 2:
            raise ValueError(
                f"y_true has {len(classes)} classes but y_prob is 1-D; pass the "
                "(n_samples, n_classes) matrix of class probabilities."
            )
        pos_label = _default_pos_label(classes) if pos_label is None else pos_label
        # A sample of one class may lack the positive class, so only two are checked.
        if len(classes) == 2:
            _check_pos_label(pos_label, classes)
        return y_true == pos_label, y_prob

    n_columns = y_prob.shape[1]
    if n_columns < 2:
        raise ValueError(
            f"A 2-D y_prob needs a column per class, at least 2; got {n_columns}."
        )
    source = "y_true" if labels is None else "labels"
    labels = classes if labels is None else np.unique(column_or_1d(labels))
    if len(labels) != n_columns:
        raise ValueError(
            f"y_prob has {n_columns} columns but {source} has {len(labels)} distinct "
            "labels; pass labels to name the class of each column."
        )
    unknown = np.setdiff1d(classes, labels)
    if len(unknown):
        raise ValueError(f"y_true has labels not in labels: {unknown.tolist()}.")

    if n_columns == 2:
        pos_label = labels[1] if pos_label is None else pos_label
        _check_pos_label(pos_label, labels)
        return y_true == pos_label, y_prob[:, np.flatnonzero(labels == pos_label)[0]]
    if pos_label is not None:
        raise ValueError(
            "pos_label is only used in binary problems; y_prob has "
            f"{n_columns} columns."
        )
    predicted = y_prob.argmax(axis=1)
    return labels[predicted] == y_true, y_prob[np.arange(len(y_prob)), predicted]


def _default_pos_label(classes):
    # As in scikit-learn: only labels that are conventionally 0/1 or -1/1 name their
    # positive class unambiguously, even when y_true holds a single class.
    if classes.dtype.kind not in "OUS" and (
        np.isin(classes, [0, 1]).all() or np.isin(classes, [-1, 1]).all()
    ):
        return 1
    raise ValueError(
        f"y_true has labels {classes.tolist()}; pass pos_label to name the positive "
        "class."
    )


def _check_pos_label(pos_label, labels):
    if pos_label not in labels.tolist():
        raise ValueError(
            f"pos_label={pos_label!r} is not one of the labels {labels.tolist()}."
        )


def _ece(outcome, score, weights, n_bins, strategy):
    """ECE of a boolean outcome against the probability stated for it."""
    if strategy == "uniform":
        inner_edges = np.linspace(0.0, 1.0, n_bins + 1)[1:-1]
    else:
        order = np.argsort(score, kind="stable")
        cumulative = np.cumsum(weights[order])
        # The first sorted score whose cumulative weight exceeds each fraction: equal
        # shares of weight per bin, and integer weights act exactly as repeated rows.
        fractions = cumulative[-1] * np.arange(1, n_bins) / n_bins
        inner_edges = score[order][np.searchsorted(cumulative, fractions, side="right")]
    # side="right" closes the bins on the left, and a score of 1 lands in the last bin.
    bins = np.searchsorted(inner_edges, score, side="right")
    # n_b / n * |mean(y) - mean(p)| in bin b is |sum of w * (y - p) in b| / sum of w.
    gaps = np.bincount(bins, weights=weights * (outcome - score), minlength=n_bins)
    return float(np.abs(gaps).sum() / weights.sum())


def _calibration_slope(logit_p, outcome, weights):
    """Slope of the two-parameter recalibration model, or its limit if it has none."""
    positive = logit_p[outcome & (weights > 0)]
    negative = logit_p[~outcome & (weights > 0)]
    if positive.min() == positive.max() == negative.min() == negative.max():
        return np.nan
    # When logit(p) separates the classes, even with ties at the border, the likelihood
    # grows without bound as the slope goes to +inf (or -inf, if reversed): report the
    # limit rather than wherever the optimiser stops.
    if positive.min() >= negative.max():
        return np.inf
    if positive.max() <= negative.min():
        return -np.inf
    design = np.column_stack([np.ones_like(logit_p), logit_p])
    return float(_logistic_fit(design, np.zeros_like(logit_p), outcome, weights)[1])


def _logistic_fit(design, offset, outcome, weights):
    """Unpenalised weighted logistic regression of `outcome` on `design` + `offset`.

    Returns the coefficients, one per column of `design`; the caller makes sure they
    exist (both classes present, no separation). Damped Newton's method on the mean
    negative log-likelihood, as in Boyd and Vandenberghe, "Convex Optimization",
    section 9.5.
    """
    weights = weights / weights.sum()
    # With eta the linear predictor, the loss of a sample is log(1 + exp(sign * eta))
    # and its derivative in eta is sign * expit(sign * eta). Written so, they stay
    # accurate for saturated predictions (p within 1e-15 of 0 or 1), where
    # expit(eta) - outcome would cancel to rounding noise.
    sign = np.where(outcome, -1.0, 1.0)

    def loss(coef):
        return weights @ np.logaddexp(0.0, sign * (design @ coef + offset))

    # Start from the ideal recalibration, a = 0 and b = 1.
    coef = np.zeros(design.shape[1])
    coef[1:] = 1.0
    current = loss(coef)
    for _ in range(_MAX_NEWTON_ITER):
        eta = design @ coef + offset
        gradient = design.T @ (weights * sign * expit(sign * eta))
        curvature = weights * expit(eta) * expit(-eta)
        hessian = design.T @ (design * curvature[:, None])
        # Saturated predictions can leave the Hessian numerically singular; the
        # least-squares solution is then still a descent direction.
        step = np.linalg.lstsq(hessian, gradient, rcond=None)[0]
        if np.max(np.abs(step)) <= 1e-8 * (1 + np.max(np.abs(coef))):
            # Newton converges quadratically here: the last step squares the error.
            return coef - step
        # Backtracking (Armijo) keeps far-off starting points from overshooting. Once
        # the loss still to gain (about half the squared Newton decrement) drowns in the
        # rounding of the loss, the comparisons mean nothing, but full steps are then
        # safe: the fit is already in the region of quadratic convergence.
        size = 1.0
        decrement = gradient @ step
        if decrement > 1e-10 * current:
            while loss(coef - size * step) > current - size * decrement / 4:
                size /= 2
        coef = coef - size * step
        current = loss(coef)
    warnings.warn(
        f"The logistic recalibration fit did not converge in {_MAX_NEWTON_ITER} "
        "Newton iterations.",
        ConvergenceWarning,
    )
    return coef
