"""Training and prediction speed against a raw PyTorch loop and skorch.

In one process, on synthetic binary data (float32, already standardised), with
an MLP trunk of 2 x 256 and batches of 256 rows, this times per training epoch
(wall clock and process CPU time) and ``predict_proba`` throughput for:

(a) ``raw``: a hand-written loop (``randperm`` + index) training the same
    :class:`~sk_dualhead._network.PackedDualHeadNetwork` (one member) with the same combined
    :class:`~sk_dualhead.losses.DualHeadLoss` and the same AdamW step as the
    estimator (fused where torch has it), predicting in 1024-row chunks
    under ``torch.inference_mode``;
(a0) ``raw_default_step``: the same loop with torch's default AdamW step,
    which shows what the fused step alone is worth;
(b) ``skorch``: :class:`skorch.NeuralNetClassifier` with its default data
    path (per-row ``Dataset``, ``DataLoader``, batch scoring callbacks) on the
    same trunk and main head with cross-entropy, and torch's default AdamW;
(c) ``dualhead``: :class:`~sk_dualhead.DualHeadClassifier`;
(d) ``single_loss``: the same with ``loss_weights=(1, 0, 0)``.

Every model trains on all rows for a fixed number of epochs with the same
AdamW hyperparameters, without dropout: skorch keeps its defaults except
``train_split=None`` (the others hold nothing out either), ``batch_size=256``
(its default is 128) and the optimizer; the estimators run with
``preprocessing=None`` and ``early_stopping=False``. An epoch's time is the
time of a whole fit (network construction and input checks included) divided
by the number of epochs, and each figure is the median over ``--repeats``
fits (``--predict-repeats`` timed predictions after each, which follow one
untimed prediction so that every model is timed with the memory allocator
warm; see the comment in ``measure_speed``), the models taking turns
so that a change of load on a shared machine hits them all alike. CPU time
(``time.process_time``) is the measure of record: wall time is printed too,
but on a busy machine it measures the neighbours as much as the code.

The peak resident memory of fitting ``--memory-rows`` x 50 float32 rows for
one epoch is measured in a fresh subprocess (Linux only), with the lean
settings above and with the estimator's defaults (``preprocessing="auto"``,
``early_stopping=True``): the kernel's peak RSS during the fit minus the RSS
before it, relative to the size of the data. When CUDA is available, the
training and prediction runs are repeated on the GPU, and the epoch on the
``--memory-rows`` set is timed on both devices.

Run ``python benchmarks/speed.py`` (about 15 minutes on one core) or
``python benchmarks/speed.py --quick``; ``--output`` writes the tables as
Markdown.
"""

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time

import numpy as np
import torch
from sklearn.base import clone
from torch import nn

from sk_dualhead import DualHeadClassifier
from sk_dualhead._engine import PackedNet, fused_adamw_available
from sk_dualhead._network import PackedDualHeadNetwork
from sk_dualhead.strategies import build_loss

N_FEATURES = 50
HIDDEN_SIZES = (256, 256)
BATCH_SIZE = 256
PREDICT_CHUNK = 1024
LR = 1e-3
WEIGHT_DECAY = 1e-4


def make_data(n_rows, seed, n_features=N_FEATURES):
    """Standard normal float32 features and a noisy linear binary target."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n_rows, n_features), dtype=np.float32)
    coef = rng.standard_normal(n_features).astype(np.float32)
    noise = rng.standard_normal(n_rows, dtype=np.float32)
    y = (X @ coef + 2.0 * noise > 0).astype(np.int64)
    return X, y


def timed(fn):
    """Run ``fn`` and return its result, wall seconds and CPU seconds."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def synchronize(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


# ------------------------------------------------------------------ (a) raw


class RawLoop:
    """The hand-written PyTorch reference.

    ``fused=True`` gives it the fused AdamW step that the estimator uses
    where torch has one, so that the two differ in their data path only;
    ``fused=None`` is torch's default step.
    """

    def __init__(self, device, fused=None):
        self.device = device
        self.fused = fused

    def fit(self, X, y, epochs):
        device = self.device
        X = torch.from_numpy(X).to(device)
        y = torch.from_numpy(y).to(device)
        self.module_ = PackedDualHeadNetwork(
            1, N_FEATURES, 2, hidden_sizes=HIDDEN_SIZES
        ).to(device)
        criterion = build_loss("balanced")
        optimizer = torch.optim.AdamW(
            self.module_.parameters(),
            lr=LR,
            weight_decay=WEIGHT_DECAY,
            fused=self.fused,
        )
        self.module_.train()
        for _ in range(epochs):
            order = torch.randperm(len(X), device=device)
            running = torch.zeros((), device=device)
            for start in range(0, len(X), BATCH_SIZE):
                rows = order[start : start + BATCH_SIZE]
                optimizer.zero_grad()
                main_logits, aux_logits = self.module_(X[rows])
                loss = criterion(main_logits, aux_logits, y[rows])[0].sum()
                loss.backward()
                optimizer.step()
                running += loss.detach()
            self.last_loss_ = running.item()
        return self

    def predict_proba(self, X):
        self.module_.eval()
        X = torch.from_numpy(X)
        with torch.inference_mode():
            proba = [
                torch.softmax(self.module_(chunk.to(self.device))[0][0], dim=1)
                for chunk in X.split(PREDICT_CHUNK)
            ]
        return torch.cat(proba).to("cpu", torch.float64).numpy()


# --------------------------------------------------------------- (b) skorch


class MainHeadOnly(nn.Module):
    """The trunk and main head of a one-member :class:`PackedDualHeadNetwork`."""

    def __init__(self):
        super().__init__()
        self.network = PackedDualHeadNetwork(1, N_FEATURES, 2, hidden_sizes=HIDDEN_SIZES)

    def forward(self, X):
        return self.network(X)[0][0]


def make_skorch(device, epochs):
    from skorch import NeuralNetClassifier

    return NeuralNetClassifier(
        MainHeadOnly,
        criterion=nn.CrossEntropyLoss,
        optimizer=torch.optim.AdamW,
        optimizer__weight_decay=WEIGHT_DECAY,
        lr=LR,
        max_epochs=epochs,
        batch_size=BATCH_SIZE,
        train_split=None,
        device=device,
        verbose=0,
    )


# ------------------------------------------------------- (c), (d) estimator


def make_dualhead(device, epochs, loss_weights=None):
    return DualHeadClassifier(
        hidden_sizes=HIDDEN_SIZES,
        dropout=0.0,
        max_epochs=epochs,
        batch_size=BATCH_SIZE,
        early_stopping=False,
        preprocessing=None,
        # One network, as the raw loop trains (the default from 10,000 rows).
        n_networks=1,
        loss_weights=loss_weights,
        device=device,
        random_state=0,
    )


MODELS = {
    "raw": lambda device, epochs: RawLoop(
        device, fused=fused_adamw_available(device) or None
    ),
    "raw_default_step": lambda device, epochs: RawLoop(device),
    "skorch": make_skorch,
    "dualhead": make_dualhead,
    "single_loss": lambda device, epochs: make_dualhead(
        device, epochs, loss_weights=(1.0, 0.0, 0.0)
    ),
}

LABELS = {
    "raw": "(a) raw PyTorch loop, AdamW step as the estimator's",
    "raw_default_step": "(a0) raw PyTorch loop, torch's default AdamW step",
    "skorch": "(b) skorch NeuralNetClassifier, torch's default AdamW step",
    "dualhead": "(c) DualHeadClassifier",
    "single_loss": "(d) DualHeadClassifier, loss_weights=(1, 0, 0)",
}


def fit_model(name, device, X, y, epochs):
    model = MODELS[name](device, epochs)
    if isinstance(model, RawLoop):
        model.fit(X, y, epochs)
    else:
        model.fit(X, y)
    synchronize(device)
    return model


def measure_speed(device, X, y, X_predict, epochs, repeats, predict_repeats):
    """Median per-epoch training times and prediction throughput per model."""
    # Warm up every code path (lazy imports, first kernel calls, allocator)
    # so that no model pays for being timed first.
    for name in MODELS:
        fit_model(name, device, X[:2048], y[:2048], 1).predict_proba(X_predict[:2048])
    samples = {
        name: {"wall": [], "cpu": [], "predict": [], "predict_cpu": []}
        for name in MODELS
    }
    for _ in range(repeats):
        # Interleaved, so that a change of machine load hits all alike.
        for name in MODELS:
            model, wall, cpu = timed(lambda: fit_model(name, device, X, y, epochs))
            samples[name]["wall"].append(wall / epochs)
            samples[name]["cpu"].append(cpu / epochs)
            # The first predictions after a fit pay for the allocator: a fit
            # leaves glibc's mmap threshold where the next 1 MB activation
            # buffers are mapped afresh, some 50,000 page faults and 0.2 s
            # per 200,000 rows, for whichever model is measured (counted
            # with ru_minflt). One untimed prediction lets every model be
            # timed warm (the raw loop then takes a few hundred faults; the
            # estimator, whose activations live in buffers of its own, none:
            # see docs/benchmarks/speed.md).
            model.predict_proba(X_predict)
            for _ in range(predict_repeats):
                proba, wall, cpu = timed(lambda: model.predict_proba(X_predict))
                assert proba.shape == (len(X_predict), 2)
                samples[name]["predict"].append(len(X_predict) / wall)
                samples[name]["predict_cpu"].append(len(X_predict) / cpu)
    return {
        name: {key: statistics.median(values) for key, values in runs.items()}
        for name, runs in samples.items()
    }


# ----------------------------------------------------------------- members


MEMBER_COUNTS = (1, 5, 32)
MEMBER_SHAPES = ((2_000, 20), (8_000, 20))
#: The default trunk, bound by arithmetic on a CPU, and a small one, bound by
#: the overhead of each operation.
MEMBER_TRUNKS = ((256, 256), (64, 64))


def member_fits(k, epochs, device, hidden_sizes):
    """``k`` packed members, and today's sequential ensemble: ``k`` single fits."""

    def params(**changes):
        settings = dict(
            hidden_sizes=hidden_sizes, early_stopping=False, max_epochs=epochs,
            preprocessing=None, device=device, random_state=0,
        )
        return {**settings, **changes}

    def packed(X, y):
        DualHeadClassifier(**params(n_networks=k)).fit(X, y)

    def sequential(X, y):
        for seed in range(k):
            DualHeadClassifier(**params(n_networks=1, random_state=seed)).fit(X, y)

    return {"packed": packed, "sequential": sequential}


def measure_members(epochs, repeats, device):
    """Median CPU seconds of a fit of ``k`` members, packed and one after another.

    Sequential fits of 32 networks take long, so they run once.
    """
    results = {}
    for trunk in MEMBER_TRUNKS:
        for n_rows, n_features in MEMBER_SHAPES:
            X, y = make_data(n_rows, seed=3, n_features=n_features)
            member_fits(1, 1, device, trunk)["packed"](X[:500], y[:500])  # warm-up
            for k in MEMBER_COUNTS:
                for kind, fit in member_fits(k, epochs, device, trunk).items():
                    if kind == "sequential" and k == 1:
                        continue
                    n_fits = 1 if (kind == "sequential" and k > 5) else repeats
                    key = (trunk, n_rows, n_features, k, kind)
                    results[key] = statistics.median(
                        timed(lambda: fit(X, y))[2] for _ in range(n_fits)
                    )
                    print(f"members {key}: {results[key]:.2f} s", flush=True)
    return results


def members_table(results, epochs):
    lines = [
        "| trunk | data | networks | packed CPU (s) | packed / one "
        "| sequential CPU (s) | sequential / one | packed / sequential |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for trunk in MEMBER_TRUNKS:
        for n_rows, n_features in MEMBER_SHAPES:
            one = results[(trunk, n_rows, n_features, 1, "packed")]
            for k in MEMBER_COUNTS:
                packed = results[(trunk, n_rows, n_features, k, "packed")]
                sequential = results.get((trunk, n_rows, n_features, k, "sequential"), one)
                lines.append(
                    f"| {' x '.join(map(str, trunk))} | {n_rows:,} x {n_features} "
                    f"| {k} | {packed:.2f} | {packed / one:.2f}x "
                    f"| {sequential:.2f} | {sequential / one:.2f}x "
                    f"| {packed / sequential:.2f}x |"
                )
    return "\n".join(lines)


def measure_early_stopping_share(epochs, device):
    """Share of a default fit's CPU time spent on calibrated early stopping.

    Five members on 2,000 x 20, ``n_iter_no_change`` high enough that every
    epoch runs: the held-out pass (forward, loss terms) and, within it, the
    calibrators fitted to every member's held-out predictions every epoch.
    """
    spent = {"valid": 0.0, "calibration": 0.0}
    run_epoch, log_loss = PackedNet.run_single_epoch, PackedNet.held_out_log_loss

    def timed_epoch(net, iterator, training, *args, **kwargs):
        start = time.process_time()
        try:
            return run_epoch(net, iterator, training, *args, **kwargs)
        finally:
            if not training:
                spent["valid"] += time.process_time() - start

    def timed_log_loss(net, *args, **kwargs):
        start = time.process_time()
        try:
            return log_loss(net, *args, **kwargs)
        finally:
            spent["calibration"] += time.process_time() - start

    X, y = make_data(2_000, seed=3, n_features=20)
    PackedNet.run_single_epoch, PackedNet.held_out_log_loss = timed_epoch, timed_log_loss
    try:
        _, _, total = timed(
            lambda: DualHeadClassifier(
                n_networks=5, max_epochs=epochs, n_iter_no_change=epochs,
                device=device, random_state=0,
            ).fit(X, y)
        )
    finally:
        PackedNet.run_single_epoch, PackedNet.held_out_log_loss = run_epoch, log_loss
    return {"total": total, **spent}


def measure_predict_against_raw(device, n_rows, repeats):
    """Default ``predict_proba`` against a raw loop over the same layers.

    The model has the default settings (five networks, default
    preprocessing), fitted for three epochs on 8,000 x 50. It predicts a
    float64 DataFrame as a user would pass it; the raw loop runs the same
    packed network under ``torch.inference_mode`` on the ready float32
    matrix (the preprocessing's output, made before the clock starts), in
    1,024-row chunks, and averages the two heads' and the networks'
    probabilities. The preprocessing's share is the time of
    ``preprocessor_.transform`` alone over that of ``predict_proba``.
    """
    import pandas as pd

    X_train, y_train = make_data(8_000, seed=4)
    columns = [f"x{i}" for i in range(N_FEATURES)]
    clf = DualHeadClassifier(max_epochs=3, device=device, random_state=0)
    clf.fit(pd.DataFrame(X_train.astype(np.float64), columns=columns), y_train)
    X, _ = make_data(n_rows, seed=5)
    frame = pd.DataFrame(X.astype(np.float64), columns=columns)
    ready = torch.from_numpy(clf.preprocessor_.transform(frame))
    network = clf.network_

    def raw():
        with torch.inference_mode():
            parts = []
            for chunk in ready.split(PREDICT_CHUNK):
                main, aux = network(chunk.to(device))
                proba = (torch.softmax(main, dim=-1) + torch.softmax(aux, dim=-1)) / 2
                parts.append(proba.mean(dim=0))
            return torch.cat(parts).to("cpu", torch.float64).numpy()

    runs = {
        "raw": raw,
        "predict_proba": lambda: clf.predict_proba(frame),
        "preprocessing": lambda: clf.preprocessor_.transform(frame),
    }
    samples = {name: [] for name in runs}
    for run in runs.values():
        run()  # warm
    for _ in range(repeats):
        for name, run in runs.items():
            synchronize(device)
            samples[name].append(timed(lambda: (run(), synchronize(device)))[2])
    cpu = {name: statistics.median(values) for name, values in samples.items()}
    return {
        "n_networks": clf.n_networks_,
        "raw_rows_per_s": n_rows / cpu["raw"],
        "ours_rows_per_s": n_rows / cpu["predict_proba"],
        "ratio": cpu["raw"] / cpu["predict_proba"],
        "preprocessing_share": cpu["preprocessing"] / cpu["predict_proba"],
    }


# ------------------------------------------------------------------ memory


def _status_kib(field):
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not found in /proc/self/status")


def memory_child(n_rows, device, preset):
    """Fit once on ``n_rows`` rows; print the peak RSS increase as JSON.

    Linux only: the kernel's peak RSS (``VmHWM``) is reset once the data
    exist and a warm-up fit on 1,000 rows is done (by writing 5 to
    ``/proc/self/clear_refs``), so the imports, the data generation and
    torch's one-off initialisation do not count, and read after the fit.
    """
    X, y = make_data(n_rows, seed=1)
    params = {"max_epochs": 1, "batch_size": BATCH_SIZE, "device": device}
    if preset == "lean":
        params.update(preprocessing=None, early_stopping=False)
    estimator = DualHeadClassifier(**params)
    # A first small fit loads torch's kernels and allocator pools, a fixed
    # cost of some 70 MB that does not grow with the data.
    clone(estimator).fit(X[:1000], y[:1000])
    baseline = _status_kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")
    _, wall, cpu = timed(lambda: estimator.fit(X, y))
    peak = _status_kib("VmHWM")
    print(
        json.dumps(
            {
                "data_mb": X.nbytes / 1e6,
                "peak_increase_mb": (peak - baseline) * 1024 / 1e6,
                "epoch_wall_s": wall,
                "epoch_cpu_s": cpu,
            }
        )
    )


def measure_memory(n_rows, device, preset):
    command = [
        sys.executable,
        __file__,
        "--memory-child",
        str(n_rows),
        "--device",
        device,
        "--preset",
        preset,
    ]
    output = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(output.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------ report


def speed_table(results):
    raw, skorch = results["raw"], results["skorch"]
    lines = [
        "| model | epoch wall (s) | epoch CPU (s) | CPU / (a) | CPU / (b) "
        "| predict (rows/s wall) | predict (rows/CPU s) | predict / (a) "
        "| predict / (b) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, result in results.items():
        lines.append(
            f"| {LABELS[name]} | {result['wall']:.3f} | {result['cpu']:.3f} "
            f"| {result['cpu'] / raw['cpu']:.2f}x "
            f"| {result['cpu'] / skorch['cpu']:.2f}x "
            f"| {result['predict']:,.0f} | {result['predict_cpu']:,.0f} "
            f"| {result['predict_cpu'] / raw['predict_cpu']:.2f}x "
            f"| {result['predict_cpu'] / skorch['predict_cpu']:.2f}x |"
        )
    overhead = results["dualhead"]["cpu"] / results["single_loss"]["cpu"]
    lines += [
        "",
        f"Dual-head vs single-loss epoch CPU time, (c) / (d): {overhead:.2f}x. "
        "Prediction ratios are of throughput per CPU second, which a shared "
        "machine disturbs less than wall time (with one thread they agree on "
        "an idle one).",
    ]
    return "\n".join(lines)


def memory_table(memory):
    lines = [
        "| device | settings | data (MB) | peak RSS increase (MB) | ratio to data "
        "| 1-epoch fit wall (s) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for (device, preset), result in memory.items():
        lines.append(
            f"| {device} | {preset} | {result['data_mb']:.0f} "
            f"| {result['peak_increase_mb']:.0f} "
            f"| {result['peak_increase_mb'] / result['data_mb']:.2f}x "
            f"| {result['epoch_wall_s']:.1f} |"
        )
    return "\n".join(lines)


def targets_table(cpu, memory, gpu_speedup):
    """The issue's targets against the figures reached on the CPU."""

    def ratio(key, model, reference):
        return cpu[model][key] / cpu[reference][key]

    rows = [
        ("training epoch CPU time, (c) / (a)", ratio("cpu", "dualhead", "raw"),
         "<=", 1.10),
        ("training epoch CPU time, (c) / (b)", ratio("cpu", "dualhead", "skorch"),
         "<=", 0.75),
        ("predict_proba throughput, (c) / (a)",
         ratio("predict_cpu", "dualhead", "raw"), ">=", 0.9),
        ("predict_proba throughput, (c) / (b)",
         ratio("predict_cpu", "dualhead", "skorch"), ">=", 8),
        ("dual-head vs single-loss epoch CPU time, (c) / (d)",
         ratio("cpu", "dualhead", "single_loss"), "<=", 1.10),
    ]
    for (device, preset), result in memory.items():
        rows.append((f"peak memory / data, {device}, {preset} settings",
                     result["peak_increase_mb"] / result["data_mb"], "<=", 3))
    if gpu_speedup is not None:
        rows.append(("epoch wall time on the memory set, CPU / CUDA", gpu_speedup,
                     ">=", 10))
    return _targets_markdown(rows)


def _targets_markdown(rows):
    """``(label, value, sign, limit)`` rows as a Markdown table of targets."""
    lines = ["| target | reached | limit | met |", "|---|---:|---:|---|"]
    for label, value, sign, limit in rows:
        met = value <= limit if sign == "<=" else value >= limit
        lines.append(
            f"| {label} | {value:.2f}x | {sign} {limit}x | {'yes' if met else 'no'} |"
        )
    return "\n".join(lines)


def members_targets_table(members, against_raw):
    rows = []
    for trunk in MEMBER_TRUNKS:
        for n_rows, n_features in MEMBER_SHAPES:
            one = members[(trunk, n_rows, n_features, 1, "packed")]
            for k, limit in ((5, 1.5), (32, 4.0)):
                rows.append((
                    f"{k} packed networks / one, {' x '.join(map(str, trunk))} trunk, "
                    f"{n_rows:,} x {n_features}",
                    members[(trunk, n_rows, n_features, k, "packed")] / one, "<=", limit,
                ))
    rows.append(("default predict_proba / raw loop", against_raw["ratio"], ">=", 0.95))
    return _targets_markdown(rows)


MEMBERS_NOTES = """\
How to read the packed networks: every member of a packed network does its
own arithmetic, so k members cost k times the multiply-adds of one; what
packing saves is the overhead of each operation (dispatch, autograd, the
optimizer, skorch's loop), paid once per step for all members instead of
once per member. With the default 256 x 256 trunk one step of 5 members on a
250-row batch is some 0.5 GFLOP, about as long as one CPU thread takes for
the whole step: the ratio to one network follows the arithmetic, and packing
gains only the overhead over training the members one after another. With a
64 x 64 trunk the overhead dominates, and packing pays. Targets of 1.5x for
5 members and 4x for 32 are out of reach of one CPU thread at either width;
on a GPU, where the members' batched products run side by side, they are
the regime to expect (not measured here: no GPU was lent)."""


NOTES = """\
How to read the tables: (a) and (c) train the same network with the same
loss and the same optimizer step, so (c) / (a) is what the estimator's data
path and skorch's machinery cost. (b) trains a single cross-entropy head, a
cheaper loss than the dual-head loss of (a), (c) and (d), with torch's
default AdamW step: (b) / (a0) is the cost of skorch's default data path
alone. (c) and (d) predict through identical code, so the gap between their
prediction figures shows the noise of the measurement."""


PRESETS = {
    "lean": "`preprocessing=None, early_stopping=False`",
    "default": "defaults (`preprocessing='auto'`, `early_stopping=True`)",
}


FULL_SIZES = {
    "rows": 50_000,
    "predict_rows": 200_000,
    "epochs": 3,
    "memory_rows": 1_000_000,
}
QUICK_SIZES = {
    "rows": 10_000,
    "predict_rows": 40_000,
    "epochs": 2,
    "memory_rows": 100_000,
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, help="training rows (50,000)")
    parser.add_argument("--predict-rows", type=int, help="rows predicted (200,000)")
    parser.add_argument("--epochs", type=int, help="epochs per fit (3)")
    parser.add_argument("--repeats", type=int, default=3, help="fits per model")
    parser.add_argument(
        "--predict-repeats", type=int, default=3, help="predictions per fit"
    )
    parser.add_argument(
        "--memory-rows", type=int, help="rows of the memory run (1,000,000)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="defaults of 10,000 rows, 40,000 predicted, 2 epochs and "
        "100,000 memory rows",
    )
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument(
        "--member-epochs", type=int, default=10, help="epochs of the members table"
    )
    parser.add_argument("--no-members", action="store_true")
    parser.add_argument("--output", help="also write the tables to this Markdown file")
    parser.add_argument("--memory-child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--device", default="cpu", help=argparse.SUPPRESS)
    parser.add_argument("--preset", default="lean", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    # One thread: the figures compare data paths, not BLAS parallelism, and
    # stay comparable on a shared machine.
    torch.set_num_threads(1)
    if args.memory_child:
        memory_child(args.memory_child, args.device, args.preset)
        return
    sizes = QUICK_SIZES if args.quick else FULL_SIZES
    for key, value in sizes.items():
        if getattr(args, key) is None:
            setattr(args, key, value)

    X, y = make_data(args.rows, seed=0)
    X_predict, _ = make_data(args.predict_rows, seed=2)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    command = "python benchmarks/speed.py " + " ".join(
        arg for arg in (argv if argv is not None else sys.argv[1:])
    )
    sections = [
        "# Speed benchmark",
        "",
        f"Produced by `{command.strip()}` "
        f"(torch {torch.__version__}, 1 thread, {platform.processor() or platform.machine()}, "
        f"{args.rows:,} x {N_FEATURES} training rows, {args.epochs} epochs, "
        f"median of {args.repeats} fits, {args.predict_rows:,} rows predicted "
        f"{args.predict_repeats} times after each fit and one untimed prediction).",
    ]
    speed = {}
    for device in devices:
        speed[device] = measure_speed(
            device, X, y, X_predict, args.epochs, args.repeats, args.predict_repeats
        )
        sections += [
            "",
            f"## Training and prediction on `{device}`",
            "",
            speed_table(speed[device]),
        ]
        print("\n".join(sections[-3:]), flush=True)
    memory, gpu_speedup = {}, None
    if not args.no_memory:
        memory = {
            (device, preset): measure_memory(args.memory_rows, device, preset)
            for device in devices
            for preset in PRESETS
        }
        sections += [
            "",
            f"## Peak memory fitting {args.memory_rows:,} x {N_FEATURES} float32 (one epoch)",
            "",
            "Peak resident set size of a fresh process during the fit (`VmHWM`, "
            "reset through `/proc/self/clear_refs` once the data exist and a "
            "warm-up fit on 1,000 rows is done) minus its resident set size "
            "before the fit. Settings: "
            + "; ".join(f"{key}: {text}" for key, text in PRESETS.items())
            + ".",
            "",
            memory_table(memory),
        ]
        print("\n".join(sections[-5:]), flush=True)
    if "cuda" in devices and not args.no_memory:
        cpu_epoch = memory[("cpu", "lean")]["epoch_wall_s"]
        gpu_epoch = memory[("cuda", "lean")]["epoch_wall_s"]
        gpu_speedup = cpu_epoch / gpu_epoch
        sections += [
            "",
            f"One epoch on {args.memory_rows:,} rows (lean settings, whole fit): "
            f"{cpu_epoch:.1f} s on the CPU, {gpu_epoch:.1f} s on CUDA "
            f"({gpu_speedup:.1f}x faster).",
        ]
        print(sections[-1])
    elif "cuda" not in devices:
        sections += ["", "CUDA was not available, so there are no GPU figures."]
    if not args.no_members:
        members = measure_members(args.member_epochs, args.repeats, "cpu")
        share = measure_early_stopping_share(2 * args.member_epochs, "cpu")
        against_raw = measure_predict_against_raw(
            "cpu", args.predict_rows, args.predict_repeats * args.repeats
        )
        sections += [
            "",
            "## Packed networks (CPU)",
            "",
            f"Fits of `n_networks` members with the defaults but "
            f"`early_stopping=False, preprocessing=None` and the trunk shown, "
            f"{args.member_epochs} "
            "epochs, median CPU seconds of "
            f"{args.repeats} fits (sequential 32: one fit). *Sequential* is "
            "the ensemble as it was trained before packing: one network after "
            "another, each a fit of its own.",
            "",
            members_table(members, args.member_epochs),
            "",
            MEMBERS_NOTES,
            "",
            f"Calibrated early stopping, 5 networks on 2,000 x 20, "
            f"{2 * args.member_epochs} epochs: the held-out pass takes "
            f"{share['valid'] / share['total']:.1%} of the fit's CPU time, of "
            f"which fitting every network's calibrator every epoch "
            f"{share['calibration'] / share['total']:.1%}.",
            "",
            f"Default `predict_proba` ({against_raw['n_networks']} networks, "
            f"default preprocessing, a float64 DataFrame of {args.predict_rows:,} "
            f"x {N_FEATURES}): {against_raw['ours_rows_per_s']:,.0f} rows per CPU "
            f"second against {against_raw['raw_rows_per_s']:,.0f} for a raw "
            "`inference_mode` loop over the same packed layers on the ready "
            f"float32 matrix, {against_raw['ratio']:.2f}x; the preprocessing "
            f"takes {against_raw['preprocessing_share']:.1%} of `predict_proba`.",
            "",
            "## Targets of issue 13 (CPU)",
            "",
            members_targets_table(members, against_raw),
        ]
        print("\n".join(sections[-13:]), flush=True)
    sections += [
        "",
        "## Targets of issue 4 (CPU)",
        "",
        targets_table(speed["cpu"], memory, gpu_speedup),
        "",
        NOTES,
    ]
    print("\n".join(sections[-3:]), flush=True)
    if args.output:
        with open(args.output, "w") as file:
            file.write("\n".join(sections) + "\n")


if __name__ == "__main__":
    main()
