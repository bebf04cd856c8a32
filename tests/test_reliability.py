"""Reliability: bad input, failed and diverged fits, Ctrl-C, persistence, threads.

The tables below are the contract: every bad input either raises a
``ValueError`` or ``TypeError`` whose message names the problem (and the
column, where there is one) without leaking torch internals, or is handled
and gives valid probabilities.
"""

import io
import pickle
import re
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor

import joblib
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import pandas as hpd
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

import sk_dualhead
from sk_dualhead import DualHeadClassifier
from sk_dualhead._engine import PackedNet, member_log_proba
from sk_dualhead.losses import DualHeadLoss
from sk_dualhead.strategies import STRATEGIES, build_loss

TINY = dict(hidden_sizes=(8,), max_epochs=3, n_networks=1, random_state=0)
PREDICT_METHODS = ["predict", "predict_proba", "predict_log_proba", "decision_function"]

_rng = np.random.RandomState(0)
X = _rng.randn(40, 3)
y = np.arange(40) % 2
FRAME = pd.DataFrame(X, columns=["age", "bmi", "dose"])


def _with(frame, **columns):
    return frame.assign(**columns)


def assert_clear_error(excinfo, match):
    """The message names the problem and the error did not come out of torch."""
    message = str(excinfo.value)
    assert re.search(match, message, flags=re.S), message
    assert not re.search("tensor|torch", message, flags=re.I), message
    assert "/torch/" not in str(excinfo.traceback[-1].path)


def assert_valid_proba(proba, n_rows, n_classes=2):
    assert proba.shape == (n_rows, n_classes)
    assert np.isfinite(proba).all()
    assert ((proba >= 0) & (proba <= 1)).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-12)


# --------------------------------------------------------------- bad input

# (X, y, fit keyword arguments, estimator parameters, exception, message)
FIT_ERRORS = {
    "empty array": (X[:0], y[:0], {}, {}, ValueError, r"0 sample\(s\)"),
    "empty DataFrame": (FRAME.iloc[:0], y[:0], {}, {}, ValueError, r"0 sample\(s\)"),
    "no feature": (X[:, :0], y, {}, {}, ValueError, r"0 feature\(s\)"),
    "one sample": (
        X[:1],
        y[:1],
        {},
        {},
        ValueError,
        r"\(1 sample\(s\)\) contain 1 class.*got only 0",
    ),
    "one class": (X, np.zeros(40), {}, {}, ValueError, "1 class"),
    "y is None": (X, None, {}, {}, ValueError, "requires y"),
    "inf in X (array)": (
        np.where(X > 2, np.inf, X),
        y,
        {},
        {},
        ValueError,
        "X contains infinity",
    ),
    "inf in X (DataFrame)": (
        _with(FRAME, bmi=np.inf),
        y,
        {},
        {},
        ValueError,
        "infinity in column.*'bmi'",
    ),
    "NaN in X, preprocessing=None": (
        np.where(X > 2, np.nan, X),
        y,
        {},
        {"preprocessing": None},
        ValueError,
        "X contains NaN",
    ),
    "NaN in y": (
        X,
        np.where(y == 1, np.nan, 0.0),
        {},
        {},
        ValueError,
        "y contains NaN",
    ),
    "None in y": (
        X,
        np.array([None, *y[1:]], dtype=object),
        {},
        {},
        ValueError,
        "y contains NaN or None",
    ),
    "inf in y": (X, np.r_[np.inf, y[1:]], {}, {}, ValueError, "y contains infinity"),
    "continuous y": (X, X[:, 0], {}, {}, ValueError, "Unknown label type: continuous"),
    "2-D y": (X, np.c_[y, y], {}, {}, ValueError, r"1d array.*shape \(40, 2\)"),
    "X and y lengths differ": (
        X,
        y[:-1],
        {},
        {},
        ValueError,
        "X has 40 samples but y has 39",
    ),
    "sample_weight length differs": (
        X,
        y,
        {"sample_weight": np.ones(39)},
        {},
        ValueError,
        r"sample_weight.shape == \(39,\), expected \(40,\)",
    ),
    "negative sample_weight": (
        X,
        y,
        {"sample_weight": np.r_[-1.0, np.ones(39)]},
        {},
        ValueError,
        "Negative values.*sample_weight",
    ),
    "all-zero sample_weight": (
        X,
        y,
        {"sample_weight": np.zeros(40)},
        {},
        ValueError,
        "Sample weights must contain at least one non-zero",
    ),
    "NaN in sample_weight": (
        X,
        y,
        {"sample_weight": np.r_[np.nan, np.ones(39)]},
        {},
        ValueError,
        "sample_weight contains NaN",
    ),
    "weight on one class only": (
        X,
        y,
        {"sample_weight": (y == 1).astype(float)},
        {},
        ValueError,
        "Only one class has positive sample_weight",
    ),
    "3-D X": (X.reshape(40, 3, 1), y, {}, {}, ValueError, "dim 3"),
    "complex X (array)": (X + 1j, y, {}, {}, ValueError, "Complex data.*complex128"),
    "complex X (DataFrame)": (
        _with(FRAME, bmi=FRAME.bmi + 1j),
        y,
        {},
        {},
        ValueError,
        "Complex data.*'bmi'",
    ),
    "strings in an object array": (
        np.array([[1.0, "a"]] * 40, dtype=object),
        y,
        {},
        {},
        ValueError,
        "object array.*'a'.*DataFrame",
    ),
    "string column, preprocessing=None": (
        _with(FRAME, bmi="high"),
        y,
        {},
        {"preprocessing": None},
        ValueError,
        "'bmi' of X are not numeric.*preprocessing='auto'",
    ),
    "datetime column": (
        _with(FRAME, dose=pd.Timestamp("2020-01-01")),
        y,
        {},
        {},
        TypeError,
        r"'dose' has dtype datetime64\[\w+\]: .*Timedelta\(days=1\).*or drop it",
    ),
    "timezone-aware datetime column": (
        _with(FRAME, dose=pd.Timestamp("2020-01-01", tz="Europe/Oslo")),
        y,
        {},
        {},
        TypeError,
        "'dose' has dtype datetime64.*Europe/Oslo.*days since",
    ),
    "list cells": (
        _with(FRAME, dose=[[1.0, 2.0]] * 40),
        y,
        {},
        {},
        TypeError,
        "'dose' holds list values .*one value per cell.*or drop it",
    ),
    "dict cells": (
        _with(FRAME, dose=[{"mg": 5}, "high"] * 20),
        y,
        {},
        {},
        TypeError,
        "'dose' holds dict values .*one value per cell",
    ),
    "array cells (a Parquet list column)": (
        _with(FRAME, dose=[np.arange(2.0)] * 40),
        y,
        {},
        {},
        TypeError,
        "'dose' holds ndarray values",
    ),
    "duplicate column names": (
        FRAME.set_axis(["age", "age", "dose"], axis=1),
        y,
        {},
        {},
        ValueError,
        "duplicate column names: 'age'",
    ),
    "only constant columns": (
        np.ones((40, 3)),
        y,
        {},
        {},
        ValueError,
        "No usable feature remains",
    ),
    "1e300, preprocessing=None": (
        X * 1e300,
        y,
        {},
        {"preprocessing": None},
        ValueError,
        "too large for float32.*preprocessing='auto'",
    ),
}


@pytest.mark.parametrize(
    "X_bad, y_bad, fit_kwargs, params, error, match",
    list(FIT_ERRORS.values()),
    ids=list(FIT_ERRORS),
)
def test_bad_fit_input_gets_a_clear_error(
    X_bad, y_bad, fit_kwargs, params, error, match
):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        with pytest.raises(error) as excinfo:
            DualHeadClassifier(**{**TINY, **params}).fit(X_bad, y_bad, **fit_kwargs)
    assert_clear_error(excinfo, match)


# (parameters, message); each is an InvalidParameterError, both a ValueError
# and a TypeError, or a ValueError from the checks constraints cannot express.
INVALID_PARAMETERS = {
    "lr=-1": ({"lr": -1}, "'lr' parameter.*range"),
    "lr=0": ({"lr": 0}, "'lr' parameter"),
    "max_epochs=0": ({"max_epochs": 0}, "'max_epochs' parameter"),
    "batch_size=0": ({"batch_size": 0}, "'batch_size' parameter"),
    "dropout=1": ({"dropout": 1.0}, "'dropout' parameter"),
    "hidden_sizes='8'": ({"hidden_sizes": "8"}, "'hidden_sizes' parameter"),
    "hidden_sizes=(8, 0)": ({"hidden_sizes": (8, 0)}, "hidden_sizes must be"),
    "strategy='nope'": ({"strategy": "nope"}, "'strategy' parameter.*balanced"),
    "max_grad_norm=0": ({"max_grad_norm": 0}, "'max_grad_norm' parameter"),
    "loss_weights=(1, 2)": ({"loss_weights": (1, 2)}, "loss_weights must be 3"),
    "class_weight='x'": ({"class_weight": "x"}, "'class_weight' parameter"),
    "validation_fraction=1": ({"validation_fraction": 1.0}, "'validation_fraction'"),
    "device='tpu'": ({"device": "tpu"}, "device='tpu'"),
    "preprocessing='scale'": ({"preprocessing": "scale"}, "'preprocessing' parameter"),
    "n_networks=0": ({"n_networks": 0}, "'n_networks' parameter"),
    "n_networks='many'": ({"n_networks": "many"}, "'n_networks' parameter.*auto"),
}


@pytest.mark.parametrize(
    "params, match", list(INVALID_PARAMETERS.values()), ids=list(INVALID_PARAMETERS)
)
def test_invalid_hyperparameter_gets_a_clear_error(params, match):
    with pytest.raises(ValueError) as excinfo:
        DualHeadClassifier(**{**TINY, **params}).fit(X, y)
    assert_clear_error(excinfo, match)


@pytest.fixture(scope="module")
def frame_model():
    return DualHeadClassifier(**TINY).fit(FRAME, y)


@pytest.fixture(scope="module")
def array_model():
    return DualHeadClassifier(**TINY).fit(X, y)


@pytest.fixture(scope="module")
def raw_model():
    return DualHeadClassifier(preprocessing=None, **TINY).fit(X, y)


# (fitted model fixture, X at predict time, exception, message)
PREDICT_ERRORS = {
    "missing column": (
        "frame_model",
        FRAME[["age", "bmi"]],
        ValueError,
        "missing:\n- dose",
    ),
    "extra column": (
        "frame_model",
        _with(FRAME, extra=1.0),
        ValueError,
        "unseen at fit time:\n- extra",
    ),
    "renamed column": (
        "frame_model",
        FRAME.rename(columns={"bmi": "weight"}),
        ValueError,
        "unseen at fit time:\n- weight.*missing:\n- bmi",
    ),
    "reordered columns": (
        "frame_model",
        FRAME[["bmi", "age", "dose"]],
        ValueError,
        "same order",
    ),
    "duplicate column names": (
        "frame_model",
        FRAME.set_axis(["age", "bmi", "bmi"], axis=1),
        ValueError,
        "duplicate column names: 'bmi'",
    ),
    "numeric column now strings": (
        "frame_model",
        _with(FRAME, bmi="high"),
        TypeError,
        "'bmi'.* numeric during fit but are not numeric now",
    ),
    "inf in X (DataFrame)": (
        "frame_model",
        _with(FRAME, dose=-np.inf),
        ValueError,
        "infinity in column.*'dose'",
    ),
    "empty DataFrame": ("frame_model", FRAME.iloc[:0], ValueError, r"0 sample\(s\)"),
    "wrong number of features": (
        "array_model",
        X[:, :2],
        ValueError,
        "X has 2 features, but DualHeadClassifier is expecting 3",
    ),
    "empty array": ("array_model", X[:0], ValueError, r"0 sample\(s\)"),
    "1-D X": ("array_model", X[0], ValueError, "Expected 2D array, got 1D array"),
    "3-D X": ("array_model", X.reshape(40, 3, 1), ValueError, "dim 3"),
    "inf in X (array)": (
        "array_model",
        np.full((2, 3), np.inf),
        ValueError,
        "infinity",
    ),
    "complex X": ("array_model", X + 0j, ValueError, "Complex data"),
    "strings in an object array": (
        "array_model",
        np.array([[1.0, 2.0, "a"]], dtype=object),
        ValueError,
        "object array.*'a'",
    ),
    "NaN, preprocessing=None": (
        "raw_model",
        np.full((2, 3), np.nan),
        ValueError,
        "NaN",
    ),
    "1e300, preprocessing=None": (
        "raw_model",
        X * 1e300,
        ValueError,
        "too large for float32",
    ),
}


@pytest.mark.parametrize("method", PREDICT_METHODS)
@pytest.mark.parametrize(
    "model, X_bad, error, match",
    list(PREDICT_ERRORS.values()),
    ids=list(PREDICT_ERRORS),
)
def test_bad_predict_input_gets_a_clear_error(
    request, method, model, X_bad, error, match
):
    model = request.getfixturevalue(model)
    with pytest.raises(error) as excinfo:
        getattr(model, method)(X_bad)
    assert_clear_error(excinfo, match)


def _nullable_frame(n=40):
    """Columns of pandas' nullable dtypes, each with pd.NA."""
    rng = np.random.RandomState(2)
    frame = pd.DataFrame(
        {
            "count": pd.array(rng.randint(0, 9, n), dtype="Int64"),
            "flag": pd.array(rng.rand(n) < 0.5, dtype="boolean"),
            "site": pd.array(rng.choice(["north", "south"], n), dtype="string"),
            "dose": pd.array(rng.rand(n), dtype="Float64"),
        }
    )
    for i, column in enumerate(frame.columns):
        frame.loc[i::7, column] = pd.NA
    return frame


def _mixed_frame(n=40):
    return pd.DataFrame(
        {
            "age": np.linspace(20, 80, n),
            "sex": pd.Categorical(np.array(["f", "m"])[np.arange(n) % 2]),
            "smoker": (np.arange(n) % 3 == 0),
            "site": np.array(["a", "b", "c", "d"])[np.arange(n) % 4],
            "mixed": np.array([1, "a", 2.5, None, True], dtype=object)[
                np.arange(n) % 5
            ],
        }
    )


# (fit X, fit y, predict X, estimator parameters); each gives valid probabilities.
HANDLED = {
    "sparse X (densified)": (sp.csr_matrix(X), y, sp.csr_matrix(X), {}),
    "sparse X, preprocessing=None": (
        sp.csr_matrix(X),
        y,
        sp.csc_matrix(X),
        {"preprocessing": None},
    ),
    "NaN in X": (np.where(X > 1, np.nan, X), y, np.full((3, 3), np.nan), {}),
    "1e300 in X": (X * 1e300, y, X * -1e300, {}),
    "1e-300 in X": (X * 1e-300, y, X * 1e-300, {}),
    "1e37, preprocessing=None (within float32)": (
        X * 1e37,
        y,
        X * 1e37,
        {"preprocessing": None},
    ),
    "mixed dtypes and an object column mixing types": (
        _mixed_frame(),
        y,
        _mixed_frame(),
        {},
    ),
    "unseen categories": (
        _mixed_frame(),
        y,
        _mixed_frame().assign(site="zzz", mixed=object()),
        {},
    ),
    "column all missing at predict": (
        _mixed_frame(),
        y,
        _mixed_frame().assign(age=np.nan, sex=None),
        {},
    ),
    "array at predict after a DataFrame fit": (FRAME, y, X, {}),
    "y of shape (n, 1)": (X, y[:, None], X, {}),
    "one sample per class": (X[:2], y[:2], X, {}),
    "nullable Int64, boolean, string and Float64 with pd.NA": (
        _nullable_frame(),
        y,
        _nullable_frame().iloc[::-1],
        {},
    ),
    "nullable columns all pd.NA at predict": (
        _nullable_frame(),
        y,
        _nullable_frame().assign(count=pd.NA, flag=pd.NA, site=pd.NA, dose=pd.NA).astype(
            _nullable_frame().dtypes
        ),
        {},
    ),
    "nullable Int64 and Float64 without pd.NA, preprocessing=None": (
        _nullable_frame()[["count", "dose"]].fillna(1),
        y,
        _nullable_frame()[["count", "dose"]].fillna(2),
        {"preprocessing": None},
    ),
    "bool columns, preprocessing=None": (
        _with(FRAME, flag=np.arange(40) % 2 == 0),
        y,
        _with(FRAME, flag=True),
        {"preprocessing": None},
    ),
}


@pytest.mark.parametrize(
    "X_fit, y_fit, X_new, params", list(HANDLED.values()), ids=list(HANDLED)
)
def test_handled_input_gives_valid_probabilities(X_fit, y_fit, X_new, params):
    with warnings.catch_warnings():
        # Conversion and feature-name warnings are expected here.
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        from sklearn.exceptions import DataConversionWarning

        warnings.simplefilter("ignore", DataConversionWarning)
        clf = DualHeadClassifier(**{**TINY, **params}).fit(X_fit, y_fit)
        assert_valid_proba(clf.predict_proba(X_new), X_new.shape[0])


# -------------------------------------------------- failed and diverged fits


def _poison_weights_at_epoch(monkeypatch, epoch, value=float("nan")):
    """Make the network's weights non-finite at the start of ``epoch``."""
    original = PackedNet.on_epoch_begin

    def on_epoch_begin(net, *args, **kwargs):
        original(net, *args, **kwargs)
        if len(net.history) == epoch:
            with torch.no_grad():
                next(net.module_.parameters()).fill_(value)

    monkeypatch.setattr(PackedNet, "on_epoch_begin", on_epoch_begin)


def _interrupt_at_epoch(monkeypatch, epoch):
    """Simulate a user's Ctrl-C at the start of ``epoch``."""
    original = PackedNet.on_epoch_begin

    def on_epoch_begin(net, *args, **kwargs):
        original(net, *args, **kwargs)
        if len(net.history) == epoch:
            raise KeyboardInterrupt

    monkeypatch.setattr(PackedNet, "on_epoch_begin", on_epoch_begin)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
@pytest.mark.parametrize("early_stopping", [True, False])
def test_diverged_training_names_the_epoch_and_a_remedy(
    monkeypatch, value, early_stopping
):
    _poison_weights_at_epoch(monkeypatch, 3, value)
    clf = DualHeadClassifier(
        **{**TINY, "max_epochs": 10, "lr": 0.5}, early_stopping=early_stopping
    )
    with pytest.raises(ValueError) as excinfo:
        clf.fit(X, y)
    assert_clear_error(
        excinfo,
        r"Training diverged: the train_\w+ is (nan|inf) at epoch 3\. "
        r"Lower the learning rate \(lr=0\.5\).*max_grad_norm",
    )
    with pytest.raises(NotFittedError):
        check_is_fitted(clf)


def test_a_too_large_learning_rate_is_reported_not_hidden():
    clf = DualHeadClassifier(**{**TINY, "max_epochs": 30}, lr=1e6, early_stopping=False)
    with pytest.raises(ValueError) as excinfo:
        clf.fit(X, y)
    assert_clear_error(excinfo, r"Training diverged: .* at epoch \d+\. .*lr=1000000\.0")


def _fitted_state(clf):
    return {
        "keys": sorted(clf.__dict__),
        "n_features_in_": clf.n_features_in_,
        "classes_": clf.classes_.tolist(),
        "network_": id(clf.network_),
        "proba": clf.predict_proba(X),
    }


def test_failed_refit_leaves_the_previous_model_intact(monkeypatch):
    clf = DualHeadClassifier(**TINY).fit(X, y)
    before = _fitted_state(clf)
    labels = np.array(["low", "high"])[y]
    wide = pd.DataFrame(np.c_[X, X], columns=[f"c{i}" for i in range(6)])
    failures = [
        # Fails after validate_data has set n_features_in_ and feature names.
        lambda: clf.fit(wide, np.zeros(40)),
        # Fails in training, after classes_, preprocessor_ and the net are built.
        lambda: (_poison_weights_at_epoch(monkeypatch, 2), clf.fit(wide, labels)),
        # A Ctrl-C before any epoch is complete.
        lambda: (_interrupt_at_epoch(monkeypatch, 1), clf.fit(wide, labels)),
    ]
    for fail in failures:
        with pytest.raises((ValueError, KeyboardInterrupt)):
            fail()
        monkeypatch.undo()
        after = _fitted_state(clf)
        np.testing.assert_array_equal(after.pop("proba"), before["proba"])
        assert after == {k: v for k, v in before.items() if k != "proba"}
        assert not hasattr(clf, "feature_names_in_")


def test_max_grad_norm_clips_every_step(monkeypatch):
    norms = []
    original_step = torch.optim.AdamW.step

    def step(optimizer, closure):
        # skorch computes (and clips) the gradients inside the closure.
        loss = closure()
        grads = [p.grad for group in optimizer.param_groups for p in group["params"]]
        norms.append(
            torch.linalg.vector_norm(
                torch.stack([torch.linalg.vector_norm(g) for g in grads])
            ).item()
        )
        original_step(optimizer)
        return loss

    monkeypatch.setattr(torch.optim.AdamW, "step", step)
    DualHeadClassifier(**TINY).fit(X, y)
    assert max(norms) > 1e-3, "the check below must be able to fail"
    norms.clear()
    clf = DualHeadClassifier(max_grad_norm=1e-3, **TINY).fit(X, y)
    assert norms and max(norms) <= 1e-3 * (1 + 1e-4)
    assert_valid_proba(clf.predict_proba(X), len(X))


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
@pytest.mark.parametrize("scale", [1e4, 1e15, 1e30])
def test_every_loss_is_finite_for_extreme_logits(strategy, scale):
    loss = build_loss(strategy, class_counts=np.array([50, 30, 2]))
    criterion = DualHeadLoss(loss.main_loss, loss.aux_loss, loss.weights)
    main = torch.tensor(
        [[scale, -scale, 0.0], [-scale, scale, 0.0], [0.0, 0.0, scale]],
        requires_grad=True,
    )
    aux = torch.tensor(
        [[-scale, scale, 0.0], [scale, 0.0, -scale], [0.0, 0.0, 0.0]],
        requires_grad=True,
    )
    terms = criterion(main, aux, torch.tensor([1, 1, 2]), torch.ones(3))
    terms[0].backward()
    assert torch.isfinite(terms).all(), terms
    assert torch.isfinite(main.grad).all() and torch.isfinite(aux.grad).all()


# ------------------------------------------------------------------ Ctrl-C


@pytest.mark.parametrize("n_networks", [1, 3])
def test_ctrl_c_keeps_the_best_epoch_so_far_with_a_warning(monkeypatch, n_networks):
    _interrupt_at_epoch(monkeypatch, 6)
    clf = DualHeadClassifier(
        **{**TINY, "max_epochs": 30, "lr": 0.05, "n_networks": n_networks},
        n_iter_no_change=50,
        tol=0.0,
    )
    with pytest.warns(
        UserWarning,
        match=r"interrupted.*after 5 complete epoch.*weights of its best epoch so far",
    ):
        clf.fit(X, y)
    log_probas = member_log_proba(
        clf.network_, clf.members_, torch.from_numpy(clf.preprocessor_.transform(X)),
        predict_head=clf.predict_head, prior_correction=None,
    )
    for member, log_proba in zip(clf.members_, log_probas):
        assert member.n_epochs == len(member.history) == 5
        losses = [row["valid_log_loss"] for row in member.history]
        assert member.best_epoch == int(np.argmin(losses)) + 1
        # The member holds its best epoch's weights and calibrator.
        rows = member.valid_rows
        held_out = -log_proba[rows, y[rows]].mean()
        assert held_out == pytest.approx(min(losses), rel=1e-5)
    assert_valid_proba(clf.predict_proba(X), len(X))


def test_ctrl_c_without_early_stopping_keeps_the_epochs_done(monkeypatch):
    _interrupt_at_epoch(monkeypatch, 4)
    clf = DualHeadClassifier(**{**TINY, "max_epochs": 30}, early_stopping=False)
    with pytest.warns(UserWarning, match="3 complete epoch.*weights reached"):
        clf.fit(X, y)
    (member,) = clf.members_
    assert member.n_epochs == member.best_epoch == 3
    assert_valid_proba(clf.predict_proba(X), len(X))


def test_early_stopping_is_not_taken_for_ctrl_c():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clf = DualHeadClassifier(
            hidden_sizes=(32,),
            lr=0.1,
            max_epochs=200,
            n_iter_no_change=2,
            n_networks=2,
            random_state=0,
        ).fit(X, y)
    assert all(member.n_epochs < 200 for member in clf.members_)


def test_ctrl_c_in_the_first_epoch_propagates(monkeypatch):
    _interrupt_at_epoch(monkeypatch, 1)
    clf = DualHeadClassifier(**TINY)
    with pytest.raises(KeyboardInterrupt):
        clf.fit(X, y)
    with pytest.raises(NotFittedError):
        check_is_fitted(clf)


# ------------------------------------------------------------- persistence


def _joblib_round_trip(model):
    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    buffer.seek(0)
    return joblib.load(buffer)


@pytest.mark.parametrize(
    "round_trip",
    [lambda m: pickle.loads(pickle.dumps(m)), _joblib_round_trip],
    ids=["pickle", "joblib"],
)
def test_round_trip_is_silent_and_identical(frame_model, round_trip):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        restored = round_trip(frame_model)
    np.testing.assert_array_equal(
        restored.predict_proba(FRAME), frame_model.predict_proba(FRAME)
    )
    assert frame_model.__getstate__()["_sk_dualhead_version"] == sk_dualhead.__version__


def test_version_mismatch_warns_on_load(array_model, monkeypatch):
    monkeypatch.setattr(sk_dualhead.estimator, "__version__", "0.0.1")
    payload = pickle.dumps(array_model)
    monkeypatch.undo()
    with pytest.warns(
        UserWarning,
        match=f"saved with sk_dualhead version 0.0.1 and is loaded with version "
        f"{re.escape(sk_dualhead.__version__)}",
    ):
        restored = pickle.loads(payload)
    np.testing.assert_array_equal(restored.predict(X), array_model.predict(X))


def test_model_without_a_version_warns_on_load(array_model):
    state = array_model.__getstate__()
    del state["_sk_dualhead_version"]
    restored = DualHeadClassifier.__new__(DualHeadClassifier)
    with pytest.warns(UserWarning, match="version unknown"):
        restored.__setstate__(state)


def test_fit_writes_no_file(tmp_path, monkeypatch):
    # Early stopping keeps the best weights in memory, so parallel searches
    # cannot collide on a checkpoint file.
    monkeypatch.chdir(tmp_path)
    clf = DualHeadClassifier(**{**TINY, "max_epochs": 20}).fit(FRAME, y)
    pickle.dumps(clf)
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------- threads


def test_predict_proba_from_many_threads(frame_model):
    frames = [FRAME.iloc[i::4] for i in range(4)] * 4
    expected = [frame_model.predict_proba(frame) for frame in frames]
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(frame_model.predict_proba, frames))
    for result, reference in zip(results, expected):
        np.testing.assert_array_equal(result, reference)


def test_eight_threads_predicting_at_once_agree_bit_for_bit(frame_model):
    frames = [FRAME, FRAME.iloc[::-1], FRAME.iloc[:7], FRAME.iloc[5:6]] * 2
    expected = [frame_model.predict_proba(frame) for frame in frames]
    start = threading.Barrier(len(frames))

    def predict(frame):
        start.wait()  # all eight inside predict_proba together
        return [frame_model.predict_proba(frame) for _ in range(20)]

    with ThreadPoolExecutor(max_workers=len(frames)) as pool:
        results = list(pool.map(predict, frames))
    for repeats, reference in zip(results, expected):
        for result in repeats:
            np.testing.assert_array_equal(result, reference)


# ------------------------------------------------------------ property-based

_LABELS = {
    "int": [0, 1, 2],
    "str": ["no", "yes", "maybe"],
    "bool": [False, True],
    "object with None": ["no", "yes", None],
}
_OBJECTS = [1, "a", 2.5, None, True, "b", np.nan]
_floats = st.floats(allow_nan=True, allow_infinity=True, width=64)


@st.composite
def _column(draw, n_rows):
    kind = draw(
        st.sampled_from(["float", "int", "bool", "category", "object", "string"])
    )
    if kind == "float":
        return np.array(draw(st.lists(_floats, min_size=n_rows, max_size=n_rows)))
    if kind == "int":
        values = st.integers(-(10**12), 10**12)
        return np.array(
            draw(st.lists(values, min_size=n_rows, max_size=n_rows)), dtype=np.int64
        )
    if kind == "bool":
        return np.array(draw(st.lists(st.booleans(), min_size=n_rows, max_size=n_rows)))
    levels = st.sampled_from(["a", "b", "c", None])
    values = draw(st.lists(levels, min_size=n_rows, max_size=n_rows))
    if kind == "category":
        return pd.Categorical(values)
    if kind == "string":
        return pd.array(values, dtype="string")
    objects = st.sampled_from(_OBJECTS)
    return np.array(
        draw(st.lists(objects, min_size=n_rows, max_size=n_rows)), dtype=object
    )


@st.composite
def _tables(draw):
    n_rows = draw(st.integers(0, 12))
    n_columns = draw(st.integers(1, 4))
    X = pd.DataFrame(
        {f"c{j}": draw(_column(n_rows)) for j in range(n_columns)}, index=range(n_rows)
    )
    labels = _LABELS[draw(st.sampled_from(sorted(_LABELS)))]
    y = np.array(
        draw(st.lists(st.sampled_from(labels), min_size=n_rows, max_size=n_rows))
    )
    if None in labels:
        y = y.astype(object)
    return X, y


def _assert_clear_error_or_valid_proba(X_fit, y_fit, **params):
    clf = DualHeadClassifier(**{**TINY, **params})
    try:
        with warnings.catch_warnings():
            # Dropped constant columns and the like are reported as warnings.
            warnings.simplefilter("ignore", UserWarning)
            clf.fit(X_fit, y_fit)
    except (ValueError, TypeError) as exc:
        message = str(exc)
        assert message and not re.search("tensor|torch", message, flags=re.I), message
        # Shown by --hypothesis-show-statistics: which errors the tables hit.
        event(f"{type(exc).__name__}: {message[:40]}")
        return
    event("valid probabilities")
    proba = clf.predict_proba(X_fit)
    assert_valid_proba(proba, len(X_fit), len(clf.classes_))


_PROPERTY_SETTINGS = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@_PROPERTY_SETTINGS
@given(table=_tables())
def test_random_tables_give_a_clear_error_or_valid_probabilities(table):
    _assert_clear_error_or_valid_proba(*table)


@_PROPERTY_SETTINGS
@given(
    shape=st.tuples(st.integers(0, 12), st.integers(1, 4)),
    data=st.data(),
    preprocessing=st.sampled_from(["auto", None]),
)
def test_random_arrays_give_a_clear_error_or_valid_probabilities(
    shape, data, preprocessing
):
    n_rows, n_columns = shape
    values = data.draw(
        st.lists(_floats, min_size=n_rows * n_columns, max_size=n_rows * n_columns)
    )
    X_fit = np.array(values, dtype=float).reshape(n_rows, n_columns)
    y_fit = np.array(
        data.draw(st.lists(st.integers(0, 2), min_size=n_rows, max_size=n_rows))
    )
    _assert_clear_error_or_valid_proba(X_fit, y_fit, preprocessing=preprocessing)


# ------------------------------------- property-based, hypothesis.extra.pandas

_EXTREME = st.sampled_from(
    [1e300, -1e300, 1.7e308, -1.7e308, 1e-300, 5e-324, -0.0, np.nan]
) | st.floats(-1e6, 1e6)

#: Column kinds of the generated tables: keyword arguments of
#: ``hypothesis.extra.pandas.column``, and the dtype the column is cast to.
_PANDAS_COLUMNS = {
    "float with NaN": (dict(dtype=float, elements=_floats.filter(np.isfinite) | st.just(np.nan)), None),
    "extreme floats": (dict(dtype=float, elements=_EXTREME), None),
    "int64": (dict(dtype="int64", elements=st.integers(-(2**62), 2**62)), None),
    "bool": (dict(dtype=bool), None),
    "text with None": (dict(dtype=object, elements=st.sampled_from(["a", "b", "ç", None])), None),
    "constant": (dict(dtype=float, elements=st.just(7.0)), None),
    "all missing": (dict(dtype=float, elements=st.just(np.nan)), None),
    "Int64 with pd.NA": (
        dict(dtype=float, elements=st.integers(-5, 5).map(float) | st.just(np.nan)),
        "Int64",
    ),
    "boolean with pd.NA": (dict(dtype=object, elements=st.sampled_from([True, False, None])), "boolean"),
    "string with pd.NA": (dict(dtype=object, elements=st.sampled_from(["x", "y", None])), "string"),
}


@st.composite
def _pandas_tables(draw):
    n_rows = draw(st.integers(2, 16))
    kinds = draw(st.lists(st.sampled_from(sorted(_PANDAS_COLUMNS)), min_size=1, max_size=4))
    columns = [hpd.column(f"c{i}", **_PANDAS_COLUMNS[kind][0]) for i, kind in enumerate(kinds)]
    X = draw(hpd.data_frames(columns, index=hpd.range_indexes(n_rows, n_rows)))
    for i, kind in enumerate(kinds):
        dtype = _PANDAS_COLUMNS[kind][1]
        if dtype is not None:
            X[f"c{i}"] = X[f"c{i}"].astype(dtype)
    if draw(st.booleans()):
        X["copy_of_c0"] = X["c0"]  # a duplicated column, under another name
    # Two or three classes, some with a single row.
    labels = draw(st.sampled_from([["no", "yes"], [0, 1, 2], [False, True]]))
    y = np.array(draw(st.lists(st.sampled_from(labels), min_size=n_rows, max_size=n_rows)))
    event(f"kinds: {', '.join(sorted(set(kinds)))}")
    return X, y


@_PROPERTY_SETTINGS
@given(table=_pandas_tables())
def test_pandas_tables_give_a_clear_error_or_valid_probabilities(table):
    _assert_clear_error_or_valid_proba(*table)
