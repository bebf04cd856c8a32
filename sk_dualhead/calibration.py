"""Post-hoc calibration of a fitted network's log-probabilities.

Focal loss, label smoothing and class weights are not proper losses: the
probabilities they train toward are bent (a true risk of 0.02 comes out near
0.19 under focal loss with ``gamma=2``). A one- or two-parameter map fitted
on held-out predictions, after training, straightens them without touching
the ranking. Both calibrators here take log-probabilities (or any logits:
softmax is invariant to a constant per row) and return calibrated
log-probabilities.

This module knows nothing of torch or skorch.
"""

import numpy as np
from scipy.optimize import minimize, minimize_scalar
from scipy.special import log_softmax

__all__ = ["TemperatureScaling", "PlattScaling", "CALIBRATORS"]

#: Bounds of the fitted log-scale: temperatures between exp(-5) and exp(5).
#: Held-out sets that the model separates perfectly drive the unbounded
#: optimum to zero temperature; the bound keeps probabilities finite.
_LOG_SCALE_BOUND = 5.0


def _log_scale_prior(log_scale, sample_weight):
    """Penalty of a standard normal prior on the log-scale, worth one sample.

    On a small held-out split that the network separates perfectly, the
    likelihood alone keeps improving as the scale sharpens, until the bound:
    probabilities saturate at 0 and 1, ties erase the ranking and one
    mistake on new data costs a huge log loss (seen on breast cancer: ROC
    AUC 0.994 -> 0.973). The prior stops the sharpening where the held-out
    evidence is thin and fades as the split grows.
    """
    # Weights count as repeated rows, as in the likelihood.
    return 0.5 * log_scale**2 / sample_weight.sum()


def weighted_nll(log_proba, y, sample_weight):
    """Mean negative log-likelihood of the labels, weighted (None: equal weights)."""
    nll = -log_proba[np.arange(len(y)), y]
    return np.average(nll, weights=sample_weight)


def _check(logits, y, sample_weight):
    logits = np.asarray(logits, dtype=np.float64)
    y = np.asarray(y)
    if sample_weight is None:
        sample_weight = np.ones(len(y))
    return logits, y, np.asarray(sample_weight, dtype=np.float64)


class TemperatureScaling:
    r"""Temperature scaling (Guo et al. 2017), for any number of classes.

    .. math:: \hat p = \mathrm{softmax}(z / T), \qquad T > 0

    ``T`` minimises the weighted negative log-likelihood of the held-out
    labels. Dividing every logit by the same ``T`` keeps each row's order of
    classes, so predictions and rankings are unchanged.

    Attributes
    ----------
    temperature_ : float
        The fitted temperature; above 1 softens over-confident outputs,
        below 1 sharpens under-confident ones.

    Examples
    --------
    >>> import numpy as np
    >>> from sk_dualhead.calibration import TemperatureScaling
    >>> logits = np.tile([[4.0, 0.0], [0.0, 4.0], [4.0, 0.0], [0.0, 4.0]], (100, 1))
    >>> y = np.tile([0, 1, 0, 0], 100)  # 3 of 4 right, yet each 98% sure
    >>> cal = TemperatureScaling().fit(logits, y)
    >>> round(cal.temperature_, 2)  # near 4 / log(3) = 3.64, where softmax gives 0.75
    3.59
    >>> np.exp(cal.transform(logits)).round(2)[0]
    array([0.75, 0.25])
    """

    def fit(self, logits, y, sample_weight=None):
        """Fit the temperature on held-out logits and labels.

        Parameters
        ----------
        logits : ndarray of shape (n_samples, n_classes)
            Logits or log-probabilities.
        y : ndarray of shape (n_samples,)
            Encoded labels ``0 .. n_classes - 1``.
        sample_weight : ndarray of shape (n_samples,), default=None
            Weights of the samples in the likelihood.

        Returns
        -------
        self : TemperatureScaling
        """
        logits, y, sample_weight = _check(logits, y, sample_weight)

        def loss(log_t):
            return weighted_nll(
                log_softmax(logits / np.exp(log_t), axis=1), y, sample_weight
            ) + _log_scale_prior(log_t, sample_weight)

        result = minimize_scalar(
            loss, bounds=(-_LOG_SCALE_BOUND, _LOG_SCALE_BOUND), method="bounded"
        )
        self.temperature_ = float(np.exp(result.x))
        return self

    def transform(self, logits):
        """Calibrated log-probabilities.

        Parameters
        ----------
        logits : ndarray of shape (n_samples, n_classes)

        Returns
        -------
        log_proba : ndarray of shape (n_samples, n_classes)
        """
        return log_softmax(
            np.asarray(logits, dtype=np.float64) / self.temperature_, axis=1
        )


class PlattScaling:
    r"""Platt scaling (Platt 1999) for two classes.

    .. math:: \hat p_1 = \sigma(a\,(z_1 - z_0) + b), \qquad a > 0

    ``a`` and ``b`` minimise the weighted negative log-likelihood of the
    held-out labels. Unlike temperature scaling, the intercept ``b`` can
    also undo a shift of the prior (from class weights, say). ``a`` is kept
    positive so that the ranking of the samples never flips.

    Attributes
    ----------
    slope_ : float
        ``a``.
    intercept_ : float
        ``b``.

    Examples
    --------
    >>> import numpy as np
    >>> from sk_dualhead.calibration import PlattScaling
    >>> logits = np.array([[0.0, 1.0], [0.0, -1.0], [0.0, 1.0], [0.0, 3.0]])
    >>> cal = PlattScaling().fit(logits, np.array([1, 0, 0, 1]))
    >>> round(cal.slope_, 2) > 0
    True
    """

    def fit(self, logits, y, sample_weight=None):
        """Fit slope and intercept on held-out logits and labels.

        Parameters
        ----------
        logits : ndarray of shape (n_samples, 2)
            Logits or log-probabilities.
        y : ndarray of shape (n_samples,)
            Encoded labels 0 or 1.
        sample_weight : ndarray of shape (n_samples,), default=None
            Weights of the samples in the likelihood.

        Returns
        -------
        self : PlattScaling
        """
        logits, y, sample_weight = _check(logits, y, sample_weight)
        if logits.shape[1] != 2:
            raise ValueError(
                f"Platt scaling needs 2 classes, got {logits.shape[1]}; use "
                "calibration='temperature' for more."
            )
        margin = logits[:, 1] - logits[:, 0]

        def loss(params):
            return weighted_nll(
                self._log_proba(margin, *params), y, sample_weight
            ) + _log_scale_prior(params[0], sample_weight)

        result = minimize(
            loss,
            x0=np.zeros(2),
            method="L-BFGS-B",
            bounds=[(-_LOG_SCALE_BOUND, _LOG_SCALE_BOUND), (None, None)],
        )
        self.slope_ = float(np.exp(result.x[0]))
        self.intercept_ = float(result.x[1])
        return self

    @staticmethod
    def _log_proba(margin, log_slope, intercept):
        score = np.exp(log_slope) * margin + intercept
        return log_softmax(np.column_stack([np.zeros_like(score), score]), axis=1)

    def transform(self, logits):
        """Calibrated log-probabilities.

        Parameters
        ----------
        logits : ndarray of shape (n_samples, 2)

        Returns
        -------
        log_proba : ndarray of shape (n_samples, 2)
        """
        logits = np.asarray(logits, dtype=np.float64)
        margin = logits[:, 1] - logits[:, 0]
        return self._log_proba(margin, np.log(self.slope_), self.intercept_)


#: ``calibration`` hyperparameter value -> calibrator class.
CALIBRATORS = {"temperature": TemperatureScaling, "platt": PlattScaling}
