"""Calibration diagnostics for predicted probabilities.

This module scores probabilities the way clinical prediction modelling reports them:

- :func:`expected_calibration_error` bins the predictions and averages the gap between
  the observed frequency and the mean prediction of each bin (binary, or top-label for
  multiclass problems);
- :func:`calibration_report` adds the logistic recalibration intercept
  ("calibration-in-the-large") and slope, the Brier score and the log loss for a binary
  outcome;
- :func:`smooth_calibration_curve` and :func:`integrated_calibration_index` fit a
  flexible calibration curve (a restricted cubic spline of the logit in a logistic
  model) and summarise its distance from the diagonal (ICI, E50, E90, Emax);
- :func:`net_benefit` is the y-axis of a decision curve;
- :func:`score_probabilities` is the one set of scores that the command line and the
  benchmarks print: ROC AUC, average precision, Brier score, ECE and log loss.

The functions take labels and probabilities only; they know nothing of the model that
produced them.
"""

import numbers
import warnings

import numpy as np
from scipy.special import expit, logit
from scipy.stats import norm
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    log_loss,
    roc_auc_score,
)
from sklearn.preprocessing import label_binarize
from sklearn.utils import Bunch, check_array, column_or_1d
from sklearn.utils.multiclass import type_of_target

__all__ = [
    "calibration_report",
    "expected_calibration_error",
    "integrated_calibration_index",
    "net_benefit",
    "score_probabilities",
    "smooth_calibration_curve",
]

# Probabilities are clipped to [_EPS, 1 - _EPS] before the logit, so that a prediction
# of exactly 0 or 1 gives a large finite logit rather than an infinite one.
_EPS = 1e-15

_STRATEGIES = ("uniform", "quantile")

#: Bins of the ECE that :func:`score_probabilities` reports.
SCORE_ECE_BINS = 15

#: Knot positions (quantiles of the logit of the predictions) of the restricted cubic
#: splines, by number of knots, as recommended by Harrell, "Regression Modeling
#: Strategies", section 2.4.6.
_KNOT_QUANTILES = {
    3: (0.10, 0.50, 0.90),
    4: (0.05, 0.35, 0.65, 0.95),
    5: (0.05, 0.275, 0.50, 0.725, 0.95),
}

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


def score_probabilities(y_true, proba, classes):
    """Score predicted probabilities: ROC AUC, AP, Brier score, ECE and log loss.

    The one scoring function of the command line and the benchmarks, so that their
    numbers can be compared: the ECE always has :data:`SCORE_ECE_BINS` (15)
    equal-width bins, and the log loss clips the probabilities to
    ``[1e-15, 1 - 1e-15]``, as :func:`calibration_report` does before its logits.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True labels.

    proba : array-like of shape (n_samples, n_classes) or (n_samples,)
        Predicted probabilities, column ``j`` for ``classes[j]``; a 1-D array holds the
        probability of ``classes[1]`` of a binary problem.

    classes : array-like of shape (n_classes,)
        The labels of the columns of `proba`, in sorted order (as ``classes_``).

    Returns
    -------
    scores : dict
        "roc_auc", "average_precision", "brier", "ece" and "log_loss". For two classes
        they are those of ``classes[1]``; for more, ROC AUC and average precision are
        one-vs-rest macro averages, the Brier score is the multiclass one and the ECE
        the top-label ECE.

    Examples
    --------
    >>> from sk_dualhead.metrics import score_probabilities
    >>> scores = score_probabilities([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8], [0, 1])
    >>> float(scores["roc_auc"])
    0.75
    """
    y_true = np.asarray(y_true)
    classes = np.asarray(classes)
    proba = np.asarray(proba, dtype=np.float64)
    clipped = np.clip(proba, _EPS, 1 - _EPS)
    if len(classes) == 2:
        score = proba if proba.ndim == 1 else proba[:, 1]
        positive = y_true == classes[1]
        scores = {
            "roc_auc": roc_auc_score(positive, score),
            "average_precision": average_precision_score(positive, score),
            "brier": brier_score_loss(positive, score),
            "ece": expected_calibration_error(positive, score, n_bins=SCORE_ECE_BINS),
            "log_loss": log_loss(
                positive, clipped if proba.ndim == 1 else clipped[:, 1], labels=[0, 1]
            ),
        }
    else:
        scores = {
            "roc_auc": roc_auc_score(y_true, proba, multi_class="ovr", labels=classes),
            "average_precision": average_precision_score(
                label_binarize(y_true, classes=classes), proba
            ),
            "brier": brier_score_loss(y_true, proba, labels=classes),
            "ece": expected_calibration_error(
                y_true, proba, n_bins=SCORE_ECE_BINS, labels=classes
            ),
            "log_loss": log_loss(
                y_true, clipped / clipped.sum(axis=1, keepdims=True), labels=classes
            ),
        }
    return {name: float(value) for name, value in scores.items()}


def smooth_calibration_curve(
    y_true,
    y_prob,
    *,
    n_knots=3,
    n_points=200,
    confidence_level=0.95,
    pos_label=None,
    sample_weight=None,
):
    r"""Fit a flexible calibration curve, with a pointwise confidence band.

    The outcome is regressed on a restricted cubic spline of the logit of the predicted
    probability ``p`` (Harrell's natural spline, linear beyond the outer knots),

    .. math::

        \operatorname{logit} P(y = 1) = a + b \operatorname{logit}(p)
        + \sum_{j=1}^{k-2} c_j S_j(\operatorname{logit}(p)),

    by unpenalised weighted maximum likelihood; the curve is the fitted probability
    against ``p``. It replaces the binned reliability diagram, whose points rest on a
    handful of samples when the outcome is rare (Van Calster et al. 2016). The band is
    the Wald interval of the linear predictor, transformed to probabilities.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True labels of a binary outcome. Both classes must be present.

    y_prob : array-like of shape (n_samples,) or (n_samples, 2)
        Predicted probabilities of the positive class; of a 2-D array, the column of
        `pos_label` (column 1 by default) is used.

    n_knots : {3, 4, 5}, default=3
        Knots of the spline, at Harrell's quantiles of ``logit(p)``. Three knots (one
        non-linear term) suit the few events of a rare outcome (Austin et al. 2020).

    n_points : int, default=200
        Points of the curve, evenly spaced from the smallest to the largest ``p``.

    confidence_level : float, default=0.95
        Level of the pointwise band.

    pos_label : int, float, bool or str, default=None
        The positive class, as in :func:`expected_calibration_error`.

    sample_weight : array-like of shape (n_samples,), default=None
        Non-negative sample weights; an integer weight acts as that many copies.

    Returns
    -------
    curve : :class:`~sklearn.utils.Bunch`
        ``prob_pred`` (the grid of predicted probabilities), ``prob_true`` (the fitted
        observed probability at each), ``lower`` and ``upper`` (the band), each of
        shape (n_points,), and ``knots``, the knots on the logit scale.

    See Also
    --------
    integrated_calibration_index : Distances between this curve and the diagonal.

    References
    ----------
    .. [1] B. Van Calster, D. Nieboer, Y. Vergouwe, B. De Cock, M. J. Pencina and
       E. W. Steyerberg, "A calibration hierarchy for risk models was defined: from
       utopia to empirical data", J Clin Epidemiol 74, 2016.
    .. [2] P. C. Austin, H. Putter, D. Giardiello and D. van Klaveren, "Graphical
       calibration curves and the integrated calibration index (ICI) for competing
       risk models", Diagn Progn Res 6, 2022.

    Examples
    --------
    >>> import numpy as np
    >>> from sk_dualhead.metrics import smooth_calibration_curve
    >>> rng = np.random.default_rng(0)
    >>> p = rng.uniform(0.05, 0.95, size=5_000)
    >>> curve = smooth_calibration_curve(rng.random(5_000) < p, p, n_points=5)
    >>> bool(np.all(np.abs(curve.prob_true - curve.prob_pred) < 0.05))
    True
    """
    if not 0 < confidence_level < 1:
        raise ValueError(
            f"confidence_level must be in (0, 1); got {confidence_level!r}."
        )
    outcome, score, weights = _binary_inputs(y_true, y_prob, pos_label, sample_weight)
    logit_p = logit(np.clip(score, _EPS, 1 - _EPS))
    knots = _spline_knots(logit_p, weights, n_knots)
    design = _spline_design(logit_p, knots)
    coef = _spline_fit(design, outcome, weights)[0]

    present = score[weights > 0]
    grid = np.linspace(present.min(), present.max(), n_points)
    grid_design = _spline_design(logit(np.clip(grid, _EPS, 1 - _EPS)), knots)
    eta = grid_design @ coef
    # Wald covariance from the observed information, with the weights as counts.
    fitted = expit(design @ coef)
    information = design.T @ (design * (weights * fitted * (1 - fitted))[:, None])
    covariance = np.linalg.pinv(information)
    se = np.sqrt(np.einsum("ij,jk,ik->i", grid_design, covariance, grid_design))
    z = norm.ppf(0.5 + confidence_level / 2)
    return Bunch(
        prob_pred=grid,
        prob_true=expit(eta),
        lower=expit(eta - z * se),
        upper=expit(eta + z * se),
        knots=knots,
    )


def integrated_calibration_index(
    y_true, y_prob, *, n_knots=3, pos_label=None, sample_weight=None
):
    r"""ICI, E50, E90 and Emax: distances of the smooth calibration curve from the diagonal.

    With :math:`\hat{p}_i` the smoothed observed probability of sample :math:`i` (the
    curve of :func:`smooth_calibration_curve` at its prediction :math:`p_i`), the
    absolute calibration errors :math:`|p_i - \hat{p}_i|` are summarised by their
    (weighted) mean, the integrated calibration index (ICI), their median (E50), their
    90th percentile (E90) and their maximum (Emax), as defined by Austin and
    Steyerberg (2019). All are 0 for perfect calibration and are on the probability
    scale.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True labels of a binary outcome. Both classes must be present.

    y_prob : array-like of shape (n_samples,) or (n_samples, 2)
        Predicted probabilities of the positive class, as in
        :func:`smooth_calibration_curve`.

    n_knots : {3, 4, 5}, default=3
        Knots of the spline calibration curve.

    pos_label : int, float, bool or str, default=None
        The positive class, as in :func:`expected_calibration_error`.

    sample_weight : array-like of shape (n_samples,), default=None
        Non-negative sample weights, of the fit and of the summaries alike.

    Returns
    -------
    summary : dict
        "ici", "e50", "e90" and "emax", floats.

    Notes
    -----
    The percentiles are weighted inverted-CDF quantiles: E50 is the smallest error
    whose cumulative weight reaches half the total (R's ``quantile(type = 1)``
    without weights). Austin and Steyerberg smooth with loess; a spline logistic fit
    gives a curve that stays within [0, 1] and has a closed-form confidence band.

    References
    ----------
    .. [1] P. C. Austin and E. W. Steyerberg, "The Integrated Calibration Index (ICI)
       and related metrics for quantifying the calibration of logistic regression
       models", Statistics in Medicine 38, 2019.

    Examples
    --------
    >>> import numpy as np
    >>> from scipy.special import expit, logit
    >>> from sk_dualhead.metrics import integrated_calibration_index
    >>> rng = np.random.default_rng(0)
    >>> p = rng.uniform(0.05, 0.95, size=20_000)
    >>> y = rng.random(20_000) < p
    >>> round(integrated_calibration_index(y, p)["ici"], 2)
    0.0
    >>> round(integrated_calibration_index(y, expit(2 * logit(p)))["ici"], 2)
    0.1
    """
    outcome, score, weights = _binary_inputs(y_true, y_prob, pos_label, sample_weight)
    logit_p = logit(np.clip(score, _EPS, 1 - _EPS))
    design = _spline_design(logit_p, _spline_knots(logit_p, weights, n_knots))
    coef = _spline_fit(design, outcome, weights)
    values = _calibration_errors(design, coef, score, weights[None])
    return {name: float(value[0]) for name, value in values.items()}


def net_benefit(y_true, y_prob, thresholds, *, pos_label=None, sample_weight=None):
    r"""Net benefit of treating the samples whose predicted risk reaches a threshold.

    At a risk threshold :math:`t`, treating every sample with :math:`p \geq t` has the
    net benefit (Vickers and Elkin 2006)

    .. math::

        \mathrm{NB}(t) = \frac{\mathrm{TP}(t)}{n} - \frac{\mathrm{FP}(t)}{n}
        \frac{t}{1 - t},

    true positives counted as benefit, false positives as harm weighted by the odds
    of the threshold. Treating no one has net benefit 0; treating everyone is
    ``net_benefit(y_true, np.ones(n), thresholds)``. The curve over thresholds is the
    decision curve.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True labels of a binary outcome.

    y_prob : array-like of shape (n_samples,) or (n_samples, 2)
        Predicted risks of the positive class.

    thresholds : array-like of shape (n_thresholds,)
        Risk thresholds, in [0, 1).

    pos_label : int, float, bool or str, default=None
        The positive class, as in :func:`expected_calibration_error`.

    sample_weight : array-like of shape (n_samples,), default=None
        Non-negative sample weights.

    Returns
    -------
    net_benefit : ndarray of shape (n_thresholds,)
        The net benefit at each threshold.

    References
    ----------
    .. [1] A. J. Vickers and E. B. Elkin, "Decision curve analysis: a novel method for
       evaluating prediction models", Medical Decision Making 26, 2006.

    Examples
    --------
    >>> from sk_dualhead.metrics import net_benefit
    >>> net_benefit([0, 0, 1, 1], [0.1, 0.6, 0.7, 0.9], [0.5])
    array([0.25])
    """
    y_true, y_prob, weights = _check_inputs(y_true, y_prob, sample_weight)
    outcome, score = _outcome_and_score(y_true, y_prob, pos_label, None)
    thresholds = check_array(
        thresholds, ensure_2d=False, dtype=np.float64, input_name="thresholds"
    ).ravel()
    if thresholds.min() < 0 or thresholds.max() >= 1:
        raise ValueError("thresholds must lie in [0, 1).")
    treated = score[None, :] >= thresholds[:, None]
    total = weights.sum()
    true_positive = (treated & outcome) @ weights / total
    false_positive = (treated & ~outcome) @ weights / total
    return true_positive - false_positive * thresholds / (1 - thresholds)


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


def _binary_inputs(y_true, y_prob, pos_label, sample_weight):
    """Boolean outcome, positive-class probability and weights of a binary problem."""
    y_true, y_prob, weights = _check_inputs(y_true, y_prob, sample_weight)
    if y_prob.ndim == 2 and y_prob.shape[1] != 2:
        raise ValueError(
            f"A binary outcome is needed; y_prob has {y_prob.shape[1]} columns."
        )
    outcome, score = _outcome_and_score(y_true, y_prob, pos_label, None)
    present = weights > 0
    if not (outcome[present].any() and (~outcome[present]).any()):
        raise ValueError("Both classes must be present in y_true, with a positive weight.")
    return outcome, score, weights


def _spline_knots(logit_p, weights, n_knots):
    """Knots of the restricted cubic spline at Harrell's quantiles of ``logit(p)``.

    Fewer distinct predictions than knots leave fewer knots; below three, none (the
    fit is then the two-parameter recalibration).
    """
    if n_knots not in _KNOT_QUANTILES:
        raise ValueError(f"n_knots must be one of 3, 4 or 5; got {n_knots!r}.")
    knots = np.unique(np.quantile(logit_p[weights > 0], _KNOT_QUANTILES[n_knots]))
    return knots if len(knots) >= 3 else knots[:0]


def _spline_design(x, knots):
    """Columns 1, x and the k - 2 non-linear terms of Harrell's restricted cubic spline.

    Each term is divided by ``(t_k - t_1) ** 2`` so that it is on the scale of x.
    """
    columns = [np.ones_like(x), x]
    if len(knots):
        last, before_last = knots[-1], knots[-2]
        span = last - before_last
        cube = lambda t: np.maximum(x - t, 0.0) ** 3  # noqa: E731
        for knot in knots[:-2]:
            term = (
                cube(knot)
                - cube(before_last) * (last - knot) / span
                + cube(last) * (before_last - knot) / span
            )
            columns.append(term / (last - knots[0]) ** 2)
    return np.column_stack(columns)


def _spline_fit(design, outcome, weights, start=None):
    """Coefficients of the spline calibration model, one row per row of weights."""
    weights = np.atleast_2d(weights)
    return _logistic_fit(design, np.zeros(len(design)), outcome, weights, start=start)


def _calibration_errors(design, coef, score, weights):
    """ICI, E50, E90 and Emax of each fit (row of `coef` and of `weights`)."""
    errors = np.abs(expit(coef @ design.T) - score)
    total = weights.sum(axis=1)
    order = np.argsort(errors, axis=1)
    sorted_errors = np.take_along_axis(errors, order, axis=1)
    cumulative = np.cumsum(np.take_along_axis(weights, order, axis=1), axis=1)

    def quantile(q):
        # The first sorted error whose cumulative weight reaches q of the total; a
        # relative tolerance keeps rounding in the sum from skipping a tie.
        index = np.argmax(cumulative >= q * total[:, None] * (1 - 1e-12), axis=1)
        return sorted_errors[np.arange(len(errors)), index]

    return {
        "ici": np.sum(weights * errors, axis=1) / total,
        "e50": quantile(0.5),
        "e90": quantile(0.9),
        "emax": np.where(weights > 0, errors, -np.inf).max(axis=1),
    }


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
    return float(_weak_calibration(logit_p, outcome, weights)[1][0])


def _weak_calibration(logit_p, outcome, weights, start=None):
    """Intercept and slope of ``logit P(y) = a + b logit(p)``, one fit per row of weights.

    `weights` is of shape (n_samples,) or (n_fits, n_samples) (bootstrap counts, say);
    both results have shape (n_fits,). When ``logit(p)`` separates the classes among
    the samples of a fit the slope is its limit, ``inf`` (or ``-inf`` if reversed), and
    the intercept NaN; with a single class, or all predictions equal, both are NaN.
    """
    weights = np.atleast_2d(weights)
    present = weights > 0
    positive, negative = present & outcome, present & ~outcome
    pos_min = np.where(positive, logit_p, np.inf).min(axis=1)
    pos_max = np.where(positive, logit_p, -np.inf).max(axis=1)
    neg_min = np.where(negative, logit_p, np.inf).min(axis=1)
    neg_max = np.where(negative, logit_p, -np.inf).max(axis=1)
    both = positive.any(axis=1) & negative.any(axis=1)
    constant = (pos_min == pos_max) & (pos_max == neg_min) & (neg_min == neg_max)
    # When logit(p) separates the classes, even with ties at the border, the likelihood
    # grows without bound as the slope goes to +inf (or -inf, if reversed): report the
    # limit rather than wherever the optimiser stops.
    above = both & ~constant & (pos_min >= neg_max)
    below = both & ~constant & ~above & (pos_max <= neg_min)
    fit = both & ~constant & ~above & ~below
    intercept = np.full(len(weights), np.nan)
    slope = np.full(len(weights), np.nan)
    slope[above], slope[below] = np.inf, -np.inf
    if fit.any():
        design = np.column_stack([np.ones_like(logit_p), logit_p])
        coef = _logistic_fit(
            design, np.zeros_like(logit_p), outcome, weights[fit], start=start
        )
        intercept[fit], slope[fit] = coef[:, 0], coef[:, 1]
    return intercept, slope


def _calibration_in_the_large(logit_p, outcome, weights, start=None):
    """Intercept with ``logit(p)`` as offset, one fit per row of weights; NaN for one class."""
    weights = np.atleast_2d(weights)
    present = weights > 0
    both = (present & outcome).any(axis=1) & (present & ~outcome).any(axis=1)
    intercept = np.full(len(weights), np.nan)
    if both.any():
        design = np.ones((len(logit_p), 1))
        intercept[both] = _logistic_fit(
            design, logit_p, outcome, weights[both], start=start
        )[:, 0]
    return intercept


def _logistic_fit(design, offset, outcome, weights, start=None):
    """Unpenalised weighted logistic regression of `outcome` on `design` + `offset`.

    Returns the coefficients, one per column of `design`. `weights` of shape
    (n_samples,) gives one fit, of shape (p,); of shape (n_fits, n_samples) it gives
    `n_fits` fits at once, of shape (n_fits, p), which is how a bootstrap is fitted
    without a Python loop over its resamples. The caller makes sure the coefficients
    exist (both classes present, no separation). Damped Newton's method on the mean
    negative log-likelihood, as in Boyd and Vandenberghe, "Convex Optimization",
    section 9.5, started from the ideal recalibration: 0 for the first column (the
    intercept), 1 for the second (``logit(p)``), 0 for any further ones.
    """
    single = weights.ndim == 1
    weights = np.atleast_2d(weights)
    weights = weights / weights.sum(axis=1, keepdims=True)
    n_params = design.shape[1]
    # With eta the linear predictor, the loss of a sample is log(1 + exp(sign * eta))
    # and its derivative in eta is sign * expit(sign * eta). Written so, they stay
    # accurate for saturated predictions (p within 1e-15 of 0 or 1), where
    # expit(eta) - outcome would cancel to rounding noise.
    sign = np.where(outcome, -1.0, 1.0)
    # The products of the columns, for the Hessian as a few matrix-vector products.
    pairs = [(i, j) for i in range(n_params) for j in range(i, n_params)]
    products = np.column_stack([design[:, i] * design[:, j] for i, j in pairs])

    def loss(coef, rows):
        return np.sum(
            weights[rows] * np.logaddexp(0.0, sign * (coef @ design.T + offset)), axis=1
        )

    coef = np.zeros((len(weights), n_params))
    if start is not None:
        coef[:] = start
    elif n_params > 1:
        coef[:, 1] = 1.0
    active = np.arange(len(weights))
    current = loss(coef, active)
    for _ in range(_MAX_NEWTON_ITER):
        w, c = weights[active], coef[active]
        eta = c @ design.T + offset
        gradient = (w * sign * expit(sign * eta)) @ design
        curvature = w * expit(eta) * expit(-eta)
        hessian = np.empty((len(active), n_params, n_params))
        for column, (i, j) in zip((curvature @ products).T, pairs):
            hessian[:, i, j] = hessian[:, j, i] = column
        # Saturated predictions can leave the Hessian numerically singular; the
        # least-squares (pseudo-inverse) solution is then still a descent direction.
        # The cutoff of small singular values is that of np.linalg.lstsq.
        pseudo_inverse = np.linalg.pinv(hessian, rcond=n_params * np.finfo(float).eps)
        step = (pseudo_inverse @ gradient[:, :, None])[:, :, 0]
        done = np.max(np.abs(step), axis=1) <= 1e-8 * (1 + np.max(np.abs(c), axis=1))
        # Newton converges quadratically here: the last step squares the error.
        coef[active[done]] = c[done] - step[done]
        keep = ~done
        active, c, step, gradient = active[keep], c[keep], step[keep], gradient[keep]
        if not len(active):
            return coef[0] if single else coef
        # Backtracking (Armijo) keeps far-off starting points from overshooting. Once
        # the loss still to gain (about half the squared Newton decrement) drowns in the
        # rounding of the loss, the comparisons mean nothing, but full steps are then
        # safe: the fit is already in the region of quadratic convergence.
        before = current[active]
        decrement = np.sum(gradient * step, axis=1)
        size = np.ones(len(active))
        checked = decrement > 1e-10 * before
        pending = np.flatnonzero(checked)
        after = np.empty(len(active))
        while len(pending):
            trial = loss(c[pending] - size[pending, None] * step[pending], active[pending])
            # The loss at the accepted step is the next iteration's current loss.
            after[pending] = trial
            worse = trial > before[pending] - size[pending] * decrement[pending] / 4
            pending = pending[worse]
            size[pending] /= 2
        coef[active] = c - size[:, None] * step
        after[~checked] = loss(coef[active[~checked]], active[~checked])
        current[active] = after
    warnings.warn(
        f"The logistic recalibration fit did not converge in {_MAX_NEWTON_ITER} "
        "Newton iterations. Predictions that (nearly) separate the classes do this: "
        "the maximum-likelihood coefficients then grow without bound, and the "
        "result is where the fit stopped.",
        ConvergenceWarning,
    )
    return coef[0] if single else coef
