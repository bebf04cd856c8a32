"""DualHeadClassifier as a drop-in on raw tables: DataFrames in, nothing else."""

import numpy as np
import pandas as pd
import pytest
from conftest import fast_classifier
from sklearn.model_selection import cross_val_score

from sk_dualhead import DualHeadClassifier
from sk_dualhead.preprocessing import TabularPreprocessor

N_CITIES = 40


def make_table(n, seed=0):
    """A table with every supported column kind and missing values.

    The label depends on the numeric column, the category, the bool and the
    high-cardinality city, so a model that ignored any of them would do worse.
    """
    rng = np.random.default_rng(seed)
    age = rng.normal(50, 10, n)
    colour = rng.choice(["red", "green", "blue"], n)
    smoker = rng.random(n) < 0.4
    city_code = rng.integers(N_CITIES, size=n)
    city = np.array([f"city_{i:02d}" for i in range(N_CITIES)])[city_code]
    city_effect = np.where(city_code % 5 == 0, 1.5, 0.0)
    logit = (
        (age - 50) / 10
        + np.where(colour == "red", 1.0, -0.5)
        + 0.8 * smoker
        + city_effect
    )
    y = np.where(rng.random(n) < 1 / (1 + np.exp(-logit)), "sick", "well")
    X = pd.DataFrame(
        {
            "age": age,
            "colour": pd.Categorical(colour),
            "smoker": smoker,
            "city": pd.Series(city, dtype=object),
            "lab": rng.normal(0, 1, n),
        }
    )
    X.loc[rng.random(n) < 0.1, "age"] = np.nan
    X.loc[rng.random(n) < 0.1, "colour"] = np.nan
    X.loc[rng.random(n) < 0.1, "city"] = None
    return X, y


@pytest.fixture(scope="module")
def table():
    return make_table(600)


@pytest.fixture(scope="module")
def fitted(table):
    X, y = table
    return fast_classifier().fit(X, y)


def test_fits_a_raw_table_and_beats_chance(table):
    X, y = table
    scores = cross_val_score(
        fast_classifier(), X, y, cv=3, scoring="roc_auc"
    )
    assert scores.mean() > 0.65


def test_preprocessor_is_fitted_and_kept(fitted, table):
    X, _ = table
    assert isinstance(fitted.preprocessor_, TabularPreprocessor)
    assert list(fitted.feature_names_in_) == list(X.columns)
    names = list(fitted.preprocessor_.get_feature_names_out())
    assert "age_missing" in names
    assert any(name.startswith("colour_") for name in names)


def test_high_cardinality_column_is_embedded(fitted):
    embeddings = fitted.network_.embeddings
    assert len(embeddings) == 1
    # Every city seen in training plus the reserved unseen/missing code.
    assert embeddings[0].shape[1] == N_CITIES + 1
    assert fitted.preprocessor_.category_cardinalities_ == (N_CITIES + 1,)


def test_unseen_categories_and_missing_values_at_predict(fitted, table):
    X, _ = table
    new = X.iloc[:4].copy()
    new["colour"] = pd.Categorical(["purple", np.nan, "red", "green"])
    new["city"] = ["Atlantis", None, "city_01", "El Dorado"]
    new.loc[new.index[0], "age"] = np.nan
    proba = fitted.predict_proba(new)
    assert proba.shape == (4, 2)
    assert np.isfinite(proba).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)


def test_unseen_levels_share_the_missing_level(fitted, table):
    X, _ = table
    unseen, missing = X.iloc[:1].copy(), X.iloc[:1].copy()
    unseen["city"] = "Atlantis"
    missing["city"] = None
    np.testing.assert_array_equal(
        fitted.predict_proba(unseen), fitted.predict_proba(missing)
    )


def test_column_order_is_checked_by_name(fitted, table):
    X, _ = table
    with pytest.raises(ValueError, match="feature names"):
        fitted.predict_proba(X[list(reversed(X.columns))])
    with pytest.raises(ValueError, match="feature names"):
        fitted.predict_proba(X.drop(columns="lab"))


def test_string_dtype_and_nullable_columns(table):
    X, y = table
    X = X.astype({"city": "string", "smoker": "boolean"})
    X.loc[X.index[:5], "smoker"] = pd.NA
    clf = fast_classifier().fit(X, y)
    assert len(clf.network_.embeddings) == 1
    assert np.isfinite(clf.predict_proba(X)).all()


def test_constant_column_dropped_with_warning(table):
    X, y = table
    X = X.assign(site="only_one", empty=np.nan)
    with pytest.warns(UserWarning, match="site|empty"):
        clf = fast_classifier().fit(X, y)
    assert clf.predict_proba(X).shape == (len(X), 2)


def test_numpy_input_with_nan_is_numeric():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 4))
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    X[rng.random(X.shape) < 0.1] = np.nan
    clf = fast_classifier().fit(X, y)
    assert clf.preprocessor_.n_continuous_ == 8  # 4 scaled + 4 indicators
    assert len(clf.network_.embeddings) == 0
    assert clf.score(X, y) > 0.8


def test_defaults_fit_a_ten_thousand_row_table():
    # The documented default configuration on a medium table; the benchmark
    # times it, this checks that it runs and learns.
    X, y = make_table(10_000, seed=1)
    clf = DualHeadClassifier(random_state=0).fit(X, y)
    assert all(member.n_epochs <= clf.max_epochs for member in clf.members_)
    assert clf.score(X, y) > 0.7
