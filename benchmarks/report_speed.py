"""How long a validation report takes: 10,000 rows, 1,000 bootstrap resamples, one core.

The target (issue 15) is under 30 s for the whole report on one core. Three times are
measured, each the best of ``--repeats`` runs:

- the bootstrap alone (every statistic of every resample, vectorised);
- :func:`sk_dualhead.report.validation_report` on a fitted
  :class:`~sk_dualhead.DualHeadClassifier`: prediction, bootstrap, three subgroups
  (each bootstrapped again) and permutation importance;
- :meth:`~sk_dualhead.report.ValidationReport.to_html`: the five figures and the file.

The model is fitted before the clock starts. Run from the repository root::

    python -m benchmarks.report_speed
"""

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.datasets import make_classification
from threadpoolctl import threadpool_limits

from sk_dualhead import DualHeadClassifier
from sk_dualhead import report as report_module


def _best(function, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return min(times), result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    X, y = make_classification(
        n_samples=2 * args.rows, n_features=10, n_informative=5, weights=[0.92],
        flip_y=0.02, random_state=0,
    )
    X = pd.DataFrame(X, columns=[f"x{i}" for i in range(X.shape[1])])
    X_train, y_train = X.iloc[: args.rows], y[: args.rows]
    X_test, y_test = X.iloc[args.rows :].reset_index(drop=True), y[args.rows :]
    groups = np.random.default_rng(0).choice(["A", "B", "C"], size=args.rows)

    with threadpool_limits(limits=1):
        model = DualHeadClassifier(
            max_epochs=20, n_networks=1, random_state=0, n_threads=1
        ).fit(X_train, y_train)
        proba = model.predict_proba(X_test)[:, 1]
        outcome = y_test == 1

        bootstrap, _ = _best(
            lambda: report_module._bootstrap_intervals(
                outcome, proba, args.bootstrap, np.random.RandomState(0)
            ),
            args.repeats,
        )
        whole, report = _best(
            lambda: report_module.validation_report(
                model, X_test, y_test, groups=groups, n_bootstrap=args.bootstrap,
                random_state=0,
            ),
            args.repeats,
        )
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "report.html"

            def write():
                report._figures.clear()  # draw the figures again each time
                return report.to_html(path)

            html, _ = _best(write, args.repeats)

    print(f"{args.rows:,} rows ({outcome.mean():.1%} positive), {args.bootstrap:,} "
          f"bootstrap resamples, one thread, best of {args.repeats}:")
    print(f"  bootstrap of every statistic        {bootstrap:6.1f} s")
    print(f"  validation_report (3 subgroups,     {whole:6.1f} s")
    print("    permutation importance)")
    print(f"  to_html (figures and file)          {html:6.1f} s")
    print(f"  total                               {whole + html:6.1f} s  (target < 30 s)")


if __name__ == "__main__":
    main()
