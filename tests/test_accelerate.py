"""Data-parallel training through Hugging Face Accelerate, on the CPU.

One process runs the accelerated code path in this test process; two
processes run it in a child interpreter, through
:func:`accelerate.debug_launcher` (gloo, CPU only).
"""

import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import make_classification

from sk_dualhead import DualHeadClassifier
from sk_dualhead._engine import TensorBatches, TensorDataset

accelerate = pytest.importorskip("accelerate")

SETTINGS = {"hidden_sizes": (32,), "max_epochs": 15, "lr": 1e-2, "n_networks": 1, "random_state": 0}


@pytest.fixture(scope="module")
def accelerator():
    return accelerate.Accelerator(cpu=True)


@pytest.fixture(scope="module")
def fitted(accelerator, binary):
    X, y = binary
    return DualHeadClassifier(accelerator=accelerator, **SETTINGS).fit(X, y)


def _rows(batches):
    """Row numbers of every batch of a TensorDataset whose X holds them."""
    return [X[:, 0].long().tolist() for X, _ in batches]


@pytest.mark.parametrize("n_processes", [2, 3])
def test_tensor_batches_shards_are_disjoint_and_equal(n_processes):
    n_rows = 103
    data = TensorDataset(
        torch.arange(n_rows, dtype=torch.float32)[:, None],
        torch.zeros(n_rows, dtype=torch.long),
    )
    shards = []
    for index in range(n_processes):
        # Every process draws the epoch's order with the same seed.
        torch.manual_seed(0)
        batches = TensorBatches(
            data, 10, shuffle=True, num_processes=n_processes, process_index=index
        )
        shards.append(_rows(batches))
        assert len(batches) == len(shards[-1])
    # As many batches of the same sizes in every process...
    sizes = [[len(batch) for batch in shard] for shard in shards]
    assert all(s == sizes[0] for s in sizes)
    # ...disjoint, covering all rows but the len % n_processes left out.
    taken = [row for shard in shards for batch in shard for row in batch]
    assert len(taken) == len(set(taken)) == n_rows - n_rows % n_processes
    # The rows left out are the last of the epoch's order.
    torch.manual_seed(0)
    order = torch.randperm(n_rows).tolist()
    assert set(order) - set(taken) == set(order[len(taken) :])


def test_tensor_batches_one_process_is_the_whole_order():
    data = TensorDataset(torch.arange(25.0)[:, None], torch.zeros(25, dtype=torch.long))
    torch.manual_seed(0)
    order = torch.randperm(25).tolist()
    torch.manual_seed(0)
    rows = _rows(TensorBatches(data, 8, shuffle=True))
    # Four batches of at most 8 rows, 6 or 7 each, rather than three of 8 and one of 1.
    assert rows == [order[0:6], order[6:12], order[12:18], order[18:25]]
    assert _rows(TensorBatches(data, 8, num_processes=2, process_index=1)) == [
        [1, 3, 5, 7, 9, 11],
        [13, 15, 17, 19, 21, 23],
    ]


def test_accelerated_fit_predicts_and_records_each_term(fitted, binary):
    X, y = binary
    # Unwrapped after training: a plain module, on the accelerator's device.
    assert type(fitted.network_).__name__ == "PackedDualHeadNetwork"
    assert fitted.device_ == "cpu"
    proba = fitted.predict_proba(X)
    assert proba.shape == (len(y), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert fitted.score(X, y) > 0.8
    (member,) = fitted.members_
    for row in member.history:
        for prefix in ("train", "valid"):
            for term in ("loss", "main_loss", "aux_loss", "consistency_loss"):
                assert np.isfinite(row[f"{prefix}_{term}"])
    assert member.calibrator is not None


def test_one_process_matches_the_plain_fit(fitted, binary):
    # With one process the accelerated path runs the same operations in the
    # same order as the plain one (no sharding, no all-reduce, no mixed
    # precision), so the two agree to the last bit on the CPU.
    X, y = binary
    plain = DualHeadClassifier(**SETTINGS).fit(X, y)
    np.testing.assert_array_equal(fitted.predict_proba(X), plain.predict_proba(X))
    strip = [{k: v for k, v in row.items() if k != "dur"} for row in fitted.members_[0].history]
    assert strip == [
        {k: v for k, v in row.items() if k != "dur"} for row in plain.members_[0].history
    ]


@pytest.mark.parametrize("normalization", [None, "batchnorm"])
def test_packed_networks_under_an_accelerator_match_the_plain_fit(
    accelerator, binary, normalization
):
    # A stopped member stays in the accelerated network, held at its best
    # weights (and running statistics) with no weight of the training rows;
    # the plain fit drops it from the network. The two train the same
    # members: the same epochs, and the same weights but for float rounding
    # (the products run on fewer members once some stopped).
    X, y = binary
    X = np.column_stack([X, X[:, 0] > 0])  # a two-valued column, folded
    # Weights that are not all one keep the accelerated loss on the same
    # (weighted) path as the plain one when members stop.
    weight = np.random.default_rng(0).uniform(0.5, 2.0, len(y))
    settings = {
        **SETTINGS, "n_networks": 4, "max_epochs": 40, "n_iter_no_change": 2,
        "dropout": 0.3, "normalization": normalization,
        # A seed whose members stop at four epochs (asserted below).
        "random_state": 1,
    }
    accelerated = DualHeadClassifier(accelerator=accelerator, **settings)
    accelerated.fit(X, y, sample_weight=weight)
    plain = DualHeadClassifier(**settings).fit(X, y, sample_weight=weight)
    assert plain.network_.n_members == 4
    epochs = [member.n_epochs for member in plain.members_]
    assert len(set(epochs)) == 4, epochs  # the members stopped apart
    for theirs, ours in zip(accelerated.members_, plain.members_):
        assert (theirs.n_epochs, theirs.best_epoch) == (ours.n_epochs, ours.best_epoch)
        if normalization is None:
            np.testing.assert_allclose(
                [row["valid_log_loss"] for row in theirs.history],
                [row["valid_log_loss"] for row in ours.history],
                rtol=1e-6,
            )
    # With batchnorm the held-out losses of the last members to train drift
    # apart, by up to 0.1 relative at some seeds (the training losses agree
    # to 1e-5): left open, see the closing note of issue 14.
    np.testing.assert_allclose(
        accelerated.predict_proba(X), plain.predict_proba(X),
        atol=1e-6 if normalization is None else 5e-3,
    )


def test_pickle_and_clone_after_an_accelerated_fit(fitted, accelerator, binary):
    X, _ = binary
    loaded = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(loaded.predict_proba(X), fitted.predict_proba(X))
    # Accelerator deep-copies to itself, so a clone trains with the same one.
    assert clone(fitted).accelerator is accelerator


def test_accelerator_must_be_an_accelerator(binary):
    with pytest.raises(ValueError, match="accelerator"):
        DualHeadClassifier(accelerator="cuda").fit(*binary)


def test_fewer_training_rows_than_processes_is_an_error(accelerator, monkeypatch):
    monkeypatch.setattr(type(accelerator), "num_processes", 8)
    X = np.arange(12.0).reshape(6, 2)
    clf = DualHeadClassifier(accelerator=accelerator, early_stopping=False)
    with pytest.raises(ValueError, match="6 training rows cannot be shared among 8"):
        clf.fit(X, [0, 1] * 3)


def _train_in_each_process(out_dir):
    """Body of every process of the two-process run below."""
    torch.set_num_threads(1)
    X, y = make_classification(
        n_samples=300, n_features=6, n_informative=4, random_state=0
    )
    acc = accelerate.Accelerator(cpu=True)
    # random_state=None: the processes agree only through the broadcast.
    # tol=1.0 counts no epoch after the first as an improvement, so early
    # stopping restores epoch 1's weights into the DDP-wrapped module. The
    # plain input layer learns enough in that one epoch to tell a trained
    # model from chance; periodic embeddings start near-linear and slower.
    clf = DualHeadClassifier(
        accelerator=acc,
        numerical_embedding=None,
        hidden_sizes=(32,),
        n_networks=1,
        normalization="batchnorm",
        batch_size=8,
        lr=3e-2,
        tol=1.0,
        n_iter_no_change=2,
        random_state=None,
    ).fit(X, y)
    result = {
        "num_processes": acc.num_processes,
        "history": [
            {k: v for k, v in row.items() if k != "dur"}
            for row in clf.members_[0].history
        ],
        "best_epoch": clf.members_[0].best_epoch,
        "proba": clf.predict_proba(X),
        "score": clf.score(X, y),
        "model": pickle.dumps(clf),
        "X": X,
    }
    with open(os.path.join(out_dir, f"{acc.process_index}.pkl"), "wb") as f:
        pickle.dump(result, f)


def test_two_processes_train_one_model(tmp_path):
    # A fresh interpreter: forked from this one, the processes would inherit
    # the single-process Accelerator state of the fixtures above.
    env = dict(os.environ, OMP_NUM_THREADS="1")
    subprocess.run(
        [sys.executable, __file__, str(tmp_path)], check=True, env=env, timeout=300
    )
    first, second = (
        pickle.loads((tmp_path / f"{i}.pkl").read_bytes()) for i in range(2)
    )
    assert first["num_processes"] == second["num_processes"] == 2
    # Both processes recorded the same, global history and stopped together.
    assert first["history"] == second["history"]
    assert first["best_epoch"] == 1 and len(first["history"]) == 3
    # Each took half of the 255 training rows: 127 rows in 16 batches of 8
    # (one process alone would take 32).
    assert {row["train_batch_count"] for row in first["history"]} == {16}
    # The gradients were averaged: the shards differ, the weights do not.
    np.testing.assert_array_equal(first["proba"], second["proba"])
    # The one epoch kept trained: chance is 0.5; it scored 0.83 to 0.89 in
    # six runs (random_state=None, so it varies from run to run).
    assert first["score"] > 0.7, first["score"]
    # The model pickled in a process of the run loads and predicts here.
    loaded = pickle.loads(first["model"])
    np.testing.assert_array_equal(loaded.predict_proba(first["X"]), first["proba"])


if __name__ == "__main__":
    accelerate.debug_launcher(_train_in_each_process, args=(sys.argv[1],))
