"""The ``sk-dualhead`` command line: ``demo``, ``fit``, ``predict`` and ``report``.

``demo`` compares the strategies with two strong baselines on data that ships
with scikit-learn; ``fit`` cross-validates and trains a model on a CSV or
Parquet table and saves it; ``predict`` applies a saved model to a table;
``report`` writes the validation report of a saved model on a table.
Results go to stdout and progress to stderr, so the results can be piped.
Mistakes a user can fix (a wrong column name, an unreadable file) end with a
one-line message on stderr and exit status 1, without a traceback; a Ctrl-C
ends with status 130. Files are read and written by :mod:`sk_dualhead._io`:
every output is whole or absent, and models are saved in the format of
:mod:`sk_dualhead.serialization`, which loads without running code.
"""

import argparse
import contextlib
import pathlib
import sys
import time
import warnings

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils._param_validation import StrOptions
from threadpoolctl import threadpool_limits

from . import __version__
from ._io import (
    CHUNK_ROWS,
    Table,
    UserError,
    atomic_write,
    load_model,
    model_features,
    open_output,
    save_model,
    warn_identifiers,
)
from .estimator import DualHeadClassifier
from .metrics import SCORE_ECE_BINS, score_probabilities
from .strategies import STRATEGIES

__all__ = ["main"]

#: Strategies the demo compares, in this order, when the table has them.
DEMO_STRATEGIES = ("balanced", "focal_smooth", "confidence_aware", "adversarial")

#: Share of positives kept in the demo's imbalanced data set.
DEMO_POSITIVE_SHARE = 0.05


# ---------------------------------------------------------------- scoring


class Progress:
    """Numbered progress lines on stderr, e.g. ``[ 3/24] ... 1.4 s``."""

    def __init__(self, total, quiet=False):
        self.total = total
        self.done = 0
        self.quiet = quiet

    def step(self, message, seconds):
        self.done += 1
        if not self.quiet:
            width = len(str(self.total))
            print(
                f"[{self.done:{width}d}/{self.total}] {message}  {seconds:.1f} s",
                file=sys.stderr,
                flush=True,
            )


def cross_validate_model(model, X, y, *, cv, random_state, progress, label):
    """Fit ``model`` on each training fold and score it on the held-out fold.

    Returns
    -------
    result : dict
        ``scores``: one dict of
        :func:`~sk_dualhead.metrics.score_probabilities` per fold, plus
        ``fit_seconds``; ``proba``: the out-of-fold probabilities of every
        row; ``first_model``: the model fitted on the first fold;
        ``fold_models``: each fold's model with the rows it predicted.
    """
    classes = np.unique(y)
    folds = StratifiedKFold(n_splits=cv, shuffle=True, random_state=random_state)
    proba = np.zeros((len(y), len(classes)))
    fold_scores, first_model, fold_models = [], None, []
    for fold, (train, test) in enumerate(folds.split(X, y), start=1):
        start = time.perf_counter()
        fitted = clone(model).fit(X.iloc[train], y[train])
        seconds = time.perf_counter() - start
        proba[test] = fitted.predict_proba(X.iloc[test])
        scores = score_probabilities(y[test], proba[test], classes)
        scores["fit_seconds"] = seconds
        fold_scores.append(scores)
        if first_model is None:
            first_model = fitted
        fold_models.append((fitted, test))
        progress.step(f"{label}  fold {fold}/{cv}", seconds)
    return {
        "scores": fold_scores,
        "proba": proba,
        "first_model": first_model,
        "fold_models": fold_models,
    }


COLUMNS = {
    "roc_auc": "ROC AUC",
    "average_precision": "AP",
    "brier": "Brier",
    "ece": f"ECE({SCORE_ECE_BINS})",
    "log_loss": "log loss",
    "fit_seconds": "fit s",
}


def format_table(rows, keys):
    """A plain-text table of ``mean (sd)`` over folds.

    ``rows`` maps a row label (a tuple of strings) to a list of per-fold
    score dicts; ``keys`` are the row label's column headers.
    """
    header = list(keys) + list(COLUMNS.values())
    lines = []
    for label, fold_scores in rows.items():
        cells = list(label)
        for name in COLUMNS:
            values = np.array([scores[name] for scores in fold_scores])
            digits = 1 if name == "fit_seconds" else 3
            cells.append(f"{values.mean():.{digits}f} ({values.std():.{digits}f})")
        lines.append(cells)
    widths = [
        max(len(str(row[i])) for row in [header, *lines]) for i in range(len(header))
    ]
    text = [
        "  ".join(
            str(cell).ljust(width) if i < len(keys) else str(cell).rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths))
        )
        for row in [header, *lines]
    ]
    text.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(text)


# ------------------------------------------------------------------- demo


def demo_datasets(random_state):
    """Breast cancer, malignant as the positive class, and a rare-positive copy.

    The copy keeps every benign tumour and a seeded random sample of the
    malignant ones, about :data:`DEMO_POSITIVE_SHARE` of the rows.
    """
    X, target = load_breast_cancer(return_X_y=True, as_frame=True)
    # scikit-learn codes benign as 1; clinically the malignant tumour is the
    # finding to detect, so it is the positive class here.
    y = (target.to_numpy() == 0).astype(int)
    negatives = np.flatnonzero(y == 0)
    n_positive = round(DEMO_POSITIVE_SHARE / (1 - DEMO_POSITIVE_SHARE) * len(negatives))
    rng = np.random.default_rng(random_state)
    positives = rng.choice(np.flatnonzero(y == 1), size=n_positive, replace=False)
    rows = np.sort(np.concatenate([negatives, positives]))
    return {
        "breast_cancer": (X, y),
        f"breast_cancer_{round(100 * DEMO_POSITIVE_SHARE)}pct": (
            X.iloc[rows].reset_index(drop=True),
            y[rows],
        ),
    }


def demo_models(quick, random_state):
    """The models the demo compares, by display name."""
    dualhead = {"n_threads": 1, "random_state": random_state}
    if quick:
        dualhead.update(max_epochs=5, hidden_sizes=(32,), n_networks=1)
    models = {
        f"DualHead({name})": DualHeadClassifier(name, **dualhead)
        for name in DEMO_STRATEGIES
        if name in STRATEGIES
    }
    models["LogisticRegression"] = make_pipeline(
        SimpleImputer(), StandardScaler(), LogisticRegression(max_iter=1000)
    )
    models["HistGradientBoosting"] = HistGradientBoostingClassifier(
        max_iter=20 if quick else 100, random_state=random_state
    )
    return models


def demo_cross_validation(datasets, models, args, progress):
    """Cross-validate every model on every data set; per-fold scores and results."""
    rows, results = {}, {}
    for data_name, (X, y) in datasets.items():
        print(
            f"{data_name}: {len(y)} rows, {y.sum()} positive ({y.mean():.1%})",
            file=sys.stderr,
        )
        for model_name, model in models.items():
            result = cross_validate_model(
                model,
                X,
                y,
                cv=args.cv,
                random_state=args.random_state,
                progress=progress,
                label=f"{data_name}  {model_name}",
            )
            rows[(data_name, model_name)] = result["scores"]
            results[(data_name, model_name)] = result
    return rows, results


def run_demo(args):
    datasets = demo_datasets(args.random_state)
    models = demo_models(args.quick, args.random_state)
    progress = Progress(len(datasets) * len(models) * args.cv, quiet=args.quiet)
    # One thread each: the models are small, and the demo should show the
    # cost of a fit on one core rather than compete with the user's other work.
    with threadpool_limits(limits=1):
        rows, results = demo_cross_validation(datasets, models, args, progress)
    print(
        f"\n{args.cv}-fold stratified cross-validation, mean (sd) over folds; "
        "positive class: malignant\n"
    )
    print(format_table(rows, ("data", "model")))
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary = pd.DataFrame(
        [
            {"data": data, "model": model, **scores, "fold": fold}
            for (data, model), fold_scores in rows.items()
            for fold, scores in enumerate(fold_scores, start=1)
        ]
    )
    with open_output(out / "scores.csv") as file:
        summary.to_csv(file, index=False)
    written = [out / "scores.csv"]
    try:
        with _each_warning_once():
            written += demo_figures(datasets, results, out)
    except ImportError as exc:
        print(f"note: no figures written: {exc}", file=sys.stderr)
    print("\nwritten: " + ", ".join(str(path) for path in written))
    return 0


@contextlib.contextmanager
def _each_warning_once():
    """Show each distinct warning raised inside once, at the end.

    The demo's figures and report fit a calibration curve per model to the
    same near-separable predictions: ten copies of one warning read like ten
    faults. (Python's own once-per-place rule does not hold across the
    ``catch_warnings`` blocks of the code they come from.)
    """
    try:
        with warnings.catch_warnings(record=True) as caught:
            yield
    finally:
        for category, message in dict.fromkeys((w.category, str(w.message)) for w in caught):
            warnings.warn(message, category, stacklevel=3)


def demo_figures(datasets, results, out):
    """Calibration curves, loss curves and the validation report of the demo.

    The calibration curves are smoothed, with their bands, at most three
    models per panel: bins of a handful of rare positives would show noise.
    """
    from .plot import MAX_CURVES_PER_PANEL, _pyplot, plot_calibration_curve, plot_loss_curves
    from .report import validation_report_from_predictions

    plt = _pyplot()
    paths = []
    names = list(dict.fromkeys(model for _, model in results))
    panels = [
        names[start : start + MAX_CURVES_PER_PANEL]
        for start in range(0, len(names), MAX_CURVES_PER_PANEL)
    ]
    fig, axes = plt.subplots(
        2 * len(datasets),
        len(panels),
        figsize=(5.2 * len(panels), 6.4 * len(datasets)),
        height_ratios=(3, 1) * len(datasets),
        squeeze=False,
        constrained_layout=True,
    )
    for row, (data_name, (_, y)) in enumerate(datasets.items()):
        for column, panel in enumerate(panels):
            ax, hist_ax = axes[2 * row, column], axes[2 * row + 1, column]
            for model_name in panel:
                plot_calibration_curve(
                    y, results[(data_name, model_name)]["proba"], name=model_name,
                    ax=ax, hist_ax=hist_ax, hist="model",
                )
            ax.set_title(f"{data_name} ({y.mean():.0%} malignant)", fontsize="medium")
            ax.set_xlabel("")
            hist_ax.set_xlabel("Predicted probability of malignant")
    fig.suptitle("Out-of-fold calibration: smoothed curves with 95% bands")
    paths.append(out / "calibration.png")
    _save_figure(fig, paths[-1])

    rare = next(name for name in datasets if name.endswith("pct"))
    X, y = datasets[rare]
    result = results[(rare, "DualHead(balanced)")]
    report = validation_report_from_predictions(
        y,
        result["proba"],
        X=X,
        fold_models=result["fold_models"],
        random_state=0,
        model_name="DualHead(balanced)",
        data_name=rare,
        source="out-of-fold predictions of the demo's cross-validation",
    )
    paths.append(report.to_html(out / f"report_{rare}.html"))

    for data_name in datasets:
        fitted = results[(data_name, "DualHead(balanced)")]["first_model"]
        axes = plot_loss_curves(fitted)
        fig = axes[0].figure
        fig.suptitle(
            f"DualHead(balanced) on {data_name}, first training fold, network 1 of "
            f"{fitted.n_networks_}: loss terms per epoch"
        )
        paths.append(out / f"loss_curves_{data_name}.png")
        _save_figure(fig, paths[-1])
    return paths


def _save_figure(fig, path):
    from .plot import _pyplot

    with atomic_write(path) as file:
        fig.savefig(file, format="png", dpi=110)
    _pyplot().close(fig)


# -------------------------------------------------------------- fit, predict


def read_table(path, *, encoding=None, delimiter=None):
    """Read a CSV (or Parquet) file into a DataFrame with at least one row.

    See :class:`sk_dualhead._io.Table` for what is detected and converted.
    """
    return Table(path, encoding=encoding, delimiter=delimiter).read()


def strategy_choices():
    """Strategy names the estimator accepts (``"auto"`` when it has one)."""
    names = set(STRATEGIES)
    for constraint in DualHeadClassifier._parameter_constraints["strategy"]:
        if isinstance(constraint, StrOptions):
            names |= set(constraint.options)
    return sorted(names)


def split_target(frame, target, path):
    """Features and labels, without rows whose label is missing."""
    if target not in frame.columns:
        raise UserError(
            f"target column {target!r} is not in {path}; its columns are: "
            + ", ".join(map(str, frame.columns))
        )
    missing = frame[target].isna()
    if missing.any():
        print(
            f"note: {missing.sum()} rows with no value in {target!r} are left out.",
            file=sys.stderr,
        )
        frame = frame[~missing]
    y = frame[target].to_numpy()
    classes, counts = np.unique(y, return_counts=True)
    if len(classes) == 0:
        raise UserError(f"target column {target!r} has no values.")
    if len(classes) == 1:
        raise UserError(
            f"target column {target!r} has a single class, {classes[0]!r}; "
            "a classifier needs at least two."
        )
    return frame.drop(columns=target), y, counts.min()


def _networks(text):
    """``--n-networks``: ``auto`` or a positive int."""
    if text == "auto":
        return text
    try:
        return _positive(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"expected auto or a positive int, got {text!r}"
        ) from None


@contextlib.contextmanager
def _user_errors(what):
    """Report the estimator's errors on bad input as the user's to fix.

    The estimator raises ValueError or TypeError, naming the column and the
    fix, for input it cannot use: a message, not a traceback.
    """
    try:
        yield
    except (ValueError, TypeError) as exc:
        raise UserError(f"{what}: {exc}") from exc


def _drop_columns(frame, drop, path):
    unknown = [name for name in drop if name not in frame.columns]
    if unknown:
        raise UserError(
            f"--drop names columns that {path} does not have: "
            + ", ".join(map(repr, unknown))
        )
    return frame.drop(columns=drop)


def run_fit(args):
    table = Table(args.data, encoding=args.encoding, delimiter=args.delimiter)
    frame = _drop_columns(table.read(), args.drop, args.data)
    X, y, smallest = split_target(frame, args.target, args.data)
    warn_identifiers(X, exclude=table.report.dates)
    model = DualHeadClassifier(
        args.strategy,
        max_epochs=args.max_epochs,
        n_networks=args.n_networks,
        random_state=args.random_state,
        verbose=args.verbose,
    )
    if args.cv > 1:
        if smallest < args.cv:
            raise UserError(
                f"the rarest class of {args.target!r} has {smallest} rows, fewer "
                f"than --cv {args.cv} folds; lower --cv or use --cv 0 to skip it."
            )
        progress = Progress(args.cv, quiet=args.quiet)
        with _user_errors(f"cannot fit a model on {args.data}"):
            result = cross_validate_model(
                model.set_params(verbose=0),
                X,
                y,
                cv=args.cv,
                random_state=args.random_state,
                progress=progress,
                label="cross-validation",
            )
        print(f"{args.cv}-fold stratified cross-validation, mean (sd) over folds")
        print(format_table({(str(args.data),): result["scores"]}, ("data",)))
        if args.report:
            groups = _group_column(frame, args.group, args.data)
            write_report(
                result, X, y, args, groups=None if groups is None else groups.loc[X.index]
            )
    elif args.report:
        raise UserError("--report needs the cross-validation; use --cv 2 or more.")
    start = time.perf_counter()
    with _user_errors(f"cannot fit a model on {args.data}"):
        model.set_params(verbose=args.verbose).fit(X, y)
    seconds = time.perf_counter() - start
    strategy = getattr(model, "strategy_", model.strategy)
    reason = getattr(model, "strategy_reason_", None)
    print(f"strategy: {strategy}" + (f" ({reason})" if reason else ""))
    epochs = ", ".join(
        f"{member.n_epochs} (kept {member.best_epoch})" for member in model.members_
    )
    print(
        f"fitted on {len(y)} rows in {seconds:.1f} s, {model.n_networks_} "
        f"network(s); epochs: {epochs}"
    )
    digest = save_model(model, args.out, args.allow_pickle)
    print(f"model saved to {args.out}" + (f" (SHA-256 {digest})" if digest else ""))
    return 0


def _predictions(model, frame, path):
    """The prediction and class probabilities of each row of ``frame``."""
    if model_features(model)[0] is None and frame.shape[1] != model.n_features_in_:
        raise UserError(
            f"{path} has {frame.shape[1]} columns; the model expects "
            f"{model.n_features_in_}."
        )
    with _user_errors(f"cannot predict the rows of {path}"):
        proba = model.predict_proba(frame)
    return pd.DataFrame(
        {"prediction": model.classes_[proba.argmax(axis=1)]}
        | {f"proba_{label}": proba[:, i] for i, label in enumerate(model.classes_)},
        index=frame.index,
    )


def model_columns(model, frame, path):
    """The columns of ``frame`` the model was trained on, in the order it knows."""
    columns = getattr(model, "feature_names_in_", None)
    if columns is not None:
        missing = [name for name in columns if name not in frame.columns]
        if missing:
            raise UserError(
                f"{path} lacks columns the model was trained on: "
                + ", ".join(map(str, missing))
            )
        # Extra columns (the target, an id) are ignored; order follows training.
        return frame[list(columns)]
    if frame.shape[1] != model.n_features_in_:
        raise UserError(
            f"{path} has {frame.shape[1]} columns; the model expects "
            f"{model.n_features_in_}."
        )
    return frame


def run_predict(args):
    model = load_model(
        args.model, allow_pickle=args.allow_pickle, sha256=args.model_sha256
    )
    table = Table(args.data, encoding=args.encoding, delimiter=args.delimiter)
    # Extra columns (the target, an id) are ignored; order follows training.
    columns, kinds = model_features(model)
    n_rows = 0
    with open_output(args.out) as out:
        for chunk in table.chunks(columns, kinds, chunk_rows=args.chunk_rows):
            predictions = _predictions(model, chunk, args.data)
            predictions.to_csv(out, index=False, header=n_rows == 0)
            n_rows += len(predictions)
    if args.out != "-":
        print(f"{n_rows} predictions written to {args.out}", file=sys.stderr)
    return 0


def run_report(args):
    from .report import validation_report

    model = load_model(
        args.model, allow_pickle=args.allow_pickle, sha256=args.model_sha256
    )
    frame = read_table(args.data, encoding=args.encoding, delimiter=args.delimiter)
    groups = _group_column(frame, args.group, args.data)
    X, y, _ = split_target(frame, args.target, args.data)
    if groups is not None:
        groups = groups.loc[X.index]
    unknown = set(np.unique(y)) - set(model.classes_)
    if unknown:
        raise UserError(
            f"{args.target!r} has values the model does not know: "
            + ", ".join(map(str, sorted(unknown)))
        )
    try:
        report = validation_report(
            model,
            model_columns(model, X, args.data),
            y,
            groups=groups,
            n_bootstrap=args.n_bootstrap,
            random_state=args.random_state,
        )
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    report.data_name = pathlib.Path(args.data).name
    _write_html(report, args.out)
    return 0


def write_report(result, X, y, args, groups=None):
    """The validation report of the out-of-fold predictions of ``fit --cv``."""
    from .report import validation_report_from_predictions

    try:
        report = validation_report_from_predictions(
            y,
            result["proba"],
            X=X,
            pos_label=np.unique(y)[1],
            groups=groups,
            n_bootstrap=args.n_bootstrap,
            random_state=args.random_state,
            fold_models=result["fold_models"],
            model_name=type(result["first_model"]).__name__,
            data_name=pathlib.Path(args.data).name,
            source=f"out-of-fold predictions of {args.cv}-fold cross-validation",
        )
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    _write_html(report, args.report)


def _group_column(frame, column, path):
    if column is None:
        return None
    if column not in frame.columns:
        raise UserError(f"group column {column!r} is not in {path}.")
    return frame[column]


def _write_html(report, out):
    try:
        report.to_html(out)
    except ImportError as exc:
        raise UserError(f"the report needs matplotlib: {exc}") from exc
    except OSError as exc:
        raise UserError(f"cannot write {out}: {exc}") from exc
    print(f"report written to {out}", file=sys.stderr)


def _add_model_options(command):
    """Options of the commands that load a model file."""
    command.add_argument(
        "--allow-pickle",
        action="store_true",
        help="load a pickle or joblib model file; this runs any code the file "
        "holds, so only for files you trust",
    )
    command.add_argument(
        "--model-sha256",
        metavar="HEX",
        help="the SHA-256 that fit printed: a model file with another is refused",
    )


def _add_table_options(command):
    command.add_argument(
        "--encoding",
        help="encoding of a CSV file (default: UTF-8 with or without a byte-order "
        "mark, else Latin-1, with a note)",
    )
    command.add_argument(
        "--delimiter",
        help="delimiter of a CSV file (default: detected among , ; tab |)",
    )


def _positive(text):
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive int, got {text!r}")
    return value


# ------------------------------------------------------------------ parser


def build_parser():
    parser = argparse.ArgumentParser(
        prog="sk-dualhead",
        description="Two-headed neural network classifier for tabular data.",
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {__version__}"
    )
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser(
        "demo",
        help="compare the strategies with baselines on breast cancer data",
        description=(
            "Cross-validate DualHeadClassifier's strategies, LogisticRegression "
            "and HistGradientBoosting on scikit-learn's breast cancer data and "
            f"on a copy with about {DEMO_POSITIVE_SHARE:.0%} positives; print a "
            "table and write figures to --out."
        ),
    )
    demo.add_argument(
        "--out",
        default="sk_dualhead_demo",
        help="folder for the figures and scores (default: %(default)s)",
    )
    demo.add_argument(
        "--cv", type=int, default=3, help="number of folds (default: %(default)s)"
    )
    demo.add_argument(
        "--quick",
        action="store_true",
        help="tiny networks and few epochs, for a smoke test",
    )
    demo.set_defaults(func=run_demo)

    fit = commands.add_parser(
        "fit",
        help="cross-validate and fit a model on a CSV or Parquet table",
        description=(
            "Cross-validate a DualHeadClassifier on a table, then fit it on all "
            "rows and save it in sk_dualhead's model format, which loads "
            "without running code."
        ),
    )
    fit.add_argument("data", help="CSV file (or .parquet when pyarrow is installed)")
    fit.add_argument("--target", required=True, help="name of the label column")
    choices = strategy_choices()
    fit.add_argument(
        "--strategy",
        choices=choices,
        default="auto" if "auto" in choices else "balanced",
        help="loss strategy (default: %(default)s)",
    )
    fit.add_argument(
        "--cv",
        type=int,
        default=5,
        help="folds of the cross-validation; 0 skips it (default: %(default)s)",
    )
    fit.add_argument(
        "--max-epochs", type=int, default=200, help="(default: %(default)s)"
    )
    fit.add_argument(
        "--n-networks",
        type=_networks,
        default="auto",
        help="networks averaged; auto: 8 below 1,000 rows, 5 below 10,000, else 1 "
        "(default: %(default)s)",
    )
    fit.add_argument(
        "--verbose",
        type=int,
        default=0,
        choices=(0, 1, 2),
        help="training output of the final fit: 0 none, 1 a table per epoch, 2 a progress bar",
    )
    fit.add_argument(
        "--out",
        required=True,
        help="where to save the model (.skdh); a .joblib or .pkl name writes "
        "joblib, with --allow-pickle only",
    )
    fit.add_argument(
        "--drop",
        nargs="+",
        default=[],
        metavar="COLUMN",
        help="columns to leave out, such as identifiers",
    )
    fit.add_argument(
        "--allow-pickle",
        action="store_true",
        help="allow --out to name a joblib file, which runs code when loaded",
    )
    _add_table_options(fit)
    fit.add_argument(
        "--report",
        metavar="PATH",
        help="write the validation report of the out-of-fold predictions (HTML)",
    )
    fit.set_defaults(func=run_fit)

    predict = commands.add_parser(
        "predict",
        help="predict the rows of a table with a saved model",
        description=(
            "Write one row per input row, in input order: the predicted label "
            "and one probability column per class. The table is read in "
            "chunks, so its size is not bounded by memory. Pickle and joblib "
            "model files run code when loaded and are refused without "
            "--allow-pickle."
        ),
    )
    predict.add_argument("model", help="model file written by sk-dualhead fit")
    predict.add_argument("data", help="CSV file (or .parquet) with the feature columns")
    predict.add_argument(
        "--out", default="-", help="output CSV; '-' writes to stdout (default)"
    )
    _add_model_options(predict)
    predict.add_argument(
        "--chunk-rows",
        type=_positive,
        default=CHUNK_ROWS,
        help="rows read and predicted at a time (default: %(default)s)",
    )
    _add_table_options(predict)
    predict.set_defaults(func=run_predict)

    report = commands.add_parser(
        "report",
        help="write the validation report of a saved model on a table",
        description=(
            "Predict a table the model was not trained on and write one "
            "self-contained HTML file: discrimination and calibration with "
            "bootstrap confidence intervals, a decision curve, a threshold "
            "table, subgroups, permutation importance and TRIPOD+AI coverage. "
            "Pickle and joblib model files run code when loaded and are "
            "refused without --allow-pickle."
        ),
    )
    report.add_argument("model", help="model file written by sk-dualhead fit")
    report.add_argument("data", help="CSV file (or .parquet) with the features and the target")
    report.add_argument("--target", required=True, help="name of the outcome column")
    report.add_argument("--out", required=True, help="the HTML file to write")
    _add_model_options(report)
    _add_table_options(report)
    report.set_defaults(func=run_report)

    for command in (fit, report):
        command.add_argument(
            "--group",
            metavar="COL",
            help="column whose subgroups the report compares (fit: with --report)",
        )
        command.add_argument(
            "--n-bootstrap",
            type=int,
            default=1000,
            help="bootstrap resamples of the report's intervals (default: %(default)s)",
        )
    report.add_argument(
        "--random-state",
        type=int,
        default=0,
        help="seed of the bootstrap and the permutations (default: %(default)s)",
    )

    for command in (demo, fit):
        command.add_argument(
            "--random-state",
            type=int,
            default=0,
            help="seed of the folds and the networks (default: %(default)s)",
        )
        command.add_argument(
            "--quiet", action="store_true", help="no progress lines on stderr"
        )
    return parser


def main(argv=None):
    """Run the command line; returns the exit status.

    Parameters
    ----------
    argv : list of str, default=None
        Arguments without the program name; ``None`` reads ``sys.argv``.

    Returns
    -------
    status : int
        0 on success, 1 when the input cannot be used (the reason is
        printed on stderr), 2 for a malformed command line, 130 after a
        Ctrl-C.
    """
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except UserError as exc:
        print(f"sk-dualhead {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        # Outputs are renamed into place only once complete: none is partial.
        print(
            f"sk-dualhead {args.command}: interrupted; files being written were "
            "left as they were.",
            file=sys.stderr,
        )
        return 130
