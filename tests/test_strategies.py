"""The strategy table, its knobs, the auto rule, and training with each strategy."""

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from sklearn.datasets import make_classification
from conftest import fast_classifier
from sklearn.model_selection import GridSearchCV, StratifiedKFold, train_test_split

from sk_dualhead import DualHeadClassifier
from sk_dualhead._engine import PackedNet, member_log_proba
from sk_dualhead.losses import FocalLoss, GeneralizedCrossEntropy, SmoothedCrossEntropy
from sk_dualhead.metrics import expected_calibration_error
from sk_dualhead.strategies import (
    STRATEGIES,
    build_loss,
    choose_strategy,
    estimate_label_noise,
    resolve_strategy,
)

COUNTS = np.array([60, 30, 10])


@pytest.fixture(scope="module")
def batch():
    generator = torch.Generator().manual_seed(0)
    main = torch.randn(8, 3, generator=generator, dtype=torch.float64)
    aux = torch.randn(8, 3, generator=generator, dtype=torch.float64)
    target = torch.tensor([0, 1, 2, 0, 1, 2, 2, 0])
    weight = torch.rand(8, generator=generator, dtype=torch.float64) * 2
    return main, aux, target, weight


# Hand formulas of each head's loss, per sample, written out from the papers.
def _p(logits):
    return torch.softmax(logits, dim=1)


def _smooth(target, eps, k=3):
    return F.one_hot(target, k).double() * (1 - eps) + eps / k


def _alpha(beta):
    raw = (1 - beta) / (1 - beta ** COUNTS.astype(float))
    return torch.tensor(raw / raw.mean())


def _focal(z, t, gamma, eps=0.0, alpha=None):
    p = _p(z)
    per = -(_smooth(t, eps) * (1 - p) ** gamma * p.log()).sum(1)
    return per if alpha is None else per * alpha[t]


def _ce(z, t, eps, alpha=None, beta=0.0):
    p = _p(z)
    per = -(_smooth(t, eps) * p.log()).sum(1) + beta * (p * p.log()).sum(1)
    return per if alpha is None else per * alpha[t]


def _flsd53(z, t):
    p_true = _p(z)[torch.arange(len(t)), t]
    gamma = torch.where(p_true < 0.2, 5.0, 3.0).double().unsqueeze(1)
    return _focal(z, t, gamma)


def _gce(z, t, q):
    return (1 - _p(z)[torch.arange(len(t)), t] ** q) / q


HAND = {
    "balanced": (lambda z, t: _focal(z, t, 2.0), lambda z, t: _ce(z, t, 0.15)),
    "focal_smooth": (
        lambda z, t: _focal(z, t, 2.0, alpha=_alpha(0.999)),
        lambda z, t: _ce(z, t, 0.1, _alpha(0.999)),
    ),
    "confidence_aware": (_flsd53, lambda z, t: _ce(z, t, 0.1, beta=0.1)),
    "adversarial": (lambda z, t: _focal(z, t, 2.0), lambda z, t: _gce(z, t, 0.7)),
    "double_focal": (lambda z, t: _focal(z, t, 2.0), lambda z, t: _focal(z, t, 2.0)),
}


def test_every_strategy_has_a_hand_formula():
    assert set(HAND) == set(STRATEGIES)


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_loss_terms_match_their_formulas(name, batch):
    main, aux, target, weight = batch
    terms = build_loss(name, class_counts=COUNTS)(main, aux, target, weight)
    main_formula, aux_formula = HAND[name]
    expected_main = (main_formula(main, target) * weight).mean()
    expected_aux = (aux_formula(aux, target) * weight).mean()
    q = _p(main)
    kl = (q * (q.log() - _p(aux).log())).sum(1)
    expected_consistency = (kl * weight).mean()
    torch.testing.assert_close(
        terms[1:], torch.stack([expected_main, expected_aux, expected_consistency])
    )
    w = STRATEGIES[name].weights
    expected_total = (
        w[0] * expected_main + w[1] * expected_aux + w[2] * expected_consistency
    )
    assert terms[0].item() == pytest.approx(expected_total.item())


def test_knobs_override_the_entry_where_the_loss_takes_them():
    entry = resolve_strategy(
        "adversarial",
        noise_q=0.5,
        adversarial_epsilon=0.2,
        label_smoothing=0.3,
        class_balance_beta=0.99,
        gamma=1.0,
    )
    assert entry.aux_loss == GeneralizedCrossEntropy(q=0.5)  # takes no smoothing
    assert entry.main_loss == FocalLoss(gamma=1.0)
    assert entry.adversarial_epsilon == 0.2
    assert entry.class_balance_beta == 0.99
    assert resolve_strategy("confidence_aware", confidence_penalty=0.0).aux_loss == (
        SmoothedCrossEntropy(label_smoothing=0.1, confidence_penalty=0.0)
    )
    assert resolve_strategy("balanced", loss_weights=(1, 0, 0)).weights == (1, 0, 0)
    # None keeps the strategy's value, and the table itself is never changed.
    assert resolve_strategy("adversarial", noise_q=None).aux_loss.q == 0.7
    assert STRATEGIES["adversarial"].adversarial_epsilon == 0.05
    assert STRATEGIES["adversarial"].main_loss == FocalLoss(gamma=2.0)


def test_adaptive_gamma_is_a_knob(binary, monkeypatch):
    X, y = binary
    seen = []
    real_init = PackedNet.initialize

    def initialize(net):
        seen.append(net.criterion.main_loss)
        return real_init(net)

    monkeypatch.setattr(PackedNet, "initialize", initialize)
    fast_classifier(gamma="adaptive").fit(X, y)
    assert seen == [FocalLoss(gamma="adaptive")]
    with pytest.raises(ValueError, match="gamma"):
        DualHeadClassifier(gamma="steep").fit(X, y)


def test_class_balancing_needs_counts(batch):
    with pytest.raises(ValueError, match="class_counts"):
        build_loss("focal_smooth")
    # Any strategy can be class-balanced through the knob.
    main, aux, target, _ = batch
    balanced = build_loss("balanced", class_counts=COUNTS, class_balance_beta=0.999)
    expected = _focal(main, target, 2.0, alpha=_alpha(0.999)).mean()
    assert balanced(main, aux, target)[1].item() == pytest.approx(expected.item())


@pytest.mark.parametrize("name", sorted(STRATEGIES) + ["auto"])
def test_every_strategy_trains(name, binary):
    X, y = binary
    clf = fast_classifier(name).fit(X, y)
    assert clf.strategy_ in STRATEGIES
    if name != "auto":
        assert clf.strategy_ == name
    losses = [row["train_loss"] for row in clf.members_[0].history]
    assert np.all(np.isfinite(losses))
    assert losses[-1] < losses[0]
    proba = clf.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    # Chance is 0.5; at this seed two strategies stop at their third epoch.
    assert clf.score(X, y) > 0.75


def test_focal_smooth_undoes_its_prior_shift(binary):
    X, y = binary
    keep = np.r_[np.flatnonzero(y == 0)[:150], np.flatnonzero(y == 1)[:30]]
    X, y = X[keep], y[keep]
    clf = DualHeadClassifier(
        "focal_smooth",
        calibration=None,
        early_stopping=False,
        predict_head="main",
        hidden_sizes=(16,), max_epochs=15, lr=1e-2, n_networks=1, random_state=0,
    ).fit(X, y)
    raw = (1 - 0.999) / (1 - 0.999 ** np.array([150.0, 30.0]))
    np.testing.assert_allclose(
        clf.prior_correction_, -np.log(raw / raw.mean()), rtol=1e-6
    )
    # The correction is added to both heads' logits before the softmax.
    features = torch.from_numpy(clf.preprocessor_.transform(X))
    with torch.inference_mode():
        main = clf.network_(features)[0][0].double()
    expected = torch.log_softmax(main + torch.from_numpy(clf.prior_correction_), dim=1)
    np.testing.assert_allclose(clf.predict_log_proba(X), expected.numpy(), rtol=2e-5)
    uncorrected = member_log_proba(
        clf.network_, clf.members_, features, predict_head="main", prior_correction=None
    )[0]
    assert not np.allclose(uncorrected, expected.numpy(), rtol=1e-2)
    assert fast_classifier().fit(X, y).prior_correction_ is None


# ----------------------------------------------------------- adversarial


def _table(n=240, seed=0):
    rng = np.random.RandomState(seed)
    frame = pd.DataFrame(
        {
            "a": rng.normal(size=n),
            "b": rng.normal(size=n),
            "city": pd.Categorical(rng.choice(list("ABCDEFGHIJKL"), size=n)),
        }
    )
    y = (frame["a"] + rng.normal(scale=0.5, size=n) > 0).astype(int)
    return frame, y


def _record_inputs(monkeypatch):
    seen = []
    original = PackedNet.infer

    def infer(self, x, **fit_params):
        if self.module_.training:
            seen.append(x.detach().clone())
        return original(self, x, **fit_params)

    monkeypatch.setattr(PackedNet, "infer", infer)
    return seen


def test_fgsm_moves_continuous_columns_only(monkeypatch):
    X, y = _table()
    seen = _record_inputs(monkeypatch)
    clf = fast_classifier(
        "adversarial", adversarial_epsilon=0.1, early_stopping=False, max_epochs=1,
        n_networks=2,
    ).fit(X, y)
    n_continuous = clf.network_.n_continuous
    assert len(clf.preprocessor_.category_cardinalities_) == 1
    # Each batch is seen clean, then perturbed: each member its own copy.
    assert len(seen) == 2 * clf.members_[0].history[-1]["train_batch_count"]
    for clean, perturbed in zip(seen[::2], seen[1::2]):
        assert clean.shape[0] == perturbed.shape[0] == 2
        step = perturbed - clean
        np.testing.assert_array_equal(step[..., n_continuous:], 0)
        continuous = step[..., :n_continuous].abs()
        # epsilon times the gradient's sign, which is 0 where the gradient
        # is (a row whose hidden units are all off in a member).
        moved = (continuous - 0.1).abs() < 1e-6
        assert torch.all(moved | (continuous == 0)) and moved.float().mean() > 0.9
        # Each member moves by the sign of its own gradient.
        assert not torch.equal(step[0], step[1])


def test_no_adversarial_pass_without_epsilon(monkeypatch):
    X, y = _table()
    seen = _record_inputs(monkeypatch)
    clf = fast_classifier(early_stopping=False, max_epochs=1).fit(X, y)
    assert len(seen) == clf.members_[0].history[-1]["train_batch_count"]


def test_fgsm_raises_the_main_loss(monkeypatch):
    # The perturbed batch is the worst case to first order: its main loss
    # exceeds the clean one, so each member's adversarial term is positive.
    changes = []
    original = PackedNet._adversarial_main_loss

    def record(self, Xi, target, weight, terms, epsilon, **fit_params):
        change = original(self, Xi, target, weight, terms, epsilon, **fit_params)
        changes.append(change.item())
        return change

    monkeypatch.setattr(PackedNet, "_adversarial_main_loss", record)
    X, y = _table()
    # Without dropout, the clean and the perturbed pass see the same network.
    fast_classifier(
        "adversarial", early_stopping=False, max_epochs=3, n_networks=2, dropout=0.0
    ).fit(X, y)
    assert len(changes) > 0 and all(change > 0 for change in changes)


# ----------------------------------------------------------------- auto


def _labels(n_major, n_minor):
    return np.array([0] * n_major + [1] * n_minor)


def test_auto_imbalance_branch():
    name, reason = choose_strategy(_labels(950, 50), calibrated_probabilities=True)
    assert name == "focal_smooth"
    assert "minority/majority class ratio 0.053 < 0.1" in reason


def test_auto_calibration_branch():
    name, reason = choose_strategy(
        _labels(300, 100), calibrated_probabilities=True, noisy_labels=True
    )
    assert name == "confidence_aware"
    assert "ratio 0.333 >= 0.1" in reason
    assert "calibrated probabilities requested" in reason


def test_auto_noise_branches_from_the_flag():
    assert choose_strategy(_labels(300, 100), noisy_labels=True) == (
        "adversarial",
        "minority/majority class ratio 0.333 >= 0.1; noisy_labels=True",
    )
    assert choose_strategy(_labels(300, 100), noisy_labels=False)[0] == "balanced"


@pytest.fixture(scope="module")
def clean_and_noisy():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(600, 4))
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    noisy = y.copy()
    flip = rng.rand(600) < 0.3
    noisy[flip] = 1 - noisy[flip]
    return X, y, noisy


def test_label_noise_estimate_tracks_flipped_labels(clean_and_noisy):
    X, y, noisy = clean_and_noisy
    assert estimate_label_noise(X, y, random_state=0) < 0.05
    assert 0.25 < estimate_label_noise(X, noisy, random_state=0) < 0.35


def test_auto_noise_branches_from_the_estimate(clean_and_noisy):
    X, y, noisy = clean_and_noisy
    name, reason = choose_strategy(noisy, X=X, random_state=0)
    assert name == "adversarial"
    assert "out-of-fold disagreement of a logistic regression" in reason
    assert "> 0.2" in reason
    name, reason = choose_strategy(y, X=X, random_state=0)
    assert name == "balanced"
    assert "<= 0.2" in reason


def test_auto_in_the_estimator_explains_itself(clean_and_noisy):
    X, y, noisy = clean_and_noisy
    clf = fast_classifier("auto").fit(X, noisy)
    assert clf.strategy_ == "adversarial"
    rate = float(clf.strategy_reason_.split("regression ")[1].split()[0])
    assert rate > 0.2
    imbalanced = np.r_[np.flatnonzero(y == 0), np.flatnonzero(y == 1)[:20]]
    clf = fast_classifier("auto").fit(X[imbalanced], y[imbalanced])
    assert clf.strategy_ == "focal_smooth"
    assert clf.strategy_reason_.startswith("minority/majority class ratio 0.0")
    clf = fast_classifier("auto", calibrated_probabilities=True).fit(X, y)
    assert clf.strategy_ == "confidence_aware"
    assert fast_classifier().fit(X, y).strategy_reason_ == (
        "strategy='balanced' was given"
    )


def test_grid_search_over_strategies_and_knobs(binary):
    X, y = binary
    grid = [
        {"strategy": ["balanced", "focal_smooth"], "class_balance_beta": [None, 0.99]},
        {"strategy": ["confidence_aware"], "confidence_penalty": [0.2]},
        {"strategy": ["adversarial"], "adversarial_epsilon": [0.1], "noise_q": [0.5]},
        {"strategy": ["auto"], "calibration": ["platt"]},
    ]
    search = GridSearchCV(
        fast_classifier(max_epochs=5),
        grid,
        cv=StratifiedKFold(2, shuffle=True, random_state=0),
        scoring="neg_log_loss",
        error_score="raise",
    ).fit(X, y)
    assert len(search.cv_results_["params"]) == 4 + 1 + 1 + 1
    assert np.all(np.isfinite(search.cv_results_["mean_test_score"]))
    assert search.best_estimator_.strategy_ in STRATEGIES


# ---------------------------------------------------- calibration, 5% positives


@pytest.fixture(scope="module")
def five_percent():
    X, y = make_classification(n_samples=4000, weights=[0.95], random_state=0)
    return train_test_split(X, y, test_size=0.5, stratify=y, random_state=0)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_default_settings_are_calibrated_on_rare_positives(name, five_percent):
    X_train, X_test, y_train, y_test = five_percent
    clf = DualHeadClassifier(name, random_state=0).fit(X_train, y_train)
    proba = clf.predict_proba(X_test)[:, 1]
    assert expected_calibration_error(y_test, proba, n_bins=15) <= 0.03
