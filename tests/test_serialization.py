"""The safe model format: round trips, refusals, damaged and foreign files."""

import contextlib
import dataclasses
import json
import pickle
import warnings
import zipfile

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import fast_classifier
from sklearn.datasets import make_classification
from sklearn.preprocessing import StandardScaler

import sk_dualhead
from sk_dualhead import _network, serialization
from sk_dualhead.calibration import PlattScaling, TemperatureScaling
from sk_dualhead.preprocessing import TabularPreprocessor
from sk_dualhead.serialization import ModelFormatError

TINY = dict(max_epochs=3, n_networks=1, hidden_sizes=(16,), random_state=0)

FRAME = pd.DataFrame(
    {
        "age": [25.0, 32.0, np.nan, 51.0, 46.0, 38.0],
        "colour": ["red", "blue", "red", "green", None, "blue"],
        "city": ["Oslo", "Lima", "Pune", "Kyiv", "Oslo", "Rome"],
        "flag": [True, False, True, True, False, False],
    }
)


@pytest.fixture(scope="module")
def preprocessor():
    return TabularPreprocessor(max_onehot_cardinality=3).fit(FRAME)


def _small_network():
    """A packed network, which carries the init_kwargs to rebuild it."""
    torch.manual_seed(0)
    return _network.PackedDualHeadNetwork(
        n_members=2,
        n_continuous=3,
        n_classes=3,
        hidden_sizes=(5,),
        normalization="batchnorm",
        category_cardinalities=(4,),
    ).eval()


def _round_trip(obj, tmp_path):
    path = tmp_path / "model.skdh"
    serialization.save(obj, path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return sk_dualhead.load(path)


def test_preprocessor_round_trip_is_identical(preprocessor, tmp_path):
    restored = _round_trip(preprocessor, tmp_path)
    assert type(restored) is TabularPreprocessor
    assert restored.get_params() == preprocessor.get_params()
    assert sorted(vars(restored)) == sorted(vars(preprocessor))
    np.testing.assert_array_equal(
        restored.transform(FRAME), preprocessor.transform(FRAME)
    )
    for name in ("onehot_categories_", "embedding_categories_"):
        for before, after in zip(getattr(preprocessor, name), getattr(restored, name)):
            assert after.dtype == before.dtype == object
            np.testing.assert_array_equal(after, before)
    assert restored.category_cardinalities_ == preprocessor.category_cardinalities_


def test_calibrators_and_a_network_round_trip(tmp_path):
    logits = np.random.RandomState(0).normal(size=(30, 2))
    labels = np.arange(30) % 2
    holder = TabularPreprocessor()
    holder.calibrators_ = [
        TemperatureScaling().fit(logits, labels),
        PlattScaling().fit(logits, labels),
        None,
    ]
    holder.network_ = _small_network()
    restored = _round_trip(holder, tmp_path)
    for before, after in zip(holder.calibrators_, restored.calibrators_):
        if before is None:
            assert after is None
            continue
        assert type(after) is type(before) and vars(after) == vars(before)
        np.testing.assert_array_equal(after.transform(logits), before.transform(logits))
    network = restored.network_
    assert type(network) is type(holder.network_) and not network.training
    assert network.init_kwargs == holder.network_.init_kwargs
    X = torch.cat([torch.randn(7, 3), torch.randint(0, 4, (7, 1)).float()], dim=1)
    with torch.no_grad():
        for before, after in zip(holder.network_(X), network(X)):
            torch.testing.assert_close(after, before, rtol=0, atol=0)
    state = holder.network_.state_dict()
    assert any("running_mean" in name for name in state)  # buffers travel too
    for name, value in network.state_dict().items():
        torch.testing.assert_close(value, state[name], rtol=0, atol=0)


@dataclasses.dataclass
class Record:
    """Stands in for the estimator's per-member records."""

    calibrator: object
    history: list
    best_epoch: int
    valid_rows: object


@pytest.fixture
def allow_record(monkeypatch):
    monkeypatch.setattr(
        serialization,
        "ALLOWED_CLASSES",
        serialization.ALLOWED_CLASSES + (f"{__name__}.Record",),
    )


def test_a_tree_of_every_kind_round_trips(allow_record, tmp_path):
    values = {
        "none": None,
        "bool": True,
        "int": -(2**70),
        "floats": [0.1, -0.0, 1e-310, float("inf"), float("-inf")],
        "nan": float("nan"),
        "str": "naïve ✓",
        "tuple": (1, ("a", 2.5)),
        "int keys": {0: "a", 1.5: "b", None: "c", (1, 2): "d"},
        "tagged key": {"$type": "not a tag"},
        "numpy scalars": [np.float32(1.5), np.int64(-3), np.bool_(True), np.str_("x")],
        "float16": np.array([1.5, -2.25], dtype=np.float16),
        "uint64": np.array([2**64 - 1], dtype=np.uint64),
        "big-endian": np.array([1.0, 2.0], dtype=">f8"),
        "strings": np.array([["a", "bb"], ["ccc", "é"]]),
        "bytes": np.array([b"a", b"\x00b"]),
        "datetimes": np.array(["2020-01-01", "NaT"], dtype="datetime64[ns]"),
        "empty": np.zeros((0, 3)),
        "scalar array": np.array(7, dtype=np.int32),
        "fortran": np.asfortranarray(np.arange(6.0).reshape(2, 3)),
        "bool array": np.array([True, False]),
        "labels": np.array(["no", 3, True, None], dtype=object),
        "tensor": torch.arange(4, dtype=torch.int16),
        "parameter": torch.nn.Parameter(torch.ones(2)),
        "bfloat16": torch.tensor([1.5], dtype=torch.bfloat16),
        "record": Record(
            calibrator=TemperatureScaling(),
            history=[{"epoch": 1, "valid_loss": 0.5}],
            best_epoch=1,
            valid_rows=np.array([3, 1, 2]),
        ),
    }
    holder = TabularPreprocessor()
    holder.values_ = values
    restored = _round_trip(holder, tmp_path).values_
    assert list(restored) == list(values)
    for name, before in values.items():
        after = restored[name]
        if isinstance(before, np.ndarray):
            assert after.dtype == before.dtype.newbyteorder("=") or (
                after.dtype == before.dtype
            ), name
            np.testing.assert_array_equal(after, before)
        elif isinstance(before, torch.Tensor):
            assert type(after) is type(before) and after.dtype == before.dtype
            torch.testing.assert_close(after, before, rtol=0, atol=0)
        elif isinstance(before, Record):
            assert type(after) is Record
            np.testing.assert_array_equal(after.valid_rows, before.valid_rows)
            assert after.history == before.history and after.best_epoch == 1
            assert type(after.calibrator) is TemperatureScaling
        elif name == "nan":
            assert np.isnan(after)
        else:
            assert after == before and repr(after) == repr(before), name
    # -0.0 == 0.0: the sign must survive as well.
    assert np.copysign(1, restored["floats"][1]) == -1


def test_fitted_estimator_round_trip(tmp_path):
    clf = sk_dualhead.DualHeadClassifier(**TINY).fit(FRAME, [0, 1, 0, 1, 1, 0])
    restored = _round_trip(clf, tmp_path)
    assert type(restored.network_) is type(clf.network_)
    assert sorted(vars(restored)) == sorted(vars(clf))
    assert restored.get_params() == clf.get_params()
    np.testing.assert_array_equal(restored.classes_, clf.classes_)
    for before, after in zip(clf.members_, restored.members_):
        assert type(after) is type(before)
        assert after.history == before.history and after.best_epoch == before.best_epoch
    np.testing.assert_array_equal(restored.predict_proba(FRAME), clf.predict_proba(FRAME))


# ---------------------------------------------------------------- refusals


class CustomTransformer(StandardScaler):
    pass


@pytest.mark.parametrize(
    "value, where, what",
    [
        (lambda x: x, "extra_", "function"),
        ({"step": CustomTransformer()}, r"extra_\['step'\]", "CustomTransformer"),
        ([1, {2, 3}], r"extra_\[1\]", "a builtins.set"),
        (pd.Series([1.0]), "extra_", "pandas.core.series.Series"),
        (torch.nn.Linear(2, 2), "extra_", "torch module torch.nn"),
        (np.zeros(2, dtype=[("a", "f8")]), "extra_", "dtype"),
    ],
    ids=["function", "custom transformer", "set", "Series", "torch module", "record dtype"],
)
def test_what_the_format_cannot_hold_is_refused_by_name(value, where, what, tmp_path):
    holder = TabularPreprocessor()
    holder.extra_ = value
    path = tmp_path / "model.skdh"
    with pytest.raises(TypeError, match=rf"Cannot save attribute {where}.*{what}") as exc:
        serialization.save(holder, path)
    assert "pickle or joblib" in str(exc.value)
    assert not path.exists() and list(tmp_path.iterdir()) == []


def test_a_user_transformer_as_preprocessing_is_refused(tmp_path):
    clf = sk_dualhead.DualHeadClassifier(preprocessing=StandardScaler(), **TINY)
    with pytest.raises(TypeError, match="Cannot save parameter preprocessing: .*StandardScaler.*joblib"):
        serialization.save(clf, tmp_path / "model.skdh")


def test_a_network_without_init_kwargs_is_refused(tmp_path):
    holder = TabularPreprocessor()
    holder.network_ = _small_network()
    del holder.network_.init_kwargs
    with pytest.raises(TypeError, match="network_.*without an init_kwargs"):
        serialization.save(holder, tmp_path / "model.skdh")


# --------------------------------------------------- damaged, foreign files


@pytest.fixture
def saved(preprocessor, tmp_path):
    path = tmp_path / "model.skdh"
    serialization.save(preprocessor, path)
    return path


def _members(path):
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _rewrite(path, members):
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def test_truncated_file_is_refused(saved):
    data = saved.read_bytes()
    for size in (0, 10, len(data) // 2, len(data) - 1):
        saved.write_bytes(data[:size])
        with pytest.raises(ModelFormatError, match="not a model saved by|damaged"):
            sk_dualhead.load(saved)


def test_a_changed_byte_is_refused(saved):
    members = _members(saved)
    state = members["model.json"].replace(b'"smooth_clip": true', b'"smooth_clip": false')
    assert state != members["model.json"]
    _rewrite(saved, {**members, "model.json": state})
    with pytest.raises(ModelFormatError, match="SHA-256 of its model.json does not match"):
        sk_dualhead.load(saved)
    tensors = bytearray(members["tensors.safetensors"])
    tensors[-1] ^= 1
    _rewrite(saved, {**members, "tensors.safetensors": bytes(tensors)})
    with pytest.raises(ModelFormatError, match="SHA-256 of its tensors.safetensors"):
        sk_dualhead.load(saved)


def _rehash(members):
    manifest = json.loads(members["manifest.json"])
    for name in ("model.json", "tensors.safetensors"):
        manifest["files"][name]["sha256"] = serialization._sha256(members[name])
    return {**members, "manifest.json": json.dumps(manifest).encode()}


@pytest.mark.parametrize(
    "edit, message",
    [
        (
            lambda tree: tree["attributes"].update(
                evil={"$type": "object", "class": "os.system", "attributes": {}}
            ),
            "'os.system', which is not among the classes",
        ),
        (
            lambda tree: tree.update({"class": "subprocess.Popen"}),
            "holds a 'subprocess.Popen'",
        ),
        (
            lambda tree: tree["attributes"].update(
                evil={"$type": "module", "class": "Linear", "init_kwargs": {},
                      "state_dict": {}, "training": False}
            ),
            "network class 'Linear'",
        ),
        (
            lambda tree: tree["attributes"].update(
                evil={"$type": "object", "class": "sk_dualhead.calibration.PlattScaling",
                      "attributes": {"__class__": 1}}
            ),
            "attribute '__class__'",
        ),
        (
            lambda tree: tree["attributes"].update(evil={"$type": "pickle", "data": "gASV"}),
            "unknown type 'pickle'",
        ),
        (
            lambda tree: tree["attributes"]["center_"].update(key="99"),
            "tensor '99'",
        ),
        (
            lambda tree: tree["attributes"].update(
                evil={"$type": "object_array", "shape": [10**12], "values": []}
            ),
            "holds 0 values of shape",
        ),
        (lambda tree: tree.pop("params"), "KeyError"),
    ],
    ids=["os.system", "top class", "torch class", "dunder", "pickle tag",
         "missing tensor", "huge shape", "missing key"],
)
def test_a_consistent_but_foreign_tree_is_refused(saved, edit, message):
    members = _members(saved)
    tree = json.loads(members["model.json"])
    edit(tree)
    members["model.json"] = json.dumps(tree).encode()
    _rewrite(saved, _rehash(members))
    with pytest.raises(ModelFormatError, match=message):
        sk_dualhead.load(saved)


def test_foreign_files_are_refused(tmp_path, preprocessor):
    text = tmp_path / "notes.skdh"
    text.write_text("not a model")
    with pytest.raises(ModelFormatError, match="not a zip archive"):
        sk_dualhead.load(text)
    pickled = tmp_path / "model.pkl"
    pickled.write_bytes(pickle.dumps(preprocessor))
    with pytest.raises(ModelFormatError, match="looks like a pickle"):
        sk_dualhead.load(pickled)
    other = tmp_path / "other.zip"
    _rewrite(other, {"readme.txt": b"hello"})
    with pytest.raises(ModelFormatError, match="it holds \\['readme.txt'\\]"):
        sk_dualhead.load(other)


def test_other_versions(saved, monkeypatch):
    members = _members(saved)
    manifest = json.loads(members["manifest.json"])
    _rewrite(saved, {**members, "manifest.json": json.dumps(
        {**manifest, "sk_dualhead_version": "0.0.1"}).encode()})
    with pytest.warns(UserWarning, match="saved with sk_dualhead 0.0.1 and is loaded"):
        sk_dualhead.load(saved)
    _rewrite(saved, {**members, "manifest.json": json.dumps(
        {**manifest, "format_version": 2, "sk_dualhead_version": "9.0"}).encode()})
    with pytest.raises(ModelFormatError, match="format version 2 by sk_dualhead 9.0.*up to 1"):
        sk_dualhead.load(saved)


def test_expected_sha256(preprocessor, tmp_path):
    path = tmp_path / "model.skdh"
    digest = sk_dualhead.save(preprocessor, path)
    sk_dualhead.load(path, sha256=digest.upper())
    with pytest.raises(ModelFormatError, match="not the expected"):
        sk_dualhead.load(path, sha256="0" * 64)


def test_a_gpu_model_loads_on_the_cpu_with_a_note(tmp_path, monkeypatch):
    holder = TabularPreprocessor()
    holder.device_ = "cuda:7"
    holder.network_ = _small_network()
    path = tmp_path / "model.skdh"
    serialization.save(holder, path)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.warns(UserWarning, match="trained on 'cuda:7', which this machine does not have"):
        restored = sk_dualhead.load(path)
    assert restored.device_ == "cpu"
    assert {p.device.type for p in restored.network_.parameters()} == {"cpu"}


def test_loading_draws_no_random_numbers(tmp_path):
    holder = TabularPreprocessor()
    holder.network_ = _small_network()
    path = tmp_path / "model.skdh"
    serialization.save(holder, path)
    torch.manual_seed(0)
    sk_dualhead.load(path)
    after_load = torch.rand(3)
    torch.manual_seed(0)
    torch.testing.assert_close(after_load, torch.rand(3), rtol=0, atol=0)


def test_missing_weights_are_refused(tmp_path):
    holder = TabularPreprocessor()
    holder.network_ = _small_network()
    path = tmp_path / "model.skdh"
    serialization.save(holder, path)
    members = _members(path)
    tree = json.loads(members["model.json"])
    tree["attributes"]["network_"]["state_dict"].popitem()
    members["model.json"] = json.dumps(tree).encode()
    _rewrite(path, _rehash(members))
    with pytest.raises(ModelFormatError, match="Missing key|no weights"):
        sk_dualhead.load(path)


def test_a_compressed_payload_is_refused(saved):
    members = _members(saved)
    with zipfile.ZipFile(saved, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    with pytest.raises(ModelFormatError, match="tensors.safetensors is compressed"):
        sk_dualhead.load(saved)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_cuda_tensors_are_saved_from_the_cpu(tmp_path, monkeypatch):
    holder = TabularPreprocessor()
    holder.device_ = "cuda"
    holder.network_ = _small_network().cuda()
    path = tmp_path / "model.skdh"
    serialization.save(holder, path)
    with zipfile.ZipFile(path) as archive:
        assert json.loads(archive.read("model.json"))["devices"] == ["cuda"]
    restored = sk_dualhead.load(path)  # a GPU here: back on it
    assert next(restored.network_.parameters()).device.type == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.warns(UserWarning, match="loaded on the CPU"):
        restored = sk_dualhead.load(path)
    assert next(restored.network_.parameters()).device.type == "cpu"


def test_saving_never_leaves_a_partial_file(preprocessor, tmp_path, monkeypatch):
    path = tmp_path / "model.skdh"
    serialization.save(preprocessor, path)
    before = path.read_bytes()
    real = serialization.atomic_write

    @contextlib.contextmanager
    def interrupted_halfway(target):
        with real(target) as file:

            class Half:
                def write(self, data):
                    file.write(data[: len(data) // 2])
                    raise KeyboardInterrupt

            yield Half()

    monkeypatch.setattr(serialization, "atomic_write", interrupted_halfway)
    with pytest.raises(KeyboardInterrupt):
        serialization.save(preprocessor, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model.skdh"]


def test_an_unknown_device_name_loads_on_the_cpu(tmp_path):
    holder = TabularPreprocessor()
    holder.device_ = "quantum:0"
    holder.network_ = _small_network()
    path = tmp_path / "model.skdh"
    serialization.save(holder, path)
    with pytest.warns(UserWarning, match="trained on 'quantum:0'"):
        assert sk_dualhead.load(path).device_ == "cpu"


def test_the_estimator_saves_itself(tmp_path):
    X, y = make_classification(n_samples=120, n_features=5, random_state=0)
    clf = fast_classifier(n_networks=2, max_epochs=3).fit(X, y)
    path = tmp_path / "model.skdh"
    digest = clf.save(path)
    loaded = sk_dualhead.load(path, sha256=digest)
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))
