"""Checks of the estimator's parameters and inputs, beyond ``_parameter_constraints``."""

from numbers import Integral

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from sklearn.preprocessing import LabelEncoder
from sklearn.utils import compute_sample_weight
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import _check_sample_weight, column_or_1d, validate_data

__all__ = []


def resolve_device(device):
    """Turn ``"auto"``, ``"cpu"``, ``"cuda[:N]"`` or ``"mps"`` into a checked name."""
    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(
            f"device={device!r} is not a valid device; use 'cpu', 'cuda', "
            "'cuda:N', 'mps' or 'auto'."
        ) from exc
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device={device!r} was requested but CUDA is not available "
                "on this machine; use device='cpu' or device='auto'."
            )
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ValueError(
                f"device={device!r} was requested but only "
                f"{torch.cuda.device_count()} CUDA device(s) are visible."
            )
    elif resolved.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(
            f"device={device!r} was requested but MPS is not available on "
            "this machine; use device='cpu' or device='auto'."
        )
    elif resolved.type not in ("cpu", "cuda", "mps"):
        raise ValueError(
            f"device={device!r} is not supported; use 'cpu', 'cuda', "
            "'cuda:N', 'mps' or 'auto'."
        )
    return str(resolved)


def check_hyperparameters(estimator):
    """Checks the declarative constraints cannot express."""
    if not all(
        isinstance(size, Integral) and size >= 1 for size in estimator.hidden_sizes
    ):
        raise ValueError(
            "hidden_sizes must be a tuple of positive ints, got "
            f"{estimator.hidden_sizes!r}."
        )
    if estimator.loss_weights is not None:
        weights = np.asarray(estimator.loss_weights, dtype=float)
        if weights.shape != (3,) or not np.all(np.isfinite(weights)):
            raise ValueError(
                "loss_weights must be 3 finite numbers (w_main, w_aux, "
                f"w_consistency), got {estimator.loss_weights!r}."
            )
        if np.any(weights < 0) or weights[:2].sum() == 0:
            raise ValueError(
                "loss_weights must be non-negative and give weight to at "
                f"least one head, got {estimator.loss_weights!r}."
            )


def _check_numeric_columns(X):
    """Name the DataFrame columns that ``preprocessing=None`` cannot take."""
    bad = [
        name for name, dtype in X.dtypes.items() if not pd.api.types.is_numeric_dtype(dtype)
    ]
    if bad:
        raise ValueError(
            f"Column(s) {', '.join(map(repr, bad))} of X are not numeric, "
            "but preprocessing=None feeds X to the network as it is; use "
            "preprocessing='auto', which encodes them, or convert them to "
            "numbers."
        )


def validate_input(estimator, X, y=None, *, reset):
    """Validate X (and y at fit time) the way scikit-learn does.

    DataFrames go to the preprocessor as they are, after their column names
    are checked; everything else is checked as a numeric matrix.
    """
    if reset and y is None:
        raise ValueError(
            f"{type(estimator).__name__} requires y to be passed, but the "
            "target y is None."
        )
    if isinstance(X, pd.DataFrame) and X.columns.duplicated().any():
        duplicated = X.columns[X.columns.duplicated()].unique()
        raise ValueError(
            "X has duplicate column names: "
            f"{', '.join(map(repr, duplicated))}; give every column a "
            "unique name."
        )
    dtype = getattr(X, "dtype", None)
    if isinstance(dtype, np.dtype) and dtype.kind == "c":
        # check_array would say so too, but prints the whole array.
        raise ValueError(
            f"Complex data not supported: X has dtype {dtype}; pass the "
            "real part or the magnitude (X.real or abs(X)) instead."
        )
    preprocessed = estimator.preprocessing is not None
    if isinstance(X, pd.DataFrame) and preprocessed:
        validate_data(estimator, X, skip_check_array=True, reset=reset)
        if len(X) == 0:
            raise ValueError(
                f"Found array with 0 sample(s) (shape={X.shape}) while a "
                "minimum of 1 is required."
            )
    else:
        if isinstance(X, pd.DataFrame):
            _check_numeric_columns(X)
        try:
            X = validate_data(
                estimator,
                X,
                reset=reset,
                accept_sparse=True,
                dtype=[np.float64, np.float32],
                ensure_all_finite="allow-nan" if preprocessed else True,
            )
        except ValueError as exc:
            if dtype != object:
                raise
            raise ValueError(
                f"X is an object array that holds values other than "
                f"numbers ({exc}). Pass a pandas DataFrame instead: "
                "preprocessing='auto' encodes its string, object and "
                "category columns."
            ) from exc
        if sp.issparse(X):
            X = X.toarray()
    if y is None:
        return X
    y = column_or_1d(y, warn=True)
    if len(y) != X.shape[0]:
        raise ValueError(
            f"X has {X.shape[0]} samples but y has {len(y)}; they must "
            "have the same length."
        )
    if pd.isna(y).any():
        raise ValueError("Input y contains NaN or None; remove or label those samples.")
    if y.dtype.kind == "f" and np.isinf(y).any():
        raise ValueError("Input y contains infinity; class labels must be finite.")
    check_classification_targets(y)
    return X, y


def encode_targets(y):
    """``(classes, encoded)``: the class labels and ``y`` as int64 codes."""
    encoder = LabelEncoder()
    encoded = encoder.fit_transform(y)
    if len(encoder.classes_) < 2:
        (only,) = encoder.classes_.tolist()
        raise ValueError(
            f"The training data ({len(y)} sample(s)) contain 1 class; a "
            "classifier needs samples of at least 2 classes, got only "
            f"{only!r}."
        )
    return encoder.classes_, encoded.astype(np.int64)


def sample_weights(sample_weight, X, y, classes, class_weight):
    """Sample weights times class weights, float64, checked."""
    weights = _check_sample_weight(
        sample_weight, X, dtype=np.float64, ensure_non_negative=True
    )
    if class_weight is not None:
        weights = weights * compute_sample_weight(class_weight, classes[y])
    if len(np.unique(y[weights > 0])) < 2:
        raise ValueError(
            "Only one class has positive sample_weight (times class_weight); "
            "a classifier needs at least 2 classes with weight."
        )
    return weights


def as_float32(X):
    """The network's input: a C-contiguous float32 matrix, all finite."""
    if sp.issparse(X):
        X = X.toarray()
    # Values beyond the float32 range become inf, reported just below.
    with np.errstate(over="ignore"):
        features = np.ascontiguousarray(X, dtype=np.float32)
    # A float64 sum of float32 values cannot overflow, so it is finite exactly
    # when every value is; unlike np.isfinite(features) it allocates no mask
    # as large as the data.
    if not np.isfinite(features.sum(dtype=np.float64)):
        raise ValueError(
            "The input to the network contains NaN or values too large for "
            "float32 (beyond 3.4e38); use preprocessing='auto', which imputes "
            "and rescales them, or rescale the data."
        )
    return features
