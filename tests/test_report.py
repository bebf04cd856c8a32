"""The validation report: its numbers against independent computations, its HTML in a browser."""

import os
import re
import shutil
import subprocess
import tempfile

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit, logit
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score
from sklearn.model_selection import train_test_split

from sk_dualhead import _io, metrics
from sk_dualhead import report as report_module
from sk_dualhead.report import validation_report, validation_report_from_predictions


@pytest.fixture(scope="module")
def validation():
    """A logistic model validated on held-out rows of breast cancer, 5% positive."""
    X, target = load_breast_cancer(return_X_y=True, as_frame=True)
    y = (target == 0).astype(int).to_numpy()  # malignant
    rng = np.random.default_rng(0)
    keep = np.flatnonzero(y == 0)
    keep = np.sort(np.r_[keep, rng.choice(np.flatnonzero(y == 1), 40, replace=False)])
    X, y = X.iloc[keep, :6].reset_index(drop=True), y[keep]
    X["site"] = rng.choice(["north", "south"], size=len(X))
    X.loc[rng.random(len(X)) < 0.1, "mean texture"] = np.nan
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.5, stratify=y, random_state=0
    )
    features = [c for c in X.columns if c != "site"]
    model = LogisticRegression(C=0.1, max_iter=5000).fit(
        X_train[features].fillna(X_train[features].mean()), y_train
    )
    X_test = X_test.copy()
    X_test["mean texture"] = X_test["mean texture"].fillna(X_train["mean texture"].mean())
    return model, X_test[features], y_test, X_test["site"].to_numpy()


@pytest.fixture(scope="module")
def report(validation):
    model, X, y, sites = validation
    return validation_report(model, X, y, groups=sites, n_bootstrap=200, random_state=0)


# ----------------------------------------------------------- the numbers


def test_slope_and_calibration_in_the_large_match_statsmodels(validation, report):
    sm = pytest.importorskip("statsmodels.api")
    model, X, y, _ = validation
    p = model.predict_proba(X)[:, 1]
    lp = logit(p)
    family = sm.families.Binomial()
    offset_fit = sm.GLM(y, np.ones((len(y), 1)), family=family, offset=lp).fit(tol=1e-12)
    slope_fit = sm.GLM(y, sm.add_constant(lp), family=family).fit(tol=1e-12)
    table = report.metrics["estimate"]
    assert table["calibration_in_the_large"] == pytest.approx(offset_fit.params[0], abs=1e-6)
    assert table["calibration_intercept"] == pytest.approx(slope_fit.params[0], abs=1e-6)
    assert table["calibration_slope"] == pytest.approx(slope_fit.params[1], abs=1e-6)
    assert table["observed_expected"] == pytest.approx(y.sum() / p.sum())


def test_point_estimates_match_scikit_learn(validation, report):
    model, X, y, _ = validation
    p = model.predict_proba(X)[:, 1]
    table = report.metrics["estimate"]
    assert table["roc_auc"] == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert table["average_precision"] == pytest.approx(average_precision_score(y, p), abs=1e-12)
    brier = brier_score_loss(y, p)
    assert table["brier"] == pytest.approx(brier)
    assert table["scaled_brier"] == pytest.approx(1 - brier / (y.mean() * (1 - y.mean())))
    assert table["ici"] == pytest.approx(metrics.integrated_calibration_index(y, p)["ici"])


def test_a_bootstrap_row_is_the_statistic_of_the_resampled_data():
    """The vectorised statistics of a row of counts equal those of the repeated rows."""
    rng = np.random.default_rng(3)
    score = np.round(rng.uniform(0.01, 0.7, size=300), 2)  # ties, as real scores have
    outcome = rng.random(300) < score
    weights = next(report_module._bootstrap_weights(np.random.RandomState(0), 300, 3))
    values = report_module._statistics(
        outcome, score, weights, report_module._tie_groups(score)
    )
    for b, counts in enumerate(weights.astype(int)):
        rows = np.repeat(np.arange(300), counts)
        y, p = outcome[rows], score[rows]
        assert values["roc_auc"][b] == pytest.approx(roc_auc_score(y, p), abs=1e-12)
        assert values["average_precision"][b] == pytest.approx(
            average_precision_score(y, p), abs=1e-12
        )
        calibration = metrics.calibration_report(y, p)
        assert values["calibration_slope"][b] == pytest.approx(
            calibration["calibration_slope"], abs=1e-8
        )
        assert values["calibration_in_the_large"][b] == pytest.approx(
            calibration["calibration_in_the_large"], abs=1e-8
        )
        # The bootstrap keeps the knots of the spline where the full data put them.
        lp = logit(p)
        design = metrics._spline_design(lp, metrics._spline_knots(logit(score), np.ones(300), 3))
        coef = metrics._spline_fit(design, y, np.ones(len(y)))
        ici = metrics._calibration_errors(design, coef, p, np.ones((1, len(y))))["ici"]
        assert values["ici"][b] == pytest.approx(ici[0], abs=1e-8)


def test_bootstrap_intervals_cover_at_the_nominal_rate():
    """200 simulated validation sets; the 95% intervals should cover about 190 times.

    The truth: predictions p with outcomes from expit(0.3 + 0.8 logit p), so the
    calibration slope is 0.8; the population ROC AUC of this design is computed on
    two million rows drawn the same way.
    """
    rng = np.random.default_rng(0)
    n, n_sim, a, b = 400, 200, 0.3, 0.8
    draw_p = lambda size: expit(rng.normal(-1.0, 1.0, size))  # noqa: E731
    big_p = draw_p(2_000_000)
    big_y = rng.random(big_p.size) < expit(a + b * logit(big_p))
    true_auc = roc_auc_score(big_y, big_p)
    covered = {"calibration_slope": 0, "roc_auc": 0}
    seeds = np.random.RandomState(1)
    for _ in range(n_sim):
        p = draw_p(n)
        y = rng.random(n) < expit(a + b * logit(p))
        intervals = report_module._bootstrap_intervals(y, p, 200, seeds)
        covered["calibration_slope"] += intervals["calibration_slope"][1] <= b <= intervals["calibration_slope"][2]
        covered["roc_auc"] += intervals["roc_auc"][1] <= true_auc <= intervals["roc_auc"][2]
    # Binomial(200, 0.95) lies in [181, 197] with probability about 0.99; intervals
    # of nominal 90% (180 expected) or 99% (198) would fail.
    for name, count in covered.items():
        assert 181 <= count <= 197, (name, count)


def test_net_benefit_matches_dcurves(validation, report):
    dcurves = pytest.importorskip("dcurves")
    model, X, y, _ = validation
    data = pd.DataFrame({"outcome": y, "model": model.predict_proba(X)[:, 1]})
    thresholds = report.decision_curve["threshold"].to_numpy()
    curves = dcurves.dca(data=data, outcome="outcome", modelnames=["model"],
                         thresholds=thresholds)
    for name, column in (("model", "model"), ("all", "treat_all"), ("none", "treat_none")):
        theirs = curves[curves["model"] == name].sort_values("threshold")["net_benefit"]
        np.testing.assert_allclose(
            report.decision_curve[column].to_numpy(), theirs.to_numpy(), atol=1e-12
        )
    at = report.threshold_table.set_index("threshold")["net_benefit"]
    np.testing.assert_allclose(at.to_numpy(), metrics.net_benefit(y, data["model"], at.index))


def test_threshold_table_counts(validation, report):
    model, X, y, _ = validation
    p = model.predict_proba(X)[:, 1]
    row = report.threshold_table.set_index("threshold").loc[0.1]
    flagged = p >= 0.1
    assert row["n_flagged"] == flagged.sum()
    assert row["sensitivity"] == pytest.approx(flagged[y == 1].mean())
    assert row["specificity"] == pytest.approx((~flagged)[y == 0].mean())
    assert row["ppv"] == pytest.approx(y[flagged].mean())
    assert row["npv"] == pytest.approx(1 - y[~flagged].mean())


def test_subgroups_are_the_report_of_each_subgroup(validation, report):
    model, X, y, sites = validation
    p = model.predict_proba(X)[:, 1]
    assert list(report.subgroups.index) == ["north", "south"]
    for site in ("north", "south"):
        rows = sites == site
        row = report.subgroups.loc[site]
        assert row["n_samples"] == rows.sum() and row["n_events"] == y[rows].sum()
        assert row["roc_auc"] == pytest.approx(roc_auc_score(y[rows], p[rows]))
        slope = metrics.calibration_report(y[rows], p[rows])["calibration_slope"]
        assert row["calibration_slope"] == pytest.approx(slope, abs=1e-8)
        assert row["roc_auc_lower"] <= row["roc_auc"] <= row["roc_auc_upper"]


def test_groups_by_column_name_and_data_summary(validation):
    model, X, y, sites = validation
    frame = X.assign(site=sites)
    frame.loc[frame.index[:5], "mean radius"] = np.nan
    result = validation_report_from_predictions(
        y, model.predict_proba(X), X=frame, groups="site", n_bootstrap=0
    )
    assert list(result.subgroups.index) == ["north", "south"]
    assert result.data_summary.loc["mean radius", "n_missing"] == 5
    assert result.data_summary.loc["mean radius", "share_missing"] == pytest.approx(5 / len(X))
    # without a bootstrap the intervals are left out, not invented
    assert result.metrics[["lower", "upper"]].isna().all().all()
    assert result.importance is None


def test_permutation_importance_finds_the_informative_column():
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"signal": rng.normal(size=600), "noise": rng.normal(size=600)})
    y = rng.random(600) < expit(2 * X["signal"] - 2)
    model = LogisticRegression().fit(X, y)
    result = validation_report(model, X, y, n_bootstrap=0, random_state=0)
    assert list(result.importance.index) == ["signal", "noise"]
    assert result.importance.loc["signal", "mean"] > 0.1
    assert abs(result.importance.loc["noise", "mean"]) < 0.02


def test_input_errors(validation):
    model, X, y, _ = validation
    with pytest.raises(ValueError, match="names a column"):
        validation_report(model, X.to_numpy(), y, groups="site")
    with pytest.raises(ValueError, match="thresholds must lie"):
        validation_report(model, X, y, thresholds=[0.0, 0.5])
    with pytest.raises(ValueError, match="n_bootstrap"):
        validation_report(model, X, y, n_bootstrap=-1)
    with pytest.raises(ValueError, match="pos_label"):
        validation_report(model, X, y, pos_label="yes")
    with pytest.raises(ValueError, match="both outcomes"):
        validation_report_from_predictions(np.zeros(5), np.full(5, 0.1))


# ----------------------------------------------------------- the HTML


def test_html_is_self_contained_and_has_every_section(report, tmp_path):
    pytest.importorskip("matplotlib")
    path = report.to_html(tmp_path / "report.html")
    text = path.read_text(encoding="utf-8")
    for title in ("Discrimination", "Calibration", "Clinical utility", "Subgroups",
                  "Permutation importance", "Data", "Methods", "TRIPOD+AI coverage"):
        assert f"<h2>{title}</h2>" in text
    for statistic in ("ROC AUC", "Average precision", "O:E ratio", "Calibration slope",
                      "Calibration-in-the-large", "ICI", "E50", "E90", "Emax",
                      "Scaled Brier score", "Sens.", "PPV", "NPV", "Net benefit"):
        assert statistic in text
    # Nothing is fetched: no scripts, no stylesheets, every image inline.
    assert not re.search(r"<script|<link|@import|url\(", text)
    sources = re.findall(r'src="([^"]*)"', text)
    assert len(sources) == 5
    assert all(source.startswith("data:image/png;base64,") for source in sources)
    without_images = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", text)
    assert not re.search(r"(?:https?:)?//[a-z]", without_images)
    # Written atomically: no temporary file is left beside it, and it is readable.
    assert os.listdir(tmp_path) == ["report.html"]
    assert os.stat(path).st_mode & 0o444


def test_failed_write_leaves_no_file(report, tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    # The report is written through _io.atomic_write, renamed into place last.
    monkeypatch.setattr(_io.os, "replace", _fail)
    with pytest.raises(OSError, match="disk full"):
        report.to_html(tmp_path / "report.html")
    assert os.listdir(tmp_path) == []


def _fail(*args):
    raise OSError("disk full")


def _chromium():
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(_chromium() is None, reason="chromium is not installed")
def test_report_renders_in_headless_chromium(report, tmp_path):
    from PIL import Image

    page = report.to_html(tmp_path / "report.html")
    shot = tmp_path / "report.png"
    command = [
        _chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tempfile.mkdtemp(dir=tmp_path)}",
        f"--screenshot={shot}", "--window-size=1280,4000", page.resolve().as_uri(),
    ]
    subprocess.run(command, check=True, capture_output=True, timeout=120)
    image = np.asarray(Image.open(shot).convert("RGB"))
    assert image.shape == (4000, 1280, 3)
    # The figures sit in the left half of the page, below the title: that region
    # holds the colours of the curves and bands, not a blank or one-colour page.
    figures = image[150:2500, 20:700].reshape(-1, 3)
    colours = np.unique(figures // 16, axis=0)
    assert len(colours) > 40
    blue = (figures[:, 2] > figures[:, 0] + 60).mean()  # the model's curves and bars
    assert blue > 0.002
    white = (figures.min(axis=1) > 245).mean()
    assert 0.3 < white < 0.98
    # The right column holds the tables: dark text on white.
    numbers = image[150:2500, 760:1260]
    assert (numbers.max(axis=2) < 100).mean() > 0.005
