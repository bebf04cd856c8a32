"""Turn a raw table into one float32 matrix for a neural network.

The network takes two kinds of input: continuous values (scaled numerics,
missing indicators, one-hot blocks) fed to the trunk directly, and integer
codes of high-cardinality categoricals fed to learned embeddings.
:class:`TabularPreprocessor` produces both in one matrix, continuous columns
first.
"""

# Authors: sk_dualhead developers
# SPDX-License-Identifier: BSD-3-Clause

import warnings
from numbers import Integral

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import (
    _check_feature_names_in,
    check_is_fitted,
    validate_data,
)

# Largest magnitude kept before the float32 cast, so the output stays finite.
_FLOAT32_MAX = float(np.finfo(np.float32).max)
# Smooth clipping maps the real line onto (-_CLIP_BOUND, _CLIP_BOUND).
_CLIP_BOUND = 3.0


def _column_kind(name, dtype):
    """Return ``"numeric"`` or ``"categorical"`` for a column's dtype."""
    # bool before numeric: pandas counts bool as a numeric dtype.
    if (
        pd.api.types.is_bool_dtype(dtype)
        or isinstance(dtype, (pd.CategoricalDtype, pd.StringDtype))
        or pd.api.types.is_object_dtype(dtype)
    ):
        return "categorical"
    if pd.api.types.is_complex_dtype(dtype):
        raise ValueError(
            f"Complex data not supported: column {name!r} has dtype {dtype}."
        )
    if pd.api.types.is_numeric_dtype(dtype):
        return "numeric"
    if pd.api.types.is_datetime64_any_dtype(dtype):
        raise TypeError(
            f"Column {name!r} has dtype {dtype}: dates are not converted "
            f"implicitly. Convert it to numbers, such as days since a date "
            f"((X[{name!r}] - pd.Timestamp('1970-01-01')) / pd.Timedelta(days=1)), "
            "or drop it."
        )
    raise TypeError(
        f"Column {name!r} has unsupported dtype {dtype}; convert it to a numeric, "
        "bool, string, object or category dtype first."
    )


#: Cells of these types hold several values, which no encoding here takes.
_CONTAINERS = (list, tuple, dict, set, frozenset, np.ndarray, pd.Series)


def _check_object_cells(name, column):
    """Refuse an object column whose cells hold lists, dicts or other containers."""
    # infer_dtype runs in C; only columns it cannot call plain are scanned.
    if pd.api.types.infer_dtype(column, skipna=True) in _SCALAR_INFERRED:
        return
    is_container = column.map(lambda value: isinstance(value, _CONTAINERS))
    if is_container.any():
        example = column[is_container].iloc[0]
        raise TypeError(
            f"Column {name!r} holds {type(example).__name__} values (such as "
            f"{example!r:.40}), not one value per cell; split it into columns "
            "of single values, or drop it."
        )


#: Results of ``pd.api.types.infer_dtype`` that no container can give.
_SCALAR_INFERRED = {
    "string",
    "bytes",
    "floating",
    "integer",
    "mixed-integer-float",
    "decimal",
    "boolean",
    "empty",
    "categorical",
}


def _numeric_values(X, columns, names):
    """Return a writable float64 copy of the numeric columns, NaN for missing."""
    # copy=True: transform works in place and must never write into the caller's
    # data (nor fail on a read-only memmap).
    values = X.iloc[:, columns].to_numpy(dtype=np.float64, na_value=np.nan, copy=True)
    infinite = np.isinf(values).any(axis=0)
    if infinite.any():
        bad = ", ".join(repr(name) for name in names[columns][infinite])
        raise ValueError(
            f"Input X contains infinity in column(s) {bad}; replace it with a "
            "finite value or with NaN, which is imputed."
        )
    return values


#: Float64 values converted at a time: numeric columns are scaled in blocks
#: of about 32 MB, so that a large table is never copied whole to float64.
#: 32 MB is glibc's largest threshold for serving an allocation by mmap, so
#: every block's buffers are mapped and returned whole. With 16 MB blocks
#: they came from the heap, and the fragments they left made the peak memory
#: of fitting 1,000,000 x 50 values a lottery from run to run (1.4x to 2.8x
#: the data); with 32 MB it is a steady 1.7x.
_BLOCK_VALUES = 2**22


def _column_blocks(columns, n_rows):
    """Split ``columns`` into blocks of about ``_BLOCK_VALUES`` values."""
    size = max(1, _BLOCK_VALUES // max(n_rows, 1))
    return [columns[start : start + size] for start in range(0, len(columns), size)]


def _concatenate(parts, dtype):
    """``np.concatenate`` that also accepts no parts at all."""
    return np.concatenate([np.empty(0, dtype=dtype), *parts])


def _robust_statistics(values):
    """Return the median and a positive, finite scale of each column."""
    # Only values near the float64 limit overflow here; the fallbacks below
    # handle them, so the warnings carry no information.
    with np.errstate(over="ignore", invalid="ignore"):
        # numpy returns shape (0,), not (3, 0), when there is no column.
        quartiles = np.nanpercentile(values, [25, 50, 75], axis=0).reshape(3, -1)
        q25, median, q75 = quartiles
        iqr = q75 - q25
        std = np.nanstd(values, axis=0)
    scale = np.select(
        [np.isfinite(iqr) & (iqr > 0), np.isfinite(std) & (std > 0)],
        [iqr, std],
        default=1.0,
    )
    center = np.where(np.isfinite(median), median, 0.0)
    return center, scale


def _factorize_as_str(column):
    """Return integer codes (-1 for missing) and the distinct values as str.

    Converting every value to ``str`` makes columns that mix types (numbers
    and strings, say) sortable and gives every dtype the same level space.
    Only the distinct values are converted, except in object columns.
    """
    if pd.api.types.is_object_dtype(column.dtype):
        # Factorizing Python objects would merge 1, 1.0 and True, which compare
        # equal, into whichever comes first; as strings they stay distinct.
        column = column.astype("string")
    codes, uniques = pd.factorize(column)
    return codes, np.asarray(uniques.astype("string"), dtype=object)


def _category_codes(column, levels):
    """Code each value by its index in ``levels``; -1 for missing or unseen."""
    codes, uniques = _factorize_as_str(column)
    # The appended -1 is what factorize's missing code -1 picks up.
    return np.append(pd.Index(levels).get_indexer(uniques), -1)[codes]


class TabularPreprocessor(TransformerMixin, BaseEstimator):
    """Encode a raw table as one float32 matrix for a neural network.

    Numeric columns are median-imputed, robustly scaled and smoothly clipped;
    columns that had missing values at fit time also get a 0/1 missing
    indicator. Categorical columns are one-hot encoded when they have few
    levels and integer-coded for a learned embedding otherwise. Columns with
    fewer than two distinct non-missing values carry no information and are
    dropped with a warning.

    Parameters
    ----------
    max_onehot_cardinality : int, default=9
        Categorical columns with at most this many distinct non-missing
        levels are one-hot encoded; columns with more levels become one
        integer code column for an embedding. ``0`` embeds every categorical
        column.

    smooth_clip : bool, default=True
        Whether to map each robustly scaled numeric value ``x`` to
        ``x / sqrt(1 + (x / 3) ** 2)``, which is close to the identity near 0
        and bounds the output to (-3, 3), so that outliers cannot dominate
        the network's input.

    add_missing_indicators : bool, default=True
        Whether to add a 0/1 indicator column for each numeric column that
        had missing values during :meth:`fit`.

    Attributes
    ----------
    n_features_in_ : int
        Number of features seen during :meth:`fit`.

    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during :meth:`fit`. Defined only when `X`
        has feature names that are all strings.

    numeric_columns_ : ndarray of shape (n_numeric,), dtype=int
        Positions in the input of the numeric columns that are kept.

    center_ : ndarray of shape (n_numeric,)
        Median of each kept numeric column, ignoring missing values; used
        both to impute and to center.

    scale_ : ndarray of shape (n_numeric,)
        Divisor of each kept numeric column: its interquartile range, or its
        standard deviation where the range is 0, or 1 where both are 0.

    missing_indicator_mask_ : ndarray of shape (n_numeric,), dtype=bool
        True for the kept numeric columns that get a missing indicator.

    onehot_columns_ : ndarray of shape (n_onehot,), dtype=int
        Positions in the input of the one-hot encoded columns.

    onehot_categories_ : list of ndarray
        Sorted levels (as str) of each one-hot encoded column.

    embedding_columns_ : ndarray of shape (n_embedded,), dtype=int
        Positions in the input of the integer-coded columns.

    embedding_categories_ : list of ndarray
        Sorted levels (as str) of each integer-coded column; level ``i`` is
        coded ``i + 1``.

    dropped_columns_ : ndarray of shape (n_dropped,), dtype=int
        Positions in the input of the columns dropped because they were
        constant or entirely missing.

    n_continuous_ : int
        Number of continuous output columns: scaled numerics, missing
        indicators and one-hot columns.

    category_cardinalities_ : tuple of int
        Embedding table size of each integer-coded column: its number of
        levels plus one for the code 0 that unseen and missing values share.

    See Also
    --------
    sklearn.preprocessing.RobustScaler : Scale with the median and IQR.
    sklearn.preprocessing.OneHotEncoder : Encode categories as one-hot columns.
    sklearn.preprocessing.OrdinalEncoder : Encode categories as integers.

    Notes
    -----
    Input is a pandas DataFrame or a 2-D numeric array-like. In a DataFrame,
    columns of ``bool``, ``boolean``, ``category``, ``string`` and ``object``
    dtype are categorical and the other real-valued columns are numeric; an
    array-like is all numeric. Datetime and complex columns are rejected.

    Categorical values are compared as ``str``: an object column that mixes
    numbers and strings therefore works, an object column holding only numbers
    stays categorical, and ``1`` and ``"1"`` are the same level. Levels are
    sorted as strings. Missing values (``None``, ``NaN``, ``pd.NA``) are never
    a level: they share the reserved state with levels unseen during
    :meth:`fit`, an all-zero row in a one-hot block and code 0 in an
    embedding column.

    The output of :meth:`transform` is a C-contiguous float32 array of shape
    ``(n_samples, n_continuous_ + len(category_cardinalities_))``: scaled
    numerics, missing indicators and one-hot blocks, then one column per
    embedded categorical holding its code, each block in input column order.
    Arithmetic is done in float64 and results beyond the float32 range are
    clipped to it, so the output is always finite. Infinite inputs raise a
    ``ValueError``.

    Smooth clipping follows RealMLP [1]_.

    References
    ----------
    .. [1] D. Holzmüller, L. Grinsztajn and I. Steinwart, "Better by default:
       Strong pre-tuned MLPs and boosted trees on tabular data", NeurIPS 2024.

    Examples
    --------
    >>> import numpy as np
    >>> import pandas as pd
    >>> from sk_dualhead.preprocessing import TabularPreprocessor
    >>> X = pd.DataFrame({
    ...     "age": [25.0, 32.0, np.nan, 51.0, 46.0],
    ...     "colour": ["red", "blue", "red", "green", None],
    ...     "city": ["Oslo", "Lima", "Pune", "Kyiv", "Oslo"],
    ... })
    >>> pre = TabularPreprocessor(max_onehot_cardinality=3).fit(X)
    >>> pre.get_feature_names_out()
    array(['age', 'age_missing', 'colour_blue', 'colour_green', 'colour_red',
           'city'], dtype=object)
    >>> pre.n_continuous_, pre.category_cardinalities_
    (5, (5,))
    >>> pre.transform(X).round(2)
    array([[-0.79,  0.  ,  0.  ,  0.  ,  1.  ,  3.  ],
           [-0.41,  0.  ,  1.  ,  0.  ,  0.  ,  2.  ],
           [ 0.  ,  1.  ,  0.  ,  0.  ,  1.  ,  4.  ],
           [ 0.69,  0.  ,  0.  ,  1.  ,  0.  ,  1.  ],
           [ 0.41,  0.  ,  0.  ,  0.  ,  0.  ,  3.  ]], dtype=float32)
    """

    _parameter_constraints: dict = {
        "max_onehot_cardinality": [Interval(Integral, 0, None, closed="left")],
        "smooth_clip": ["boolean"],
        "add_missing_indicators": ["boolean"],
    }

    def __init__(
        self,
        *,
        max_onehot_cardinality=9,
        smooth_clip=True,
        add_missing_indicators=True,
    ):
        self.max_onehot_cardinality = max_onehot_cardinality
        self.smooth_clip = smooth_clip
        self.add_missing_indicators = add_missing_indicators

    def _validate_input(self, X, *, reset):
        """Validate `X`; return it as a DataFrame, its column names and kinds."""
        if isinstance(X, pd.DataFrame):
            X = validate_data(self, X, skip_check_array=True, reset=reset)
            n_samples, n_features = X.shape
            # The same minimums, and wording, as check_array for arrays.
            if n_samples == 0 or n_features == 0:
                raise ValueError(
                    f"Found array with {n_samples} sample(s) and {n_features} "
                    f"feature(s) (shape={X.shape}) while a minimum of 1 sample "
                    f"and 1 feature is required by {type(self).__name__}."
                )
        else:
            X = validate_data(
                self, X, reset=reset, dtype="numeric", ensure_all_finite="allow-nan"
            )
            X = pd.DataFrame(X, copy=False)
        names = _check_feature_names_in(self)
        kinds = np.array(
            [_column_kind(name, dtype) for name, dtype in zip(names, X.dtypes)]
        )
        for name, column in zip(names, X.columns):
            if pd.api.types.is_object_dtype(X[column].dtype):
                _check_object_cells(name, X[column])
        return X, names, kinds

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Learn the per-column statistics and category levels.

        Parameters
        ----------
        X : {DataFrame, array-like} of shape (n_samples, n_features)
            The table to learn from. Missing values are allowed; infinite
            values are not.

        y : None
            Ignored.

        Returns
        -------
        self : object
            Fitted preprocessor.
        """
        X, names, kinds = self._validate_input(X, reset=True)
        dropped = {}

        numeric = np.flatnonzero(kinds == "numeric")
        varying, has_missing, center, scale = [], [], [], []
        for block in _column_blocks(numeric, X.shape[0]):
            values = _numeric_values(X, block, names)
            missing = np.isnan(values)
            # fmin/fmax skip NaN without the All-NaN warning of nanmin/nanmax;
            # a column whose minimum is not below its maximum has at most one
            # value.
            keep = np.fmin.reduce(values, axis=0) < np.fmax.reduce(values, axis=0)
            all_missing = missing.all(axis=0)
            for column, empty in zip(block[~keep], all_missing[~keep]):
                dropped[column] = "all missing" if empty else "constant"
            varying.append(keep)
            has_missing.append(missing[:, keep].any(axis=0))
            block_center, block_scale = _robust_statistics(values[:, keep])
            center.append(block_center)
            scale.append(block_scale)
        self.numeric_columns_ = numeric[_concatenate(varying, bool)]
        self.missing_indicator_mask_ = (
            _concatenate(has_missing, bool) & self.add_missing_indicators
        )
        self.center_ = _concatenate(center, np.float64)
        self.scale_ = _concatenate(scale, np.float64)

        self.onehot_columns_, self.onehot_categories_ = [], []
        self.embedding_columns_, self.embedding_categories_ = [], []
        for column in np.flatnonzero(kinds == "categorical"):
            # np.unique sorts, and merges values that share a string.
            levels = np.unique(_factorize_as_str(X.iloc[:, column])[1])
            if len(levels) < 2:
                dropped[column] = "constant" if len(levels) else "all missing"
            elif len(levels) <= self.max_onehot_cardinality:
                self.onehot_columns_.append(column)
                self.onehot_categories_.append(levels)
            else:
                self.embedding_columns_.append(column)
                self.embedding_categories_.append(levels)
        self.onehot_columns_ = np.asarray(self.onehot_columns_, dtype=np.intp)
        self.embedding_columns_ = np.asarray(self.embedding_columns_, dtype=np.intp)
        self.dropped_columns_ = np.asarray(sorted(dropped), dtype=np.intp)

        if dropped:
            described = ", ".join(
                f"{names[column]!r} ({reason})"
                for column, reason in sorted(dropped.items())
            )
            warnings.warn(
                "Dropping column(s) with fewer than two distinct non-missing "
                f"values: {described}.",
                UserWarning,
            )
        if len(dropped) == len(names):
            # n_samples is in the message because one row is the usual cause.
            raise ValueError(
                "No usable feature remains: every column is constant or entirely "
                f"missing (n_samples={X.shape[0]}, n_features={X.shape[1]})."
            )

        self.n_continuous_ = (
            len(self.numeric_columns_)
            + int(self.missing_indicator_mask_.sum())
            + sum(len(levels) for levels in self.onehot_categories_)
        )
        self.category_cardinalities_ = tuple(
            len(levels) + 1 for levels in self.embedding_categories_
        )
        return self

    def transform(self, X):
        """Encode `X` as one float32 matrix.

        Parameters
        ----------
        X : {DataFrame, array-like} of shape (n_samples, n_features)
            The table to encode, with the columns seen during :meth:`fit`.

        Returns
        -------
        X_out : ndarray of shape (n_samples, `n_continuous_` + \
                len(`category_cardinalities_`)), dtype=float32
            C-contiguous and finite: scaled numerics, missing indicators and
            one-hot blocks, then one integer code column per embedded
            categorical.
        """
        check_is_fitted(self)
        X, names, kinds = self._validate_input(X, reset=False)
        not_numeric = self.numeric_columns_[kinds[self.numeric_columns_] != "numeric"]
        if len(not_numeric):
            bad = ", ".join(repr(name) for name in names[not_numeric])
            raise TypeError(
                f"Column(s) {bad} were numeric during fit but are not numeric now."
            )

        n_numeric = len(self.numeric_columns_)
        n_indicators = int(self.missing_indicator_mask_.sum())
        out = np.empty(
            (X.shape[0], self.n_continuous_ + len(self.category_cardinalities_)),
            dtype=np.float32,
        )

        indicator = n_numeric
        for block in _column_blocks(np.arange(n_numeric), X.shape[0]):
            values = _numeric_values(X, self.numeric_columns_[block], names)
            missing = np.isnan(values)
            center, scale = self.center_[block], self.scale_[block]
            np.copyto(values, center, where=missing)
            # Scaling values near the float64 limit may overflow; the clip
            # below brings any infinity back into the float32 range.
            with np.errstate(over="ignore"):
                values -= center
                values /= scale
            np.clip(values, -_FLOAT32_MAX, _FLOAT32_MAX, out=values)
            if self.smooth_clip:
                # Squaring cannot overflow after the clip to the float32 range.
                values /= np.sqrt(1.0 + np.square(values / _CLIP_BOUND))
            out[:, block] = values
            indicators = missing[:, self.missing_indicator_mask_[block]]
            out[:, indicator : indicator + indicators.shape[1]] = indicators
            indicator += indicators.shape[1]

        start = n_numeric + n_indicators
        for column, levels in zip(self.onehot_columns_, self.onehot_categories_):
            codes = _category_codes(X.iloc[:, column], levels)
            # Missing and unseen values (code -1) match no level: all zeros.
            out[:, start : start + len(levels)] = codes[:, None] == np.arange(
                len(levels)
            )
            start += len(levels)
        for column, levels in zip(self.embedding_columns_, self.embedding_categories_):
            # Shift by one so that missing and unseen values (-1) get code 0.
            out[:, start] = _category_codes(X.iloc[:, column], levels) + 1
            start += 1
        return out

    def get_feature_names_out(self, input_features=None):
        """Get output feature names for transformation.

        Parameters
        ----------
        input_features : array-like of str or None, default=None
            Input features. If `None`, `feature_names_in_` is used, or
            ``["x0", "x1", ...]`` when it is not defined. If an array-like,
            it must match `feature_names_in_` when that is defined.

        Returns
        -------
        feature_names_out : ndarray of str objects
            Names of the output columns: ``name`` for a scaled numeric,
            ``name_missing`` for its indicator, ``name_level`` for a one-hot
            column and ``name`` for an embedding code column.
        """
        check_is_fitted(self)
        names = _check_feature_names_in(self, input_features)
        numeric = list(names[self.numeric_columns_])
        indicators = [
            f"{name}_missing"
            for name in names[self.numeric_columns_][self.missing_indicator_mask_]
        ]
        onehot = [
            f"{names[column]}_{level}"
            for column, levels in zip(self.onehot_columns_, self.onehot_categories_)
            for level in levels
        ]
        embedded = list(names[self.embedding_columns_])
        return np.asarray(numeric + indicators + onehot + embedded, dtype=object)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        # Strings are accepted in DataFrames only; an array-like must be
        # numeric, so the `string` tag (array-likes of strings) stays False.
        tags.transformer_tags.preserves_dtype = ["float32"]
        return tags
