"""Losses against hand-computed values, reference formulas and gradients."""

import math
from functools import partial

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sk_dualhead.strategies import STRATEGIES, build_loss
from sk_dualhead.losses import (
    DualHeadLoss,
    FocalLoss,
    GeneralizedCrossEntropy,
    SmoothedCrossEntropy,
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


# DualHeadLoss's fused path: closed-form terms and gradients in one
# autograd.Function, held equal to the autograd composition of the public
# losses, which a plain function (not a partial of a covered loss) forces.

FUSED_KNOBS = [
    {},
    {"gamma": 0.0},
    {"gamma": 0.5},
    {"gamma": "adaptive"},
    {"label_smoothing": 0.0},
    {"label_smoothing": 0.3, "confidence_penalty": 0.2},
    {"class_balance_beta": 0.99},
]


def composed(loss):
    """The same loss, through the autograd composition of the public losses."""
    return DualHeadLoss(
        lambda logits, target, **kwargs: loss.main_loss(logits, target, **kwargs),
        lambda logits, target, **kwargs: loss.aux_loss(logits, target, **kwargs),
        weights=loss.weights,
        class_weights=loss.class_weights,
        consistency_temperature=loss.consistency_temperature,
    )


def is_fused(terms):
    """Whether the closed-form node is in the graph of ``terms``."""
    pending, seen = [terms.grad_fn], set()
    while pending:
        node = pending.pop()
        if node is None or node in seen:
            continue
        if type(node).__name__ == "_FusedDualHeadTermsBackward":
            return True
        seen.add(node)
        pending += [next_node for next_node, _ in node.next_functions]
    return False


def two_heads(n_classes, scale=3.0, n_samples=11, seed=0):
    generator = torch.Generator().manual_seed(seed)
    main, aux = (
        (torch.randn(n_samples, n_classes, generator=generator, dtype=torch.float64) * scale)
        .requires_grad_(True)
        for _ in range(2)
    )
    target = torch.arange(n_samples) % n_classes
    weight = torch.rand(n_samples, generator=generator, dtype=torch.float64) * 2
    return main, aux, target, weight


def assert_same_terms_and_gradients(loss, main, aux, target, weight, **tolerance):
    """Fused and composed terms agree, and so do the gradients of each term."""
    fused = loss(main, aux, target, weight)
    reference = composed(loss)(main, aux, target, weight)
    assert is_fused(fused) and not is_fused(reference)
    torch.testing.assert_close(fused, reference, **tolerance)
    for k in range(4):
        grad_output = torch.zeros(4, dtype=fused.dtype)
        grad_output[k] = 1.0
        got, expected = (
            torch.autograd.grad(
                terms, (main, aux), grad_output, retain_graph=True, allow_unused=True
            )
            for terms in (fused, reference)
        )
        for g, e, logits in zip(got, expected, (main, aux)):
            e = torch.zeros_like(logits) if e is None else e
            torch.testing.assert_close(g, e, **tolerance)


@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("knobs", FUSED_KNOBS, ids=str)
@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_fused_dual_head_loss_matches_composition(strategy, knobs, n_classes):
    loss = build_loss(strategy, class_counts=[40, 7, 3][:n_classes], **knobs)
    main, aux, target, weight = two_heads(n_classes)
    for sample_weight in (None, weight):
        assert_same_terms_and_gradients(
            loss, main, aux, target, sample_weight, rtol=1e-10, atol=1e-13
        )


@pytest.mark.parametrize("n_classes", [2, 3])
def test_fused_covers_focal_smoothing_alpha_and_temperature(n_classes):
    loss = DualHeadLoss(
        FocalLoss(gamma=1.5, label_smoothing=0.1),
        FocalLoss(gamma=0.5),
        weights=(0.5, 0.3, 0.2),
        class_weights=ALPHA[:n_classes],
        consistency_temperature=2.5,
    )
    main, aux, target, weight = two_heads(n_classes, seed=1)
    for sample_weight in (None, weight):
        assert_same_terms_and_gradients(
            loss, main, aux, target, sample_weight, rtol=1e-10, atol=1e-13
        )


def test_default_strategy_takes_fused_path():
    main, aux, target, weight = two_heads(2)
    terms = build_loss("balanced")(main.float(), aux.float(), target, weight.float())
    assert is_fused(terms)
    assert terms.dtype == torch.float32


@pytest.mark.parametrize("strategy", ["balanced", "confidence_aware", "adversarial"])
def test_gradcheck_fused(strategy):
    gamma = 0.5 if strategy == "balanced" else None
    loss = build_loss(strategy, gamma=gamma)
    main, aux, target, weight = two_heads(3, scale=1.0, n_samples=5, seed=2)
    assert is_fused(loss(main, aux, target, weight))
    # The main head is the consistency term's teacher, which is detached: a
    # finite difference in it moves that term, its gradient does not. So the
    # heads are checked one at a time, the main one without that term.
    assert torch.autograd.gradcheck(
        lambda u: loss(main.detach(), u, target, weight), (aux,)
    )
    no_consistency = build_loss(strategy, gamma=gamma, loss_weights=(0.7, 0.25, 0.0))
    assert torch.autograd.gradcheck(
        lambda z: no_consistency(z, aux.detach(), target, weight)[:3], (main,)
    )


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
@pytest.mark.parametrize("scale", [1e4, -1e4])
def test_fused_extreme_logits_stay_finite(gamma, scale):
    # The true class certain, wrong, or tied with the other: p and 1 - p
    # round to 0 and 1 in float32, where (1 - p)^(gamma - 1) is infinite.
    main = torch.tensor(
        [[scale, 0.0, -scale], [0.0, scale, 1.0], [scale, scale, 0.0]],
        requires_grad=True,
    )
    aux = main.detach().flip(1).requires_grad_(True)
    target = torch.tensor([0, 0, 2])
    loss = build_loss("balanced", gamma=gamma, confidence_penalty=0.1)
    terms = loss(main, aux, target, torch.tensor([1.0, 2.0, 0.5]))
    assert is_fused(terms)
    assert torch.isfinite(terms).all()
    terms[0].backward()
    assert torch.isfinite(main.grad).all() and torch.isfinite(aux.grad).all()
    reference = composed(loss)(main, aux, target, torch.tensor([1.0, 2.0, 0.5]))
    torch.testing.assert_close(terms, reference)


def test_fused_gamma_zero_is_cross_entropy_gradient():
    main, aux, target, _ = two_heads(3)
    loss = DualHeadLoss(FocalLoss(gamma=0.0), SmoothedCrossEntropy(), weights=(1.0, 0.0, 0.0))
    (got,) = torch.autograd.grad(loss(main, aux, target)[0], main)
    (expected,) = torch.autograd.grad(F.cross_entropy(main, target), main)
    torch.testing.assert_close(got, expected, rtol=1e-14, atol=1e-15)


def test_uncovered_losses_fall_back_to_composition():
    main, aux, target, weight = two_heads(2)

    def squared_error(logits, target, alpha=None, sample_weight=None, reduction="mean"):
        one_hot = F.one_hot(target, logits.shape[1]).to(logits.dtype)
        per_sample = ((logits.softmax(1) - one_hot) ** 2).sum(1) * sample_weight
        return per_sample if reduction == "none" else per_sample.mean()

    loss = DualHeadLoss(FocalLoss(gamma=2.0), squared_error, weights=(0.7, 0.25, 0.05))
    terms = loss(main, aux, target, weight)
    assert not is_fused(terms)
    assert terms[2].item() == pytest.approx(squared_error(aux, target, sample_weight=weight).item())
    # Gradients with respect to the sample weights need the composition too.
    weight = weight.clone().requires_grad_(True)
    terms = build_loss("balanced")(main, aux, target, weight)
    assert not is_fused(terms)
    (grad,) = torch.autograd.grad(terms[0], weight)
    assert torch.count_nonzero(grad) > 0
    # Without gradient, the composition is the cheaper and gives the same.
    with torch.no_grad():
        plain = build_loss("balanced")(main, aux, target, weight)
    torch.testing.assert_close(plain, terms.detach())


@pytest.mark.parametrize(
    "loss, function, params",
    [
        (FocalLoss(gamma=1.5, label_smoothing=0.1), focal_loss,
         {"gamma": 1.5, "label_smoothing": 0.1}),
        (SmoothedCrossEntropy(0.2, 0.1), smoothed_cross_entropy,
         {"label_smoothing": 0.2, "confidence_penalty": 0.1}),
        (GeneralizedCrossEntropy(q=0.4), generalized_cross_entropy, {"q": 0.4}),
    ],
    ids=["focal", "smoothed", "gce"],
)
def test_loss_objects_are_their_functions_with_their_parameters(
    loss, function, params, batch
):
    logits, target, weight = batch
    for reduction in ("mean", "none"):
        torch.testing.assert_close(
            loss(logits, target, alpha=ALPHA, sample_weight=weight, reduction=reduction),
            function(logits, target, alpha=ALPHA, sample_weight=weight,
                     reduction=reduction, **params),
            rtol=0, atol=0,
        )


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "composed"])
def test_member_terms_are_each_members_own_loss(fused):
    generator = torch.Generator().manual_seed(3)
    main, aux = (
        torch.randn(3, 8, 2, generator=generator, dtype=torch.float64).requires_grad_(True)
        for _ in range(2)
    )
    target = torch.arange(8) % 2
    weight = torch.rand(3, 8, generator=generator, dtype=torch.float64)
    loss = build_loss("focal_smooth", class_counts=[30, 10])
    if not fused:
        loss = composed(loss)
    terms = loss(main, aux, target, weight)
    assert terms.shape == (4, 3) and is_fused(terms) == fused
    grads = torch.autograd.grad(terms[0].sum(), (main, aux))
    for member in range(3):
        alone = loss(main[member], aux[member], target, weight[member])
        torch.testing.assert_close(terms[:, member], alone, rtol=1e-12, atol=1e-14)
        for grad, logits in zip(grads, (main, aux)):
            # A member's gradient comes from its own loss alone.
            (expected,) = torch.autograd.grad(alone[0], logits, retain_graph=True)
            torch.testing.assert_close(grad[member], expected[member], rtol=1e-12, atol=1e-14)
