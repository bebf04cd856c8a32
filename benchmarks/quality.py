"""Quality benchmark: DualHeadClassifier against its peers on real tables.

Every model is given what a user has: the raw ``DataFrame`` (numbers,
categories, missing values) and the raw labels. Each model brings its own
preprocessing, as a user would write it: LogisticRegression and the MLPs
behind impute + one-hot + standardize, HistGradientBoosting and LightGBM on
pandas categories, CatBoost on its native categoricals (the object, category
and bool columns, NaN there as the string "NaN"), pytabkit's RealMLP and
TabM-D behind median imputation. The gradient-boosting and pytabkit peers run
with their libraries' defaults. Models are compared by repeated
stratified K-fold; the metrics are computed on the out-of-fold predictions
pooled over the folds of one repeat (so that ECE on a few hundred rows is not
dominated by noise), then averaged over repeats.

Every model fits on one CPU thread, so that ``fit s`` compares the work done:
torch is set to one thread, BLAS and OpenMP are limited to one by
threadpoolctl around each fit, and the peers with thread settings of their
own get them (LightGBM ``n_jobs=1``, CatBoost ``thread_count=1``, pytabkit
``n_threads=1``); nothing else differs from the libraries' defaults.

CatBoost and LightGBM are in the ``[bench]`` extra. pytabkit is optional and
not in it: ``pip install --no-deps pytabkit pytorch-lightning torchmetrics
lightning-utilities psutil pyyaml`` installs it and what it imports without
replacing the installed torch; without it RealMLP and TabM-D are left out.
TabM-D trains 32 packed members to early stopping, about a minute per fit on
a thousand rows on one CPU thread, so it runs only on the sets of at most ``MAX_ROWS``
rows (2,500: ad_data, pbc, pima, breast_cancer, attrition, cells); the
report says so, and ranks it over those sets.

Run it from the repository root (needs the ``[bench]`` extra)::

    pip install -e .[bench]
    python -m benchmarks.quality              # 5 folds x 2 repeats
    python -m benchmarks.quality --quick      # 3 folds x 1 repeat, for tuning

Each fitted fold is appended to ``benchmarks/results/folds.csv`` and its
out-of-fold probabilities to ``benchmarks/results/predictions.csv``; a rerun
skips the folds already there, so an interrupted run resumes where it
stopped, a new model or data set fits only its own folds, and ``--cached``
makes tables from a partial run (each row averages the repeats that are
complete). The cache key includes a
digest of the model's parameters; ``--refit NAME`` drops a model's cached
folds (needed after a code change that the parameters do not show).
The tables go to ``docs/benchmarks/quality.md``, the figures next to it.
"""

import argparse
import hashlib
import importlib.util
import re
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import RepeatedStratifiedKFold
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import FunctionTransformer, make_pipeline
from sklearn.preprocessing import LabelEncoder, OneHotEncoder, StandardScaler
from threadpoolctl import threadpool_limits
from torch import nn

from sk_dualhead import DualHeadClassifier
from sk_dualhead.metrics import score_probabilities
from sk_dualhead.strategies import STRATEGIES

from .datasets import DATASETS

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
DOCS = ROOT / "docs" / "benchmarks"

#: The class each data set is about (the rare or the bad outcome): average
#: precision is computed for it, and it is the "1" of Brier, ECE and log loss.
POSITIVE = {
    "breast_cancer": 0,  # malignant
    "pima": "Yes",
    "pbc": "death",
    "nwtco": 1,
    "lending_club": "bad",
    "mlc_churn": "yes",
    "wa_churn": "Yes",
    "cells": "PS",  # poorly segmented
    "credit_data": "bad",
    "attrition": "Yes",
    "ad_data": "Impaired",
}

#: name -> (column of the results table, higher is better).
METRICS = {
    "roc_auc": ("ROC AUC", True),
    "average_precision": ("AP", True),
    "brier": ("Brier", False),
    "log_loss": ("log loss", False),
    "ece": ("ECE", False),
    "fit_seconds": ("fit s", False),
}


# ------------------------------------------------------------------ models


def _is_categorical(column):
    return not pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(
        column
    )


def _categorical_columns(X):
    return [name for name in X.columns if _is_categorical(X[name])]


def _numeric_columns(X):
    return [name for name in X.columns if not _is_categorical(X[name])]


def _as_category(X):
    """Non-numeric and bool columns as pandas categories (HGB, RealMLP)."""
    return X.astype({name: "category" for name in _categorical_columns(X)})


def _standard_preprocessing():
    """What a scikit-learn user writes: impute, one-hot, standardize."""
    categorical = make_pipeline(
        FunctionTransformer(lambda X: X.astype(str)),
        OneHotEncoder(handle_unknown="ignore", sparse_output=False),
    )
    numeric = make_pipeline(SimpleImputer(strategy="median"), StandardScaler())
    return ColumnTransformer(
        [("numeric", numeric, _numeric_columns), ("categorical", categorical, _categorical_columns)]
    )


class _PlainMLP(nn.Module):
    """Two ReLU layers of 256 and a linear output: the skorch tutorial's MLP."""

    def __init__(self, n_features, n_classes=2, width=256):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(n_features, width),
            nn.ReLU(),
            nn.Linear(width, width),
            nn.ReLU(),
            nn.Linear(width, n_classes),
        )

    def forward(self, X):
        return self.layers(X)


class _SkorchMLP:
    """A plain skorch ``NeuralNetClassifier`` behind the standard preprocessing.

    skorch needs float32 features, integer labels and the input width up
    front; this wrapper is the glue a user writes, nothing more.
    """

    def __init__(self, random_state):
        self.random_state = random_state

    def get_params(self, deep=True):
        return {"random_state": self.random_state, "max_epochs": 30, "lr": 1e-3}

    def fit(self, X, y):
        from skorch import NeuralNetClassifier

        self.preprocessing_ = _standard_preprocessing()
        features = self.preprocessing_.fit_transform(X).astype(np.float32)
        self.encoder_ = LabelEncoder()
        labels = self.encoder_.fit_transform(y).astype(np.int64)
        self.classes_ = self.encoder_.classes_
        torch.manual_seed(self.random_state)
        self.net_ = NeuralNetClassifier(
            _PlainMLP,
            module__n_features=features.shape[1],
            module__n_classes=len(self.classes_),
            criterion=nn.CrossEntropyLoss,
            optimizer=torch.optim.Adam,
            lr=1e-3,
            max_epochs=30,
            batch_size=128,
            train_split=None,
            verbose=0,
        ).fit(features, labels)
        return self

    def predict_proba(self, X):
        features = self.preprocessing_.transform(X).astype(np.float32)
        return self.net_.predict_proba(features)


def _fill_categorical(X, columns):
    """The categorical columns as strings, NaN as the string "NaN": CatBoost
    takes categories as strings and refuses NaN in them."""
    return X.assign(
        **{
            name: X[name].astype(object).where(X[name].notna(), "NaN").astype(str)
            for name in columns
        }
    )


class _CatBoost:
    """CatBoost with its defaults and native categoricals.

    CatBoost must be told which columns are categorical, and wants their
    values as strings; this wrapper is that glue (numeric NaN is left to
    CatBoost, which handles it). One thread, as every model here.
    """

    def __init__(self, random_state):
        self.random_state = random_state

    def get_params(self, deep=True):
        return {"random_state": self.random_state, "thread_count": 1}

    def fit(self, X, y):
        from catboost import CatBoostClassifier

        self.categorical_ = _categorical_columns(X)
        self.model_ = CatBoostClassifier(
            cat_features=self.categorical_,
            random_seed=self.random_state,
            thread_count=1,
            verbose=0,
            allow_writing_files=False,
        ).fit(_fill_categorical(X, self.categorical_), y)
        self.classes_ = self.model_.classes_
        return self

    def predict_proba(self, X):
        return self.model_.predict_proba(_fill_categorical(X, self.categorical_))


def _installed(module):
    return importlib.util.find_spec(module) is not None


def _catboost(random_state):
    """``None`` when catboost is missing."""
    return _CatBoost(random_state) if _installed("catboost") else None


def _lightgbm(random_state):
    """LightGBM with its defaults on pandas categories (it reads the dtype),
    one thread. ``None`` when lightgbm is missing."""
    if not _installed("lightgbm"):
        return None
    from lightgbm import LGBMClassifier

    return make_pipeline(
        FunctionTransformer(_as_category),
        LGBMClassifier(random_state=random_state, n_jobs=1, verbose=-1),
    )


def _pytabkit(classifier, random_state):
    """A pytabkit classifier (by class name) with its tuned defaults, one
    thread; it refuses NaN, so numeric columns are median-imputed first.
    ``None`` when pytabkit is missing."""
    try:
        import pytabkit
    except ImportError:
        return None
    impute = ColumnTransformer(
        [("numeric", SimpleImputer(strategy="median"), _numeric_columns)],
        remainder="passthrough",
        verbose_feature_names_out=False,
    ).set_output(transform="pandas")
    return make_pipeline(
        FunctionTransformer(_as_category),
        impute,
        getattr(pytabkit, classifier)(
            device="cpu", random_state=random_state, n_threads=1, verbosity=0
        ),
    )


#: Models fitted only on the sets of at most this many rows: TabM-D trains
#: 32 packed members to early stopping; on one CPU thread a fit took 10-20 s
#: on ad_data's 222 training rows and 60 s on attrition's 980 (3 folds).
MAX_ROWS = {"TabM-D (pytabkit)": 2_500}


def models(random_state=0):
    """Name -> unfitted model (or ``None`` when its package is missing)."""
    found = {
        "DualHead (default)": DualHeadClassifier(random_state=random_state),
        **{
            f"DualHead ({name})": DualHeadClassifier(name, random_state=random_state)
            for name in STRATEGIES
            if name != DualHeadClassifier().strategy
        },
        # The control the design asks for: the same network with both heads
        # on plain cross-entropy, probabilities averaged.
        "DualHead (both heads CE)": DualHeadClassifier(
            gamma=0.0, label_smoothing=0.0, random_state=random_state
        ),
        # What the numerical embedding buys: the default before it (which
        # waited 10 epochs for an improvement, not 6).
        "DualHead (no embedding)": DualHeadClassifier(
            numerical_embedding=None, n_iter_no_change=10, random_state=random_state
        ),
        # What the default's averaging buys: the default trains eight networks
        # on the tables here of fewer than 1,000 rows, five on the others.
        "DualHead (1 network)": DualHeadClassifier(
            n_networks=1, random_state=random_state
        ),
        "LogisticRegression": make_pipeline(
            _standard_preprocessing(), LogisticRegression(max_iter=2000)
        ),
        "HistGradientBoosting": make_pipeline(
            FunctionTransformer(_as_category),
            HistGradientBoostingClassifier(
                categorical_features="from_dtype", random_state=random_state
            ),
        ),
        "CatBoost": _catboost(random_state),
        "LightGBM": _lightgbm(random_state),
        "MLPClassifier": make_pipeline(
            _standard_preprocessing(),
            MLPClassifier(random_state=random_state),
        ),
        "skorch MLP": _SkorchMLP(random_state),
        "RealMLP (pytabkit)": _pytabkit("RealMLP_TD_Classifier", random_state),
        "TabM-D (pytabkit)": _pytabkit("TabM_D_Classifier", random_state),
    }
    return {name: model for name, model in found.items() if model is not None}


def _digest(model):
    """Short digest of a model's parameters, part of the cache key.

    The seed is left out: it changes from fold to fold, the model does not.
    """
    text = repr(sorted((key, repr(value)) for key, value in model.get_params().items()))
    text = re.sub(r"random_state=\d+|random_state', '\d+| at 0x[0-9a-f]+", "", text)
    return hashlib.sha1(text.encode()).hexdigest()[:10]


# ------------------------------------------------------------------ running


def _positive_proba(model, X, positive):
    proba = model.predict_proba(X)
    return proba[:, list(model.classes_).index(positive)]


def run(
    datasets, model_names, *, n_splits, n_repeats, results=RESULTS, factory=models, log=print
):
    """Fit every (dataset, model, repeat, fold) not yet in the cache.

    ``factory(random_state)`` returns the candidate models by name.
    """
    results.mkdir(parents=True, exist_ok=True)
    folds_csv, predictions_csv = results / "folds.csv", results / "predictions.csv"
    done = _read(folds_csv)
    done_keys = set(
        zip(done.dataset, done.model, done.digest, done.n_splits, done.repeat, done.fold)
    ) if len(done) else set()
    for dataset in datasets:
        X, y = DATASETS[dataset]()
        cv = RepeatedStratifiedKFold(
            n_splits=n_splits, n_repeats=n_repeats, random_state=0
        )
        for index, (train, test) in enumerate(cv.split(X, y)):
            repeat, fold = divmod(index, n_splits)
            candidates = factory(random_state=index)
            for name in model_names:
                if name not in candidates or len(X) > MAX_ROWS.get(name, len(X)):
                    continue
                model = candidates[name]
                digest = _digest(model)
                key = (dataset, name, digest, n_splits, repeat, fold)
                if key in done_keys:
                    continue
                start = time.perf_counter()
                # BLAS and OpenMP (HistGradientBoosting, scikit-learn's MLP)
                # on one thread, as torch is in main(): fit s compares work.
                with warnings.catch_warnings(), threadpool_limits(1):
                    warnings.simplefilter("ignore")
                    model.fit(X.iloc[train], y[train])
                    seconds = time.perf_counter() - start
                    proba = _positive_proba(model, X.iloc[test], POSITIVE[dataset])
                # Predictions first: a fold counts as done only once its row
                # in folds.csv exists, so a crash between the two writes
                # leaves orphan predictions that are ignored, never a hole.
                _append(
                    predictions_csv,
                    pd.DataFrame(
                        {
                            "dataset": dataset,
                            "model": name,
                            "digest": digest,
                            "n_splits": n_splits,
                            "repeat": repeat,
                            "fold": fold,
                            "row": test,
                            "proba": proba,
                        }
                    ),
                )
                _append(
                    folds_csv,
                    pd.DataFrame(
                        [dict(zip(["dataset", "model", "digest", "n_splits", "repeat", "fold"], key),
                              fit_seconds=seconds)]
                    ),
                )
                log(f"{dataset:14s} {name:24s} r{repeat} f{fold}  {seconds:7.1f} s")


def _read(path):
    return pd.read_csv(path) if path.exists() else pd.DataFrame()


def _append(path, frame):
    frame.to_csv(path, mode="a", header=not path.exists(), index=False)


def score(datasets, model_names, *, n_splits, n_repeats, results=RESULTS, factory=models):
    """Metrics per (dataset, model), averaged over the completed repeats,
    with each set's number of rows and share of the positive class."""
    folds = _read(results / "folds.csv")
    predictions = _read(results / "predictions.csv")
    current = {
        name: _digest(model) for name, model in factory().items() if name in model_names
    }
    rows = []
    for dataset in datasets:
        X, y = DATASETS[dataset]()
        target = (y == POSITIVE[dataset]).astype(int)
        for name, digest in current.items():
            mine = folds[
                (folds.dataset == dataset)
                & (folds.model == name)
                & (folds.digest == digest)
                & (folds.n_splits == n_splits)
                & (folds.repeat < n_repeats)
            ]
            complete = mine.groupby("repeat").fold.nunique()
            complete = complete[complete == n_splits].index
            if not len(complete):
                cached = (folds.dataset == dataset) & (folds.model == name)
                if not len(mine) and cached.any():
                    warnings.warn(
                        f"{name} on {dataset}: the cached folds were fitted with "
                        "other parameters, so the tables leave it out; run without "
                        "--cached to fit it with the current ones.",
                        stacklevel=2,
                    )
                continue
            per_repeat = []
            for repeat in complete:
                oof = predictions[
                    (predictions.dataset == dataset)
                    & (predictions.model == name)
                    & (predictions.digest == digest)
                    & (predictions.n_splits == n_splits)
                    & (predictions.repeat == repeat)
                ].drop_duplicates(["fold", "row"])
                truth = target[oof.row.to_numpy()]
                per_repeat.append(
                    score_probabilities(truth, oof.proba.to_numpy(), [0, 1])
                )
            row = pd.DataFrame(per_repeat).mean().to_dict()
            row["fit_seconds"] = mine[mine.repeat.isin(complete)].fit_seconds.mean()
            rows.append(
                {
                    "dataset": dataset,
                    "rows": len(X),
                    "prevalence": target.mean(),
                    "model": name,
                    "repeats": len(complete),
                    **row,
                }
            )
    return pd.DataFrame(rows)


def _ranks(table):
    """Each model's rank (1 = best) per metric, averaged over data sets."""
    ranks = {}
    for metric, (_, higher) in METRICS.items():
        ranks[metric] = (
            table.groupby("dataset")[metric]
            .rank(ascending=not higher, method="average")
            .groupby(table.model)
            .mean()
        )
    return pd.DataFrame(ranks)


def mean_ranks(table, default="DualHead (default)"):
    """Mean over data sets of each model's rank (1 = best) per metric.

    The peers are ranked together with the default DualHeadClassifier; every
    other DualHead configuration is ranked against the peers alone, in the
    default's place, so that our own variants never push each other (or the
    default) down the table.
    """
    ours = [name for name in table.model.unique() if name.startswith("DualHead")]
    peers = table[~table.model.isin(ours)]
    ranks = [_ranks(pd.concat([peers, table[table.model == default]]))]
    for name in ours:
        if name != default:
            ranks.append(_ranks(pd.concat([peers, table[table.model == name]])).loc[[name]])
    return pd.concat(ranks).sort_values("average_precision")


# ------------------------------------------------------------------ report


def _markdown(frame, formats):
    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "|".join("---" if i == 0 else "---:" for i in range(len(frame.columns))) + "|"
    lines = [header, rule]
    for _, row in frame.iterrows():
        # A blank cell is a model not run on that set.
        cells = [
            "" if pd.isna(value) else formats.get(column, "{}").format(value)
            for column, value in row.items()
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def fit_seconds(table, default="DualHead (default)", beside=("CatBoost", "LightGBM")):
    """Mean seconds per fit, one row per data set and one column per model.

    The default comes first with ``beside`` next to it, then the other peers,
    then the other DualHead configurations.
    """
    names = list(dict.fromkeys(table.model))
    ours = [name for name in names if name.startswith("DualHead") and name != default]
    first = [name for name in (default, *beside) if name in names]
    order = first + [name for name in names if name not in first and name not in ours] + ours
    seconds = table.pivot(index="dataset", columns="model", values="fit_seconds")
    seconds = seconds.reindex(index=list(dict.fromkeys(table.dataset)), columns=order)
    rows = table.drop_duplicates("dataset").set_index("dataset").rows
    return pd.concat([rows, seconds], axis=1).rename_axis(index=None, columns=None)


#: The models of the README's headline table, by the name it gives them.
HEADLINE = {
    "DualHead (default)": "DualHead",
    "CatBoost": "CatBoost",
    "LightGBM": "LightGBM",
    "LogisticRegression": "LogisticRegression",
}


def headline(table):
    """The README's table: ROC AUC / AP of the default and three peers, and fit seconds."""
    rows = []
    for dataset, part in table.groupby("dataset", sort=False):
        by_model = part.set_index("model")
        row = {"data set": dataset, "rows": f"{part.rows.iloc[0]:,}"}
        for name, label in HEADLINE.items():
            row[f"{label} AUC / AP"] = (
                f"{by_model.roc_auc[name]:.3f} / {by_model.average_precision[name]:.3f}"
                if name in by_model.index else ""
            )
        timed = [name for name in HEADLINE if name != "LogisticRegression"]
        row["fit s: " + " / ".join(HEADLINE[name] for name in timed)] = " / ".join(
            f"{by_model.fit_seconds[name]:.1f}" if name in by_model.index else "-"
            for name in timed
        )
        rows.append(row)
    return _markdown(pd.DataFrame(rows), {})


def gaps(
    table,
    default="DualHead (default)",
    reference="LogisticRegression",
    before="DualHead (no embedding)",
    beside="CatBoost",
):
    """Per data set, how far the default is from the best peer.

    ``roc_auc`` and ``average_precision``: the default's value minus the best
    peer's (negative: behind it), with that peer's name; ``ece``: the
    default's minus ``reference``'s (positive: worse calibrated). Where the
    table has fit seconds, the default's as a multiple of ``before``'s (the
    default before the numerical embeddings) and of ``beside``'s.
    """
    ours = table.model.str.startswith("DualHead")
    rows = []
    for dataset, part in table.groupby("dataset", sort=False):
        mine = part[part.model == default]
        peers = part[~ours.loc[part.index]]
        if not len(mine) or not len(peers):
            continue
        row = {"dataset": dataset}
        for metric in ("roc_auc", "average_precision"):
            best = peers.loc[peers[metric].idxmax()]
            row[metric] = mine[metric].iloc[0] - best[metric]
            row[f"best {metric}"] = best.model
        row["ece"] = mine.ece.iloc[0] - part.loc[part.model == reference, "ece"].mean()
        if "fit_seconds" in part:
            for name in (before, beside):
                other = part.loc[part.model == name, "fit_seconds"]
                row[f"fit x {name}"] = mine.fit_seconds.iloc[0] / other.mean()
        rows.append(row)
    return pd.DataFrame(rows)


def report(table, ranks, *, n_splits, n_repeats, path=DOCS / "quality.md"):
    """Write the markdown tables."""
    formats = {label: "{:.3f}" for label, _ in METRICS.values()}
    formats["fit s"] = "{:.2f}"
    formats["repeats"] = "{:.0f}"
    formats["log loss"] = "{:.3f}"
    limits = "; ".join(f"{name} on the sets of at most {rows:,} rows" for name, rows in MAX_ROWS.items())
    lines = [
        "# Quality benchmark: tables",
        "",
        f"Repeated stratified K-fold, {n_splits} folds x {n_repeats} repeats; metrics on the "
        "out-of-fold predictions pooled over the folds of a repeat, averaged over repeats; "
        "`fit s` is the mean seconds per fit on one CPU thread, for every model. Generated by "
        "`python -m benchmarks.quality`; see the README for what each model is. "
        f"Run only where it is fast enough on one CPU thread: {limits}.",
        "",
        "AP, Brier, log loss and ECE are about the class each set is about: "
        + ", ".join(f"{name}: `{label!r}`" for name, label in POSITIVE.items())
        + ".",
        "",
        "## Headline (the README's table)",
        "",
        headline(table),
        "",
    ]
    for dataset, part in table.groupby("dataset", sort=False):
        heading = (
            f"## {dataset} ({part.rows.iloc[0]:,} rows, "
            f"{part.prevalence.iloc[0]:.1%} `{POSITIVE[dataset]!r}`)"
        )
        shown = part[["model", "repeats", *METRICS]].rename(
            columns={k: label for k, (label, _) in METRICS.items()}
        )
        lines += [heading, "", _markdown(shown, formats), ""]
    behind = gaps(table).rename(
        columns={
            "roc_auc": "ROC AUC - best peer",
            "best roc_auc": "best on ROC AUC",
            "average_precision": "AP - best peer",
            "best average_precision": "best on AP",
            "ece": "ECE - LogisticRegression",
        }
    )
    differences = [column for column in behind.columns if " - " in column]
    # Rounded first, so that -0.0004 reads +0.000, not -0.000.
    behind[differences] = behind[differences].round(3) + 0.0
    lines += [
        "## The default against the best peer",
        "",
        "Per set, DualHead (default)'s ROC AUC and AP minus the best peer's "
        "(negative: behind it), its ECE minus LogisticRegression's (positive: "
        "worse calibrated), and its fit seconds as a multiple of the same network's "
        "without numerical embeddings (the default before them) and of CatBoost's.",
        "",
        _markdown(
            behind,
            {
                **{column: "{:+.3f}" for column in differences},
                **{column: "{:.2f}" for column in behind.columns if column.startswith("fit x")},
            },
        ),
        "",
    ]
    seconds = fit_seconds(table)
    lines += [
        "## Fit seconds",
        "",
        "Mean seconds per fit, every model on one CPU thread (a blank: not run on that set).",
        "",
        _markdown(
            seconds.reset_index(names="dataset"),
            {"rows": "{:,.0f}", **{name: "{:.2f}" for name in seconds.columns[1:]}},
        ),
        "",
    ]
    shown = ranks.reset_index(names="model").rename(
        columns={k: label for k, (label, _) in METRICS.items()}
    )
    lines += [
        f"## Mean rank over the {table.dataset.nunique()} data sets (1 = best)",
        "",
        "The peers are ranked with DualHead (default); each other DualHead row is "
        "its rank against the peers alone, had it been the default. A model run on "
        "some sets only is ranked over those, and the others are ranked without it "
        "on the rest.",
        "",
        _markdown(shown, {label: "{:.2f}" for label, _ in METRICS.values()}),
        "",
        "![metrics per data set](quality_metrics.png)",
        "",
        "![mean ranks](quality_ranks.png)",
        "",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    return "\n".join(lines)


def plot(table, ranks, directory=DOCS, reference="LogisticRegression"):
    """Dot plots of each metric's difference to ``reference`` per data set
    (absolute values of different sets do not share a scale), and a bar
    chart of the mean ranks."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = ["roc_auc", "average_precision", "brier", "ece"]
    datasets = list(dict.fromkeys(table.dataset))
    names = list(ranks.index)
    fig, axes = plt.subplots(
        1, len(shown), figsize=(4 * len(shown), 0.5 * len(names) * len(datasets) / 3 + 2),
        sharey=True,
    )
    # Ten colours and four markers tell eleven or more sets apart.
    colors, markers = plt.get_cmap("tab10"), "osD^"
    for ax, metric in zip(axes, shown):
        for d, dataset in enumerate(datasets):
            part = table[table.dataset == dataset].set_index("model")[metric]
            difference = part.reindex(names) - part.get(reference, np.nan)
            ax.scatter(
                difference, np.arange(len(names)), color=colors(d % 10),
                marker=markers[d // 10 % len(markers)], label=dataset, alpha=0.8,
            )
        # Linear within 0.01 of the reference, logarithmic beyond: one set
        # far from it (mlc_churn) no longer squeezes the others to a point.
        ax.set_xscale("symlog", linthresh=0.01)
        ax.axvline(0, color="grey", lw=1)
        higher = "higher" if METRICS[metric][1] else "lower"
        ax.set_title(f"{METRICS[metric][0]} minus {reference}'s\n({higher} is better)")
        ax.grid(alpha=0.3)
    axes[0].set_yticks(np.arange(len(names)), names)
    axes[0].invert_yaxis()
    axes[-1].legend(loc="best", fontsize="small")
    fig.tight_layout()
    fig.savefig(directory / "quality_metrics.png", dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(9, 0.45 * len(names) + 1.5))
    width = 0.8 / len(METRICS)
    for m, (metric, (label, _)) in enumerate(METRICS.items()):
        ax.barh(np.arange(len(names)) + m * width, ranks[metric], height=width, label=label)
    ax.set_yticks(np.arange(len(names)) + 0.4 - width / 2, names)
    ax.invert_yaxis()
    ax.set_xlabel("mean rank over data sets (1 = best)")
    ax.legend(fontsize="small", ncols=3)
    fig.tight_layout()
    fig.savefig(directory / "quality_ranks.png", dpi=110)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--models", nargs="+", default=None, help="names (default: all)")
    parser.add_argument("--n-splits", type=int, default=5)
    parser.add_argument("--n-repeats", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="3 folds x 1 repeat")
    parser.add_argument("--refit", nargs="+", default=(), help="drop these models' cache")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--no-report", action="store_true", help="do not write docs/")
    parser.add_argument(
        "--cached", action="store_true", help="fit nothing, report the cached folds"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.n_splits, args.n_repeats = 3, 1
    torch.set_num_threads(1)
    names = args.models or list(models())
    if args.refit:
        for csv in ("folds.csv", "predictions.csv"):
            frame = _read(args.results / csv)
            if len(frame):
                frame[~frame.model.isin(args.refit)].to_csv(args.results / csv, index=False)
    if not args.cached:
        run(args.datasets, names, n_splits=args.n_splits, n_repeats=args.n_repeats,
            results=args.results)
    table = score(args.datasets, names, n_splits=args.n_splits, n_repeats=args.n_repeats,
                  results=args.results)
    ranks = mean_ranks(table)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table.round(4).to_string(index=False))
        print(ranks.round(2))
    if not args.no_report:
        print(report(table, ranks, n_splits=args.n_splits, n_repeats=args.n_repeats))
        plot(table, ranks)


if __name__ == "__main__":
    main()
