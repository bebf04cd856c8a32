"""A model file that loads without running code: :func:`save` and :func:`load`.

A pickle (and a joblib file) can run any code when it is loaded, so a model
file mailed between sites or downloaded from a shared drive is a way in. The
format here holds only data:

- ``model.json``: the estimator's class, its ``get_params()`` and a tree of
  its fitted attributes, made of ``None``, booleans, numbers, strings, lists,
  tuples and dicts, numpy arrays, torch tensors, torch modules of
  :mod:`sk_dualhead._network` (class name, ``init_kwargs`` and weights) and
  instances of the classes in :data:`ALLOWED_CLASSES`;
- ``tensors.safetensors``: every array and tensor of the tree, which the JSON
  references by key;
- ``manifest.json``: the format version, the package, torch and numpy
  versions, and the SHA-256 of the two files above.

All three are members of one zip archive. Loading reads JSON and safetensors
only, rebuilds no class outside :data:`ALLOWED_CLASSES` and the modules of
:mod:`sk_dualhead._network`, and never unpickles. It checks the hashes, so a
truncated or damaged file is refused; the hashes live in the same file, so
they do not prove who wrote it. What a hostile file can do is bounded by the
format: it can make a model predict badly, not run code.
"""

# Authors: sk_dualhead developers
# SPDX-License-Identifier: BSD-3-Clause

import dataclasses
import hashlib
import importlib
import io
import json
import math
import warnings
import zipfile

import numpy as np
import torch
from torch import nn

from . import __version__
from ._engine import device_available
from ._io import atomic_write

__all__ = ["ALLOWED_CLASSES", "FORMAT_VERSION", "ModelFormatError", "load", "save"]

#: Value of the manifest's ``"format"`` entry, which tells our files apart
#: from other zip archives.
FORMAT_NAME = "sk_dualhead-model"

#: Version of the layout of the archive and of its JSON tree. A reader
#: refuses a file with a higher version; a new version must be able to read
#: every older one.
FORMAT_VERSION = 1

MANIFEST, STATE, TENSORS = "manifest.json", "model.json", "tensors.safetensors"

#: Classes whose instances may be saved and rebuilt, by ``module.qualname``.
#: They are rebuilt with ``cls.__new__`` and their attributes set one by one:
#: no ``__init__``, ``__setstate__`` or other code of theirs runs on load.
#: Classes a module does not define (yet) are skipped.
ALLOWED_CLASSES = (
    "sk_dualhead.estimator.DualHeadClassifier",
    "sk_dualhead.preprocessing.TabularPreprocessor",
    "sk_dualhead.calibration.TemperatureScaling",
    "sk_dualhead.calibration.PlattScaling",
    "sk_dualhead._engine.Member",
)

#: Module whose ``nn.Module`` subclasses may be saved, rebuilt as
#: ``cls(**module.init_kwargs)`` and given their ``state_dict``.
NETWORK_MODULE = "sk_dualhead._network"

#: Tag of the JSON objects that stand for something JSON cannot hold.
_TAG = "$type"

#: numpy dtypes stored as safetensors tensors of the same type; other
#: fixed-size dtypes (strings, datetimes) are stored as their raw bytes.
_NUMERIC_KINDS = "biuf"


class ModelFormatError(ValueError):
    """The file is not a model that :func:`load` can read, or it is damaged."""


def _qualified_name(cls):
    return f"{cls.__module__}.{cls.__qualname__}"


def _allowed_classes():
    """The classes of :data:`ALLOWED_CLASSES` that exist, by qualified name."""
    classes = {}
    for name in ALLOWED_CLASSES:
        module, _, qualname = name.rpartition(".")
        cls = getattr(importlib.import_module(module), qualname, None)
        if isinstance(cls, type):
            classes[name] = cls
    return classes


def _network_class(name):
    """The ``nn.Module`` subclass ``name`` of :data:`NETWORK_MODULE`, or None."""
    cls = getattr(importlib.import_module(NETWORK_MODULE), name, None)
    if (
        isinstance(cls, type)
        and issubclass(cls, nn.Module)
        and cls.__module__ == NETWORK_MODULE
    ):
        return cls
    return None


def _attributes(obj):
    """An allowed object's attributes: its ``__dict__``, or a slotted dataclass's fields."""
    if hasattr(obj, "__dict__"):
        return vars(obj)
    return {field.name: getattr(obj, field.name) for field in dataclasses.fields(obj)}


# ------------------------------------------------------------------ encode


class _Encoder:
    """Turns a tree of Python objects into JSON, collecting its tensors."""

    def __init__(self):
        self.tensors = {}
        self.devices = set()
        self.classes = _allowed_classes()

    def refuse(self, where, what):
        raise TypeError(
            f"Cannot save {where or 'the model'}: it is {what}, which the safe model format "
            "cannot hold. Use pickle or joblib for this model (only load such "
            "files from sources you trust), or keep to what the format holds "
            "(see sk_dualhead.serialization)."
        )

    def tensor(self, tensor):
        """Store a tensor in the payload; return its key."""
        self.devices.add(tensor.device.type)
        key = str(len(self.tensors))
        # From the CPU, so that a CUDA model loads where there is no GPU; a
        # fresh contiguous copy, as safetensors refuses tensors sharing memory.
        self.tensors[key] = tensor.detach().to("cpu", copy=True).contiguous()
        return key

    def encode(self, value, where):
        if value is None or type(value) in (bool, str, int):
            return value
        if type(value) is float:
            if math.isfinite(value):
                return value
            return {_TAG: "float", "value": repr(value)}
        if isinstance(value, np.generic) and value.dtype.kind in _NUMERIC_KINDS + "U":
            return {
                _TAG: "numpy_scalar",
                "dtype": value.dtype.str,
                "value": self.encode(value.item(), where),
            }
        if type(value) is list:
            return [self.encode(item, f"{where}[{i}]") for i, item in enumerate(value)]
        if type(value) is tuple:
            return {
                _TAG: "tuple",
                "items": [
                    self.encode(item, f"{where}[{i}]") for i, item in enumerate(value)
                ],
            }
        if type(value) is dict:
            return self.encode_dict(value, where)
        if type(value) is np.ndarray:
            return self.encode_array(value, where)
        if isinstance(value, torch.Tensor) and type(value) in (
            torch.Tensor,
            nn.Parameter,
        ):
            return {
                _TAG: "tensor",
                "key": self.tensor(value),
                "parameter": isinstance(value, nn.Parameter),
                "requires_grad": value.requires_grad,
            }
        if isinstance(value, nn.Module):
            return self.encode_module(value, where)
        if self.classes.get(_qualified_name(type(value))) is type(value):
            return self.encode_object(value, where)
        self.refuse(where, f"a {_qualified_name(type(value))}")

    def encode_dict(self, value, where, *, attributes=False):
        """Encode a dict; ``attributes``: its keys are an object's attribute names.

        ``where`` is ``"parameter"`` or ``"attribute"`` for the model's own.
        """

        def child(key):
            if where in ("parameter", "attribute"):
                return f"{where} {key}"
            if attributes:
                return f"{where}.{key}"
            return f"{where}[{key!r}]"

        if all(type(key) is str for key in value) and _TAG not in value:
            return {key: self.encode(item, child(key)) for key, item in value.items()}
        return {
            _TAG: "dict",
            "items": [
                [self.encode(key, f"a key of {where}"), self.encode(item, child(key))]
                for key, item in value.items()
            ],
        }

    def encode_array(self, value, where):
        if value.dtype == object:
            return {
                _TAG: "object_array",
                "shape": list(value.shape),
                "values": [
                    self.encode(item, f"{where}[{i}]")
                    for i, item in enumerate(value.ravel().tolist())
                ],
            }
        if value.dtype.kind in _NUMERIC_KINDS:
            # Native byte order: torch and safetensors know no other.
            native = value.astype(value.dtype.newbyteorder("="), copy=False)
            try:
                tensor = torch.from_numpy(np.ascontiguousarray(native))
            except TypeError:
                tensor = None
            if tensor is not None:
                return {
                    _TAG: "ndarray",
                    "key": self.tensor(tensor),
                    "dtype": native.dtype.str,
                }
        if value.dtype.kind in "USMm" or value.dtype.kind in _NUMERIC_KINDS:
            raw = np.ascontiguousarray(value).reshape(-1).view(np.uint8)
            return {
                _TAG: "ndarray",
                "key": self.tensor(torch.from_numpy(raw.copy())),
                "dtype": value.dtype.str,
                "shape": list(value.shape),
            }
        self.refuse(where, f"an array of dtype {value.dtype}")

    def encode_module(self, module, where):
        cls = type(module)
        if _network_class(cls.__name__) is not cls:
            self.refuse(where, f"a torch module {_qualified_name(cls)}")
        init_kwargs = getattr(module, "init_kwargs", None)
        if type(init_kwargs) is not dict:
            self.refuse(
                where,
                f"a {cls.__name__} without an init_kwargs dict to rebuild it from",
            )
        return {
            _TAG: "module",
            "class": cls.__name__,
            "init_kwargs": self.encode(init_kwargs, f"{where}.init_kwargs"),
            "state_dict": {
                name: self.tensor(tensor)
                for name, tensor in module.state_dict(keep_vars=False).items()
            },
            "training": module.training,
        }

    def encode_object(self, obj, where):
        return {
            _TAG: "object",
            "class": _qualified_name(type(obj)),
            "attributes": self.encode_dict(
                dict(_attributes(obj)), where, attributes=True
            ),
        }


def _estimator_tree(model, encoder):
    """The JSON tree of a model: its class, parameters and other attributes."""
    cls = type(model)
    if encoder.classes.get(_qualified_name(cls)) is not cls:
        encoder.refuse("", f"a {_qualified_name(cls)}")
    attributes = dict(_attributes(model))
    params = {}
    if hasattr(model, "get_params"):
        params = {
            name: attributes.pop(name)
            for name in model.get_params(deep=False)
            if name in attributes
        }
    return {
        "class": _qualified_name(cls),
        "params": encoder.encode_dict(params, "parameter", attributes=True),
        "attributes": encoder.encode_dict(attributes, "attribute", attributes=True),
    }


def _sha256(data):
    return hashlib.sha256(data).hexdigest()


def check_sha256(path, expected):
    """Raise :class:`ModelFormatError` unless the file's SHA-256 is ``expected``."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(2**20), b""):
            digest.update(block)
    if digest.hexdigest() != expected.strip().lower():
        raise ModelFormatError(
            f"{path} has SHA-256 {digest.hexdigest()}, not the expected "
            f"{expected}: it is not the file that was saved."
        )


def save(model, path):
    """Save a model to a file that :func:`load` reads without running code.

    The file is written to a temporary file beside ``path`` and renamed into
    place, so ``path`` holds the whole model or is left as it was.

    Parameters
    ----------
    model : DualHeadClassifier or another instance of ALLOWED_CLASSES
        The model, fitted or not. Its tensors are saved from the CPU, so a
        model trained on a GPU loads on a machine without one.

    path : str or path-like
        Where to write the model; ``.skdh`` is a good suffix.

    Returns
    -------
    sha256 : str
        The SHA-256 of the file written, to compare with the file's when it
        arrives elsewhere.

    Raises
    ------
    TypeError
        When the model holds something the format cannot, such as a custom
        transformer as ``preprocessing``; the message names the attribute.

    See Also
    --------
    load : Read a model saved by this function.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> import numpy as np
    >>> import sk_dualhead
    >>> from sk_dualhead.preprocessing import TabularPreprocessor
    >>> pre = TabularPreprocessor().fit(np.array([[0.0], [1.0], [3.0]]))
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "pre.skdh"
    >>> digest = sk_dualhead.save(pre, path)
    >>> sk_dualhead.load(path).transform(np.array([[1.0]]))
    array([[0.]], dtype=float32)
    """
    import safetensors.torch

    encoder = _Encoder()
    tree = _estimator_tree(model, encoder)
    tree["devices"] = sorted(encoder.devices)
    state = json.dumps(tree, allow_nan=False, indent=1).encode()
    tensors = safetensors.torch.save(encoder.tensors)
    manifest = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "sk_dualhead_version": __version__,
        "torch_version": torch.__version__,
        "numpy_version": np.__version__,
        "files": {
            name: {"sha256": _sha256(data), "size": len(data)}
            for name, data in ((STATE, state), (TENSORS, tensors))
        },
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(MANIFEST, json.dumps(manifest, indent=1), zipfile.ZIP_DEFLATED)
        archive.writestr(STATE, state, zipfile.ZIP_DEFLATED)
        # Weights barely compress; storing them keeps saving and loading fast.
        archive.writestr(TENSORS, tensors, zipfile.ZIP_STORED)
    data = buffer.getvalue()
    with atomic_write(path) as file:
        file.write(data)
    return _sha256(data)


# ------------------------------------------------------------------ decode


class _Decoder:
    """Rebuilds the tree that :class:`_Encoder` wrote."""

    def __init__(self, tensors):
        self.tensors = tensors
        self.classes = _allowed_classes()
        self.modules = []

    def tensor(self, key):
        if type(key) is not str or key not in self.tensors:
            raise ModelFormatError(f"it refers to a tensor {key!r} it does not hold")
        return self.tensors[key]

    def decode(self, value):
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        if isinstance(value, list):
            return [self.decode(item) for item in value]
        if not isinstance(value, dict):
            raise ModelFormatError(f"it holds an unexpected {type(value).__name__}")
        if _TAG not in value:
            return {key: self.decode(item) for key, item in value.items()}
        tag = value[_TAG]
        decode = getattr(self, f"decode_{tag}", None) if type(tag) is str else None
        if decode is None:
            raise ModelFormatError(f"it holds an entry of unknown type {tag!r}")
        return decode(value)

    def decode_float(self, value):
        if value["value"] not in ("nan", "inf", "-inf"):
            raise ModelFormatError(f"it holds a float {value['value']!r}")
        return float(value["value"])

    def decode_numpy_scalar(self, value):
        return np.array(self.decode(value["value"]), dtype=_dtype(value["dtype"]))[()]

    def decode_tuple(self, value):
        return tuple(self.decode(value["items"]))

    def decode_dict(self, value):
        return {self.decode(key): self.decode(item) for key, item in value["items"]}

    def decode_object_array(self, value):
        shape, values = tuple(value["shape"]), value["values"]
        if math.prod(shape) != len(values):
            raise ModelFormatError(f"it holds {len(values)} values of shape {shape}")
        array = np.empty(len(values), dtype=object)
        array[:] = [self.decode(item) for item in values]
        return array.reshape(shape)

    def decode_ndarray(self, value):
        dtype = _dtype(value["dtype"])
        if dtype == object:
            raise ModelFormatError("it holds an array of dtype object as bytes")
        array = self.tensor(value["key"]).numpy()
        if "shape" in value:
            return array.view(dtype).reshape(value["shape"]).copy()
        return array.astype(dtype, copy=False)

    def decode_tensor(self, value):
        tensor = self.tensor(value["key"])
        if value["parameter"]:
            return nn.Parameter(tensor, requires_grad=value["requires_grad"])
        return tensor.requires_grad_(value["requires_grad"])

    def decode_module(self, value):
        cls = _network_class(value["class"])
        if cls is None:
            raise ModelFormatError(
                f"it holds a network class {value['class']!r} that "
                f"{NETWORK_MODULE} does not define"
            )
        init_kwargs = self.decode(value["init_kwargs"])
        # Built on the meta device, the weights are never drawn: loading a
        # model leaves torch's random numbers alone, and allocates nothing
        # before the file's own weights take the parameters' place.
        with torch.device("meta"):
            module = cls(**init_kwargs)
        module.load_state_dict(
            {name: self.tensor(key) for name, key in value["state_dict"].items()},
            assign=True,
        )
        left = [
            name
            for name, tensor in (*module.named_parameters(), *module.named_buffers())
            if tensor.is_meta
        ]
        if left:
            raise ModelFormatError(f"it holds no weights for {', '.join(left)}")
        module.init_kwargs = init_kwargs
        self.modules.append(module)
        return module.train(value["training"])

    def decode_object(self, value):
        cls = self.classes.get(value["class"])
        if cls is None:
            raise ModelFormatError(
                f"it holds an instance of {value['class']!r}, which is not "
                "among the classes a model may hold"
            )
        return _rebuild(cls, self.decode(value["attributes"]))


def _rebuild(cls, attributes):
    """An instance of ``cls`` with ``attributes``, made without running its code."""
    obj = cls.__new__(cls)
    for name, value in attributes.items():
        # Dunder names would reach into the object's machinery, not its data.
        if type(name) is not str or name.startswith("__"):
            raise ModelFormatError(f"it gives a {cls.__name__} an attribute {name!r}")
        # object.__setattr__ also fills frozen and slotted dataclasses.
        object.__setattr__(obj, name, value)
    return obj


def _dtype(text):
    if type(text) is not str:
        raise ModelFormatError(f"it holds a dtype {text!r}")
    return np.dtype(text)


#: Largest manifest and model JSON read: a few kB and a few MB in practice;
#: the caps keep a small, highly compressed hostile file from filling memory.
_MAX_MANIFEST_BYTES = 2**20
_MAX_STATE_BYTES = 2**30


def _check_sizes(archive, path):
    """Refuse members that would unpack to far more than they could hold."""
    state, tensors = archive.getinfo(STATE), archive.getinfo(TENSORS)
    if state.file_size > _MAX_STATE_BYTES:
        raise ModelFormatError(
            f"{path} is not a model saved by sk_dualhead.save: its {STATE} "
            f"unpacks to {state.file_size} bytes."
        )
    # save stores the weights uncompressed, so they are never larger than
    # the file itself.
    if tensors.compress_type != zipfile.ZIP_STORED:
        raise ModelFormatError(
            f"{path} is not a model saved by sk_dualhead.save: its {TENSORS} "
            "is compressed."
        )


def _read_archive(path):
    """Manifest, model JSON and tensor payload of the file, hashes checked."""
    try:
        archive = zipfile.ZipFile(path)
    except FileNotFoundError:
        raise
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        with open(path, "rb") as file:
            start = file.read(2)
        hint = (
            " It looks like a pickle or joblib file; load those with joblib.load, "
            "and only from sources you trust."
            if start[:1] == b"\x80"
            else ""
        )
        raise ModelFormatError(
            f"{path} is not a model saved by sk_dualhead.save (not a zip archive, "
            f"or a truncated one: {exc}).{hint}"
        ) from exc
    with archive:
        names = set(archive.namelist())
        if names != {MANIFEST, STATE, TENSORS}:
            raise ModelFormatError(
                f"{path} is not a model saved by sk_dualhead.save: it holds "
                f"{sorted(names)}, not {sorted([MANIFEST, STATE, TENSORS])}."
            )
        if archive.getinfo(MANIFEST).file_size > _MAX_MANIFEST_BYTES:
            raise ModelFormatError(
                f"{path} is not a model saved by sk_dualhead.save: its manifest "
                "is too large."
            )
        try:
            manifest = json.loads(archive.read(MANIFEST))
            if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
                raise ValueError("its manifest does not name the format")
            version = manifest["format_version"]
            if type(version) is not int:
                raise ValueError(f"its format version is {version!r}")
        except (ValueError, KeyError, zipfile.BadZipFile) as exc:
            raise ModelFormatError(
                f"{path} is not a model saved by sk_dualhead.save ({exc})."
            ) from exc
        if version > FORMAT_VERSION:
            raise ModelFormatError(
                f"{path} was written in model format version {version} by "
                f"sk_dualhead {manifest.get('sk_dualhead_version')}; this "
                f"sk_dualhead {__version__} reads versions up to "
                f"{FORMAT_VERSION}. Upgrade sk_dualhead to load it."
            )
        _check_sizes(archive, path)
        contents = {}
        for name in (STATE, TENSORS):
            try:
                data = archive.read(name)
                expected = manifest["files"][name]["sha256"]
            except (KeyError, TypeError, zipfile.BadZipFile, OSError, EOFError) as exc:
                raise ModelFormatError(
                    f"{path} is damaged: {name} cannot be read ({exc})."
                ) from exc
            if _sha256(data) != expected:
                raise ModelFormatError(
                    f"{path} is damaged or was modified: the SHA-256 of its {name} "
                    "does not match the one its manifest recorded."
                )
            contents[name] = data
    return manifest, contents[STATE], contents[TENSORS]


def load(path, *, sha256=None):
    """Load a model saved by :func:`save`, without running code from the file.

    Parameters
    ----------
    path : str or path-like
        The model file.

    sha256 : str, default=None
        The SHA-256 that :func:`save` returned; when given, a file with
        another hash is refused. This proves the file is the one saved,
        which the hashes inside the file cannot.

    Returns
    -------
    model : DualHeadClassifier or another instance of ALLOWED_CLASSES
        The model. Its networks are on its ``device_`` when this machine has
        that device; otherwise on the CPU, with ``device_ = "cpu"`` and a
        warning.

    Raises
    ------
    ModelFormatError
        When the file is not such a model, is truncated or damaged, or was
        written in a newer format version; the message says which.

    Warns
    -----
    UserWarning
        When the file was written by another version of sk_dualhead, or
        the model was trained on another device than the CPU.

    See Also
    --------
    save : Write a model in this format.
    """
    import safetensors
    import safetensors.torch

    if sha256 is not None:
        check_sha256(path, sha256)
    manifest, state, payload = _read_archive(path)
    saved_version = manifest.get("sk_dualhead_version")
    if saved_version != __version__:
        warnings.warn(
            f"{path} was saved with sk_dualhead {saved_version} and is loaded "
            f"with sk_dualhead {__version__}; it may predict differently. "
            "Refit it with this version, or load it with the version it was "
            "saved with.",
            UserWarning,
            stacklevel=2,
        )
    try:
        tensors = safetensors.torch.load(payload)
        tree = json.loads(state)
        decoder = _Decoder(tensors)
        cls = decoder.classes.get(tree["class"])
        if cls is None:
            raise ModelFormatError(f"it holds a {tree['class']!r}")
        model = _rebuild(
            cls, decoder.decode(tree["params"]) | decoder.decode(tree["attributes"])
        )
    except ModelFormatError as exc:
        raise ModelFormatError(f"{path} cannot be loaded: {exc}.") from exc
    except (
        ValueError,
        TypeError,
        KeyError,
        RuntimeError,
        AttributeError,
        safetensors.SafetensorError,
    ) as exc:
        # A file whose hashes match but whose contents make no sense was
        # written by something else than save, or by a buggy version of it.
        raise ModelFormatError(
            f"{path} cannot be loaded: its contents are not a valid model "
            f"({type(exc).__name__}: {exc})."
        ) from exc
    _place(model, decoder.modules, tree.get("devices", ()), path)
    return model


def _place(model, modules, saved_devices, path):
    """Move the networks to the model's ``device_``, or make it the CPU.

    Everything is loaded on the CPU. A model whose ``device_`` is a GPU this
    machine has goes back to it; one whose GPU is missing stays on the CPU,
    with ``device_ = "cpu"`` and a warning.
    """
    device = getattr(model, "device_", None)
    if not isinstance(device, str):
        elsewhere = sorted(set(saved_devices) - {"cpu"})
        if elsewhere:
            warnings.warn(
                f"{path} holds tensors saved from {', '.join(elsewhere)}; "
                "they are loaded on the CPU.",
                UserWarning,
                stacklevel=3,
            )
        return
    if device == "cpu":
        return
    try:
        available = device_available(device)
    except (RuntimeError, TypeError):
        # Not a device name torch knows: the file's device_ is not to be used.
        available = False
    if available:
        for module in modules:
            module.to(device)
        return
    warnings.warn(
        f"{path} holds a model trained on {device!r}, which this machine does "
        "not have; it is loaded on the CPU and predicts there (device_='cpu').",
        UserWarning,
        stacklevel=3,
    )
    model.device_ = "cpu"
