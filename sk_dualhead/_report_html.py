"""The HTML of :class:`sk_dualhead.report.ValidationReport`: one file, nothing loaded.

Laid out like the validation section of a clinical paper: each section puts its figure
first and the numbers beside it. Styles are inline and the figures are base64 PNGs.
"""

import base64
import datetime
import html
import io

import numpy as np

from . import __version__

_STYLE = """
body { font-family: Georgia, 'Times New Roman', serif; color: #1a1a1a;
       max-width: 1180px; margin: 24px auto; padding: 0 20px; line-height: 1.4; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.2em; border-bottom: 1px solid #999; padding-bottom: 3px;
     margin-top: 1.8em; }
.meta { color: #555; font-size: 0.92em; }
.row { display: flex; gap: 24px; align-items: flex-start; flex-wrap: wrap; }
.figure { flex: 0 1 auto; }
.figure img { max-width: 640px; width: 100%; height: auto; border: 1px solid #ddd; }
.numbers { flex: 1 1 340px; min-width: 320px; overflow-x: auto; }
figcaption { font-size: 0.85em; color: #444; max-width: 640px; margin-top: 4px; }
table { border-collapse: collapse; font-size: 0.88em;
        font-family: 'Helvetica Neue', Arial, sans-serif; margin-bottom: 10px; }
th, td { padding: 3px 8px; text-align: right; border-bottom: 1px solid #e4e4e4;
         white-space: nowrap; }
th:first-child, td:first-child { text-align: left; white-space: normal; }
thead th { border-bottom: 2px solid #555; }
td.covered { color: #176d2c; } td.partly { color: #8a6100; }
td.not-coverable { color: #777; }
.note { font-size: 0.85em; color: #555; }
.scroll { max-height: 340px; overflow-y: auto; }
.stack .numbers { margin-top: 8px; }
.stack .figure img { max-width: 900px; }
table.text th, table.text td { text-align: left; vertical-align: top;
                               white-space: normal; }
"""


def render(report):
    """The complete HTML document of `report`."""
    summary = report.summary
    title = f"Validation of {report.model_name}"
    data = f" on {report.data_name}" if report.data_name else ""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_e(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{_e(title)}{_e(data)}</h1>",
        '<p class="meta">'
        f"{summary['n_samples']:,} rows, {summary['n_events']:,} events "
        f"(outcome {_e(str(summary['pos_label']))}), prevalence "
        f"{summary['prevalence']:.1%}. Source: {_e(report.source)}. "
        f"Written {datetime.date.today().isoformat()} by sk_dualhead {__version__}."
        "</p>",
        _discrimination(report),
        _calibration(report),
        _utility(report),
        _subgroups(report),
        _importance(report),
        _data(report),
        _methods(report),
        _tripod(report),
        "</body></html>",
    ]
    return "\n".join(part for part in parts if part)


def _discrimination(report):
    rows = [_metric_row(report, name) for name in ("roc_auc", "average_precision")]
    rows.append(["Prevalence (AP of a random ranking)", f"{report.summary['prevalence']:.3f}", ""])
    return _section(
        "Discrimination",
        report.figure_discrimination,
        "ROC and precision-recall curves of the predicted risk.",
        _table(["Statistic", "Estimate", "95% CI"], rows),
    )


def _calibration(report):
    names = ("observed_expected", "calibration_in_the_large", "calibration_slope",
             "calibration_intercept", "ici", "e50", "e90", "emax", "brier",
             "scaled_brier")
    rows = [_metric_row(report, name) for name in names]
    observed = report.summary["prevalence"]
    expected = float(np.mean(report._score))
    rows.insert(0, ["Observed / mean predicted risk", f"{observed:.3f} / {expected:.3f}", ""])
    notes = (
        '<p class="note">Ideal values: O:E 1, intercepts 0, slope 1, ICI/E50/E90/Emax 0 '
        "(absolute differences between predicted and smoothed observed risk), scaled "
        "Brier 1. A slope below 1 means the predictions are too extreme.</p>"
    )
    return _section(
        "Calibration",
        report.figure_calibration,
        "Smoothed calibration curve (restricted cubic spline logistic fit, three knots) "
        "with its pointwise 95% band; beneath, the predicted risks of events (above the "
        "axis) and non-events (below).",
        _table(["Statistic", "Estimate", "95% CI"], rows) + notes,
    )


def _utility(report):
    table = report.threshold_table
    rows = [
        [f"{t:.0%}" if t >= 0.01 else f"{t:.1%}", _f(se), _f(sp), _f(ppv), _f(npv),
         f"{int(n):,} ({share:.0%})", f"{nb:.4f}"]
        for t, se, sp, ppv, npv, n, share, nb in zip(
            table["threshold"], table["sensitivity"], table["specificity"],
            table["ppv"], table["npv"], table["n_flagged"], table["share_flagged"],
            table["net_benefit"])
    ]
    note = (
        '<p class="note">Flagged: predicted risk at or above the threshold. Net benefit '
        "= TP/n - FP/n &times; t/(1 - t); treating none has net benefit 0, treating all "
        f"{report.decision_curve['treat_all'].iloc[0]:.4f} at "
        f"{report.decision_curve['threshold'].iloc[0]:.0%}.</p>"
    )
    return _section(
        "Clinical utility",
        report.figure_decision_curve,
        "Decision curve: net benefit of acting on the model's risk, against treating "
        "all and treating none; grey lines mark the thresholds of the table.",
        _table(["Threshold", "Sens.", "Spec.", "PPV", "NPV", "Flagged", "Net benefit"],
               rows) + note,
    )


def _subgroups(report):
    if report.subgroups is None:
        return _text_section(
            "Subgroups", "No subgroup column was given (<code>groups</code>, or "
            "<code>--group</code> on the command line).")
    table = report.subgroups
    rows = []
    for group, row in table.iterrows():
        rows.append([
            _e(str(group)), f"{int(row['n_samples']):,}", f"{int(row['n_events']):,}",
            f"{row['prevalence']:.3f} / {row['mean_predicted']:.3f}",
            _ci(row, "roc_auc"), _ci(row, "observed_expected"),
            _ci(row, "calibration_slope"), _ci(row, "ici"),
        ])
    return _section(
        "Subgroups",
        report.figure_subgroups,
        stacked=True,
        caption=
        "ROC AUC and calibration slope per subgroup, with bootstrap 95% intervals.",
        numbers=_table(["Group", "Rows", "Events", "Observed / predicted", "ROC AUC", "O:E",
                "Slope", "ICI"], rows)
        + '<p class="note">Intervals of small subgroups are wide; a subgroup without '
        "events or without non-events has no estimates; a slope of &infin; means the "
        "predictions separate its events from its non-events.</p>",
    )


def _importance(report):
    if report.importance is None:
        return _text_section(
            "Permutation importance", "Not computed: it needs the model and the rows it "
            "predicted.")
    rows = [[_e(str(name)), f"{row['mean']:.4f}", f"{row['std']:.4f}"]
            for name, row in report.importance.iterrows()]
    return _section(
        "Permutation importance",
        report.figure_importance,
        "Drop in ROC AUC when one column of the validation data is shuffled (mean and "
        "standard deviation over repeats); the 15 largest are drawn.",
        '<div class="scroll">' + _table(["Column", "Drop in AUC", "SD"], rows) + "</div>",
    )


def _data(report):
    summary = report.summary
    head = (
        f"<p>{summary['n_samples']:,} rows; {summary['n_events']:,} with the outcome "
        f"({summary['prevalence']:.1%}).</p>"
    )
    if report.data_summary is None:
        return _text_section("Data", head + "<p>The predicted rows were not given.</p>")
    table = report.data_summary
    with_missing = int((table["n_missing"] > 0).sum())
    rows = [[_e(str(name)), _e(row["dtype"]), f"{row['n_missing']:,}",
             f"{row['share_missing']:.1%}"] for name, row in table.iterrows()]
    return _text_section(
        "Data",
        head + f"<p>{len(table)} columns, {with_missing} with missing values.</p>"
        '<div class="scroll">'
        + _table(["Column", "Type", "Missing", "Share"], rows) + "</div>",
    )


def _methods(report):
    if report.n_bootstrap:
        intervals = (
            f"95% confidence intervals are percentile intervals of {report.n_bootstrap:,} "
            "bootstrap resamples of the rows (the model is not refitted; the spline of the "
            "calibration curve keeps the knots of the full data)."
        )
    else:
        intervals = "No bootstrap was run: no confidence intervals are given."
    return _text_section(
        "Methods",
        f"<p>{intervals} Calibration-in-the-large is the intercept of a logistic model "
        "of the outcome with logit(predicted risk) as offset; the calibration slope and "
        "its intercept come from the logistic model logit P(y) = a + b logit(p) (Cox "
        "1958). The smoothed curve is a logistic regression on a restricted cubic spline "
        "of logit(p) with knots at its 10th, 50th and 90th percentiles; ICI, E50, E90 "
        "and Emax are the mean, median, 90th percentile and maximum of |p - smoothed "
        "observed risk| over the rows (Austin and Steyerberg 2019). The scaled Brier "
        "score is 1 - Brier / (prevalence &times; (1 - prevalence)). Net benefit follows "
        "Vickers and Elkin (2006).</p>",
    )


def _tripod(report):
    rows = [
        [_e(item), _e(topic), f'<span>{_e(status)}</span>', _e(where)]
        for item, topic, status, where in report.tripod.itertuples(index=False)
    ]
    body = _table(["Item", "Topic (paraphrased)", "Status", "Where / why"], rows, text=True)
    for status in ("not coverable", "partly", "covered"):
        body = body.replace(f"<td><span>{status}</span></td>",
                            f'<td class="{status.replace(" ", "-")}">{status}</td>')
    return _text_section(
        "TRIPOD+AI coverage",
        "<p>Items of TRIPOD+AI (Collins et al., BMJ 2024) about model evaluation that "
        "this report answers, and items about study design that no report of "
        "predictions can answer; the authors must report those.</p>" + body,
    )


# ------------------------------------------------------------------ pieces


def _section(title, fig, caption, numbers, stacked=False):
    layout = "stack" if stacked else "row"
    return (
        f'<section><h2>{_e(title)}</h2><div class="{layout}">'
        f'<figure class="figure"><img alt="{_e(title)}" '
        f'src="data:image/png;base64,{_png(fig)}">'
        f"<figcaption>{_e(caption)}</figcaption></figure>"
        f'<div class="numbers">{numbers}</div></div></section>'
    )


def _text_section(title, body):
    return f"<section><h2>{_e(title)}</h2>{body}</section>"


def _table(header, rows, text=False):
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows
    )
    kind = ' class="text"' if text else ""
    return f"<table{kind}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _metric_row(report, name):
    from .report import STATISTICS

    row = report.metrics.loc[name]
    interval = "" if np.isnan(row["lower"]) else f"{_f(row['lower'])} to {_f(row['upper'])}"
    return [STATISTICS[name][0], _f(row["estimate"]), interval]


def _ci(row, name):
    if np.isnan(row[name]):
        return "&ndash;"
    if np.isnan(row[f"{name}_lower"]):
        return _f(row[name])
    return f"{_f(row[name])} ({_f(row[f'{name}_lower'])} to {_f(row[f'{name}_upper'])})"


def _f(value):
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "&ndash;"
    if np.isinf(value):
        return "&infin;" if value > 0 else "&minus;&infin;"
    return f"{value:.3f}"


def _e(text):
    return html.escape(str(text))


def _png(fig):
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return base64.b64encode(buffer.getvalue()).decode("ascii")
