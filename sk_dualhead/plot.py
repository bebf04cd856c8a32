"""Figures for checking a classifier: reliability, loss curves, ROC and PR.

Each function draws on a Matplotlib axes (a new figure when none is given)
and builds on scikit-learn's displays where one exists, so the figures look
and behave like scikit-learn's own.

Matplotlib is an optional dependency, installed with the ``[plot]`` extra
(``pip install "sk-dualhead[plot]"``). It is imported inside the functions,
so ``import sk_dualhead`` never needs it.
"""

from functools import partial

import numpy as np

from .metrics import expected_calibration_error

__all__ = ["plot_loss_curves", "plot_reliability", "plot_roc_pr"]

#: History key suffix -> panel title, in the order the panels are drawn.
LOSS_TERMS = {
    "loss": "total loss",
    "main_loss": "main head",
    "aux_loss": "auxiliary head",
    "consistency_loss": "consistency (KL)",
}


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError(
            "sk_dualhead.plot needs matplotlib; install it with "
            "pip install 'sk-dualhead[plot]'."
        ) from exc
    return plt


def _minor_label(value, _position, mantissas):
    """Label of a minor log-scale tick whose leading digit is in ``mantissas``."""
    mantissa = round(value / 10 ** np.floor(np.log10(value)))
    return f"{value:.3g}" if mantissa in mantissas else ""


def _minor_mantissas(low, high):
    """Minor ticks worth labelling on a log axis from ``low`` to ``high``.

    A narrow range has few major ticks, so every minor tick is labelled; a
    wide one has enough major ticks, and labelled minor ticks would overlap.
    """
    ratio = high / low
    if ratio < 4:
        return range(2, 10)
    if ratio < 150:
        return (2, 5)
    return ()


def _binary_scores(y_true, y_score, pos_label):
    """Labels, positive-class scores and the positive label of a binary problem.

    A two-column ``y_score`` (``predict_proba`` output) is reduced to its
    second column, which belongs to the larger label, as in ``classes_``.
    """
    y_true = np.asarray(y_true)
    y_score = np.asarray(y_score, dtype=np.float64)
    if y_score.ndim == 2:
        if y_score.shape[1] != 2:
            raise ValueError(
                "These plots are for binary problems; y_score has "
                f"{y_score.shape[1]} columns. Pass the probability of one class "
                "(one-vs-rest) as a 1-D array instead."
            )
        y_score = y_score[:, 1]
    if pos_label is None:
        pos_label = np.unique(y_true)[-1]
    return y_true, y_score, pos_label


def plot_reliability(
    y_true,
    y_prob,
    *,
    name=None,
    n_bins=10,
    strategy="uniform",
    pos_label=None,
    ax=None,
    hist_ax=None,
):
    """Draw a reliability diagram, with the ECE of the curve in its legend.

    A thin layer over :class:`sklearn.calibration.CalibrationDisplay`: the
    curve of one model is drawn on ``ax`` and labelled with its expected
    calibration error, computed with the same bins. Call it once per model on
    the same ``ax`` to compare models; the diagonal is drawn once.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True labels of a binary problem.

    y_prob : array-like of shape (n_samples,) or (n_samples, 2)
        Predicted probability of the positive class, or the output of
        ``predict_proba`` (its second column is used).

    name : str, default=None
        Name of the model in the legend.

    n_bins : int, default=10
        Number of bins, for the curve and the ECE alike.

    strategy : {"uniform", "quantile"}, default="uniform"
        Bin placement; see
        :func:`~sk_dualhead.metrics.expected_calibration_error`.

    pos_label : int, float, bool or str, default=None
        The positive class; ``None`` takes the larger of the two labels.

    ax : matplotlib Axes, default=None
        Axes to draw on; a new figure is created when ``None``.

    hist_ax : matplotlib Axes, default=None
        When given, a histogram of the predicted probabilities, in the same
        bins and colour, is drawn on it: it shows which points of the curve
        rest on many samples and which on a handful.

    Returns
    -------
    display : sklearn.calibration.CalibrationDisplay
        The display; ``display.ax_`` holds the axes.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from sk_dualhead.plot import plot_reliability
    >>> display = plot_reliability([0, 0, 1, 1], [0.1, 0.3, 0.6, 0.9], name="model")
    >>> display.ax_.get_xlabel()
    'Mean predicted probability (Positive class: 1)'
    """
    from sklearn.calibration import CalibrationDisplay

    y_true, y_prob, pos_label = _binary_scores(y_true, y_prob, pos_label)
    ece = expected_calibration_error(
        y_true, y_prob, n_bins=n_bins, strategy=strategy, pos_label=pos_label
    )
    label = f"ECE {ece:.3f}" if name is None else f"{name} (ECE {ece:.3f})"
    if ax is None:
        _, ax = _pyplot().subplots(figsize=(5.5, 5.5), constrained_layout=True)
    display = CalibrationDisplay.from_predictions(
        y_true,
        y_prob,
        n_bins=n_bins,
        strategy=strategy,
        pos_label=pos_label,
        name=label,
        ax=ax,
    )
    ax.legend(loc="lower right", fontsize="small")
    if hist_ax is not None:
        edges = (
            np.linspace(0, 1, n_bins + 1)
            if strategy == "uniform"
            else np.unique(np.quantile(y_prob, np.linspace(0, 1, n_bins + 1)))
        )
        hist_ax.hist(
            y_prob,
            bins=edges,
            histtype="step",
            linewidth=1.5,
            color=display.line_.get_color(),
            label=name,
        )
        hist_ax.set(
            xlabel=ax.get_xlabel(),
            ylabel="Samples per bin",
            yscale="log",
            xlim=ax.get_xlim(),
        )
    return display


def plot_loss_curves(model, *, member=0, axes=None):
    """Draw each loss term per epoch, on the training and validation data.

    One panel per term of the combined loss (total, main head, auxiliary
    head, consistency), each with its training and, when early stopping held
    data out, its validation curve; a last panel shows the validation log
    loss that early stopping monitors. A dotted line marks the epoch whose
    weights were kept.

    Parameters
    ----------
    model : DualHeadClassifier, Member or list of dict
        A fitted classifier (its network ``member`` is drawn), one of its
        ``members_`` (its ``history`` and ``best_epoch``), or a history: one
        dict per epoch with the keys ``epoch``, ``train_loss``,
        ``train_main_loss`` and so on.

    member : int, default=0
        Which of a classifier's networks to draw.

    axes : array-like of matplotlib Axes, default=None
        One axes per panel (4, or 5 when validation data were held out); a
        new figure is created when ``None``.

    Returns
    -------
    axes : ndarray of matplotlib Axes
        The panels, in the order total, main, auxiliary, consistency and
        validation log loss.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from sklearn.datasets import load_breast_cancer
    >>> from sk_dualhead import DualHeadClassifier
    >>> from sk_dualhead.plot import plot_loss_curves
    >>> X, y = load_breast_cancer(return_X_y=True)
    >>> clf = DualHeadClassifier(max_epochs=5, random_state=0).fit(X, y)
    >>> [ax.get_title() for ax in plot_loss_curves(clf)]
    ['total loss', 'main head', 'auxiliary head', 'consistency (KL)', 'validation log loss']
    """
    from matplotlib.ticker import FormatStrFormatter, FuncFormatter

    if hasattr(model, "members_"):
        model = model.members_[member]
    history = getattr(model, "history", model)
    best_epoch = getattr(model, "best_epoch", None)
    epochs = [row["epoch"] for row in history]
    has_valid = "valid_loss" in history[-1]
    n_panels = len(LOSS_TERMS) + has_valid
    if axes is None:
        _, axes = _pyplot().subplots(
            1, n_panels, figsize=(3.2 * n_panels, 3.4), constrained_layout=True
        )
    axes = np.ravel(axes)
    if len(axes) != n_panels:
        raise ValueError(f"Expected {n_panels} axes for this history, got {len(axes)}.")
    panels = [(f"{{}}_{key}", title) for key, title in LOSS_TERMS.items()]
    if has_valid:
        panels.append(("{}_log_loss", "validation log loss"))
    for ax, (key, title) in zip(axes, panels):
        values = []
        for split, color in (("train", "C0"), ("valid", "C1")):
            name = key.format(split)
            if name in history[-1]:
                curve = [row[name] for row in history]
                values += curve
                ax.plot(epochs, curve, color=color, label=split)
        # Losses fall fast and then flatten; a log scale keeps the late
        # epochs, where early stopping decides, readable.
        if min(values) > 0:
            ax.set_yscale("log")
            # Plain decimals rather than 2.4 x 10^-1.
            ax.yaxis.set_major_formatter(FormatStrFormatter("%.3g"))
            mantissas = _minor_mantissas(min(values), max(values))
            ax.yaxis.set_minor_formatter(
                FuncFormatter(partial(_minor_label, mantissas=mantissas))
            )
        if best_epoch is not None and best_epoch < len(history):
            ax.axvline(best_epoch, color="grey", linestyle=":", label="best epoch")
        ax.set(title=title, xlabel="Epoch", ylabel="Loss (mean per row)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize="small")
    return axes


def plot_roc_pr(y_true, y_score, *, name=None, pos_label=None, axes=None):
    """Draw the ROC and the precision-recall curves side by side.

    Both come from scikit-learn's displays
    (:class:`~sklearn.metrics.RocCurveDisplay` and
    :class:`~sklearn.metrics.PrecisionRecallDisplay`), with their chance
    levels; the legends give the area under the ROC curve and the average
    precision. Call it once per model on the same ``axes`` to compare models.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True labels of a binary problem.

    y_score : array-like of shape (n_samples,) or (n_samples, 2)
        Scores or probabilities of the positive class, or the output of
        ``predict_proba`` (its second column is used).

    name : str, default=None
        Name of the model in the legends.

    pos_label : int, float, bool or str, default=None
        The positive class; ``None`` takes the larger of the two labels.

    axes : pair of matplotlib Axes, default=None
        Axes for the ROC and the PR curve; a new figure when ``None``.

    Returns
    -------
    roc, pr : RocCurveDisplay, PrecisionRecallDisplay
        The two displays.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from sk_dualhead.plot import plot_roc_pr
    >>> roc, pr = plot_roc_pr([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8], name="model")
    >>> float(roc.roc_auc)
    0.75
    """
    from sklearn.metrics import PrecisionRecallDisplay, RocCurveDisplay

    y_true, y_score, pos_label = _binary_scores(y_true, y_score, pos_label)
    if axes is None:
        _, axes = _pyplot().subplots(1, 2, figsize=(10, 4.6), constrained_layout=True)
    roc_ax, pr_ax = np.ravel(axes)
    # The chance level is drawn once per axes, however many curves share it.
    roc = RocCurveDisplay.from_predictions(
        y_true,
        y_score,
        pos_label=pos_label,
        name=name,
        ax=roc_ax,
        plot_chance_level=not roc_ax.lines,
    )
    pr = PrecisionRecallDisplay.from_predictions(
        y_true,
        y_score,
        pos_label=pos_label,
        name=name,
        ax=pr_ax,
        plot_chance_level=not pr_ax.lines,
    )
    for ax in (roc_ax, pr_ax):
        ax.legend(fontsize="small")
    return roc, pr
