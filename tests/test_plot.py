"""Figures of sk_dualhead.plot: what is drawn and how it is labelled."""

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from sklearn.datasets import make_classification  # noqa: E402

from sk_dualhead import DualHeadClassifier  # noqa: E402
from sk_dualhead.metrics import expected_calibration_error  # noqa: E402
from sk_dualhead.plot import (  # noqa: E402
    plot_loss_curves,
    plot_reliability,
    plot_roc_pr,
)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def fitted():
    X, y = make_classification(n_samples=200, n_features=5, random_state=0)
    model = DualHeadClassifier(
        hidden_sizes=(16,), max_epochs=40, n_iter_no_change=3, lr=1e-2,
        n_networks=1, random_state=0,
    ).fit(X, y)
    return model, y, model.predict_proba(X)


def test_reliability_labels_curves_with_their_ece(fitted):
    _, y, proba = fitted
    _, (ax, hist_ax) = plt.subplots(2)
    plot_reliability(y, proba, name="a", ax=ax, hist_ax=hist_ax)
    plot_reliability(y, proba[:, 1] ** 2, name="b", ax=ax)
    labels = [text.get_text() for text in ax.get_legend().get_texts()]
    ece = expected_calibration_error(y, proba[:, 1], n_bins=10)
    assert labels == ["Perfectly calibrated", f"a (ECE {ece:.3f})", labels[2]]
    assert labels[2].startswith("b (ECE ")
    # The diagonal is drawn once, however many models share the axes.
    assert sum(line.get_label() == "Perfectly calibrated" for line in ax.lines) == 1
    assert ax.get_xlabel() and ax.get_ylabel()
    # One step histogram, for the one model given hist_ax.
    assert len(hist_ax.patches) == 1
    assert hist_ax.get_ylabel() == "Samples per bin"


def test_reliability_with_string_labels_uses_the_larger_label():
    y = np.array(["no", "no", "yes", "yes"])
    display = plot_reliability(y, [0.2, 0.3, 0.7, 0.9])
    assert display.pos_label == "yes"
    assert "yes" in display.ax_.get_xlabel()


def test_reliability_refuses_multiclass_probabilities():
    with pytest.raises(ValueError, match="binary"):
        plot_reliability([0, 1, 2], np.full((3, 3), 1 / 3))


def test_loss_curves_show_every_term(fitted):
    model, *_ = fitted
    axes = plot_loss_curves(model)
    titles = [ax.get_title() for ax in axes]
    assert titles == [
        "total loss",
        "main head",
        "auxiliary head",
        "consistency (KL)",
        "validation log loss",
    ]
    (member,) = model.members_
    for ax in axes[:4]:
        train, valid = (
            line for line in ax.lines if line.get_label() in ("train", "valid")
        )
        np.testing.assert_array_equal(
            train.get_xdata(), [row["epoch"] for row in member.history]
        )
        assert len(valid.get_ydata()) == member.n_epochs
        assert ax.get_xlabel() == "Epoch" and ax.get_ylabel()
    np.testing.assert_allclose(
        axes[1].lines[0].get_ydata(), [row["train_main_loss"] for row in member.history]
    )
    assert member.best_epoch < member.n_epochs
    assert any(line.get_label() == "best epoch" for line in axes[0].lines)


def test_loss_curves_without_validation_data():
    X, y = make_classification(n_samples=60, n_features=4, random_state=0)
    model = DualHeadClassifier(
        hidden_sizes=(8,), max_epochs=3, early_stopping=False, n_networks=1,
        random_state=0,
    ).fit(X, y)
    axes = plot_loss_curves(model.members_[0].history)
    assert len(axes) == 4
    assert all(len(ax.lines) == 1 for ax in axes)


def test_loss_curves_check_the_number_of_axes(fitted):
    model, *_ = fitted
    _, axes = plt.subplots(1, 2)
    with pytest.raises(ValueError, match="Expected 5 axes"):
        plot_loss_curves(model, axes=axes)


def test_roc_pr_draw_both_curves(fitted):
    _, y, proba = fitted
    roc, pr = plot_roc_pr(y, proba, name="model")
    assert roc.ax_ is not pr.ax_
    assert 0.5 < roc.roc_auc <= 1
    assert 0 < pr.average_precision <= 1
    assert roc.ax_.get_xlabel().startswith("False Positive Rate")
    assert pr.ax_.get_xlabel().startswith("Recall")
    plot_roc_pr(y, proba[:, 1] ** 3, name="other", axes=[roc.ax_, pr.ax_])
    chance = [line for line in roc.ax_.lines if "Chance" in line.get_label()]
    assert len(chance) == 1


@pytest.mark.parametrize(
    "low, high, labelled",
    [
        (0.07, 0.2, ["0.03", "0.05", "0.07", "0.2"]),  # within a decade: all
        (0.002, 0.05, ["0.05", "0.2"]),  # over a decade: 2 and 5 only
        (1e-5, 0.1, []),  # four decades: the powers of ten suffice
    ],
)
def test_minor_log_ticks_are_labelled_by_range(low, high, labelled):
    from functools import partial

    from sk_dualhead.plot import _minor_label, _minor_mantissas

    label = partial(_minor_label, mantissas=_minor_mantissas(low, high))
    ticks = [0.03, 0.05, 0.07, 0.2]
    assert [label(t, None) for t in ticks if label(t, None)] == labelled


def test_calibration_curve_draws_a_band_and_the_predictions(fitted):
    from sk_dualhead.metrics import integrated_calibration_index
    from sk_dualhead.plot import plot_calibration_curve

    _, y, proba = fitted
    _, (ax, hist_ax) = plt.subplots(2)
    plot_calibration_curve(y, proba, name="a", ax=ax, hist_ax=hist_ax)
    labels = [text.get_text() for text in ax.get_legend().get_texts()]
    ici = integrated_calibration_index(y, proba[:, 1])["ici"]
    assert labels == ["Perfect calibration", f"a (ICI {ici:.3f})"]
    assert len(ax.collections) == 1  # the band
    # one model: events above the axis, non-events below
    heights = np.array([patch.get_height() for patch in hist_ax.patches])
    assert heights.max() > 0 > heights.min()
    assert heights[heights > 0].sum() == y.sum()


def test_calibration_curve_at_most_three_models_a_panel(fitted):
    from sk_dualhead.plot import plot_calibration_curve

    _, y, proba = fitted
    _, ax = plt.subplots()
    for power in (1, 2, 3):
        plot_calibration_curve(y, proba[:, 1] ** power, name=str(power), ax=ax)
    # the diagonal is drawn once
    assert sum(line.get_gid() == "diagonal" for line in ax.lines) == 1
    with pytest.raises(ValueError, match="at most 3 per panel"):
        plot_calibration_curve(y, proba[:, 1] ** 4, ax=ax)


def test_decision_curve_draws_references_once(fitted):
    from sk_dualhead.metrics import net_benefit
    from sk_dualhead.plot import plot_decision_curve

    _, y, proba = fitted
    _, ax = plt.subplots()
    plot_decision_curve(y, proba, name="a", ax=ax, thresholds=[0.1, 0.2, 0.3])
    plot_decision_curve(y, proba[:, 1] ** 2, name="b", ax=ax, thresholds=[0.1, 0.2, 0.3])
    labels = [text.get_text() for text in ax.get_legend().get_texts()]
    assert labels == ["Treat all", "Treat none", "a", "b"]
    np.testing.assert_allclose(ax.lines[2].get_ydata(), net_benefit(y, proba, [0.1, 0.2, 0.3]))


def test_calibration_curve_histogram_per_model(fitted):
    from sk_dualhead.plot import plot_calibration_curve

    _, y, proba = fitted
    _, (ax, hist_ax) = plt.subplots(2)
    plot_calibration_curve(y, proba, ax=ax, hist_ax=hist_ax, hist="model")
    plot_calibration_curve(y, proba[:, 1] ** 2, ax=ax, hist_ax=hist_ax, hist="model")
    assert len(hist_ax.patches) == 2  # one step histogram per model
    assert hist_ax.get_yscale() == "log"
    with pytest.raises(ValueError, match="hist must be"):
        plot_calibration_curve(y, proba, hist="bins")
