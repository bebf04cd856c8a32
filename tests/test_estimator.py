"""DualHeadClassifier end to end: fitting, predicting, searching, persisting."""

import io
import pickle

import joblib
import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone
from sklearn.ensemble import VotingClassifier
from sklearn.metrics import log_loss
from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_validate
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sk_dualhead import DualHeadClassifier, __version__

FAST = dict(hidden_sizes=(16,), max_epochs=15, lr=1e-2, n_networks=1, random_state=0)


@pytest.fixture(scope="module")
def fitted(binary):
    X, y = binary
    return DualHeadClassifier(**FAST).fit(X, y)


def test_version():
    assert __version__.count(".") == 2


def test_fitted_attributes(fitted, binary):
    X, y = binary
    assert fitted.n_features_in_ == X.shape[1]
    np.testing.assert_array_equal(fitted.classes_, [0, 1])
    assert fitted.n_epochs_ == len(fitted.history_) >= 1
    assert 1 <= fitted.best_epoch_ <= fitted.n_epochs_
    assert fitted.device_ == "cpu"
    assert isinstance(fitted.net_.module_, torch.nn.Module)
    assert fitted.score(X, y) > 0.8


def test_history_records_each_loss_term(fitted):
    expected = {
        f"{prefix}_{term}"
        for prefix in ("train", "valid")
        for term in ("loss", "main_loss", "aux_loss", "consistency_loss")
    } | {"valid_log_loss", "dur"}
    for row in fitted.history_:
        assert expected <= set(row)
        total = 0.7 * row["train_main_loss"] + 0.25 * row["train_aux_loss"]
        total += 0.05 * row["train_consistency_loss"]
        assert row["train_loss"] == pytest.approx(total, rel=1e-5)
    curve = fitted.history_[:, "train_main_loss"]
    assert curve[-1] < curve[0]


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


@pytest.mark.parametrize("head", ["main", "aux", "mean"])
def test_predict_head(binary, head):
    X, y = binary
    # Uncalibrated, so that the heads' own probabilities come out.
    clf = DualHeadClassifier(predict_head=head, calibration=None, **FAST).fit(X, y)
    # Only the heads predicted with: one head's weights alone and both heads'
    # side by side are different matrix products, which BLAS may round apart.
    heads = {"main": ("main",), "aux": ("aux",), "mean": ("main", "aux")}[head]
    main, aux = clf.net_.predict_logits(
        torch.from_numpy(clf.preprocessor_.transform(X)), heads=heads
    )
    if head == "mean":
        expected = (torch.softmax(main, 1) + torch.softmax(aux, 1)) / 2
    else:
        expected = torch.softmax(main if head == "main" else aux, 1)
    np.testing.assert_allclose(clf.predict_proba(X), expected.numpy(), rtol=1e-10)


def test_three_classes_and_string_labels(three_class):
    X, y = three_class
    labels = np.array(["low", "mid", "high"])[y]
    clf = DualHeadClassifier(**FAST).fit(X, labels)
    np.testing.assert_array_equal(clf.classes_, ["high", "low", "mid"])
    assert clf.predict_proba(X).shape == (len(X), 3)
    assert set(clf.predict(X)) <= set(labels)
    assert clf.decision_function(X).shape == (len(X), 3)
    assert clf.score(X, labels) > 0.7


def test_bool_labels(binary):
    X, y = binary
    clf = DualHeadClassifier(**FAST).fit(X, y.astype(bool))
    np.testing.assert_array_equal(clf.classes_, [False, True])
    assert clf.predict(X).dtype == bool


def test_same_random_state_same_probabilities(binary):
    X, y = binary
    first = DualHeadClassifier(**FAST).fit(X, y).predict_proba(X)
    second = DualHeadClassifier(**FAST).fit(X, y).predict_proba(X)
    np.testing.assert_array_equal(first, second)
    other = DualHeadClassifier(**{**FAST, "random_state": 1}).fit(X, y)
    assert not np.array_equal(first, other.predict_proba(X))


def test_fit_leaves_global_torch_rng_alone(binary):
    X, y = binary
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    DualHeadClassifier(**FAST).fit(X, y)
    torch.testing.assert_close(torch.rand(3), expected)


def test_without_early_stopping_trains_max_epochs_on_all_rows(binary):
    X, y = binary
    clf = DualHeadClassifier(early_stopping=False, **FAST).fit(X, y)
    assert clf.n_epochs_ == clf.best_epoch_ == FAST["max_epochs"]
    assert "valid_log_loss" not in clf.history_[-1]
    # "auto" batches: 300 // 8 = 37 rows, so 8 full batches and one of 4.
    assert clf.history_[-1, "train_batch_count"] == 9


def test_early_stopping_restores_best_epoch(binary):
    X, y = binary
    clf = DualHeadClassifier(
        hidden_sizes=(64, 64), lr=0.05, max_epochs=200, n_iter_no_change=3,
        n_networks=1, random_state=0,
    ).fit(X, y)
    losses = clf.history_[:, "valid_log_loss"]
    assert clf.n_epochs_ < 200, "the overfitting net should stop early"
    assert clf.best_epoch_ == int(np.argmin(losses)) + 1
    assert clf.n_epochs_ - clf.best_epoch_ == 3
    stopper = dict(clf.net_.callbacks_)["early_stopping"]
    for name, value in clf.net_.module_.state_dict().items():
        torch.testing.assert_close(value, stopper.best_model_weights_[name])


def test_monitored_loss_is_the_log_loss_of_predict_proba(binary, monkeypatch):
    import sk_dualhead.estimator as estimator_module

    held_out = []
    real_split = estimator_module.predefined_split

    def capture(dataset):
        held_out.append(dataset)
        return real_split(dataset)

    monkeypatch.setattr(estimator_module, "predefined_split", capture)
    X, y = binary
    clf = DualHeadClassifier(predict_head="mean", **FAST).fit(X, y)
    (valid,) = held_out
    features, (target, weights) = valid[:]
    main, aux = clf.net_.predict_logits(features)
    proba = (torch.softmax(main, 1) + torch.softmax(aux, 1)).numpy() / 2
    # predict_proba calibrates by default, with a calibrator fitted to these rows.
    proba = np.exp(clf.calibrator_.transform(np.log(proba)))
    # Weights that are all one are held as None.
    weights = None if weights is None else weights.numpy()
    expected = log_loss(target.numpy(), proba, sample_weight=weights)
    best = clf.history_[clf.best_epoch_ - 1, "valid_log_loss"]
    assert best == pytest.approx(expected, rel=1e-5)
    assert best == pytest.approx(min(clf.history_[:, "valid_log_loss"]))


def test_fitted_model_carries_no_training_rows(fitted):
    assert fitted.net_.train_split is None


@pytest.mark.parametrize("n_per_class", [1, 2, 3])
def test_tiny_data_still_fits(n_per_class):
    X = np.arange(n_per_class * 2 * 2, dtype=float).reshape(-1, 2)
    y = np.repeat([0, 1], n_per_class)
    clf = DualHeadClassifier(**FAST).fit(X, y)
    proba = clf.predict_proba(X)
    assert np.isfinite(proba).all()


def test_sample_weight_and_class_weight_shift_the_decision(binary):
    X, y = binary
    base = DualHeadClassifier(**FAST).fit(X, y).predict_proba(X)[:, 1].mean()
    weights = np.where(y == 1, 5.0, 1.0)
    by_sample = DualHeadClassifier(**FAST).fit(X, y, sample_weight=weights)
    by_class = DualHeadClassifier(class_weight={0: 1.0, 1: 5.0}, **FAST).fit(X, y)
    assert by_sample.predict_proba(X)[:, 1].mean() > base + 0.05
    np.testing.assert_allclose(
        by_class.predict_proba(X), by_sample.predict_proba(X), rtol=1e-5
    )


def test_balanced_class_weight(binary):
    X, y = binary
    keep = (y == 0) | (np.arange(len(y)) % 5 == 0)
    X, y = X[keep], y[keep]
    plain = DualHeadClassifier(**FAST).fit(X, y)
    balanced = DualHeadClassifier(class_weight="balanced", **FAST).fit(X, y)
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


def test_device_auto_resolves(binary):
    X, y = binary
    clf = DualHeadClassifier(device="auto", **FAST).fit(X, y)
    expected = "cuda" if torch.cuda.is_available() else clf.device_
    assert clf.device_ == expected


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("strategy", ["balanced", "focal_smooth"])
def test_cuda_model_predicts_on_cpu_after_unpickling(binary, monkeypatch, strategy):
    X, y = binary
    clf = DualHeadClassifier(strategy, device="cuda", **FAST).fit(X, y)
    expected = clf.predict_proba(X)
    payload = pickle.dumps(clf)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.warns(UserWarning, match="CUDA"):
        restored = pickle.loads(payload)
    np.testing.assert_allclose(restored.predict_proba(X), expected, atol=1e-5)


def test_dataframe_feature_names(binary):
    X, y = binary
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    clf = DualHeadClassifier(**FAST).fit(frame, y)
    np.testing.assert_array_equal(clf.feature_names_in_, frame.columns)
    np.testing.assert_allclose(clf.predict_proba(frame), clf.predict_proba(X))


def test_clone_keeps_params_not_state(fitted):
    twin = clone(fitted)
    assert twin.get_params() == fitted.get_params()
    assert not hasattr(twin, "net_")


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
        DualHeadClassifier(**FAST), X, y, cv=3, scoring=["roc_auc", "neg_log_loss"]
    )
    assert np.all(scores["test_roc_auc"] > 0.8)


def test_grid_search_over_strategy_and_weights_in_pipeline(three_class):
    X, y = three_class
    pipeline = make_pipeline(StandardScaler(), DualHeadClassifier(**FAST))
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
        (f"seed{seed}", DualHeadClassifier(**dict(FAST, random_state=seed)))
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


def test_networks_are_averaged_each_with_its_own_seed_split_and_calibration(
    binary, monkeypatch
):
    captured = _captured_datasets(monkeypatch)
    X, y = binary
    clf = DualHeadClassifier(**dict(FAST, n_networks=3)).fit(X, y)
    assert clf.n_networks_ == len(clf.nets_) == len(clf.calibrators_) == 3
    assert clf.net_ is clf.nets_[0] and clf.calibrator_ is clf.calibrators_[0]
    held_out = [frozenset(valid.rows.tolist()) for valid in captured[1::2]]
    assert len(set(held_out)) == 3
    weights = [net.module_.main_head.weight for net in clf.nets_]
    assert not torch.equal(weights[0], weights[1])
    temperatures = {calibrator.temperature_ for calibrator in clf.calibrators_}
    assert len(temperatures) == 3
    # predict_proba is the mean of the networks' calibrated probabilities.
    features = torch.from_numpy(clf.preprocessor_.transform(X))
    probabilities = []
    for net, calibrator in zip(clf.nets_, clf.calibrators_):
        main, aux = net.predict_logits(features)
        mean_head = (torch.softmax(main, 1) + torch.softmax(aux, 1)) / 2
        probabilities.append(np.exp(calibrator.transform(np.log(mean_head.numpy()))))
    np.testing.assert_allclose(
        clf.predict_proba(X), np.mean(probabilities, axis=0), rtol=1e-10
    )


def test_the_first_network_is_the_one_a_single_network_fit_trains(binary):
    X, y = binary
    one = DualHeadClassifier(**FAST).fit(X, y)
    three = DualHeadClassifier(**dict(FAST, n_networks=3)).fit(X, y)
    for name, value in one.net_.module_.state_dict().items():
        torch.testing.assert_close(
            three.net_.module_.state_dict()[name], value, rtol=0, atol=0
        )
    assert three.history_[:, "valid_log_loss"] == one.history_[:, "valid_log_loss"]
    assert not np.allclose(three.predict_proba(X), one.predict_proba(X))


def test_auto_trains_five_networks_below_ten_thousand_rows(binary, monkeypatch):
    import sk_dualhead.estimator as estimator_module

    X, y = binary
    params = dict(FAST, n_networks="auto", max_epochs=1)
    assert DualHeadClassifier().n_networks == "auto"
    assert estimator_module.AUTO_ONE_NETWORK_ROWS == 10_000
    assert DualHeadClassifier(**params).fit(X, y).n_networks_ == 5
    monkeypatch.setattr(estimator_module, "AUTO_ONE_NETWORK_ROWS", len(y))
    assert DualHeadClassifier(**params).fit(X, y).n_networks_ == 1


def test_verbose_names_each_network(binary, capsys):
    X, y = binary
    DualHeadClassifier(**dict(FAST, n_networks=2, max_epochs=2, verbose=1)).fit(X, y)
    out = capsys.readouterr().out
    assert out.index("Network 1 of 2") < out.index("Network 2 of 2")
    assert out.count("train_loss") == 2  # one table per network


def _captured_datasets(monkeypatch):
    import sk_dualhead.estimator as estimator_module

    captured = []
    real_dataset = estimator_module.TensorDataset

    def capture(*args, **kwargs):
        captured.append(real_dataset(*args, **kwargs))
        return captured[-1]

    monkeypatch.setattr(estimator_module, "TensorDataset", capture)
    return captured


def test_training_on_all_rows_uses_float32_features_in_place(binary, monkeypatch):
    captured = _captured_datasets(monkeypatch)
    X, y = binary
    X = X.astype(np.float32)
    params = dict(FAST, max_epochs=1, early_stopping=False, preprocessing=None)
    DualHeadClassifier(**params).fit(X, y)
    (train,) = captured
    assert np.shares_memory(train.X.numpy(), X)
    # Weights that are all one are not multiplied in at all.
    assert train.sample_weight is None


def test_held_out_rows_share_the_features_with_the_training_rows(binary, monkeypatch):
    captured = _captured_datasets(monkeypatch)
    X, y = binary
    X = X.astype(np.float32)
    params = dict(FAST, max_epochs=1, preprocessing=None)
    DualHeadClassifier(**params).fit(X, y)
    train, valid = captured
    # No copy of either split: both index the caller's array.
    assert train.X is valid.X
    assert np.shares_memory(train.X.numpy(), X)
    rows = np.concatenate([train.rows.numpy(), valid.rows.numpy()])
    np.testing.assert_array_equal(np.sort(rows), np.arange(len(X)))
    features, (target, _) = valid[:]
    np.testing.assert_array_equal(features.numpy(), X[valid.rows.numpy()])
    np.testing.assert_array_equal(target.numpy(), y[valid.rows.numpy()])


def test_unequal_weights_reach_the_loss(binary, monkeypatch):
    captured = _captured_datasets(monkeypatch)
    X, y = binary
    weights = np.where(y == 1, 2.0, 1.0)
    DualHeadClassifier(**dict(FAST, max_epochs=1)).fit(X, y, sample_weight=weights)
    train, valid = captured
    for dataset in (train, valid):
        _, (labels, weight) = dataset[:]
        weight, labels = weight.numpy(), labels.numpy()
        np.testing.assert_allclose(weight[labels == 1], 2 * weight[labels == 0][0])
