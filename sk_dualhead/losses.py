"""Loss functions for the two heads, in plain PyTorch.

Every function takes raw logits of shape ``(n_samples, n_classes)`` and
integer class targets of shape ``(n_samples,)``, works in log space so that it
stays finite for logits as large as ``1e4``, and accepts optional per-sample
weights. With ``reduction="mean"`` the result is ``mean(weight * loss)``: the
weights are expected to average one over the training set (the estimator
normalises them), so that a batch estimates the weighted risk without bias and
a sample of weight 2 counts like two copies of it.

This module knows nothing of scikit-learn or skorch.
"""

import inspect

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

__all__ = [
    "focal_loss",
    "adaptive_gamma",
    "class_balanced_alpha",
    "smoothed_cross_entropy",
    "generalized_cross_entropy",
    "kl_consistency",
    "DualHeadLoss",
]


def _reduce(per_sample, sample_weight, reduction):
    if sample_weight is not None:
        per_sample = per_sample * sample_weight
    if reduction == "none":
        return per_sample
    if reduction == "mean":
        return per_sample.mean()
    if reduction == "sum":
        return per_sample.sum()
    raise ValueError(
        f"reduction must be 'none', 'mean' or 'sum', got {reduction!r}."
    )


def _weigh_classes(per_sample, alpha, target):
    """Multiply each sample's loss by its class weight ``alpha[target]``."""
    if alpha is None:
        return per_sample
    # alpha stays on the CPU in the loss's parameters, so that a model
    # trained on a GPU unpickles where there is none; the copy is a few bytes.
    return per_sample * alpha.to(per_sample.device)[target]


def _smoothed_targets(target, n_classes, label_smoothing, dtype):
    """One-hot targets mixed with the uniform distribution, as PyTorch does."""
    return _smooth(F.one_hot(target, n_classes).to(dtype), label_smoothing)


def _smooth(one_hot, label_smoothing):
    """Mix one-hot targets of shape (n_samples, n_classes) with the uniform."""
    # (1 - eps) * one_hot + eps / K, the factor in add's alpha: the same
    # numbers, with one operation on a Python scalar (a copy each) fewer.
    uniform = torch.full_like(one_hot, label_smoothing / one_hot.shape[1])
    return uniform.add_(one_hot, alpha=1.0 - label_smoothing)


def _focal_factors(logits, log_p, target, gamma):
    """``1 - p``, gamma shaped to broadcast over it, and ``(1 - p)^gamma``."""
    # 1 - p computed as -expm1(log p) keeps precision when p is close to 1.
    one_minus_p = -torch.expm1(log_p)
    if isinstance(gamma, str):
        if gamma != "adaptive":
            raise ValueError(f"gamma must be a number or 'adaptive', got {gamma!r}.")
        gamma = adaptive_gamma(logits, target)
    gamma = torch.as_tensor(gamma, dtype=log_p.dtype, device=log_p.device)
    if gamma.ndim == 1:
        gamma = gamma.unsqueeze(1)
    return one_minus_p, gamma, one_minus_p.clamp_min(0.0).pow(gamma)


def focal_loss(
    logits,
    target,
    *,
    gamma=2.0,
    alpha=None,
    label_smoothing=0.0,
    sample_weight=None,
    reduction="mean",
):
    r"""Multi-class focal loss (Lin et al. 2017).

    For one sample with predicted probabilities :math:`p` and (optionally
    smoothed) target distribution :math:`q`:

    .. math:: \ell = -\alpha_y \sum_k q_k (1 - p_k)^{\gamma} \log p_k

    With one-hot targets this is the familiar
    :math:`-\alpha_y (1 - p_y)^{\gamma} \log p_y`; with ``gamma=0`` and no
    ``alpha`` it is the cross-entropy.

    Parameters
    ----------
    logits : torch.Tensor of shape (n_samples, n_classes)
        Unnormalised scores.
    target : torch.LongTensor of shape (n_samples,)
        Class indices in ``[0, n_classes)``.
    gamma : float, torch.Tensor or "adaptive", default=2.0
        Focusing parameter; larger values down-weight well-classified samples.
        A tensor of shape ``(n_samples,)`` gives each sample its own gamma;
        ``"adaptive"`` uses :func:`adaptive_gamma` (FLSD-53).
    alpha : torch.Tensor of shape (n_classes,), default=None
        Per-class weights, applied by the sample's true class.
    label_smoothing : float, default=0.0
        Mass in ``[0, 1)`` moved from the true class to the uniform
        distribution before the loss is taken.
    sample_weight : torch.Tensor of shape (n_samples,), default=None
        Per-sample weights.
    reduction : {"mean", "sum", "none"}, default="mean"
        How to combine the per-sample losses.

    Returns
    -------
    loss : torch.Tensor
        A scalar, or a ``(n_samples,)`` tensor when ``reduction="none"``.

    Examples
    --------
    >>> import torch
    >>> from sk_dualhead.losses import focal_loss
    >>> logits = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
    >>> target = torch.tensor([0, 0])
    >>> focal_loss(logits, target, gamma=2.0, reduction="none")
    tensor([0.0018, 1.6501])
    """
    log_p = F.log_softmax(logits, dim=1)
    _, _, modulating = _focal_factors(logits, log_p, target, gamma)
    if label_smoothing:
        q = _smoothed_targets(target, logits.shape[1], label_smoothing, log_p.dtype)
        per_sample = -(q * modulating * log_p).sum(dim=1)
    else:
        index = target.unsqueeze(1)
        per_sample = -(modulating.gather(1, index) * log_p.gather(1, index)).squeeze(1)
    return _reduce(_weigh_classes(per_sample, alpha, target), sample_weight, reduction)


def adaptive_gamma(logits, target, *, threshold=0.2, low_gamma=5.0, high_gamma=3.0):
    r"""Per-sample focal gamma of FLSD-53 (Mukhoti et al. 2020).

    .. math:: \gamma_i = 5 \text{ if } p_{i,y_i} < 0.2 \text{ else } 3

    A strong focus on samples the model gets badly wrong, a milder one
    elsewhere. The probability is read without gradient: gamma is a
    schedule, not a function to differentiate.

    Parameters
    ----------
    logits : torch.Tensor of shape (n_samples, n_classes)
        Unnormalised scores.
    target : torch.LongTensor of shape (n_samples,)
        Class indices.
    threshold : float, default=0.2
        Probability of the true class below which ``low_gamma`` applies.
    low_gamma : float, default=5.0
        Gamma of samples whose true class has probability below ``threshold``.
    high_gamma : float, default=3.0
        Gamma of the others.

    Returns
    -------
    gamma : torch.Tensor of shape (n_samples,)

    Examples
    --------
    >>> import torch
    >>> from sk_dualhead.losses import adaptive_gamma
    >>> adaptive_gamma(torch.tensor([[3.0, 0.0], [3.0, 0.0]]), torch.tensor([0, 1]))
    tensor([3., 5.])
    """
    with torch.no_grad():
        p_true = F.softmax(logits, dim=1).gather(1, target.unsqueeze(1)).squeeze(1)
        return torch.where(
            p_true < threshold,
            torch.full_like(p_true, low_gamma),
            torch.full_like(p_true, high_gamma),
        )


def class_balanced_alpha(class_counts, beta=0.999):
    r"""Class weights from the effective number of samples (Cui et al. 2019).

    .. math:: \alpha_c \propto \frac{1 - \beta}{1 - \beta^{n_c}}

    normalised to average one over the classes. ``beta=0`` weighs all
    classes equally; as ``beta`` approaches 1 the weights approach the
    inverse class frequencies.

    Parameters
    ----------
    class_counts : array-like of shape (n_classes,)
        Number (or total weight) of training samples of each class.
    beta : float, default=0.999
        Overlap parameter in ``[0, 1)``.

    Returns
    -------
    alpha : torch.Tensor of shape (n_classes,), float64
        Weights, mean one.

    Examples
    --------
    >>> from sk_dualhead.losses import class_balanced_alpha
    >>> class_balanced_alpha([900, 100], beta=0.999)
    tensor([0.2764, 1.7236], dtype=torch.float64)
    """
    counts = torch.as_tensor(class_counts, dtype=torch.float64).clamp_min(1.0)
    beta = torch.as_tensor(beta, dtype=torch.float64)
    # (1 - beta) / (1 - beta**n), with 1 - beta**n = -expm1(n log beta) kept
    # precise for beta close to one; beta = 0 gives equal weights.
    if beta == 0:
        alpha = torch.ones_like(counts)
    else:
        alpha = (1.0 - beta) / -torch.expm1(counts * torch.log(beta))
    return alpha / alpha.mean()


def smoothed_cross_entropy(
    logits,
    target,
    *,
    label_smoothing=0.0,
    alpha=None,
    confidence_penalty=0.0,
    sample_weight=None,
    reduction="mean",
):
    r"""Cross-entropy against label-smoothed targets (Szegedy et al. 2016).

    .. math:: \ell = \alpha_y \Big(-\sum_k q_k \log p_k
              - \beta H(p)\Big), \qquad
              q = (1 - \varepsilon)\,\mathrm{onehot}(y) + \varepsilon / K

    where :math:`H(p) = -\sum_k p_k \log p_k` is the entropy of the
    prediction; :math:`\beta > 0` is the confidence penalty of Pereyra et
    al. (2017), which discourages over-confident outputs.

    Parameters
    ----------
    logits : torch.Tensor of shape (n_samples, n_classes)
        Unnormalised scores.
    target : torch.LongTensor of shape (n_samples,)
        Class indices.
    label_smoothing : float, default=0.0
        :math:`\varepsilon` in ``[0, 1)``.
    alpha : torch.Tensor of shape (n_classes,), default=None
        Per-class weights, applied by the sample's true class.
    confidence_penalty : float, default=0.0
        :math:`\beta`, weight of the entropy subtracted from the loss.
    sample_weight : torch.Tensor of shape (n_samples,), default=None
        Per-sample weights.
    reduction : {"mean", "sum", "none"}, default="mean"
        How to combine the per-sample losses.

    Returns
    -------
    loss : torch.Tensor
        A scalar, or a ``(n_samples,)`` tensor when ``reduction="none"``.

    Examples
    --------
    >>> import torch
    >>> from sk_dualhead.losses import smoothed_cross_entropy
    >>> logits = torch.tensor([[2.0, 0.0]])
    >>> smoothed_cross_entropy(logits, torch.tensor([0]), label_smoothing=0.1)
    tensor(0.2269)
    """
    per_sample = F.cross_entropy(
        logits, target, reduction="none", label_smoothing=label_smoothing
    )
    if confidence_penalty:
        log_p = F.log_softmax(logits, dim=1)
        # xlogy-style: p log p is 0 where p underflows to 0, never 0 * -inf.
        entropy = -(log_p.exp() * log_p).sum(dim=1)
        per_sample = per_sample - confidence_penalty * entropy
    return _reduce(_weigh_classes(per_sample, alpha, target), sample_weight, reduction)


def generalized_cross_entropy(
    logits,
    target,
    *,
    q=0.7,
    alpha=None,
    sample_weight=None,
    reduction="mean",
):
    r"""Generalized cross-entropy, robust to noisy labels (Zhang & Sabuncu 2018).

    .. math:: \ell = \alpha_y \, \frac{1 - p_y^{\,q}}{q}

    It tends to the cross-entropy as :math:`q \to 0` and equals the mean
    absolute error :math:`1 - p_y` at :math:`q = 1`, which is bounded and so
    cannot be dominated by a few samples with wrong labels.

    Parameters
    ----------
    logits : torch.Tensor of shape (n_samples, n_classes)
        Unnormalised scores.
    target : torch.LongTensor of shape (n_samples,)
        Class indices.
    q : float, default=0.7
        Exponent in ``(0, 1]``.
    alpha : torch.Tensor of shape (n_classes,), default=None
        Per-class weights, applied by the sample's true class.
    sample_weight : torch.Tensor of shape (n_samples,), default=None
        Per-sample weights.
    reduction : {"mean", "sum", "none"}, default="mean"
        How to combine the per-sample losses.

    Returns
    -------
    loss : torch.Tensor
        A scalar, or a ``(n_samples,)`` tensor when ``reduction="none"``.

    Examples
    --------
    >>> import torch
    >>> from sk_dualhead.losses import generalized_cross_entropy
    >>> generalized_cross_entropy(torch.tensor([[0.0, 0.0]]), torch.tensor([0]), q=1.0)
    tensor(0.5000)
    """
    log_p_true = F.log_softmax(logits, dim=1).gather(1, target.unsqueeze(1)).squeeze(1)
    # p**q as exp(q log p): finite and with a finite gradient even where p
    # underflows to zero.
    per_sample = -torch.expm1(q * log_p_true) / q
    return _reduce(_weigh_classes(per_sample, alpha, target), sample_weight, reduction)


def kl_consistency(
    student_logits,
    teacher_logits,
    *,
    temperature=1.0,
    sample_weight=None,
    reduction="mean",
):
    r"""KL divergence from a detached teacher distribution to a student.

    .. math:: \ell = T^2 \, \mathrm{KL}\big(\mathrm{softmax}(t / T) \,\|\,
              \mathrm{softmax}(s / T)\big)

    The teacher logits are detached, so the gradient reaches the student
    only; the :math:`T^2` factor keeps the gradient scale independent of the
    temperature (Hinton et al. 2015).

    Parameters
    ----------
    student_logits : torch.Tensor of shape (n_samples, n_classes)
        Logits pulled toward the teacher (the auxiliary head).
    teacher_logits : torch.Tensor of shape (n_samples, n_classes)
        Target logits (the main head); never receive a gradient.
    temperature : float, default=1.0
        Softens both distributions before comparing them.
    sample_weight : torch.Tensor of shape (n_samples,), default=None
        Per-sample weights.
    reduction : {"mean", "sum", "none"}, default="mean"
        How to combine the per-sample losses.

    Returns
    -------
    loss : torch.Tensor
        A scalar, or a ``(n_samples,)`` tensor when ``reduction="none"``.

    Examples
    --------
    >>> import torch
    >>> from sk_dualhead.losses import kl_consistency
    >>> z = torch.tensor([[1.0, -1.0]])
    >>> kl_consistency(z, z)
    tensor(0.)
    """
    log_q = F.log_softmax(student_logits / temperature, dim=1)
    log_p = F.log_softmax(teacher_logits.detach() / temperature, dim=1)
    per_sample = (log_p.exp() * (log_p - log_q)).sum(dim=1) * temperature**2
    return _reduce(per_sample, sample_weight, reduction)


# Closed forms of the losses, for DualHeadLoss's fused path. Autograd through
# the compositions above costs some forty small operations per step, each
# with its own dispatch and graph overhead, more than the network's own
# backward on small batches; these give each loss and its gradient with
# respect to the logits in a few vectorised operations and no graph.
# Each takes the logits, their log-softmax, the targets, the targets one-hot
# and the loss's own parameters (less ``alpha``, ``sample_weight`` and
# ``reduction``), and returns the per-sample loss and its gradient, before
# class and sample weights. The public functions stay the reference: the
# tests hold the two equal, values and gradients.


def _focal_closed_form(logits, log_p, target, one_hot, *, gamma, label_smoothing):
    r"""Per-sample :func:`focal_loss` and its gradient.

    With :math:`f_k = -(1 - p_k)^{\gamma} \log p_k` and the target
    distribution :math:`q` (one-hot without smoothing),
    :math:`\ell = \sum_k q_k f_k` and

    .. math:: \frac{\partial \ell}{\partial z_j} = q_j G_j - p_j \sum_k q_k G_k,
        \qquad G_k = p_k \frac{d f_k}{d p_k}
        = (1 - p_k)^{\gamma} \Big(\gamma p_k \frac{\log p_k}{1 - p_k} - 1\Big)

    so that ``gamma=0`` gives the cross-entropy's :math:`p_j - q_j`. Gamma is
    a constant (``"adaptive"`` computes it without gradient).
    """
    one_minus_p, gamma, modulating = _focal_factors(logits, log_p, target, gamma)
    q = _smooth(one_hot, label_smoothing) if label_smoothing else one_hot
    q_modulating = q * modulating
    per_sample = -(q_modulating * log_p).sum(dim=1)
    # (1 - p)^(gamma - 1) log p as (1 - p)^gamma log p / (1 - p), which has
    # no inf * 0 for gamma < 1 as p -> 1. log p / (1 - p) tends to -1 there;
    # the floor on the divisor keeps it finite (in [-1, 0]) where 1 - p
    # rounds to 0, and its value then does not matter: it is multiplied by
    # (1 - p)^gamma = 0, or by gamma = 0.
    ratio = log_p / one_minus_p.clamp_min(torch.finfo(log_p.dtype).tiny)
    p = log_p.exp()
    q_g = q_modulating * (gamma * p * ratio - 1.0)
    return per_sample, q_g - p * q_g.sum(dim=1, keepdim=True)


def _smoothed_cross_entropy_closed_form(
    logits, log_p, target, one_hot, *, label_smoothing, confidence_penalty
):
    r"""Per-sample :func:`smoothed_cross_entropy` and its gradient.

    .. math:: \frac{\partial \ell}{\partial z_j} = p_j - q_j
        + \beta p_j (\log p_j + H(p))
    """
    p = log_p.exp()
    q = _smooth(one_hot, label_smoothing) if label_smoothing else one_hot
    per_sample = -(q * log_p).sum(dim=1)
    grad = p - q
    if confidence_penalty:
        # As in the reference, p log p is 0 where p underflows, never 0 * -inf.
        p_log_p = p * log_p
        entropy = -p_log_p.sum(dim=1, keepdim=True)
        per_sample = per_sample - confidence_penalty * entropy.squeeze(1)
        grad = grad + confidence_penalty * (p_log_p + p * entropy)
    return per_sample, grad


def _generalized_cross_entropy_closed_form(logits, log_p, target, one_hot, *, q):
    r"""Per-sample :func:`generalized_cross_entropy` and its gradient.

    .. math:: \frac{\partial \ell}{\partial z_j}
        = p_y^{\,q} \, (p_j - \mathbb{1}[j = y])
    """
    q_log_p_true = q * log_p.gather(1, target.unsqueeze(1))
    per_sample = -torch.expm1(q_log_p_true).squeeze(1) / q
    return per_sample, q_log_p_true.exp() * (log_p.exp() - one_hot)


def _kl_consistency_closed_form(student_log_p, teacher_log_p, temperature):
    r"""Per-sample :func:`kl_consistency` and its gradient to the student.

    From the log-softmax of both heads' logits divided by :math:`T`:

    .. math:: \frac{\partial \ell}{\partial s_j} = T \big(\mathrm{softmax}(s/T)_j
        - \mathrm{softmax}(t/T)_j\big)

    The teacher receives none.
    """
    teacher_p = teacher_log_p.exp()
    per_sample = (teacher_p * (teacher_log_p - student_log_p)).sum(dim=1)
    grad = student_log_p.exp() - teacher_p
    if temperature != 1:
        # Exact at T = 1, but not free.
        per_sample, grad = per_sample * temperature**2, grad * temperature
    return per_sample, grad


#: Loss function -> its closed form, for the losses DualHeadLoss can fuse.
_CLOSED_FORMS = {
    focal_loss: _focal_closed_form,
    smoothed_cross_entropy: _smoothed_cross_entropy_closed_form,
    generalized_cross_entropy: _generalized_cross_entropy_closed_form,
}

#: Keyword defaults of those losses, read once: a partial sets only some.
_DEFAULTS = {
    loss: {
        name: parameter.default
        for name, parameter in inspect.signature(loss).parameters.items()
        if parameter.kind is parameter.KEYWORD_ONLY
    }
    for loss in _CLOSED_FORMS
}


def _closed_form(loss):
    """``(closed form, class weights, parameters)`` of a head's loss, or None.

    Only a ``functools.partial`` of a loss of :data:`_CLOSED_FORMS` (as
    :func:`~sk_dualhead.strategies.build_loss` makes) with the mean reduction
    has one.
    """
    form = _CLOSED_FORMS.get(getattr(loss, "func", None))
    if form is None or loss.args:
        return None
    params = {**_DEFAULTS[loss.func], **loss.keywords}
    # DualHeadLoss passes the sample weights itself, over any bound here.
    del params["sample_weight"]
    if params.pop("reduction") != "mean":
        return None
    return form, params.pop("alpha"), params


def _term_weights(target, sample_weight, alphas, like):
    """Per-sample weights of each term, as the public losses apply them, or None.

    Row k holds ``sample_weight * alphas[k][target]`` (each factor where
    given), so that the mean of the weighted per-sample losses of term k is
    the term; None when every sample counts alike.
    """
    if sample_weight is None and all(alpha is None for alpha in alphas):
        return None
    ones = torch.ones_like(like)
    return torch.stack(
        [
            _reduce(_weigh_classes(ones, alpha, target), sample_weight, "none")
            for alpha in alphas
        ]
    )


class _FusedDualHeadTerms(torch.autograd.Function):
    """:class:`DualHeadLoss`'s four terms, with closed-form gradients.

    The forward computes the terms and the gradients of the main, auxiliary
    and consistency terms with respect to the logits, without an autograd
    graph; the backward scales them by the incoming gradient of each term,
    so that any of the four (not only the total) can be differentiated, as
    the adversarial strategy does with the main term. The three terms go
    through the weighing and the mean together, stacked, since on small
    batches the number of operations, not their size, sets the cost.
    """

    @staticmethod
    def forward(
        ctx,
        main_logits,
        aux_logits,
        target,
        sample_weight,
        weights,
        temperature,
        main_form,
        aux_form,
    ):
        (main_loss, main_alpha, main_params) = main_form
        (aux_loss, aux_alpha, aux_params) = aux_form
        main_log_p = F.log_softmax(main_logits, dim=1)
        aux_log_p = F.log_softmax(aux_logits, dim=1)
        # Shared by both heads; scatter_ rather than F.one_hot, which checks
        # the targets' range at the cost of a reduction.
        one_hot = torch.zeros_like(main_log_p).scatter_(1, target.unsqueeze(1), 1.0)
        main, grad_main = main_loss(
            main_logits, main_log_p, target, one_hot, **main_params
        )
        aux, grad_aux = aux_loss(aux_logits, aux_log_p, target, one_hot, **aux_params)
        if temperature != 1:
            # At T = 1 the heads' log-softmax serve as they are: z / 1 is z.
            aux_log_p = F.log_softmax(aux_logits / temperature, dim=1)
            main_log_p = F.log_softmax(main_logits / temperature, dim=1)
        consistency, grad_consistency = _kl_consistency_closed_form(
            aux_log_p, main_log_p, temperature
        )
        per_sample = torch.stack([main, aux, consistency])
        grads = torch.stack([grad_main, grad_aux, grad_consistency])
        weight = _term_weights(
            target, sample_weight, (main_alpha, aux_alpha, None), like=main
        )
        if weight is not None:
            per_sample = per_sample * weight
            grads = grads * weight.unsqueeze(2)
        terms = per_sample.mean(dim=1)
        # The terms are means over the samples: each sample's gradient counts 1/n.
        ctx.save_for_backward(grads / per_sample.shape[1])
        ctx.weights = weights
        w_main, w_aux, w_consistency = weights
        # w_main * main + w_aux * aux + w_consistency * consistency, each
        # weight in add's alpha rather than in an operation of its own.
        total = (terms[0] * w_main).add_(terms[1], alpha=w_aux)
        total = total.add_(terms[2], alpha=w_consistency)
        return torch.cat([total.unsqueeze(0), terms])

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_terms):
        (grads,) = ctx.saved_tensors
        w_main, w_aux, w_consistency = ctx.weights
        g_total, g_main, g_aux, g_consistency = grad_terms.unbind()
        # Each term reaches the logits directly and through the total.
        grad_main_logits = grads[0] * g_main.add(g_total, alpha=w_main)
        grad_aux_logits = torch.addcmul(
            grads[1] * g_aux.add(g_total, alpha=w_aux),
            grads[2],
            g_consistency.add(g_total, alpha=w_consistency),
        )
        return (grad_main_logits, grad_aux_logits) + (None,) * 6


class DualHeadLoss(nn.Module):
    """The combined loss of the two heads.

    ``total = w_main * main_loss(main) + w_aux * aux_loss(aux)
    + w_consistency * KL(main.detach() -> aux)``

    It holds no parameters; being a :class:`torch.nn.Module` lets skorch
    treat it as its criterion.

    When both heads' losses are ``functools.partial`` objects of
    :func:`focal_loss`, :func:`smoothed_cross_entropy` or
    :func:`generalized_cross_entropy` (as
    :func:`~sk_dualhead.strategies.build_loss` makes them) and a gradient is
    wanted, the terms and their gradients come from closed forms in one
    autograd node, several operations fewer per step than autograd through
    the functions; other losses go through autograd. Both give the same
    terms and gradients, to rounding.

    Parameters
    ----------
    main_loss : callable
        ``main_loss(logits, target, sample_weight=...)`` for the main head,
        e.g. ``functools.partial(focal_loss, gamma=2.0)``.
    aux_loss : callable
        The same for the auxiliary head.
    weights : tuple of float
        ``(w_main, w_aux, w_consistency)``.
    consistency_temperature : float, default=1.0
        Temperature of the KL consistency term.

    Examples
    --------
    >>> from functools import partial
    >>> import torch
    >>> from sk_dualhead.losses import (
    ...     DualHeadLoss, focal_loss, smoothed_cross_entropy)
    >>> loss = DualHeadLoss(partial(focal_loss, gamma=2.0),
    ...                     partial(smoothed_cross_entropy, label_smoothing=0.15),
    ...                     weights=(0.7, 0.25, 0.05))
    >>> z = torch.zeros(4, 2)
    >>> terms = loss(z, z, torch.tensor([0, 1, 0, 1]))
    >>> [round(v, 4) for v in terms.tolist()]  # total, main, aux, consistency
    [0.2946, 0.1733, 0.6931, 0.0]
    """

    #: Names of the entries returned by :meth:`forward`, in order.
    term_names = ("loss", "main_loss", "aux_loss", "consistency_loss")

    def __init__(self, main_loss, aux_loss, weights, consistency_temperature=1.0):
        super().__init__()
        self.main_loss = main_loss
        self.aux_loss = aux_loss
        self.weights = tuple(weights)
        self.consistency_temperature = consistency_temperature

    def forward(self, main_logits, aux_logits, target, sample_weight=None):
        """Return ``tensor([total, main, aux, consistency])``."""
        forms = self._closed_forms(main_logits, aux_logits, sample_weight)
        if forms is not None:
            return _FusedDualHeadTerms.apply(
                main_logits,
                aux_logits,
                target,
                sample_weight,
                self.weights,
                self.consistency_temperature,
                *forms,
            )
        w_main, w_aux, w_consistency = self.weights
        main = self.main_loss(main_logits, target, sample_weight=sample_weight)
        aux = self.aux_loss(aux_logits, target, sample_weight=sample_weight)
        consistency = kl_consistency(
            aux_logits,
            main_logits,
            temperature=self.consistency_temperature,
            sample_weight=sample_weight,
        )
        total = w_main * main + w_aux * aux + w_consistency * consistency
        return torch.stack([total, main, aux, consistency])

    def _closed_forms(self, main_logits, aux_logits, sample_weight):
        """Both heads' closed forms when the fused path applies, else None.

        It applies when both losses have one (see :data:`_CLOSED_FORMS`) and
        a gradient is wanted with respect to the logits alone. Without
        gradient the composition is the cheaper: the closed forms' extra
        work is the gradient itself.
        """
        if not torch.is_grad_enabled() or not (
            main_logits.requires_grad or aux_logits.requires_grad
        ):
            return None
        if sample_weight is not None and sample_weight.requires_grad:
            return None
        forms = (_closed_form(self.main_loss), _closed_form(self.aux_loss))
        return None if None in forms else forms
