"""Tests for :mod:`sk_dualhead.preprocessing`."""

import pickle
import re

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils._param_validation import InvalidParameterError
from sklearn.utils.estimator_checks import parametrize_with_checks

from sk_dualhead.preprocessing import TabularPreprocessor


def smooth_clip(x):
    return x / np.sqrt(1 + (x / 3) ** 2)


@pytest.fixture(scope="module")
def mixed_frame():
    """A small frame with every supported column kind and some missing values."""
    rng = np.random.default_rng(0)
    n = 60
    income = rng.lognormal(10, 1, n)
    income[::7] = np.nan
    return pd.DataFrame(
        {
            "age": rng.integers(18, 90, n),
            "income": income,
            "member": rng.random(n) > 0.5,
            "colour": pd.array(rng.choice(["red", "blue", "green"], n), dtype="string"),
            "size": pd.Categorical(rng.choice(["S", "M", "L", "XL"], n)),
            "city": rng.choice([f"city{i:02d}" for i in range(15)], n).astype(object),
        }
    )


@pytest.fixture(scope="module")
def fitted(mixed_frame):
    return TabularPreprocessor().fit(mixed_frame)


def test_numeric_scaling_matches_hand_computation():
    X = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0, 10.0]})
    # median 3, quartiles 2 and 4, so IQR 2.
    expected = (X["x"].to_numpy() - 3.0) / 2.0

    pre = TabularPreprocessor(smooth_clip=False).fit(X)
    assert pre.center_ == pytest.approx([3.0])
    assert pre.scale_ == pytest.approx([2.0])
    np.testing.assert_allclose(pre.transform(X)[:, 0], expected, rtol=1e-6)

    clipped = TabularPreprocessor().fit_transform(X)[:, 0]
    np.testing.assert_allclose(clipped, smooth_clip(expected), rtol=1e-6)
    big = TabularPreprocessor().fit(X).transform(pd.DataFrame({"x": [1e6, -1e6]}))
    np.testing.assert_allclose(big[:, 0], [3.0, -3.0], rtol=1e-5)
    assert np.all(np.abs(big) < 3.0 + 1e-6)


@pytest.mark.parametrize(
    "column, scale",
    [
        # IQR is 0, so the standard deviation is used.
        ([0.0] * 7 + [7.0], np.std([0.0] * 7 + [7.0])),
        # IQR and standard deviation (which underflows) are both 0.
        ([0.0] * 8 + [5e-324], 1.0),
    ],
)
def test_scale_falls_back_to_std_then_one(column, scale):
    pre = TabularPreprocessor().fit(pd.DataFrame({"x": column}))
    assert pre.scale_ == pytest.approx([scale])


def test_missing_values_are_imputed_and_flagged():
    X = pd.DataFrame({"a": [1.0, np.nan, 3.0, 4.0], "b": [1.0, 2.0, 3.0, 5.0]})
    pre = TabularPreprocessor(smooth_clip=False).fit(X)
    assert list(pre.get_feature_names_out()) == ["a", "b", "a_missing"]

    out = pre.transform(X)
    # The median (3) imputes the missing value, which then scales to 0.
    assert out[1, 0] == 0.0
    np.testing.assert_array_equal(out[:, 2], [0, 1, 0, 0])

    # A column complete at fit time gets no indicator, but is still imputed.
    new = pd.DataFrame({"a": [np.nan], "b": [np.nan]})
    np.testing.assert_array_equal(pre.transform(new), [[0.0, 0.0, 1.0]])


def test_missing_indicators_can_be_disabled():
    X = pd.DataFrame({"a": [1.0, np.nan, 3.0, 4.0]})
    pre = TabularPreprocessor(add_missing_indicators=False).fit(X)
    assert list(pre.get_feature_names_out()) == ["a"]
    assert pre.transform(X).shape == (4, 1)


@pytest.mark.parametrize(
    "column, reason",
    [
        ([np.nan] * 4, "all missing"),
        ([2.0, 2.0, np.nan, 2.0], "constant"),
        (["x", "x", "x", None], "constant"),
        (pd.Series([None] * 4, dtype=object), "all missing"),
        ([True] * 4, "constant"),
    ],
)
def test_uninformative_column_dropped_with_warning(column, reason):
    X = pd.DataFrame({"keep": [1.0, 2.0, 3.0, 4.0], "bad": column})
    with pytest.warns(UserWarning, match=re.escape(f"'bad' ({reason})")):
        pre = TabularPreprocessor().fit(X)
    assert list(pre.get_feature_names_out()) == ["keep"]
    np.testing.assert_array_equal(pre.dropped_columns_, [1])
    assert pre.transform(X).shape == (4, 1)


def test_no_usable_feature_raises():
    X = pd.DataFrame({"a": [1.0, 1.0], "b": [np.nan, np.nan]})
    with pytest.warns(UserWarning, match="'a' \\(constant\\), 'b' \\(all missing\\)"):
        with pytest.raises(ValueError, match="No usable feature remains"):
            TabularPreprocessor().fit(X)


def test_unseen_and_missing_categories_map_to_reserved_state():
    levels = [f"c{i:02d}" for i in range(12)]
    X = pd.DataFrame({"small": ["a", "b", "c"] * 4, "large": levels})
    pre = TabularPreprocessor(max_onehot_cardinality=3).fit(X)
    new = pd.DataFrame({"small": ["b", "zzz", None], "large": ["c03", "zzz", None]})
    out = pre.transform(new)
    np.testing.assert_array_equal(out[:, :3], [[0, 1, 0], [0, 0, 0], [0, 0, 0]])
    np.testing.assert_array_equal(out[:, 3], [4, 0, 0])


def test_high_cardinality_goes_to_embedding_block():
    rng = np.random.default_rng(1)
    X = pd.DataFrame(
        {
            "wide": [f"v{i:02d}" for i in range(20)] * 2,
            "x": rng.normal(size=40),
            "narrow": ["p", "q"] * 20,
            "wider": pd.Categorical([str(i) for i in range(10)] * 4),
        }
    )
    pre = TabularPreprocessor().fit(X)
    assert pre.category_cardinalities_ == (21, 11)
    assert pre.n_continuous_ == 1 + 2
    assert list(pre.get_feature_names_out()) == [
        "x", "narrow_p", "narrow_q", "wide", "wider"
    ]
    out = pre.transform(X)
    # Levels are sorted, and known levels get codes 1..n_levels.
    np.testing.assert_array_equal(out[:20, 3], np.arange(1, 21))
    np.testing.assert_array_equal(out[:10, 4], np.arange(1, 11))
    assert out[:, 3:].min() >= 1
    assert np.all(out[:, 3:] < np.array(pre.category_cardinalities_))


def test_max_onehot_cardinality_zero_embeds_everything():
    X = pd.DataFrame({"b": [True, False, True], "s": ["x", "y", "x"]})
    pre = TabularPreprocessor(max_onehot_cardinality=0).fit(X)
    assert pre.n_continuous_ == 0
    assert pre.category_cardinalities_ == (3, 3)
    np.testing.assert_array_equal(pre.transform(X), [[2, 1], [1, 2], [2, 1]])


def test_categorical_dtypes(fitted, mixed_frame):
    assert list(fitted.get_feature_names_out()) == [
        "age", "income", "income_missing",
        "member_False", "member_True",
        "colour_blue", "colour_green", "colour_red",
        "size_L", "size_M", "size_S", "size_XL",
        "city",
    ]  # fmt: skip
    assert fitted.category_cardinalities_ == (16,)
    out = fitted.transform(mixed_frame)
    one_hot = out[:, 3:12]
    assert set(np.unique(one_hot)) == {0.0, 1.0}
    # Each one-hot block has exactly one 1 per row: no value is missing.
    for block in (slice(0, 2), slice(2, 5), slice(5, 9)):
        np.testing.assert_array_equal(one_hot[:, block].sum(axis=1), 1)
    np.testing.assert_array_equal(out[:, 3], ~mixed_frame["member"])


def test_nullable_dtypes():
    X = pd.DataFrame(
        {
            "n": pd.array([1, None, 3, 4], dtype="Int64"),
            "b": pd.array([True, None, False, True], dtype="boolean"),
        }
    )
    pre = TabularPreprocessor(smooth_clip=False).fit(X)
    assert list(pre.get_feature_names_out()) == ["n", "n_missing", "b_False", "b_True"]
    np.testing.assert_allclose(
        pre.transform(X),
        [[-2 / 1.5, 0, 0, 1], [0, 1, 0, 0], [0, 0, 1, 0], [1 / 1.5, 0, 0, 1]],
        rtol=1e-6,
    )


def test_object_columns_are_compared_as_strings():
    # 1, 1.0 and True compare equal in Python but are distinct levels here,
    # whatever the row order.
    values = [1, 1.0, True, "1", "b", None, np.nan]
    X = pd.DataFrame({"m": pd.Series(values, dtype=object)})
    pre = TabularPreprocessor().fit(X)
    np.testing.assert_array_equal(pre.onehot_categories_[0], ["1", "1.0", "True", "b"])
    out = pre.transform(X)
    np.testing.assert_array_equal(out.argmax(axis=1)[:5], [0, 1, 2, 0, 3])
    np.testing.assert_array_equal(out[5:], 0)

    shuffled = X.iloc[::-1].reset_index(drop=True)
    np.testing.assert_array_equal(
        TabularPreprocessor().fit(shuffled).onehot_categories_[0],
        pre.onehot_categories_[0],
    )


def test_numeric_only_object_column_stays_categorical():
    X = pd.DataFrame({"code": pd.Series([10, 9, 10, 11], dtype=object)})
    pre = TabularPreprocessor().fit(X)
    # Sorted as strings.
    assert list(pre.get_feature_names_out()) == ["code_10", "code_11", "code_9"]


def test_column_order_preserved_within_blocks():
    X = pd.DataFrame(
        {
            "z": [1.0, 2.0, 3.0],
            "c2": ["u", "v", "u"],
            "a": [3.0, 1.0, 2.0],
            "c1": ["x", "y", "y"],
        }
    )
    pre = TabularPreprocessor().fit(X)
    names = ["z", "a", "c2_u", "c2_v", "c1_x", "c1_y"]
    assert list(pre.get_feature_names_out()) == names
    np.testing.assert_array_equal(pre.numeric_columns_, [0, 2])
    np.testing.assert_array_equal(pre.onehot_columns_, [1, 3])


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda X: X[X.columns[::-1]], "must be in the same order"),
        (lambda X: X.drop(columns="age"), "seen at fit time, yet now missing"),
        (lambda X: X.assign(extra=1.0), "unseen at fit time"),
        (lambda X: X.rename(columns={"age": "AGE"}), "unseen at fit time"),
    ],
)
def test_changed_columns_raise_feature_name_errors(
    fitted, mixed_frame, change, message
):
    with pytest.raises(ValueError, match=message):
        fitted.transform(change(mixed_frame))


def test_numpy_input_with_nan():
    X = np.array([[1.0, 5.0], [np.nan, 6.0], [3.0, 7.0], [4.0, 9.0]])
    pre = TabularPreprocessor().fit(X)
    assert not hasattr(pre, "feature_names_in_")
    assert list(pre.get_feature_names_out()) == ["x0", "x1", "x0_missing"]
    out = pre.transform(X)
    assert np.isfinite(out).all()
    assert out[1, 0] == 0.0 and out[1, 2] == 1.0


@pytest.mark.parametrize("bad", [np.inf, -np.inf])
def test_infinity_raises_naming_the_column(fitted, mixed_frame, bad):
    income = mixed_frame["income"].where(mixed_frame.index != 3, bad)
    X = mixed_frame.assign(income=income)
    with pytest.raises(ValueError, match="infinity in column\\(s\\) 'income'"):
        TabularPreprocessor().fit(X)
    with pytest.raises(ValueError, match="infinity in column\\(s\\) 'income'"):
        fitted.transform(X)
    with pytest.raises(ValueError, match="infinity"):
        TabularPreprocessor().fit(np.array([[1.0], [bad]]))


@pytest.mark.parametrize("smooth", [True, False])
def test_huge_values_stay_finite(smooth):
    X = pd.DataFrame({"x": [1e300, -1e300, 0.0, 1.0, 2.0]})
    pre = TabularPreprocessor(smooth_clip=smooth).fit(X)
    for data in (X, pd.DataFrame({"x": [1.7e308, -1.7e308, 5e-324]})):
        out = pre.transform(data)
        assert np.isfinite(out).all()
        assert out[0, 0] > 0 > out[1, 0]
    # Statistics overflowing float64 fall back to finite values.
    extreme = pd.DataFrame({"x": [-1.7e308, 1.7e308, 1.7e308, -1.7e308]})
    pre = TabularPreprocessor(smooth_clip=smooth).fit(extreme)
    assert np.isfinite(pre.center_).all() and np.isfinite(pre.scale_).all()
    assert np.isfinite(pre.transform(extreme)).all()


@settings(max_examples=50, deadline=None, derandomize=True, database=None)
@given(
    arrays(
        np.float64,
        (6, 2),
        elements=st.floats(allow_infinity=False, allow_nan=True, width=64),
    )
)
def test_output_is_always_finite(X):
    X[0] = [0.0, 1.0]
    X[1] = [1.0, 0.0]
    out = TabularPreprocessor().fit(X).transform(X)
    assert out.dtype == np.float32
    assert np.isfinite(out).all()
    assert np.all(np.abs(out) <= 3.0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
def test_output_dtype_and_layout(dtype):
    X = np.arange(12, dtype=dtype).reshape(4, 3, order="F")
    out = TabularPreprocessor().fit_transform(X)
    assert out.dtype == np.float32
    assert out.flags.c_contiguous


def test_output_layout_and_names(fitted, mixed_frame):
    out = fitted.transform(mixed_frame)
    assert out.dtype == np.float32
    assert out.flags.c_contiguous
    assert np.isfinite(out).all()
    assert out.shape == (60, fitted.n_continuous_ + len(fitted.category_cardinalities_))
    assert len(fitted.get_feature_names_out()) == out.shape[1]


def test_transform_does_not_modify_input(fitted, mixed_frame):
    before = mixed_frame.copy()
    fitted.transform(mixed_frame)
    pd.testing.assert_frame_equal(mixed_frame, before)


def test_clone_and_pickle_round_trip(fitted, mixed_frame):
    expected = fitted.transform(mixed_frame)
    restored = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(restored.transform(mixed_frame), expected)
    refitted = clone(fitted).fit(mixed_frame)
    np.testing.assert_array_equal(refitted.transform(mixed_frame), expected)


def test_set_output_pandas(fitted, mixed_frame):
    pre = clone(fitted).set_output(transform="pandas").fit(mixed_frame)
    out = pre.transform(mixed_frame)
    assert list(out.columns) == list(fitted.get_feature_names_out())


@pytest.mark.parametrize(
    "X, error, message",
    [
        (pd.DataFrame({"a": pd.Series([], dtype=float)}), ValueError, "0 sample"),
        (pd.DataFrame(index=range(3)), ValueError, "0 feature"),
        (
            pd.DataFrame([[1.0, 2.0, 3.0]] * 2, columns=["a", "b", "a"]),
            ValueError,
            "(?s)unique column names.*'a' 2 times",
        ),
        (pd.DataFrame({"a": [1.0, 2.0], 0: [3.0, 4.0]}), TypeError, "string"),
        (pd.DataFrame({"z": [1 + 1j, 2 + 0j]}), ValueError, "Complex data.*'z'"),
        (np.array([[1 + 1j], [2 + 0j]]), ValueError, "Complex data"),
        (
            pd.DataFrame({"t": pd.to_datetime(["2024-01-01", "2024-02-01"])}),
            TypeError,
            r"'t' has dtype datetime64\[ns\]: .*days since.*or drop it",
        ),
        (np.array([["a"], ["b"]], dtype=object), ValueError, "could not convert"),
    ],
)
def test_invalid_input_raises(X, error, message):
    with pytest.raises(error, match=message):
        TabularPreprocessor().fit(X)


def test_numeric_column_turning_categorical_raises(fitted, mixed_frame):
    X = mixed_frame.assign(age=mixed_frame["age"].astype(str))
    with pytest.raises(TypeError, match="'age' were numeric during fit"):
        fitted.transform(X)


def test_transform_before_fit_raises(mixed_frame):
    with pytest.raises(NotFittedError):
        TabularPreprocessor().transform(mixed_frame)
    with pytest.raises(NotFittedError):
        TabularPreprocessor().get_feature_names_out()


@pytest.mark.parametrize(
    "params",
    [
        {"max_onehot_cardinality": -1},
        {"max_onehot_cardinality": 2.5},
        {"smooth_clip": "yes"},
        {"add_missing_indicators": None},
    ],
)
def test_invalid_parameters_raise(params, mixed_frame):
    with pytest.raises(InvalidParameterError):
        TabularPreprocessor(**params).fit(mixed_frame)


@parametrize_with_checks([TabularPreprocessor()])
def test_sklearn_compatible(estimator, check):
    check(estimator)


def test_column_blocks_give_the_same_result(monkeypatch):
    # Large tables are converted to float64 a few columns at a time; blocks
    # of one column must give exactly what one block of all columns gives.
    import sk_dualhead.preprocessing as preprocessing

    rng = np.random.default_rng(0)
    X = rng.lognormal(size=(300, 7))
    X[rng.random(X.shape) < 0.2] = np.nan
    X[:, 3] = 1.0
    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(7)])
    with pytest.warns(UserWarning, match="'x3' \\(constant\\)"):
        whole = TabularPreprocessor().fit(frame)
    monkeypatch.setattr(preprocessing, "_BLOCK_VALUES", 1)
    assert len(preprocessing._column_blocks(np.arange(7), len(X))) == 7
    with pytest.warns(UserWarning, match="'x3' \\(constant\\)"):
        blocked = TabularPreprocessor().fit(frame)
    for name in ("numeric_columns_", "missing_indicator_mask_", "center_", "scale_"):
        np.testing.assert_array_equal(getattr(blocked, name), getattr(whole, name))
    np.testing.assert_array_equal(blocked.transform(frame), whole.transform(frame))
