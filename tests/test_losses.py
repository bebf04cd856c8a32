"""Losses against hand-computed values, reference formulas and gradients."""

import math
from functools import partial

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sk_dualhead.losses import (
    DualHeadLoss,
    adaptive_gamma,
    class_balanced_alpha,
    focal_loss,
    generalized_cross_entropy,
    kl_consistency,
    smoothed_cross_entropy,
)

ALPHA = torch.tensor([0.5, 1.0, 1.5], dtype=torch.float64)

LOSSES = [
    partial(focal_loss, gamma=2.0),
    partial(focal_loss, gamma=2.0, label_smoothing=0.1),
    partial(smoothed_cross_entropy, label_smoothing=0.15),
    partial(focal_loss, gamma="adaptive"),
    partial(focal_loss, gamma=2.0, label_smoothing=0.05, alpha=ALPHA),
    partial(smoothed_cross_entropy, label_smoothing=0.1, confidence_penalty=0.1),
    partial(generalized_cross_entropy, q=0.7),
    partial(generalized_cross_entropy, q=0.7, alpha=ALPHA),
]


@pytest.fixture(scope="module")
def batch():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(7, 3, generator=generator, dtype=torch.float64)
    target = torch.tensor([0, 1, 2, 0, 1, 2, 2])
    weight = torch.rand(7, generator=generator, dtype=torch.float64) * 2
    return logits, target, weight


def test_focal_hand_computed():
    # p = softmax([2, 0]) = [0.8808, 0.1192]
    logits = torch.tensor([[2.0, 0.0], [2.0, 0.0]], dtype=torch.float64)
    p0 = 1 / (1 + math.exp(-2))
    expected = [-(1 - p0) ** 2 * math.log(p0), -(p0**2) * math.log(1 - p0)]
    got = focal_loss(logits, torch.tensor([0, 1]), gamma=2.0, reduction="none")
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12)


def test_focal_alpha_and_weights_hand_computed():
    logits = torch.tensor([[0.0, 1.0], [3.0, -1.0]], dtype=torch.float64)
    target = torch.tensor([1, 0])
    alpha = torch.tensor([0.25, 0.75], dtype=torch.float64)
    weight = torch.tensor([2.0, 0.5], dtype=torch.float64)
    p = torch.softmax(logits, dim=1)
    per_sample = [
        -0.75 * (1 - p[0, 1]) ** 1.5 * torch.log(p[0, 1]),
        -0.25 * (1 - p[1, 0]) ** 1.5 * torch.log(p[1, 0]),
    ]
    expected = (2.0 * per_sample[0] + 0.5 * per_sample[1]) / 2
    got = focal_loss(logits, target, gamma=1.5, alpha=alpha, sample_weight=weight)
    assert got.item() == pytest.approx(expected.item(), rel=1e-12)


def test_focal_gamma_zero_is_cross_entropy(batch):
    logits, target, _ = batch
    got = focal_loss(logits, target, gamma=0.0, reduction="none")
    expected = F.cross_entropy(logits, target, reduction="none")
    torch.testing.assert_close(got, expected)


def test_focal_gamma_zero_with_smoothing_is_smoothed_cross_entropy(batch):
    logits, target, _ = batch
    got = focal_loss(logits, target, gamma=0.0, label_smoothing=0.2)
    expected = F.cross_entropy(logits, target, label_smoothing=0.2)
    torch.testing.assert_close(got, expected)


def test_focal_per_sample_gamma(batch):
    logits, target, _ = batch
    gamma = torch.tensor([0.0, 1.0, 2.0, 3.0, 5.0, 0.5, 2.0], dtype=torch.float64)
    got = focal_loss(logits, target, gamma=gamma, reduction="none")
    for i, g in enumerate(gamma.tolist()):
        single = focal_loss(logits[i : i + 1], target[i : i + 1], gamma=g)
        assert got[i].item() == pytest.approx(single.item(), rel=1e-12)


def test_smoothed_cross_entropy_hand_computed():
    logits = torch.tensor([[2.0, 0.0, -1.0]], dtype=torch.float64)
    log_p = torch.log_softmax(logits, dim=1)[0]
    eps = 0.15
    q = torch.tensor([1 - eps + eps / 3, eps / 3, eps / 3], dtype=torch.float64)
    expected = -(q * log_p).sum()
    got = smoothed_cross_entropy(logits, torch.tensor([0]), label_smoothing=eps)
    assert got.item() == pytest.approx(expected.item(), rel=1e-12)


def test_kl_consistency_matches_reference(batch):
    logits, _, weight = batch
    teacher = logits.flip(0)
    T = 2.0
    p = torch.softmax(teacher / T, dim=1)
    q = torch.softmax(logits / T, dim=1)
    expected = (p * (p.log() - q.log())).sum(1) * T**2
    got = kl_consistency(logits, teacher, temperature=T, reduction="none")
    torch.testing.assert_close(got, expected)
    torch_kl = F.kl_div(q.log(), p, reduction="none").sum(1) * T**2
    torch.testing.assert_close(got, torch_kl)
    weighted = kl_consistency(logits, teacher, temperature=T, sample_weight=weight)
    assert weighted.item() == pytest.approx((expected * weight).mean().item())
    assert kl_consistency(logits, logits).item() == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("loss", LOSSES)
def test_sample_weight_is_weighted_mean(loss, batch):
    logits, target, weight = batch
    per_sample = loss(logits, target, reduction="none")
    weighted = loss(logits, target, sample_weight=weight)
    assert weighted.item() == pytest.approx((per_sample * weight).mean().item())
    total = loss(logits, target, reduction="sum")
    assert total.item() == pytest.approx(per_sample.sum().item())


def test_integer_weights_equal_repeated_rows(batch):
    logits, target, _ = batch
    weight = torch.tensor([1, 2, 0, 1, 3, 1, 1], dtype=torch.float64)
    repeat = weight.long()
    weighted = focal_loss(logits, target, sample_weight=weight, reduction="sum")
    repeated = focal_loss(
        logits.repeat_interleave(repeat, 0),
        target.repeat_interleave(repeat),
        reduction="sum",
    )
    assert weighted.item() == pytest.approx(repeated.item())


@pytest.mark.parametrize("loss", LOSSES + [kl_consistency])
@pytest.mark.parametrize("scale", [1e4, -1e4])
def test_extreme_logits_stay_finite(loss, scale):
    logits = torch.tensor([[scale, 0.0, -scale], [0.0, scale, 1.0]], requires_grad=True)
    if loss is kl_consistency:
        value = loss(logits, logits.flip(1).detach())
    else:
        value = loss(logits, torch.tensor([2, 0]), sample_weight=torch.tensor([1.0, 2.0]))
    value.backward()
    assert torch.isfinite(value)
    assert torch.isfinite(logits.grad).all()


@pytest.mark.parametrize("loss", LOSSES)
def test_gradcheck(loss, batch):
    logits, target, weight = batch
    logits = logits.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda z: loss(z, target, sample_weight=weight), (logits,)
    )


def test_gradcheck_kl_consistency(batch):
    logits, _, weight = batch
    student = logits.clone().requires_grad_(True)
    teacher = logits.flip(0)
    assert torch.autograd.gradcheck(
        lambda z: kl_consistency(z, teacher, temperature=1.5, sample_weight=weight),
        (student,),
    )


def combined_loss(weights=(0.7, 0.25, 0.05)):
    return DualHeadLoss(
        partial(focal_loss, gamma=2.0),
        partial(smoothed_cross_entropy, label_smoothing=0.15),
        weights=weights,
    )


def test_combined_loss_is_weighted_sum(batch):
    logits, target, weight = batch
    aux = logits * 0.5 + 0.1
    terms = combined_loss()(logits, aux, target, weight)
    main = focal_loss(logits, target, gamma=2.0, sample_weight=weight)
    aux_term = smoothed_cross_entropy(
        aux, target, label_smoothing=0.15, sample_weight=weight
    )
    consistency = kl_consistency(aux, logits, sample_weight=weight)
    torch.testing.assert_close(terms[1:], torch.stack([main, aux_term, consistency]))
    expected = 0.7 * main + 0.25 * aux_term + 0.05 * consistency
    assert terms[0].item() == pytest.approx(expected.item())


def test_consistency_leaves_main_head_gradient_untouched(batch):
    logits, target, _ = batch
    main = logits.clone().requires_grad_(True)
    aux = (logits * 0.3).requires_grad_(True)
    combined_loss()(main, aux, target)[0].backward()
    without_consistency = main.grad.clone()

    main.grad, aux.grad = None, None
    combined_loss((0.7, 0.25, 0.0))(main, aux, target)[0].backward()
    torch.testing.assert_close(main.grad, without_consistency, rtol=0, atol=0)

    # The consistency term alone sends gradient to the auxiliary head only.
    main.grad, aux.grad = None, None
    combined_loss((0.0, 0.0, 1.0))(main, aux, target)[0].backward()
    assert torch.count_nonzero(main.grad) == 0
    assert torch.count_nonzero(aux.grad) > 0


def test_invalid_reduction(batch):
    logits, target, _ = batch
    with pytest.raises(ValueError, match="reduction must be"):
        focal_loss(logits, target, reduction="avg")


def test_class_balanced_alpha_is_effective_number():
    counts = [900, 90, 10]
    beta = 0.99
    raw = [(1 - beta) / (1 - beta**n) for n in counts]
    expected = np.array(raw) / np.mean(raw)
    got = class_balanced_alpha(counts, beta)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12)
    assert got.mean().item() == pytest.approx(1.0)
    # beta=0: equal weights; beta -> 1: inverse class frequencies.
    np.testing.assert_allclose(class_balanced_alpha(counts, 0.0).numpy(), 1.0)
    inverse = 1 / np.array(counts)
    np.testing.assert_allclose(
        class_balanced_alpha(counts, 1 - 1e-9).numpy(),
        inverse / inverse.mean(),
        rtol=1e-5,
    )


def test_adaptive_gamma_is_flsd53():
    # p(true) = 0.1192 (< 0.2: gamma 5), 0.8808 (gamma 3), 0.5 (gamma 3).
    logits = torch.tensor([[2.0, 0.0], [2.0, 0.0], [0.0, 0.0]], dtype=torch.float64)
    target = torch.tensor([1, 0, 0])
    np.testing.assert_array_equal(adaptive_gamma(logits, target).numpy(), [5, 3, 3])
    got = focal_loss(logits, target, gamma="adaptive", reduction="none")
    p = torch.softmax(logits, 1)[torch.arange(3), target].numpy()
    expected = -((1 - p) ** np.array([5, 3, 3])) * np.log(p)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12)


def test_adaptive_gamma_carries_no_gradient(batch):
    logits, target, _ = batch
    logits = logits.clone().requires_grad_(True)
    assert not adaptive_gamma(logits, target).requires_grad


def test_focal_rejects_unknown_gamma_string(batch):
    logits, target, _ = batch
    with pytest.raises(ValueError, match="adaptive"):
        focal_loss(logits, target, gamma="fixed")


def test_generalized_cross_entropy_hand_computed():
    logits = torch.tensor([[1.0, 0.0, -1.0], [0.5, 2.0, 0.0]], dtype=torch.float64)
    target = torch.tensor([0, 2])
    p = torch.softmax(logits, 1)[torch.arange(2), target].numpy()
    for q in (0.7, 1.0):
        expected = (1 - p**q) / q
        got = generalized_cross_entropy(logits, target, q=q, reduction="none")
        np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12)
    # q -> 0 is the cross-entropy.
    ce = F.cross_entropy(logits, target, reduction="none")
    near_zero = generalized_cross_entropy(logits, target, q=1e-7, reduction="none")
    torch.testing.assert_close(near_zero, ce, rtol=1e-5, atol=1e-6)


def test_confidence_penalty_subtracts_entropy(batch):
    logits, target, _ = batch
    p = torch.softmax(logits, 1)
    entropy = -(p * p.log()).sum(1)
    smoothed = smoothed_cross_entropy(
        logits, target, label_smoothing=0.1, reduction="none"
    )
    got = smoothed_cross_entropy(
        logits, target, label_smoothing=0.1, confidence_penalty=0.3, reduction="none"
    )
    torch.testing.assert_close(got, smoothed - 0.3 * entropy)
    weighted = smoothed_cross_entropy(
        logits, target, confidence_penalty=0.3, alpha=ALPHA, reduction="none"
    )
    plain = F.cross_entropy(logits, target, reduction="none")
    torch.testing.assert_close(weighted, ALPHA[target] * (plain - 0.3 * entropy))


@pytest.mark.parametrize(
    "loss", [focal_loss, smoothed_cross_entropy, generalized_cross_entropy]
)
def test_class_weights_follow_the_logits_device(loss):
    # alpha stays on the CPU (it must unpickle without a GPU); the losses move
    # it to the logits' device. The meta device stands in for a GPU here.
    logits = torch.zeros(4, 2, device="meta")
    target = torch.zeros(4, dtype=torch.long, device="meta")
    value = loss(logits, target, alpha=torch.tensor([1.0, 2.0]))
    assert value.device.type == "meta"
