"""Peak memory of ``sk-dualhead predict`` on 200,000 and 2,000,000 rows.

``predict`` reads CSV and Parquet in chunks, so its peak resident memory
should not grow with the table: the target is the 2,000,000-row peak within
20% of the 200,000-row one. Each run is a fresh process that reports its own
peak, ``VmHWM`` of ``/proc/self/status`` (Linux). (``ru_maxrss`` of the
child, from ``os.wait4``, would not do: Linux carries it over ``exec`` from
the forked copy of this process, whose memory it would report instead.)::

    OMP_NUM_THREADS=1 python benchmarks/stream_rss.py [--rows 200000 2000000]

Prints a markdown table: rows, format, peak RSS, seconds and the ratio of
each peak to the smallest table's.
"""

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from sk_dualhead import DualHeadClassifier
from sk_dualhead._io import save_model

#: Rows generated and written at a time, so that writing the inputs stays
#: small too.
BLOCK = 200_000


def table(n_rows, seed):
    """Four numeric columns, two categorical ones, and an outcome."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "age": rng.normal(50, 10, n_rows).round(1),
            "bmi": rng.normal(25, 4, n_rows).round(2),
            "dose": rng.exponential(3, n_rows).round(3),
            "score": rng.normal(size=n_rows),
            "site": rng.choice(["north", "south", "east", "west"], n_rows),
            "smoker": rng.choice(["yes", "no"], n_rows),
        }
    )
    frame.loc[rng.random(n_rows) < 0.05, "bmi"] = np.nan
    outcome = np.where(frame["age"] + 10 * rng.normal(size=n_rows) > 55, "yes", "no")
    return frame, outcome


def write_inputs(folder, n_rows):
    """The same ``n_rows`` rows as CSV and as Parquet."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    csv_path = folder / f"rows_{n_rows}.csv"
    parquet_path = folder / f"rows_{n_rows}.parquet"
    writer = None
    for start in range(0, n_rows, BLOCK):
        frame, _ = table(min(BLOCK, n_rows - start), seed=start)
        frame.to_csv(csv_path, mode="a" if start else "w", header=not start, index=False)
        arrow = pa.Table.from_pandas(frame, preserve_index=False)
        if writer is None:
            writer = pq.ParquetWriter(parquet_path, arrow.schema)
        writer.write_table(arrow)
    writer.close()
    return {"csv": csv_path, "parquet": parquet_path}


def peak_rss(argv):
    """Peak resident memory (MB) and seconds of ``sk-dualhead argv``, in a fresh process."""
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, __file__, "--child", *argv],
        stdout=subprocess.PIPE,
        check=True,
        text=True,
    )
    seconds = time.perf_counter() - start
    return int(result.stdout.split()[-1]) / 1024, seconds


def child(argv):
    """Run the command line, then print this process's peak RSS in kB."""
    from sk_dualhead.cli import main as command_line

    status = command_line(argv)
    if status:
        raise SystemExit(status)
    with open("/proc/self/status") as file:
        peak = next(line for line in file if line.startswith("VmHWM:"))
    print(peak.split()[1])


def main():
    if sys.argv[1:2] == ["--child"]:
        return child(sys.argv[2:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[200_000, 2_000_000])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        frame, outcome = table(2_000, seed=-1 % 2**32)
        model = DualHeadClassifier(
            max_epochs=5, n_networks=1, hidden_sizes=(64, 64), random_state=0
        ).fit(frame, outcome)
        model_path = folder / "model.skdh"
        save_model(model, model_path)
        results = []
        for n_rows in args.rows:
            for kind, path in write_inputs(folder, n_rows).items():
                out = folder / "predictions.csv"
                command = ["predict", str(model_path), str(path), "--out", str(out)]
                rss, seconds = peak_rss(command)
                with open(out) as file:
                    n_out = sum(1 for _ in file) - 1
                assert n_out == n_rows, (n_out, n_rows)
                results.append((n_rows, kind, rss, seconds, path.stat().st_size))
                path.unlink()
    print("model file: sk_dualhead's format (.skdh); chunk rows: default\n")
    print("| rows | format | input MB | peak RSS MB | seconds | peak / smallest table's |")
    print("|---:|---|---:|---:|---:|---:|")
    first = {kind: rss for n, kind, rss, *_ in results if n == args.rows[0]}
    for n_rows, kind, rss, seconds, size in results:
        print(
            f"| {n_rows:,} | {kind} | {size / 2**20:.0f} | {rss:.1f} | {seconds:.1f} "
            f"| {rss / first[kind]:.2f} |"
        )


if __name__ == "__main__":
    main()
