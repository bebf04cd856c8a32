"""A validation report of a risk model: discrimination, calibration, net benefit, subgroups.

:func:`validation_report` predicts a table the model was not trained on and
gathers what reviewers of a clinical prediction model ask for (TRIPOD+AI,
Collins et al., BMJ 2024), following the calibration hierarchy of Van Calster
et al. (J Clin Epidemiol 2016):

- a data summary: rows, events, prevalence and missing values per column;
- discrimination: ROC AUC and average precision with bootstrap 95% intervals,
  and the ROC and precision-recall curves;
- calibration in the large (observed:expected ratio, and the intercept with
  ``logit(p)`` as offset), weak calibration (slope and intercept), and a
  smoothed calibration curve with its band and its distances from the
  diagonal (ICI, E50, E90, Emax; Austin and Steyerberg 2019);
- the Brier score and the scaled Brier score;
- clinical utility: a decision curve, and sensitivity, specificity, PPV, NPV
  and the number flagged at chosen thresholds;
- discrimination and calibration per subgroup;
- permutation importance on the validation data;
- which TRIPOD+AI items the report covers, and which it cannot.

:func:`validation_report_from_predictions` builds the same report from
predicted probabilities, such as out-of-fold predictions of a
cross-validation. The numbers need only NumPy, SciPy, pandas and
scikit-learn; the figures and :meth:`ValidationReport.to_html` need
Matplotlib (the ``[plot]`` extra).
"""

import pathlib
import warnings

import numpy as np
import pandas as pd
from scipy.special import logit
from sklearn.exceptions import ConvergenceWarning
from sklearn.inspection import permutation_importance
from sklearn.metrics import roc_auc_score
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from ._io import atomic_write
from .metrics import (
    _EPS,
    _calibration_errors,
    _calibration_in_the_large,
    _check_inputs,
    _outcome_and_score,
    _spline_design,
    _spline_fit,
    _spline_knots,
    _weak_calibration,
    net_benefit,
    smooth_calibration_curve,
)

__all__ = [
    "ValidationReport",
    "validation_report",
    "validation_report_from_predictions",
]

#: Risk thresholds of the threshold table when none are given.
DEFAULT_THRESHOLDS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5)

#: Bootstrap resamples are drawn in blocks of about this many rows x resamples, so that
#: memory stays bounded (a few tens of MB) while each block is one set of array operations.
_BLOCK_CELLS = 2_000_000

#: Statistic -> (label in the report, the value of a perfect model, or None).
STATISTICS = {
    "roc_auc": ("ROC AUC (c-statistic)", None),
    "average_precision": ("Average precision", None),
    "observed_expected": ("O:E ratio", 1.0),
    "calibration_in_the_large": ("Calibration-in-the-large (intercept, slope 1)", 0.0),
    "calibration_slope": ("Calibration slope", 1.0),
    "calibration_intercept": ("Intercept of the recalibration model", 0.0),
    "ici": ("ICI", 0.0),
    "e50": ("E50", 0.0),
    "e90": ("E90", 0.0),
    "emax": ("Emax", 0.0),
    "brier": ("Brier score", 0.0),
    "scaled_brier": ("Scaled Brier score", 1.0),
}

#: TRIPOD+AI (Collins et al., BMJ 2024) items: number -> (topic, what the report does).
#: The topics are paraphrased; check the published checklist for the wording.
TRIPOD_AI = (
    ("12e", "Measures and plots used to evaluate performance (discrimination, "
     "calibration, clinical utility) and fairness", "covered",
     "Methods of this report; every section"),
    ("12f", "Model updating or recalibration arising from the evaluation", "partly",
     "Slope and intercept show what a logistic recalibration would change; the "
     "decision to recalibrate is the authors'"),
    ("14", "Methods to assess model fairness", "covered",
     "Subgroups (when a group column is given)"),
    ("15", "Model output and how any classification thresholds were chosen", "partly",
     "Threshold table and decision curve; the rationale for a threshold is the authors'"),
    ("20a", "Flow of participants, numbers with and without the outcome", "partly",
     "Data summary: rows and events; exclusions are not known to the report"),
    ("20b", "Characteristics of the evaluation data, including missing data", "covered",
     "Data summary: missing values per column"),
    ("23a", "Performance estimates with confidence intervals, including for key "
     "subgroups", "covered", "Discrimination, Calibration, Subgroups"),
    ("23b", "Heterogeneity of performance across clusters", "partly",
     "Subgroups, when the group column is the cluster (centre, site)"),
    ("12c", "Model type, building steps, hyperparameter tuning, internal validation",
     "not coverable", "Study design: the report sees predictions, not the development"),
    ("5-6", "Data sources, dates, setting, eligibility", "not coverable",
     "Study design"),
    ("8-9", "Definition and blinding of the outcome and the predictors", "not coverable",
     "Study design"),
    ("10", "Sample size", "not coverable", "Study design (the report shows rows and events)"),
    ("11", "How missing data were handled", "not coverable",
     "The report counts missing values; how the model treats them is a design choice"),
    ("13", "Class imbalance methods and subsequent recalibration", "not coverable",
     "Model development"),
    ("16", "Differences between development and evaluation data", "not coverable",
     "Needs the development data"),
    ("18", "Open science: registration, protocol, data and code availability",
     "not coverable", "Authors' statements"),
    ("25-27", "Interpretation, limitations, usability in current care", "not coverable",
     "Discussion"),
)


def validation_report(
    estimator,
    X,
    y,
    *,
    pos_label=None,
    groups=None,
    thresholds=None,
    n_bootstrap=1000,
    random_state=None,
):
    """Validate a fitted probabilistic classifier on data it was not trained on.

    Parameters
    ----------
    estimator : fitted classifier
        Any binary classifier with ``predict_proba`` and ``classes_``, such as a
        fitted :class:`~sk_dualhead.DualHeadClassifier` or a pipeline.

    X : {array-like, DataFrame} of shape (n_samples, n_features)
        The validation data, as the estimator takes it.

    y : array-like of shape (n_samples,)
        The observed outcome.

    pos_label : int, float, bool or str, default=None
        The outcome the risk is about; ``estimator.classes_[1]`` by default.

    groups : array-like of shape (n_samples,) or str, default=None
        Subgroup of each row, or the name of a column of the DataFrame `X` that
        holds it; discrimination and calibration are then reported per subgroup.

    thresholds : array-like, default=None
        Risk thresholds of the threshold table, marked on the decision curve;
        :data:`DEFAULT_THRESHOLDS` when None.

    n_bootstrap : int, default=1000
        Bootstrap resamples of the confidence intervals; 0 leaves them out.

    random_state : int, RandomState instance or None, default=None
        Seeds the bootstrap and the permutations of the importance.

    Returns
    -------
    report : ValidationReport
        Numbers as DataFrames, figures as attributes, and
        :meth:`~ValidationReport.to_html`.

    See Also
    --------
    validation_report_from_predictions : The same report from predicted
        probabilities, such as out-of-fold predictions.

    Examples
    --------
    >>> from sklearn.datasets import load_breast_cancer
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.model_selection import train_test_split
    >>> from sk_dualhead.report import validation_report
    >>> X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    >>> X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)
    >>> model = LogisticRegression(max_iter=5000).fit(X_train, y_train)
    >>> report = validation_report(model, X_test, y_test, n_bootstrap=200,
    ...                            random_state=0)
    >>> report.metrics.loc["roc_auc", "estimate"] > 0.95
    np.True_
    >>> list(report.metrics.columns)
    ['estimate', 'lower', 'upper', 'ideal']
    """
    check_is_fitted(estimator)
    classes = np.asarray(estimator.classes_)
    if len(classes) != 2:
        raise ValueError(
            f"validation_report is for binary outcomes; the estimator has "
            f"{len(classes)} classes."
        )
    pos_label = classes[1] if pos_label is None else pos_label
    if pos_label not in classes.tolist():
        raise ValueError(f"pos_label={pos_label!r} is not one of {classes.tolist()}.")
    proba = estimator.predict_proba(X)[:, classes.tolist().index(pos_label)]
    return validation_report_from_predictions(
        y,
        proba,
        X=X,
        pos_label=pos_label,
        groups=groups,
        thresholds=thresholds,
        n_bootstrap=n_bootstrap,
        random_state=random_state,
        fold_models=[(estimator, np.arange(len(proba)))],
        model_name=_model_name(estimator),
    )


def validation_report_from_predictions(
    y_true,
    y_prob,
    *,
    X=None,
    pos_label=None,
    groups=None,
    thresholds=None,
    n_bootstrap=1000,
    random_state=None,
    fold_models=None,
    model_name=None,
    data_name=None,
    source="predictions on validation data",
):
    """Build a validation report from predicted probabilities.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        The observed outcome.

    y_prob : array-like of shape (n_samples,) or (n_samples, 2)
        Predicted risk of `pos_label`; of a 2-D array, the column of `pos_label`
        among the sorted labels (column 1 by default).

    X : {array-like, DataFrame} of shape (n_samples, n_features), default=None
        The predicted rows: their missing values are summarised, and with
        `fold_models` the permutation importance is computed on them.

    pos_label : int, float, bool or str, default=None
        The outcome the risk is about; as in
        :func:`~sk_dualhead.metrics.expected_calibration_error`.

    groups : array-like of shape (n_samples,) or str, default=None
        Subgroup of each row, or the name of a column of the DataFrame `X`.

    thresholds : array-like, default=None
        Risk thresholds of the threshold table; :data:`DEFAULT_THRESHOLDS`
        when None.

    n_bootstrap : int, default=1000
        Bootstrap resamples of the confidence intervals; 0 leaves them out.

    random_state : int, RandomState instance or None, default=None
        Seeds the bootstrap and the permutations of the importance.

    fold_models : list of (estimator, indices), default=None
        The fitted models that made the predictions, each with the rows of `X`
        it predicted (one pair for a single model, one per fold for
        cross-validated predictions). With `X`, the permutation importance of
        each is computed on its own rows, and averaged.

    model_name : str, default=None
        Name of the model in the report.

    data_name : str, default=None
        Name of the data (a file name, say) in the report.

    source : str, default="predictions on validation data"
        Where the predictions come from, for the report's methods.

    Returns
    -------
    report : ValidationReport

    Examples
    --------
    >>> import numpy as np
    >>> from sk_dualhead.report import validation_report_from_predictions
    >>> rng = np.random.default_rng(0)
    >>> p = rng.uniform(0.01, 0.5, size=2_000)
    >>> report = validation_report_from_predictions(
    ...     rng.random(2_000) < p, p, n_bootstrap=200, random_state=0)
    >>> round(report.metrics.loc["calibration_slope", "estimate"], 1)
    np.float64(1.0)
    """
    y_true, y_prob, _ = _check_inputs(y_true, y_prob, None)
    if y_prob.ndim == 2 and y_prob.shape[1] != 2:
        raise ValueError(
            f"The report is for binary outcomes; y_prob has {y_prob.shape[1]} columns."
        )
    classes = np.unique(y_true)
    if len(classes) != 2:
        raise ValueError("The report needs both outcomes in y_true.")
    if y_prob.ndim == 2 and pos_label is None:
        pos_label = classes[1]
    outcome, score = _outcome_and_score(y_true, y_prob, pos_label, None)
    if pos_label is None:
        pos_label = 1
    if isinstance(n_bootstrap, bool) or not isinstance(n_bootstrap, (int, np.integer)) \
            or n_bootstrap < 0:
        raise ValueError(f"n_bootstrap must be an int >= 0; got {n_bootstrap!r}.")
    thresholds = np.asarray(
        DEFAULT_THRESHOLDS if thresholds is None else thresholds, dtype=np.float64
    ).ravel()
    if not len(thresholds) or thresholds.min() <= 0 or thresholds.max() >= 1:
        raise ValueError("thresholds must lie in (0, 1).")
    rng = check_random_state(random_state)
    groups = _groups(groups, X, len(score))

    metrics = _metric_table(outcome, score, n_bootstrap, rng)
    subgroups = None
    if groups is not None:
        subgroups = _subgroup_table(outcome, score, groups, n_bootstrap, rng)
    importance = None
    if fold_models is not None and X is not None:
        importance = _importance(fold_models, X, outcome, pos_label, rng)
    return ValidationReport(
        outcome=outcome,
        score=score,
        pos_label=pos_label,
        thresholds=np.sort(thresholds),
        metrics=metrics,
        data_summary=_data_summary(X, outcome),
        threshold_table=_threshold_table(outcome, score, np.sort(thresholds)),
        subgroups=subgroups,
        groups=groups,
        importance=importance,
        n_bootstrap=n_bootstrap,
        model_name=model_name or "model",
        data_name=data_name,
        source=source,
    )


class ValidationReport:
    """The numbers and figures of a validation report; built by :func:`validation_report`.

    Attributes
    ----------
    summary : dict
        "n_samples", "n_events", "prevalence" and "pos_label".

    data_summary : DataFrame or None
        Per column of ``X``: its type, and the number and share of missing values.

    metrics : DataFrame
        One row per statistic of :data:`STATISTICS`: the estimate, the
        bootstrap 95% percentile interval (``lower``, ``upper``; NaN without a
        bootstrap) and the value of a perfect model (``ideal``).

    calibration_curve : Bunch
        The smoothed calibration curve with its band,
        :func:`~sk_dualhead.metrics.smooth_calibration_curve`.

    decision_curve : DataFrame
        Net benefit of the model, of treating all and of treating none, per
        threshold from 1% to the largest threshold (at least 50%).

    threshold_table : DataFrame
        Per threshold: sensitivity, specificity, PPV, NPV, the number and share
        flagged, and the net benefit.

    subgroups : DataFrame or None
        Per subgroup: rows, events, and discrimination and calibration with
        intervals.

    importance : DataFrame or None
        Permutation importance: the mean and standard deviation of the drop in
        ROC AUC when a column is shuffled, largest first.

    tripod : DataFrame
        The TRIPOD+AI items the report covers, partly covers, or cannot cover.
    """

    def __init__(
        self,
        *,
        outcome,
        score,
        pos_label,
        thresholds,
        metrics,
        data_summary,
        threshold_table,
        subgroups,
        groups,
        importance,
        n_bootstrap,
        model_name,
        data_name,
        source,
    ):
        self._outcome, self._score, self._groups = outcome, score, groups
        self.thresholds = thresholds
        self.summary = {
            "n_samples": len(score),
            "n_events": int(outcome.sum()),
            "prevalence": float(outcome.mean()),
            "pos_label": pos_label,
        }
        self.metrics = metrics
        self.data_summary = data_summary
        self.threshold_table = threshold_table
        self.subgroups = subgroups
        self.importance = importance
        self.n_bootstrap = n_bootstrap
        self.model_name, self.data_name, self.source = model_name, data_name, source
        self.calibration_curve = smooth_calibration_curve(outcome, score)
        grid = np.arange(1, 100) / 100
        grid = grid[grid <= max(0.5, thresholds.max())]
        self.decision_curve = pd.DataFrame(
            {
                "threshold": grid,
                "model": net_benefit(outcome, score, grid),
                "treat_all": net_benefit(outcome, np.ones(len(score)), grid),
                "treat_none": 0.0,
            }
        )
        self.tripod = pd.DataFrame(
            TRIPOD_AI, columns=["item", "topic", "status", "where"]
        )
        self._figures = {}

    # ------------------------------------------------------------- figures

    @property
    def figure_discrimination(self):
        """ROC and precision-recall curves (a Matplotlib figure)."""
        return self._figure("discrimination", self._draw_discrimination)

    @property
    def figure_calibration(self):
        """Smoothed calibration curve with its band, and the predictions beneath."""
        return self._figure("calibration", self._draw_calibration)

    @property
    def figure_decision_curve(self):
        """Net benefit of the model against treat-all and treat-none."""
        return self._figure("decision_curve", self._draw_decision_curve)

    @property
    def figure_subgroups(self):
        """ROC AUC and calibration slope per subgroup, or None without subgroups."""
        if self.subgroups is None:
            return None
        return self._figure("subgroups", self._draw_subgroups)

    @property
    def figure_importance(self):
        """Permutation importance, or None when it was not computed."""
        if self.importance is None:
            return None
        return self._figure("importance", self._draw_importance)

    def _figure(self, key, draw):
        if key not in self._figures:
            from matplotlib.figure import Figure

            self._figures[key] = draw(Figure)
        return self._figures[key]

    def _draw_discrimination(self, Figure):
        from .plot import plot_roc_pr

        fig = Figure(figsize=(9, 4.2), layout="constrained")
        axes = fig.subplots(1, 2)
        plot_roc_pr(self._outcome, self._score, name=self.model_name,
                    pos_label=True, axes=axes)
        axes[0].set_title("ROC curve")
        axes[1].set_title("Precision-recall curve")
        for ax in axes:
            ax.set_aspect("equal", adjustable="box")
        return fig

    def _draw_calibration(self, Figure):
        from .plot import plot_calibration_curve

        fig = Figure(figsize=(5.6, 6.6), layout="constrained")
        ax, hist_ax = fig.subplots(2, 1, height_ratios=(3, 1.1), sharex=True)
        plot_calibration_curve(self._outcome, self._score, name=self.model_name,
                               pos_label=True, ax=ax, hist_ax=hist_ax)
        ax.set_title("Smoothed calibration curve, 95% band")
        ax.set_xlabel("")
        hist_ax.set_xlabel("Predicted risk")
        return fig

    def _draw_decision_curve(self, Figure):
        from .plot import plot_decision_curve

        fig = Figure(figsize=(6.4, 4.4), layout="constrained")
        ax = fig.subplots()
        plot_decision_curve(self._outcome, self._score,
                            thresholds=self.decision_curve["threshold"],
                            name=self.model_name, pos_label=True, ax=ax)
        for t in self.thresholds:
            if t <= self.decision_curve["threshold"].max():
                ax.axvline(t, color="0.85", linewidth=0.8, zorder=0)
        ax.set_title("Decision curve")
        return fig

    def _draw_subgroups(self, Figure):
        from .plot import _plot_forest

        table = self.subgroups
        labels = [f"{g} (n={n}, {e} events)" for g, n, e in
                  zip(table.index, table["n_samples"], table["n_events"])]
        fig = Figure(figsize=(9, 1.2 + 0.45 * len(table)), layout="constrained")
        auc_ax, slope_ax = fig.subplots(1, 2, sharey=True)
        overall = self.metrics.loc["roc_auc", "estimate"]
        _plot_forest(auc_ax, labels, table["roc_auc"].to_numpy(),
                     table["roc_auc_lower"].to_numpy(), table["roc_auc_upper"].to_numpy(),
                     reference=overall, xlabel="ROC AUC (dashed: overall)")
        _plot_forest(slope_ax, labels, table["calibration_slope"].to_numpy(),
                     table["calibration_slope_lower"].to_numpy(),
                     table["calibration_slope_upper"].to_numpy(),
                     reference=1.0, xlabel="Calibration slope (dashed: ideal)")
        return fig

    def _draw_importance(self, Figure):
        from .plot import _plot_importance

        table = self.importance.head(15)
        fig = Figure(figsize=(6.4, 1.0 + 0.3 * len(table)), layout="constrained")
        ax = fig.subplots()
        _plot_importance(ax, [str(n) for n in table.index], table["mean"].to_numpy(),
                         table["std"].to_numpy(), xlabel="Drop in ROC AUC when shuffled")
        ax.set_title("Permutation importance")
        return fig

    # ---------------------------------------------------------------- HTML

    def to_html(self, path):
        """Write the report as one self-contained HTML file.

        The figures are embedded as PNG images and the styles inline: the file
        loads nothing from the network and can be mailed or archived as it is.
        The file is written to a temporary file in the target folder first and
        then renamed, so a reader never sees half a report.

        Parameters
        ----------
        path : str or path-like
            Where to write the file.

        Returns
        -------
        path : pathlib.Path
            The path written.
        """
        path = pathlib.Path(path)
        text = self.html()
        with atomic_write(path, "w", encoding="utf-8") as file:
            file.write(text)
        return path

    def html(self):
        """The report as an HTML document (a string)."""
        from ._report_html import render

        return render(self)


# ------------------------------------------------------------------ numbers


def _groups(groups, X, n_samples):
    if groups is None:
        return None
    if isinstance(groups, str):
        if not hasattr(X, "columns") or groups not in X.columns:
            raise ValueError(
                f"groups={groups!r} names a column, but X is not a DataFrame with it."
            )
        groups = X[groups]
    # Categories keep their own order (age bands, say); other values are sorted.
    categories = getattr(getattr(groups, "cat", None), "categories", None)
    groups = pd.Series(np.asarray(groups, dtype=object)).fillna("(missing)").astype(str)
    if len(groups) != n_samples:
        raise ValueError(
            f"groups has {len(groups)} values; the data have {n_samples} rows."
        )
    order = [] if categories is None else [str(c) for c in categories]
    order += sorted(set(groups) - set(order))
    return pd.Categorical(groups, categories=[g for g in order if g in set(groups)])


def _bootstrap_weights(rng, n_samples, n_bootstrap):
    """Blocks of bootstrap counts: row ``b`` says how often each sample is drawn."""
    block = max(1, min(n_bootstrap, _BLOCK_CELLS // n_samples))
    for start in range(0, n_bootstrap, block):
        size = min(block, n_bootstrap - start)
        draws = rng.randint(0, n_samples, size=(size, n_samples))
        flat = draws + n_samples * np.arange(size)[:, None]
        yield np.bincount(flat.ravel(), minlength=size * n_samples).reshape(
            size, n_samples
        ).astype(np.float64)


def _statistics(outcome, score, weights, ties, start=None):
    """Every statistic of :data:`STATISTICS`, one value per row of `weights`.

    `ties` (from :func:`_tie_groups`) lets the rank statistics of all rows share one
    sort. An integer row of weights gives the statistic of the data with each sample
    repeated that many times, which is what a bootstrap resample is. `start` holds
    the recalibration fits of the full data (:func:`_fits`), where the bootstrap's
    Newton iterations start.
    """
    start = start or {}
    total = weights.sum(axis=1)
    events = weights @ outcome
    non_events = total - events
    both = (events > 0) & (non_events > 0)
    order, starts = ties
    positive = np.add.reduceat(weights[:, order] * outcome[order], starts, axis=1)
    negative = np.add.reduceat(weights[:, order] * ~outcome[order], starts, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        # Ranks in increasing order of score; ties count a half.
        below = np.cumsum(negative, axis=1) - negative
        auc = np.sum(positive * (below + negative / 2), axis=1) / (events * non_events)
        # Average precision: precision at each distinct score, from the top, weighted
        # by the recall it adds (as sklearn.metrics.average_precision_score).
        true_pos = np.cumsum(positive[:, ::-1], axis=1)
        flagged = true_pos + np.cumsum(negative[:, ::-1], axis=1)
        precision = np.where(flagged > 0, true_pos / np.maximum(flagged, 1e-300), 0)
        ap = np.sum(positive[:, ::-1] * precision, axis=1) / events
        brier = weights @ (outcome - score) ** 2 / total
        rate = events / total
        scaled_brier = 1 - brier / (rate * (1 - rate))
        observed_expected = events / (weights @ score)
    logit_p = logit(np.clip(score, _EPS, 1 - _EPS))
    intercept, slope = _weak_calibration(
        logit_p, outcome, weights, start=start.get("weak")
    )
    design = _spline_design(logit_p, _spline_knots(logit_p, np.ones_like(score), 3))
    errors = {name: np.full(len(weights), np.nan) for name in ("ici", "e50", "e90", "emax")}
    if both.any():
        coef = _spline_fit(design, outcome, weights[both], start=start.get("spline"))
        for name, values in _calibration_errors(design, coef, score, weights[both]).items():
            errors[name][both] = values
    values = {
        "roc_auc": auc,
        "average_precision": ap,
        "observed_expected": observed_expected,
        "calibration_in_the_large": _calibration_in_the_large(
            logit_p, outcome, weights, start=start.get("citl")
        ),
        "calibration_slope": slope,
        "calibration_intercept": intercept,
        **errors,
        "brier": brier,
        "scaled_brier": scaled_brier,
    }
    return {name: np.where(both, value, np.nan) for name, value in values.items()}


def _fits(outcome, score, estimate):
    """Coefficients of the full data's recalibration fits, to start the bootstrap's."""
    fits = {}
    if np.isfinite(estimate["calibration_slope"]):
        fits["weak"] = np.array(
            [estimate["calibration_intercept"], estimate["calibration_slope"]]
        )
    if np.isfinite(estimate["calibration_in_the_large"]):
        fits["citl"] = np.array([estimate["calibration_in_the_large"]])
    if np.isfinite(estimate["ici"]):
        logit_p = logit(np.clip(score, _EPS, 1 - _EPS))
        design = _spline_design(logit_p, _spline_knots(logit_p, np.ones_like(score), 3))
        fits["spline"] = _spline_fit(design, outcome, np.ones(len(score)))[0]
    return fits


def _tie_groups(score):
    """Sort order of the scores and the start of each run of equal scores in it."""
    order = np.argsort(score, kind="stable")
    sorted_score = score[order]
    starts = np.flatnonzero(np.r_[True, sorted_score[1:] != sorted_score[:-1]])
    return order, starts


def _percentile_interval(values):
    """The 2.5th and 97.5th percentiles of the defined values (infinities kept)."""
    values = values[~np.isnan(values)]
    if not len(values):
        return np.nan, np.nan
    # Interpolating between two infinite slopes gives NaN; a huge finite stand-in
    # keeps the order and is mapped back.
    finite = np.clip(values, -1e300, 1e300)
    lower, upper = np.percentile(finite, [2.5, 97.5])
    back = lambda v: np.sign(v) * np.inf if abs(v) >= 1e300 else v  # noqa: E731
    return back(lower), back(upper)


def _bootstrap_intervals(outcome, score, n_bootstrap, rng):
    """Point estimates and bootstrap percentile intervals of every statistic."""
    ties = _tie_groups(score)
    estimate = {
        name: value[0]
        for name, value in _statistics(outcome, score, np.ones((1, len(score))), ties).items()
    }
    start = _fits(outcome, score, estimate)
    draws = {name: [] for name in estimate}
    with warnings.catch_warnings():
        # A resample can be (nearly) separated by the spline of the calibration curve;
        # its fit then stops at the last Newton iterate, which is kept.
        warnings.simplefilter("ignore", ConvergenceWarning)
        for weights in _bootstrap_weights(rng, len(score), n_bootstrap):
            for name, value in _statistics(outcome, score, weights, ties, start).items():
                draws[name].append(value)
    intervals = {}
    for name in estimate:
        values = np.concatenate(draws[name]) if n_bootstrap else np.array([np.nan])
        intervals[name] = (estimate[name], *_percentile_interval(values))
    return intervals


def _metric_table(outcome, score, n_bootstrap, rng):
    intervals = _bootstrap_intervals(outcome, score, n_bootstrap, rng)
    table = pd.DataFrame(intervals, index=["estimate", "lower", "upper"]).T
    table["ideal"] = [STATISTICS[name][1] for name in table.index]
    return table.astype(float)


def _subgroup_table(outcome, score, groups, n_bootstrap, rng):
    rows = {}
    for group in groups.categories:
        rows_of_group = np.asarray(groups == group)
        o, s = outcome[rows_of_group], score[rows_of_group]
        row = {"n_samples": int(rows_of_group.sum()), "n_events": int(o.sum())}
        if 0 < o.sum() < len(o):
            intervals = _bootstrap_intervals(o, s, n_bootstrap, rng)
        else:
            intervals = {name: (np.nan, np.nan, np.nan) for name in STATISTICS}
        row["prevalence"] = float(o.mean())
        row["mean_predicted"] = float(s.mean())
        for name in ("roc_auc", "observed_expected", "calibration_in_the_large",
                     "calibration_slope", "ici"):
            row[name], row[f"{name}_lower"], row[f"{name}_upper"] = intervals[name]
        rows[group] = row
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "group"
    return table


def _threshold_table(outcome, score, thresholds):
    flagged = score[None, :] >= thresholds[:, None]
    tp = (flagged & outcome).sum(axis=1)
    fp = (flagged & ~outcome).sum(axis=1)
    fn = outcome.sum() - tp
    tn = (~outcome).sum() - fp
    with np.errstate(invalid="ignore", divide="ignore"):
        table = pd.DataFrame(
            {
                "threshold": thresholds,
                "sensitivity": tp / (tp + fn),
                "specificity": tn / (tn + fp),
                "ppv": tp / (tp + fp),
                "npv": tn / (tn + fn),
                "n_flagged": tp + fp,
                "share_flagged": (tp + fp) / len(score),
                "true_positives": tp,
                "false_positives": fp,
                "net_benefit": net_benefit(outcome, score, thresholds),
            }
        )
    return table


def _data_summary(X, outcome):
    if X is None:
        return None
    frame = X if hasattr(X, "isna") else pd.DataFrame(
        np.asarray(X), columns=[f"x{i}" for i in range(np.shape(X)[1])]
    )
    missing = frame.isna().sum()
    return pd.DataFrame(
        {
            "dtype": frame.dtypes.astype(str),
            "n_missing": missing.astype(int),
            "share_missing": missing / len(frame),
        }
    )


def _importance(fold_models, X, outcome, pos_label, rng, n_repeats=5):
    """Permutation importance (drop in ROC AUC) of each fold model on its own rows."""
    names = list(X.columns) if hasattr(X, "columns") else [
        f"x{i}" for i in range(np.shape(X)[1])
    ]
    drops = []
    for model, rows in fold_models:
        rows = np.asarray(rows)
        if not (0 < outcome[rows].sum() < len(rows)):
            continue
        positive_column = list(model.classes_).index(pos_label)

        def scorer(estimator, X_part, y_part, column=positive_column):
            return roc_auc_score(y_part, estimator.predict_proba(X_part)[:, column])

        part = X.iloc[rows] if hasattr(X, "iloc") else np.asarray(X)[rows]
        result = permutation_importance(
            model, part, outcome[rows], scoring=scorer, n_repeats=n_repeats,
            random_state=rng.randint(np.iinfo(np.int32).max),
        )
        drops.append(result.importances)
    if not drops:
        return None
    # Every fold's repeats together: the spread covers both sources of noise.
    importances = np.concatenate(drops, axis=1)
    table = pd.DataFrame(
        {"mean": importances.mean(axis=1), "std": importances.std(axis=1)},
        index=pd.Index(names, name="feature"),
    )
    return table.sort_values("mean", ascending=False)


def _model_name(estimator):
    steps = getattr(estimator, "steps", None)
    if steps:
        return " + ".join(type(step).__name__ for _, step in steps)
    return type(estimator).__name__
