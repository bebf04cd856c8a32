"""Figures for checking a classifier: calibration, decision curves, loss curves, ROC and PR.

Each function draws on a Matplotlib axes (a new figure when none is given)
and builds on scikit-learn's displays where one exists, so the figures look
and behave like scikit-learn's own.

Matplotlib is an optional dependency, installed with the ``[plot]`` extra
(``pip install "sk-dualhead[plot]"``). It is imported inside the functions,
so ``import sk_dualhead`` never needs it.
"""

from functools import partial

import numpy as np

from ._docstring import BINARY_PROBABILITIES, Substitution
from .metrics import (
    expected_calibration_error,
    integrated_calibration_index,
    net_benefit,
    smooth_calibration_curve,
)

__all__ = [
    "plot_calibration_curve",
    "plot_decision_curve",
    "plot_loss_curves",
    "plot_reliability",
    "plot_roc_pr",
]

#: Most calibration curves one panel carries; beyond three the bands hide each other.
MAX_CURVES_PER_PANEL = 3

# Marks the artists of plot_calibration_curve, to count the curves of a panel and to
# draw the diagonal once.
_CALIBRATION_GID = "sk_dualhead_calibration_curve"

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


@Substitution(binary_probabilities=BINARY_PROBABILITIES)
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
    {binary_probabilities}

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

    See Also
    --------
    plot_calibration_curve : A smoothed curve with a confidence band, which
        does not depend on a binning; better for rare outcomes.

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


@Substitution(binary_probabilities=BINARY_PROBABILITIES)
def plot_calibration_curve(
    y_true,
    y_prob,
    *,
    name=None,
    n_knots=3,
    pos_label=None,
    ax=None,
    hist_ax=None,
    hist="outcome",
    color=None,
):
    """Draw a smoothed calibration curve with its 95% band, and the predictions beneath.

    The curve is :func:`~sk_dualhead.metrics.smooth_calibration_curve` (a
    restricted cubic spline logistic fit), labelled with its ICI
    (:func:`~sk_dualhead.metrics.integrated_calibration_index`). Unlike a
    binned reliability diagram it does not rest on bins of a handful of
    samples, and its band shows where the data are too thin to say anything.
    Call it once per model on the same axes to compare models, at most
    :data:`MAX_CURVES_PER_PANEL` (three) per panel.

    Parameters
    ----------
    {binary_probabilities}

    n_knots : {3, 4, 5}, default=3
        Knots of the spline.

    pos_label : int, float, bool or str, default=None
        The positive class; ``None`` takes the larger of the two labels.

    ax : matplotlib Axes, default=None
        Axes to draw on; a new figure is created when ``None``.

    hist_ax : matplotlib Axes, default=None
        When given, the distribution of the predictions is drawn on it, as
        `hist` says.

    hist : {"outcome", "model"}, default="outcome"
        "outcome": the predictions of events above the axis and of non-events
        below it, for a panel of one model; "model": one step histogram of all
        the predictions, on a log scale, for panels that compare models.

    color : color, default=None
        Colour of the curve; the next colour of the axes' cycle by default.

    Returns
    -------
    ax : matplotlib Axes
        The axes of the curve.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import numpy as np
    >>> from sk_dualhead.plot import plot_calibration_curve
    >>> rng = np.random.default_rng(0)
    >>> p = rng.uniform(0.01, 0.6, size=2_000)
    >>> ax = plot_calibration_curve(rng.random(2_000) < p, p, name="model")
    >>> ax.get_legend().get_texts()[1].get_text()[:12]
    'model (ICI 0'
    """
    if hist not in ("outcome", "model"):
        raise ValueError(f"hist must be 'outcome' or 'model'; got {hist!r}.")
    y_true, y_prob, pos_label = _binary_scores(y_true, y_prob, pos_label)
    if ax is None:
        _, (ax, hist_ax) = _pyplot().subplots(
            2, 1, figsize=(5.5, 6.2), height_ratios=(3, 1), sharex=True,
            constrained_layout=True,
        )
    curves = [line for line in ax.lines if line.get_gid() == _CALIBRATION_GID]
    if len(curves) >= MAX_CURVES_PER_PANEL:
        raise ValueError(
            f"This panel already has {len(curves)} calibration curves; draw at most "
            f"{MAX_CURVES_PER_PANEL} per panel, or one panel per model."
        )
    if not any(line.get_gid() == "diagonal" for line in ax.lines):
        ax.plot([0, 1], [0, 1], color="0.45", linestyle="--", linewidth=1,
                label="Perfect calibration", gid="diagonal")
    curve = smooth_calibration_curve(
        y_true, y_prob, n_knots=n_knots, pos_label=pos_label
    )
    ici = integrated_calibration_index(
        y_true, y_prob, n_knots=n_knots, pos_label=pos_label
    )["ici"]
    label = f"ICI {ici:.3f}" if name is None else f"{name} (ICI {ici:.3f})"
    (line,) = ax.plot(curve.prob_pred, curve.prob_true, color=color, linewidth=2,
                      label=label, gid=_CALIBRATION_GID)
    ax.fill_between(curve.prob_pred, curve.lower, curve.upper,
                    color=line.get_color(), alpha=0.2, linewidth=0)
    top = min(1.0, 1.1 * max(curve.prob_pred.max(), np.percentile(curve.upper, 95)))
    high = max(top, ax.get_xlim()[1] if curves else 0)
    ax.set(xlim=(0, high), ylim=(0, high), ylabel="Observed proportion",
           xlabel=f"Predicted probability (positive class: {pos_label})")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize="small")
    if hist_ax is not None:
        _prediction_histogram(hist_ax, y_true == pos_label, y_prob, line.get_color(),
                              name, high, mirrored=hist == "outcome")
        hist_ax.set_xlabel(ax.get_xlabel())
    return ax


def _prediction_histogram(ax, outcome, y_prob, color, name, high, mirrored):
    """Events above the axis and non-events below (one model), or one step histogram."""
    edges = np.linspace(0, high, 51)
    if mirrored:
        events = np.histogram(y_prob[outcome], bins=edges)[0]
        others = np.histogram(y_prob[~outcome], bins=edges)[0]
        width = np.diff(edges)
        ax.bar(edges[:-1], events, width=width, align="edge", color=color,
               label="events")
        ax.bar(edges[:-1], -others, width=width, align="edge", color="0.6",
               label="non-events")
        ax.axhline(0, color="0.3", linewidth=0.8)
        limit = max(others.max(), events.max(), 1)
        # A symmetric square-root scale keeps a few events visible beside many
        # non-events, and zero at zero.
        ax.set_yscale("function", functions=(
            lambda v: np.sign(v) * np.sqrt(np.abs(v)),
            lambda v: np.sign(v) * v ** 2,
        ))
        ax.set_ylim(-limit * 1.05, limit * 1.05)
        ax.set_ylabel("Count (sqrt)")
        ax.legend(fontsize="x-small", loc="upper right")
    else:
        ax.hist(y_prob, bins=edges, histtype="step", color=color, linewidth=1.5,
                label=name)
        ax.set_yscale("log")
        ax.set_ylabel("Count")
    ax.set_xlim(0, high)


def plot_decision_curve(
    y_true, y_prob, *, thresholds=None, name=None, pos_label=None, ax=None
):
    """Draw a decision curve: net benefit against treat-all and treat-none.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True labels of a binary problem.

    y_prob : array-like of shape (n_samples,) or (n_samples, 2)
        Predicted risk of the positive class, or the output of
        ``predict_proba``.

    thresholds : array-like, default=None
        Risk thresholds of the x-axis; 1% to 50% in steps of 1% by default.

    name : str, default=None
        Name of the model in the legend.

    pos_label : int, float, bool or str, default=None
        The positive class; ``None`` takes the larger of the two labels.

    ax : matplotlib Axes, default=None
        Axes to draw on; a new figure is created when ``None``. The
        reference strategies are drawn once per axes.

    Returns
    -------
    ax : matplotlib Axes

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from sk_dualhead.plot import plot_decision_curve
    >>> ax = plot_decision_curve([0, 0, 1, 1], [0.1, 0.3, 0.6, 0.9], name="model")
    >>> [text.get_text() for text in ax.get_legend().get_texts()]
    ['Treat all', 'Treat none', 'model']
    """
    y_true, y_prob, pos_label = _binary_scores(y_true, y_prob, pos_label)
    thresholds = (
        np.arange(1, 51) / 100 if thresholds is None else np.asarray(thresholds, float)
    )
    if ax is None:
        _, ax = _pyplot().subplots(figsize=(6, 4.4), constrained_layout=True)
    positive = y_true == pos_label
    prevalence = positive.mean()
    if not any(line.get_gid() == "treat_all" for line in ax.lines):
        treat_all = net_benefit(positive, np.ones(len(positive)), thresholds)
        ax.plot(thresholds, treat_all, color="0.45", linewidth=1.2, label="Treat all",
                gid="treat_all")
        ax.axhline(0, color="0.2", linewidth=1.2, linestyle=":", label="Treat none")
    model = net_benefit(positive, y_prob, thresholds)
    ax.plot(thresholds, model, linewidth=2, label=name or "Model")
    # Treat-all falls far below zero at high thresholds; the region that decides is
    # between a little below zero and the prevalence, the most any strategy can gain.
    ax.set_ylim(-0.25 * prevalence, 1.1 * prevalence)
    ax.set_xlim(thresholds.min(), thresholds.max())
    ax.set(xlabel="Risk threshold", ylabel="Net benefit")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return ax


def _plot_forest(ax, labels, estimate, lower, upper, *, reference, xlabel):
    """Estimates with intervals, one row per label, a vertical line at `reference`."""
    rows = np.arange(len(labels))[::-1]
    # Subgroups without an estimate get no point; a bound that is infinite (a slope
    # of separated resamples) or missing gets no bar on that side.
    shown = np.isfinite(estimate)
    low = np.where(np.isfinite(lower), lower, estimate)
    high = np.where(np.isfinite(upper), upper, estimate)
    ax.errorbar(estimate[shown], rows[shown],
                xerr=[estimate[shown] - low[shown], high[shown] - estimate[shown]],
                fmt="o", color="C0", ecolor="C0", capsize=3)
    ax.axvline(reference, color="0.45", linestyle="--", linewidth=1)
    ax.set_yticks(rows, labels)
    ax.set_xlabel(xlabel)
    ax.grid(axis="x", alpha=0.3)


def _plot_importance(ax, names, mean, std, *, xlabel):
    """Horizontal bars of permutation importance, largest on top."""
    rows = np.arange(len(names))[::-1]
    ax.barh(rows, mean, xerr=std, color="C0", alpha=0.8, capsize=2)
    ax.set_yticks(rows, names, fontsize="small")
    ax.axvline(0, color="0.3", linewidth=0.8)
    ax.set_xlabel(xlabel)
    ax.grid(axis="x", alpha=0.3)


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
