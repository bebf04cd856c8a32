"""The sk-dualhead command line: demo, fit, predict and its error messages."""

import contextlib
import io
import re
import subprocess
import sys
import warnings

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression

import sk_dualhead
from sk_dualhead import DualHeadClassifier
from sk_dualhead._io import load_model
from sk_dualhead.cli import _each_warning_once, demo_datasets, demo_models, main

FIT_FAST = ["--cv", "2", "--max-epochs", "5", "--quiet"]


#: The command line's own model format (sk_dualhead.save).
MODEL_FILE = "model.skdh"


@pytest.fixture(scope="module")
def table():
    """Numbers, a category and a yes/no flag, with missing values; string labels."""
    X, y = make_classification(
        n_samples=160, n_features=4, n_informative=3, n_redundant=0, random_state=0
    )
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(X, columns=["age", "bmi", "dose", "score"])
    frame["site"] = rng.choice(["north", "south", "east"], size=len(frame))
    frame["smoker"] = rng.choice(["yes", "no"], size=len(frame))
    frame.loc[rng.random(len(frame)) < 0.1, "bmi"] = np.nan
    frame.loc[rng.random(len(frame)) < 0.1, "site"] = None
    frame["outcome"] = np.where(y == 1, "disease", "healthy")
    return frame


@pytest.fixture(scope="module")
def fitted_files(table, tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    data, model = folder / "train.csv", folder / MODEL_FILE
    table.to_csv(data, index=False)
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        status = main(
            ["fit", str(data), "--target", "outcome", *FIT_FAST, "--out", str(model)]
        )
    assert status == 0
    return data, model, stdout.getvalue()


def test_fit_saves_a_fitted_classifier(fitted_files, table):
    _, model_path, _ = fitted_files
    model = load_model(model_path)
    assert isinstance(model, DualHeadClassifier)
    np.testing.assert_array_equal(model.classes_, ["disease", "healthy"])
    assert list(model.feature_names_in_) == [c for c in table.columns if c != "outcome"]


def test_fit_prints_cv_scores_and_strategy(fitted_files):
    *_, out = fitted_files
    assert "2-fold" in out
    for header in ("ROC AUC", "AP", "Brier", "ECE(15)", "fit s"):
        assert header in out
    assert "strategy: " in out
    # 160 rows: n_networks="auto" averages eight networks.
    assert "8 network(s); epochs: " in out


def test_fit_takes_the_number_of_networks(table, tmp_path, capsys):
    data, out = tmp_path / "train.csv", tmp_path / MODEL_FILE
    table.to_csv(data, index=False)
    command = ["fit", str(data), "--target", "outcome", "--cv", "0", "--quiet"]
    command += ["--max-epochs", "2", "--out", str(out),]
    assert main([*command, "--n-networks", "2"]) == 0
    assert load_model(out).n_networks_ == 2
    with pytest.raises(SystemExit):
        main([*command, "--n-networks", "0"])
    assert "expected auto or a positive int, got '0'" in capsys.readouterr().err


def test_predict_round_trip(fitted_files, table, tmp_path):
    data, model_path, _ = fitted_files
    out = tmp_path / "preds.csv"
    assert main(["predict", str(model_path), str(data), "--out", str(out),]) == 0
    preds = pd.read_csv(out)
    assert list(preds.columns) == ["prediction", "proba_disease", "proba_healthy"]
    assert len(preds) == len(table)
    model = load_model(model_path)
    features = table.drop(columns="outcome")
    np.testing.assert_array_equal(preds["prediction"], model.predict(features))
    np.testing.assert_allclose(
        preds[["proba_disease", "proba_healthy"]],
        model.predict_proba(features),
        atol=1e-12,
    )


def test_predict_ignores_column_order_and_extra_columns(fitted_files, table, tmp_path):
    data, model_path, _ = fitted_files
    shuffled = (
        table.drop(columns="outcome").iloc[:, ::-1].assign(patient_id=range(len(table)))
    )
    new = tmp_path / "new.csv"
    shuffled.to_csv(new, index=False)
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    assert main(["predict", str(model_path), str(data), "--out", str(first),]) == 0
    assert main(["predict", str(model_path), str(new), "--out", str(second),]) == 0
    pd.testing.assert_frame_equal(pd.read_csv(first), pd.read_csv(second))


def test_predict_to_stdout(fitted_files, table, capsys):
    data, model_path, _ = fitted_files
    assert main(["predict", str(model_path), str(data),]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "prediction,proba_disease,proba_healthy"
    assert len(lines) == len(table) + 1


def test_parquet_round_trip(fitted_files, table, tmp_path):
    pytest.importorskip("pyarrow")
    _, model_path, _ = fitted_files
    data = tmp_path / "new.parquet"
    table.to_parquet(data)
    out = tmp_path / "preds.csv"
    assert main(["predict", str(model_path), str(data), "--out", str(out),]) == 0
    assert len(pd.read_csv(out)) == len(table)


def _error(argv, capsys):
    """Run a command that must fail; return its stderr."""
    status = main(argv)
    err = capsys.readouterr().err
    assert status == 1
    assert "Traceback" not in err
    return err


def test_missing_target_column_is_named(fitted_files, tmp_path, capsys):
    data, _, _ = fitted_files
    err = _error(
        ["fit", str(data), "--target", "diagnosis", "--out", str(tmp_path / "m")],
        capsys,
    )
    assert "'diagnosis'" in err and "outcome" in err


def test_single_class_target(table, tmp_path, capsys):
    data = tmp_path / "one.csv"
    table.assign(outcome="healthy").to_csv(data, index=False)
    err = _error(
        ["fit", str(data), "--target", "outcome", "--out", str(tmp_path / "m")], capsys
    )
    assert "single class" in err and "'healthy'" in err


def test_target_without_values(table, tmp_path, capsys):
    data = tmp_path / "none.csv"
    table.assign(outcome=np.nan).to_csv(data, index=False)
    err = _error(
        ["fit", str(data), "--target", "outcome", "--out", str(tmp_path / "m")], capsys
    )
    assert "has no values" in err


@pytest.mark.parametrize(
    "content, message",
    [("", "is empty"), ("a,b,outcome\n", "no data rows"), (None, "cannot read")],
    ids=["empty", "header-only", "missing"],
)
def test_unreadable_or_empty_data(content, message, tmp_path, capsys):
    data = tmp_path / "data.csv"
    if content is not None:
        data.write_text(content)
    err = _error(
        ["fit", str(data), "--target", "outcome", "--out", str(tmp_path / "m")], capsys
    )
    assert message in err


def test_too_few_rows_for_the_folds(table, tmp_path, capsys):
    data = tmp_path / "rare.csv"
    rare = pd.concat(
        [
            table[table["outcome"] == "healthy"],
            table[table["outcome"] == "disease"].head(3),
        ]
    )
    rare.to_csv(data, index=False)
    err = _error(
        [
            "fit",
            str(data),
            "--target",
            "outcome",
            "--cv",
            "5",
            "--out",
            str(tmp_path / "m"),
        ],
        capsys,
    )
    assert "3 rows" in err and "--cv" in err


def test_model_file_that_is_not_ours(fitted_files, tmp_path, capsys):
    data, _, _ = fitted_files
    text = tmp_path / "notes.joblib"
    text.write_text("not a model")
    err = _error(["predict", str(text), str(data)], capsys)
    assert "not a model saved by sk-dualhead fit" in err and "--allow-pickle" in err
    err = _error(["predict", str(text), str(data), "--allow-pickle"], capsys)
    assert "not a model saved by sk-dualhead fit" in err

    other = tmp_path / "logreg.joblib"
    joblib.dump(LogisticRegression(), other)
    err = _error(["predict", str(other), str(data), "--allow-pickle"], capsys)
    assert "LogisticRegression" in err
    preprocessor = tmp_path / "preprocessor.skdh"
    sk_dualhead.save(sk_dualhead.preprocessing.TabularPreprocessor(), preprocessor)
    err = _error(["predict", str(preprocessor), str(data)], capsys)
    assert "holds a TabularPreprocessor, not a fitted DualHeadClassifier" in err


def test_predict_data_missing_a_feature(fitted_files, table, tmp_path, capsys):
    _, model_path, _ = fitted_files
    data = tmp_path / "new.csv"
    table.drop(columns=["dose", "outcome"]).to_csv(data, index=False)
    err = _error(["predict", str(model_path), str(data),], capsys)
    assert "dose" in err


def test_demo_datasets():
    datasets = demo_datasets(random_state=0)
    X, y = datasets["breast_cancer"]
    assert y.sum() == 212  # malignant is the positive class
    X_rare, y_rare = datasets["breast_cancer_5pct"]
    assert len(y_rare) == len(X_rare) == 357 + y_rare.sum()
    assert 0.04 < y_rare.mean() < 0.06
    np.testing.assert_array_equal(
        demo_datasets(random_state=0)["breast_cancer_5pct"][1], y_rare
    )


def test_demo_quick(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--cv", "2", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    models = demo_models(quick=True, random_state=0)
    n_fits = 2 * len(models) * 2  # data sets x models x folds
    assert f"[{n_fits}/{n_fits}]" in captured.err
    assert {"DualHead(balanced)", "LogisticRegression", "HistGradientBoosting"} <= set(
        models
    )
    for model in models:
        assert captured.out.count(f"  {model}  ") == 2
    scores = pd.read_csv(out / "scores.csv")
    assert len(scores) == n_fits
    assert scores["roc_auc"].between(0, 1).all()
    if _has_matplotlib():
        for name in (
            "calibration",
            "loss_curves_breast_cancer",
            "loss_curves_breast_cancer_5pct",
        ):
            assert (out / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
        assert not (out / "reliability.png").exists()
        report = (out / "report_breast_cancer_5pct.html").read_text()
        assert "out-of-fold predictions of the demo" in report
        assert "<h2>Permutation importance</h2>" in report


def test_demo_figures_show_each_warning_once():
    def warn_a_b_a():
        # Each call in its own catch_warnings, as the curves' fits are: Python's
        # once-per-place rule alone would show every one.
        for message in ("a", "b", "a"):
            with warnings.catch_warnings():
                warnings.warn(message, UserWarning)

    with warnings.catch_warnings(record=True) as plain:
        warnings.simplefilter("default")
        warn_a_b_a()
    assert [str(w.message) for w in plain] == ["a", "b", "a"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        with _each_warning_once():
            warn_a_b_a()
    assert [str(w.message) for w in caught] == ["a", "b"]


def _has_matplotlib():
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def test_module_entry_point_help():
    result = subprocess.run(
        [sys.executable, "-m", "sk_dualhead", "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0
    for command in ("demo", "fit", "predict"):
        assert command in result.stdout


def test_bad_command_line_exits_with_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["fit", "data.csv"])
    assert exc.value.code == 2
    assert "--target" in capsys.readouterr().err


# ------------------------------------------------------------------ report


def _estimate(html, label):
    """The estimate of a row of the report's tables, as printed."""
    match = re.search(re.escape(label) + r"</td><td>(-?[0-9.]+)</td>", html)
    assert match, label
    return float(match.group(1))


@pytest.mark.skipif(not _has_matplotlib(), reason="the report needs matplotlib")
def test_report_on_a_table_the_model_was_not_trained_on(table, tmp_path, capsys):
    sm = pytest.importorskip("statsmodels.api")
    train, test = tmp_path / "train.csv", tmp_path / "test.csv"
    table.iloc[:100].to_csv(train, index=False)
    table.iloc[100:].to_csv(test, index=False)
    model_path, out = tmp_path / MODEL_FILE, tmp_path / "report.html"
    command = ["fit", str(train), "--target", "outcome", "--cv", "0", "--quiet"]
    assert main([*command, "--max-epochs", "5", "--n-networks", "1", "--out", str(model_path)]) == 0
    status = main(
        ["report", str(model_path), str(test), "--target", "outcome", "--group", "site",
         "--n-bootstrap", "100", "--out", str(out)]
    )
    assert status == 0, capsys.readouterr().err
    html = out.read_text()
    for title in ("Discrimination", "Calibration", "Clinical utility", "Subgroups",
                  "Permutation importance", "Data", "Methods", "TRIPOD+AI coverage"):
        assert f"<h2>{title}</h2>" in html
    for site in ("north", "south", "east", "(missing)"):
        assert f"<td>{site}</td>" in html
    # The printed slope and calibration-in-the-large are those of an independent
    # recalibration of the same predictions.
    model = load_model(model_path)
    frame = table.iloc[100:]
    p = model.predict_proba(frame.drop(columns="outcome"))[:, 1]
    y = (frame["outcome"] == model.classes_[1]).to_numpy()
    lp = np.log(p / (1 - p))
    family = sm.families.Binomial()
    slope = sm.GLM(y, sm.add_constant(lp), family=family).fit().params[1]
    citl = sm.GLM(y, np.ones((len(y), 1)), family=family, offset=lp).fit().params[0]
    assert _estimate(html, "Calibration slope") == pytest.approx(slope, abs=6e-4)
    assert _estimate(html, "Calibration-in-the-large (intercept, slope 1)") == (
        pytest.approx(citl, abs=6e-4)
    )


@pytest.mark.skipif(not _has_matplotlib(), reason="the report needs matplotlib")
def test_fit_writes_the_report_of_the_out_of_fold_predictions(table, tmp_path):
    data, out = tmp_path / "train.csv", tmp_path / "cv.html"
    table.to_csv(data, index=False)
    command = ["fit", str(data), "--target", "outcome", *FIT_FAST, "--n-networks", "1"]
    assert main([*command, "--n-bootstrap", "50", "--report", str(out),
                 "--out", str(tmp_path / MODEL_FILE)]) == 0
    html = out.read_text()
    assert "out-of-fold predictions of 2-fold cross-validation" in html
    assert "<h2>Permutation importance</h2>" in html and "Not computed" not in html


def test_report_errors(fitted_files, table, tmp_path, capsys):
    data, model_path, _ = fitted_files
    err = _error(["report", str(model_path), str(data), "--target", "outcome",
                  "--group", "ward", "--out", str(tmp_path / "r.html")], capsys)
    assert "group column 'ward'" in err
    err = _error(["fit", str(data), "--target", "outcome", "--cv", "0",
                  "--report", str(tmp_path / "r.html"), "--out", str(tmp_path / "m")], capsys)
    assert "--report needs the cross-validation" in err
