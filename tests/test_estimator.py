"""DualHeadClassifier end to end: fitting, predicting, searching, persisting."""

import io
import pickle

import joblib
import numpy as np
import pandas as pd
import pytest
import torch
from conftest import FAST, fast_classifier
from sklearn.base import clone
from sklearn.datasets import make_classification
from sklearn.ensemble import VotingClassifier
from sklearn.metrics import log_loss
from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_validate
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import sk_dualhead._engine as engine
from sk_dualhead import DualHeadClassifier


@pytest.fixture(scope="module")
def fitted(binary):
    X, y = binary
    return fast_classifier().fit(X, y)


def test_fitted_attributes(fitted, binary):
    X, y = binary
    assert fitted.n_features_in_ == X.shape[1]
    np.testing.assert_array_equal(fitted.classes_, [0, 1])
    (member,) = fitted.members_
    assert member.n_epochs == len(member.history) >= 1
    assert 1 <= member.best_epoch <= member.n_epochs
    assert fitted.device_ == "cpu"
    assert isinstance(fitted.network_, torch.nn.Module) and not fitted.network_.training
    # Chance is 0.5; this seed stops its network at its third epoch (0.78).
    assert fitted.score(X, y) > 0.75
    # The first-network aliases of the sequential ensemble are gone.
    for name in ("net_", "nets_", "calibrator_", "history_", "n_epochs_", "best_epoch_"):
        assert not hasattr(fitted, name)


def test_history_records_each_loss_term(fitted):
    expected = {
        f"{prefix}_{term}"
        for prefix in ("train", "valid")
        for term in ("loss", "main_loss", "aux_loss", "consistency_loss")
    } | {"valid_log_loss", "dur", "epoch"}
    history = fitted.members_[0].history
    for row in history:
        assert expected <= set(row)
        total = 0.7 * row["train_main_loss"] + 0.25 * row["train_aux_loss"]
        total += 0.05 * row["train_consistency_loss"]
        assert row["train_loss"] == pytest.approx(total, rel=1e-5)
    assert history[-1]["train_main_loss"] < history[0]["train_main_loss"]


def test_predict_proba_contract(fitted, binary):
    X, _ = binary
    proba = fitted.predict_proba(X)
    assert proba.dtype == np.float64 and proba.shape == (len(X), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    np.testing.assert_allclose(np.log(proba), fitted.predict_log_proba(X), atol=1e-10)
    np.testing.assert_array_equal(
        fitted.predict(X), fitted.classes_[proba.argmax(axis=1)]
    )
    scores = fitted.decision_function(X)
    np.testing.assert_allclose(scores, np.log(proba[:, 1] / proba[:, 0]), atol=1e-8)


def test_predictions_do_not_depend_on_row_order(fitted, binary):
    # To float32 rounding: a row's products may round differently in the last
    # bit at another position in the batch (see tests/test_common.py).
    X, _ = binary
    order = np.random.default_rng(0).permutation(len(X))
    for method in (fitted.predict_proba, fitted.decision_function):
        np.testing.assert_allclose(method(X)[order], method(X[order]), rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(fitted.predict(X)[order], fitted.predict(X[order]))


@pytest.mark.parametrize("head", ["main", "aux", "mean"])
def test_predict_head(binary, head):
    X, y = binary
    # Uncalibrated, so that the heads' own probabilities come out.
    clf = fast_classifier(predict_head=head, calibration=None).fit(X, y)
    features = torch.from_numpy(clf.preprocessor_.transform(X))
    with torch.inference_mode():
        main, aux = (logits[0].double() for logits in clf.network_(features))
    if head == "mean":
        expected = (torch.softmax(main, 1) + torch.softmax(aux, 1)) / 2
    else:
        expected = torch.softmax(main if head == "main" else aux, 1)
    # The inference pass multiplies by the heads predicted with alone, a
    # different product than the module's, which float32 rounds apart.
    np.testing.assert_allclose(clf.predict_proba(X), expected.numpy(), rtol=2e-5)


def test_three_classes_and_string_labels(three_class):
    X, y = three_class
    labels = np.array(["low", "mid", "high"])[y]
    clf = fast_classifier().fit(X, labels)
    np.testing.assert_array_equal(clf.classes_, ["high", "low", "mid"])
    assert clf.predict_proba(X).shape == (len(X), 3)
    assert set(clf.predict(X)) <= set(labels)
    assert clf.decision_function(X).shape == (len(X), 3)
    assert clf.score(X, labels) > 0.7


def test_bool_labels(binary):
    X, y = binary
    clf = fast_classifier().fit(X, y.astype(bool))
    np.testing.assert_array_equal(clf.classes_, [False, True])
    assert clf.predict(X).dtype == bool


def test_same_random_state_same_probabilities(binary):
    X, y = binary
    first = fast_classifier(n_networks=2).fit(X, y).predict_proba(X)
    second = fast_classifier(n_networks=2).fit(X, y).predict_proba(X)
    np.testing.assert_array_equal(first, second)
    other = fast_classifier(n_networks=2, random_state=1).fit(X, y)
    assert not np.array_equal(first, other.predict_proba(X))


def test_fit_leaves_global_torch_rng_alone(binary):
    X, y = binary
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    fast_classifier().fit(X, y)
    torch.testing.assert_close(torch.rand(3), expected)


def test_without_early_stopping_trains_max_epochs_on_all_rows(binary):
    X, y = binary
    clf = fast_classifier(early_stopping=False, n_networks=2).fit(X, y)
    for member in clf.members_:
        assert member.n_epochs == member.best_epoch == FAST["max_epochs"]
        assert member.valid_rows is None and member.calibrator is None
        assert "valid_log_loss" not in member.history[-1]
        # "auto" batches: at most 300 // 8 = 37 rows, so 9 of 33 or 34.
        assert member.history[-1]["train_batch_count"] == 9


def test_auto_batches_hold_at_most_224_rows():
    X, y = make_classification(n_samples=2400, n_features=4, random_state=0)
    clf = fast_classifier(early_stopping=False, max_epochs=1).fit(X, y)
    # 2400 // 8 = 300 rows would be 8 steps; 224 at most make 11 of 218.
    assert clf.members_[0].history[-1]["train_batch_count"] == 11


def test_each_member_stops_early_at_its_best_epoch(binary):
    X, y = binary
    clf = DualHeadClassifier(
        hidden_sizes=(64, 64), lr=0.05, max_epochs=200, n_iter_no_change=3,
        n_networks=3, random_state=0,
    ).fit(X, y)
    features = torch.from_numpy(clf.preprocessor_.transform(X))
    log_probas = engine.member_log_proba(
        clf.network_, clf.members_, features, predict_head="mean", prior_correction=None
    )
    for member, log_proba in zip(clf.members_, log_probas):
        losses = [row["valid_log_loss"] for row in member.history]
        assert member.n_epochs < 200, "the overfitting net should stop early"
        assert member.best_epoch == int(np.argmin(losses)) + 1
        assert member.n_epochs - member.best_epoch == 3
        # The member predicts with its best weights and the calibrator fitted
        # to that epoch: its held-out log loss is the best one recorded.
        rows = member.valid_rows
        held_out = log_loss(y[rows], np.exp(log_proba[rows]), labels=[0, 1])
        assert held_out == pytest.approx(min(losses), rel=1e-5)
    # The members stopped at epochs of their own.
    assert len({member.n_epochs for member in clf.members_}) > 1


def test_each_member_ends_with_the_weights_of_its_best_epoch(binary, monkeypatch):
    # Stopped members leave the network while the others train on; the
    # fitted network has every member again, each with the weights it had
    # at its best epoch, read here off the network being trained.
    best = {}
    real_snapshot = engine.PackedNet.snapshot_members

    def snapshot_members(net, members=None):
        real_snapshot(net, members)
        state = net.module_.state_dict()
        for member in range(net.n_members) if members is None else members:
            position = list(net.members_).index(member)
            best[member] = {name: t[position].clone() for name, t in state.items()}

    monkeypatch.setattr(engine.PackedNet, "snapshot_members", snapshot_members)
    X, y = binary
    clf = DualHeadClassifier(
        hidden_sizes=(32,), lr=0.05, n_iter_no_change=2, n_networks=3,
        normalization="batchnorm", random_state=0,
    ).fit(X, y)
    assert len({m.n_epochs for m in clf.members_}) > 1  # one stopped first
    assert clf.network_.n_members == 3
    for name, tensor in clf.network_.state_dict().items():
        for member in range(3):
            torch.testing.assert_close(tensor[member], best[member][name], rtol=0, atol=0)


def test_fitted_model_carries_no_training_rows(fitted, binary):
    X, _ = binary
    saved = pickle.dumps(fitted)
    for features in (X, fitted.preprocessor_.transform(X)):
        assert np.ascontiguousarray(features[:8]).tobytes() not in saved


@pytest.mark.parametrize("n_per_class", [1, 2, 3])
def test_tiny_data_still_fits(n_per_class):
    X = np.arange(n_per_class * 2 * 2, dtype=float).reshape(-1, 2)
    y = np.repeat([0, 1], n_per_class)
    clf = fast_classifier().fit(X, y)
    proba = clf.predict_proba(X)
    assert np.isfinite(proba).all()


def test_sample_weight_and_class_weight_shift_the_decision(binary):
    X, y = binary
    base = fast_classifier().fit(X, y).predict_proba(X)[:, 1].mean()
    weights = np.where(y == 1, 5.0, 1.0)
    by_sample = fast_classifier().fit(X, y, sample_weight=weights)
    by_class = fast_classifier(class_weight={0: 1.0, 1: 5.0}).fit(X, y)
    assert by_sample.predict_proba(X)[:, 1].mean() > base + 0.05
    np.testing.assert_allclose(
        by_class.predict_proba(X), by_sample.predict_proba(X), rtol=1e-5
    )


def test_balanced_class_weight(binary):
    X, y = binary
    keep = (y == 0) | (np.arange(len(y)) % 5 == 0)
    X, y = X[keep], y[keep]
    plain = fast_classifier().fit(X, y)
    balanced = fast_classifier(class_weight="balanced").fit(X, y)
    assert balanced.predict_proba(X)[:, 1].mean() > plain.predict_proba(X)[:, 1].mean()


def test_unknown_strategy_lists_valid_ones(binary):
    X, y = binary
    with pytest.raises(ValueError, match="balanced"):
        DualHeadClassifier("nonsense").fit(X, y)


@pytest.mark.parametrize(
    "params, match",
    [
        ({"hidden_sizes": (16, 0)}, "hidden_sizes"),
        ({"loss_weights": (1.0, 0.5)}, "loss_weights"),
        ({"loss_weights": (-1.0, 0.5, 0.1)}, "loss_weights"),
        ({"device": "tpu"}, "device"),
        ({"device": "cuda:99"}, "device"),
        ({"predict_head": "both"}, "predict_head"),
    ],
)
def test_invalid_hyperparameters(binary, params, match):
    X, y = binary
    if params.get("device") == "cuda:99" and torch.cuda.device_count() > 99:
        pytest.skip("a machine with 100 GPUs")
    with pytest.raises(ValueError, match=match):
        DualHeadClassifier(**params).fit(X, y)


@pytest.mark.parametrize(
    "cuda, mps, expected", [(True, True, "cuda"), (False, True, "mps"), (False, False, "cpu")]
)
def test_device_auto_takes_the_best_available(monkeypatch, cuda, mps, expected):
    from sk_dualhead._validation import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    assert resolve_device("auto") == expected


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("strategy", ["balanced", "focal_smooth"])
def test_cuda_model_predicts_on_cpu_after_unpickling(binary, monkeypatch, strategy):
    X, y = binary
    clf = fast_classifier(strategy, device="cuda").fit(X, y)
    expected = clf.predict_proba(X)
    payload = pickle.dumps(clf)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.warns(UserWarning, match="loaded on the CPU"):
        restored = pickle.loads(payload)
    assert restored.device_ == "cpu"
    np.testing.assert_allclose(restored.predict_proba(X), expected, atol=1e-5)


def test_dataframe_feature_names(binary):
    X, y = binary
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    clf = fast_classifier().fit(frame, y)
    np.testing.assert_array_equal(clf.feature_names_in_, frame.columns)
    np.testing.assert_allclose(clf.predict_proba(frame), clf.predict_proba(X))


def test_clone_keeps_params_not_state(fitted):
    twin = clone(fitted)
    assert twin.get_params() == fitted.get_params()
    assert not hasattr(twin, "network_")


@pytest.mark.parametrize("dump, load", [
    (pickle.dumps, pickle.loads),
    (lambda m: _joblib_bytes(m), lambda b: joblib.load(io.BytesIO(b))),
])
def test_persistence_round_trip(fitted, binary, dump, load):
    X, _ = binary
    restored = load(dump(fitted))
    np.testing.assert_array_equal(restored.predict_proba(X), fitted.predict_proba(X))


def _joblib_bytes(model):
    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    return buffer.getvalue()


def test_cross_validate(binary):
    X, y = binary
    scores = cross_validate(
        fast_classifier(), X, y, cv=3, scoring=["roc_auc", "neg_log_loss"]
    )
    assert np.all(scores["test_roc_auc"] > 0.8)


def test_grid_search_over_strategy_and_weights_in_pipeline(three_class):
    X, y = three_class
    pipeline = make_pipeline(StandardScaler(), fast_classifier())
    search = GridSearchCV(
        pipeline,
        {
            "dualheadclassifier__strategy": ["balanced"],
            "dualheadclassifier__loss_weights": [None, (0.5, 0.5, 0.0)],
            "dualheadclassifier__gamma": [None, 0.0],
        },
        cv=StratifiedKFold(3),
        scoring="neg_log_loss",
        n_jobs=2,
    ).fit(X, y)
    assert len(search.cv_results_["params"]) == 4
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    assert search.best_estimator_.predict_proba(X).shape == (len(X), 3)


def test_soft_voting_averages_members_with_their_own_seeds(three_class):
    """The recipe of docs/howto/ensembles.rst."""
    X, y = three_class
    members = [
        (f"seed{seed}", fast_classifier(random_state=seed))
        for seed in range(3)
    ]
    ensemble = VotingClassifier(members, voting="soft").fit(X, y)
    probabilities = [member.predict_proba(X) for member in ensemble.estimators_]
    # Different seeds give different networks, and the ensemble is their mean.
    assert not np.allclose(probabilities[0], probabilities[1])
    np.testing.assert_allclose(
        ensemble.predict_proba(X), np.mean(probabilities, axis=0)
    )
    # A member's parameter is reachable by name, as a grid search needs.
    assert ensemble.get_params()["seed1__random_state"] == 1


def test_members_are_averaged_each_with_its_own_split_and_calibration(binary):
    X, y = binary
    clf = fast_classifier(n_networks=3).fit(X, y)
    assert clf.n_networks_ == len(clf.members_) == clf.network_.n_members == 3
    held_out = {frozenset(member.valid_rows.tolist()) for member in clf.members_}
    assert len(held_out) == 3
    weights = clf.network_.heads.weight
    assert not torch.equal(weights[0], weights[1])
    temperatures = {member.calibrator.temperature_ for member in clf.members_}
    assert len(temperatures) == 3
    # predict_proba is the mean of the members' calibrated probabilities.
    features = torch.from_numpy(clf.preprocessor_.transform(X))
    with torch.inference_mode():
        main, aux = (logits.double() for logits in clf.network_(features))
    mean_head = ((torch.softmax(main, 2) + torch.softmax(aux, 2)) / 2).numpy()
    probabilities = [
        np.exp(member.calibrator.transform(np.log(proba)))
        for member, proba in zip(clf.members_, mean_head)
    ]
    np.testing.assert_allclose(
        clf.predict_proba(X), np.mean(probabilities, axis=0), rtol=2e-5
    )


def test_packed_members_cost_one_forward_per_batch(binary, monkeypatch):
    calls = []
    real_forward = engine.PackedDualHeadNetwork.forward

    def forward(network, X):
        calls.append(network.n_members)
        return real_forward(network, X)

    monkeypatch.setattr(engine.PackedDualHeadNetwork, "forward", forward)
    X, y = binary
    fast_classifier(n_networks=4, max_epochs=2, early_stopping=False).fit(X, y)
    # 9 training batches an epoch, every member in each.
    assert calls == [4] * 18


def test_auto_trains_fewer_networks_on_more_rows(binary, monkeypatch):
    import sk_dualhead.estimator as estimator_module

    X, y = binary
    params = dict(n_networks="auto", max_epochs=1)
    assert fast_classifier(**params).fit(X, y).n_networks_ == 8
    # The bounds moved so that the 300 rows fall in each band in turn.
    for bounds, expected in [(((100, 8), (1_000, 5)), 5), (((100, 8), (300, 5)), 1)]:
        monkeypatch.setattr(estimator_module, "AUTO_NETWORKS", bounds)
        assert fast_classifier(**params).fit(X, y).n_networks_ == expected


def test_verbose_prints_one_table_for_all_networks(binary, capsys):
    X, y = binary
    fast_classifier(n_networks=2, max_epochs=2, verbose=1).fit(X, y)
    lines = capsys.readouterr().out.splitlines()
    assert sum("train_loss" in line for line in lines) == 1
    assert not any("_members" in line for line in lines)
    assert sum(line.strip().startswith(("1 ", "2 ")) for line in lines) == 2


def _captured_datasets(monkeypatch):
    captured = []
    real_dataset = engine.TensorDataset

    def capture(*args, **kwargs):
        captured.append(real_dataset(*args, **kwargs))
        return captured[-1]

    monkeypatch.setattr(engine, "TensorDataset", capture)
    return captured


def test_training_on_all_rows_uses_float32_features_in_place(binary, monkeypatch):
    captured = _captured_datasets(monkeypatch)
    X, y = binary
    X = X.astype(np.float32)
    fast_classifier(max_epochs=1, early_stopping=False, preprocessing=None).fit(X, y)
    (train,) = captured
    assert np.shares_memory(train.X.numpy(), X)
    # Weights that are all one are not multiplied in at all.
    assert train.member_weight is None and train.rows is None


@pytest.mark.parametrize("n_networks", [1, 3])
def test_held_out_rows_share_the_features_with_the_training_rows(
    binary, monkeypatch, n_networks
):
    captured = _captured_datasets(monkeypatch)
    X, y = binary
    X = X.astype(np.float32)
    clf = fast_classifier(max_epochs=1, preprocessing=None, n_networks=n_networks)
    clf.fit(X, y)
    train, valid = captured
    # No copy of either split: both index the caller's array.
    assert train.X is valid.X
    assert np.shares_memory(train.X.numpy(), X)
    features, (target, _) = valid[:]
    for m, member in enumerate(clf.members_):
        # A member trains on every row but its own held-out ones, and
        # validates on those alone.
        trained = train.rows[m].numpy()
        np.testing.assert_array_equal(
            np.setdiff1d(np.arange(len(X)), trained), member.valid_rows
        )
        np.testing.assert_array_equal(valid.rows[m].numpy(), member.valid_rows)
        np.testing.assert_array_equal(features[m].numpy(), X[member.valid_rows])
        np.testing.assert_array_equal(target[m].numpy(), y[member.valid_rows])


def test_unequal_weights_reach_the_loss(binary, monkeypatch):
    captured = _captured_datasets(monkeypatch)
    X, y = binary
    weights = np.where(y == 1, 2.0, 1.0)
    fast_classifier(max_epochs=1, n_networks=2).fit(X, y, sample_weight=weights)
    for dataset in captured:
        _, (labels, weight) = dataset[:]
        labels = labels.numpy()
        for member_labels, member_weight in zip(labels, weight.numpy()):
            positive, negative = (member_weight[member_labels == c] for c in (1, 0))
            np.testing.assert_allclose(positive, 2 * negative[0], rtol=1e-6)
            # Each member's weights average one over its rows.
            assert member_weight.mean() == pytest.approx(1.0, rel=1e-5)

def test_model_of_a_missing_device_loads_on_the_cpu(fitted, binary, monkeypatch):
    X, _ = binary
    # As if trained on a GPU: the network pickles from the CPU in any case.
    monkeypatch.setattr(fitted, "device_", "cuda:0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.warns(UserWarning, match="trained on 'cuda:0'.*loaded on the CPU"):
        restored = pickle.loads(pickle.dumps(fitted))
    assert restored.device_ == "cpu"
    assert restored.network_.heads.weight.device.type == "cpu"
    np.testing.assert_array_equal(restored.predict_proba(X), fitted.predict_proba(X))


def test_the_strategy_is_resolved_once_per_fit(binary, monkeypatch):
    import sk_dualhead.estimator as estimator_module

    calls = []
    real_resolve = estimator_module.resolve_strategy

    def resolve(*args, **kwargs):
        calls.append(args)
        return real_resolve(*args, **kwargs)

    monkeypatch.setattr(estimator_module, "resolve_strategy", resolve)
    X, y = binary
    fast_classifier("focal_smooth", n_networks=3, max_epochs=3).fit(X, y)
    assert calls == [("focal_smooth",)]
