"""Resident memory over 10,000 successive small ``predict_proba`` calls.

A model serving one request after another must not grow: the target is RSS
after the last call within 5% of RSS after the first hundred. Reads RSS
from ``/proc/self/statm`` (Linux)::

    OMP_NUM_THREADS=1 python benchmarks/repeated_predict_rss.py [--calls 10000]

Prints RSS at a few points and the growth after the warm-up.
"""

import argparse
import os
import time

import numpy as np
import pandas as pd
import torch

from sk_dualhead import DualHeadClassifier

WARM_UP = 100


def rss_mb():
    with open("/proc/self/statm") as file:
        pages = int(file.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=10_000)
    parser.add_argument("--rows", type=int, default=5, help="rows per call")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    n = 2_000
    frame = pd.DataFrame(
        {
            "age": rng.normal(50, 10, n),
            "bmi": np.where(rng.random(n) < 0.05, np.nan, rng.normal(25, 4, n)),
            "site": rng.choice(["north", "south", "east"], n),
        }
    )
    y = (frame["age"] + 10 * rng.normal(size=n) > 55).astype(int)
    model = DualHeadClassifier(
        max_epochs=5, n_networks="auto", hidden_sizes=(64, 64), random_state=0
    ).fit(frame, y)
    requests = [frame.iloc[i : i + args.rows] for i in range(0, n - args.rows, args.rows)]
    marks, start = {}, time.perf_counter()
    for call in range(1, args.calls + 1):
        model.predict_proba(requests[call % len(requests)])
        if call in (1, 10, WARM_UP) or call % (args.calls // 10) == 0:
            marks[call] = rss_mb()
    seconds = time.perf_counter() - start
    print(f"{args.calls} calls of {args.rows} rows in {seconds:.1f} s\n")
    print("| call | RSS MB |")
    print("|---:|---:|")
    for call, rss in marks.items():
        print(f"| {call:,} | {rss:.1f} |")
    growth = marks[args.calls] / marks[WARM_UP] - 1
    print(f"\ngrowth after the first {WARM_UP} calls: {growth:+.1%} (target: at most +5%)")


if __name__ == "__main__":
    main()
