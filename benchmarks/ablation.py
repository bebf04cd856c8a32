"""Ablation of the loss design on real tables: which part earns its place?

The claim under test (design note): "diverse losses beat double focal on
average precision and calibration". Every variant is a
:class:`~sk_dualhead.DualHeadClassifier` with default settings except the
loss and calibration settings named in :data:`VARIANTS`, scored by repeated
stratified K-fold on the tables of :mod:`benchmarks.datasets`. The positive
class of each table is its minority class (the rare event).

Each variant is one network (``n_networks=1``): the loss design is what is
compared, not the averaging of several networks that the default adds on
small tables. A network is trained once per fold and variant; its
uncalibrated and its temperature-scaled probabilities come from the same
fitted network (the calibrator is fitted on the early-stopping split inside
``fit``; "raw" reads the probabilities with it switched off).

Run (one CPU thread; each table's results are cached in ``--cache``, so an
interrupted run resumes and tables can be run with different fold counts)::

    PYTHONPATH=. python benchmarks/ablation.py --folds 5 --repeats 2 \\
        --datasets mlc_churn attrition ad_data pima pbc

That is the run behind ``docs/benchmarks/ablation.md``: two tables where
the structure is non-linear (mlc_churn, ad_data), one in between
(attrition) and two nearly linear ones, about 10 minutes on a free core,
mlc_churn half of it.
"""

import argparse
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from sklearn.model_selection import RepeatedStratifiedKFold
from sklearn.preprocessing import LabelEncoder

from benchmarks.datasets import DATASETS
from sk_dualhead import DualHeadClassifier
from sk_dualhead.metrics import score_probabilities

#: Trained network -> estimator parameters. Each network is reported raw
#: and, where listed in :data:`ROWS`, with its temperature scaling.
NETWORKS = {
    "balanced": dict(strategy="balanced"),
    "balanced_platt": dict(strategy="balanced", calibration="platt"),
    "double_focal": dict(strategy="double_focal"),
    "main_only": dict(strategy="balanced", loss_weights=(1.0, 0.0, 0.0)),
    "ce_mean": dict(
        strategy="balanced", gamma=0.0, label_smoothing=0.0, predict_head="mean"
    ),
    "ce": dict(strategy="balanced", gamma=0.0, label_smoothing=0.0),
    "focal_smooth": dict(strategy="focal_smooth"),
    "confidence_aware": dict(strategy="confidence_aware"),
    "adversarial": dict(strategy="adversarial"),
}

#: Table row -> (network, calibrated?). "raw" rows switch the calibrator off.
ROWS = {
    "balanced (raw)": ("balanced", False),
    "balanced + temperature (default)": ("balanced", True),
    "balanced + Platt": ("balanced_platt", True),
    "double focal (raw)": ("double_focal", False),
    "double focal + temperature": ("double_focal", True),
    "main head only, focal (raw)": ("main_only", False),
    "both heads CE, mean (raw)": ("ce_mean", False),
    "CE main head (raw)": ("ce", False),
    "CE + temperature": ("ce", True),
    "focal_smooth (raw, prior-corrected)": ("focal_smooth", False),
    "focal_smooth + temperature": ("focal_smooth", True),
    "confidence_aware (always calibrated)": ("confidence_aware", True),
    "adversarial (raw)": ("adversarial", False),
    "adversarial + temperature": ("adversarial", True),
}

METRICS = ("roc_auc", "average_precision", "brier", "log_loss", "ece")


def _upgrade(cached):
    """A cached table's results, written before the scores were shared with the CLI.

    Those caches named average precision "ap"; the numbers are the same.
    """
    for scores in cached["results"].values():
        if "ap" in scores:
            scores["average_precision"] = scores.pop("ap")
    return cached


def positive_probability(clf, X, positive, calibrated):
    """Probability of the positive class, with or without the calibrators."""
    members = clf.members_
    if not calibrated:
        clf.members_ = [replace(member, calibrator=None) for member in members]
    try:
        proba = clf.predict_proba(X)
    finally:
        clf.members_ = members
    return proba[:, list(clf.classes_).index(positive)]


def run_dataset(name, folds, repeats, seed=0):
    """Per-row, per-metric lists of fold scores for one table."""
    X, labels = DATASETS[name]()
    encoded = LabelEncoder().fit_transform(labels)
    minority = np.argmin(np.bincount(encoded))
    y = (encoded == minority).astype(int)
    results = {row: {m: [] for m in METRICS} for row in ROWS}
    splitter = RepeatedStratifiedKFold(
        n_splits=folds, n_repeats=repeats, random_state=seed
    )
    for fold, (train, test) in enumerate(splitter.split(X, y)):
        started = time.time()
        fitted = {
            network: DualHeadClassifier(
                n_networks=1, random_state=fold, n_threads=1, **params
            ).fit(X.iloc[train], y[train])
            for network, params in NETWORKS.items()
        }
        for row, (network, calibrated) in ROWS.items():
            proba = positive_probability(fitted[network], X.iloc[test], 1, calibrated)
            for metric, value in score_probabilities(y[test], proba, [0, 1]).items():
                results[row][metric].append(float(value))
        print(f"{name} fold {fold}: {time.time() - started:.0f}s", flush=True)
    return {
        "n_samples": len(y),
        "positive_rate": float(y.mean()),
        "folds": folds,
        "repeats": repeats,
        "results": results,
    }


def markdown(all_results):
    """The tables: one per dataset, then the mean over datasets."""
    lines = [
        "# Ablation of the loss design",
        "",
        "Generated by `benchmarks/ablation.py` (see its docstring for the command).",
        "Repeated stratified K-fold (folds per table in its heading), default",
        "settings except the loss and calibration; positive class = minority class;",
        "ECE with 15 equal-width bins. Mean over folds (standard deviation in",
        "brackets). Higher is better for ROC AUC and AP, lower for the rest.",
        "",
    ]
    header = "| variant | ROC AUC | AP | Brier | log loss | ECE |"
    rule = "|---|---|---|---|---|---|"
    for name, data in all_results.items():
        lines += [
            f"## {name} (n={data['n_samples']}, positives {data['positive_rate']:.1%}, "
            f"{data['folds']}-fold x {data['repeats']})",
            "",
            header,
            rule,
        ]
        for row in ROWS:
            cells = [
                f"{np.mean(v):.3f} ({np.std(v):.3f})"
                for v in (data["results"][row][m] for m in METRICS)
            ]
            lines.append(f"| {row} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["## Mean over datasets", "", header, rule]
    for row in ROWS:
        cells = [
            f"{np.mean([np.mean(d['results'][row][m]) for d in all_results.values()]):.3f}"
            for m in METRICS
        ]
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--datasets", nargs="+", default=["mlc_churn", "attrition", "ad_data", "pima", "pbc"]
    )
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument(
        "--cache", default=str(Path(tempfile.gettempdir()) / "sk_dualhead_ablation")
    )
    parser.add_argument("--output", default="docs/benchmarks/ablation.md")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    all_results = {}
    for name in args.datasets:
        # Keyed by table only, so tables run with different fold counts (a
        # large one with fewer) end up in one report.
        path = cache / f"{name}.json"
        if not path.exists():
            path.write_text(json.dumps(run_dataset(name, args.folds, args.repeats)))
        all_results[name] = _upgrade(json.loads(path.read_text()))
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(markdown(all_results))
    print(output.read_text())


if __name__ == "__main__":
    main()
