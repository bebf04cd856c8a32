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

from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from ._docstring import LOSS_INPUTS, LOSS_REDUCTION, LOSS_WEIGHTS, Substitution

__all__ = [
    "FocalLoss",
    "SmoothedCrossEntropy",
    "GeneralizedCrossEntropy",
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
    # alpha stays on the CPU, in float64, so that a model trained on a GPU
    # unpickles where there is none; the copy is a few bytes.
    return per_sample * alpha.to(per_sample.device, per_sample.dtype)[target]


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


@Substitution(loss_inputs=LOSS_INPUTS, loss_weights=LOSS_WEIGHTS)
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
    {loss_inputs}
    gamma : float, torch.Tensor or "adaptive", default=2.0
        Focusing parameter; larger values down-weight well-classified samples.
        A tensor of shape ``(n_samples,)`` gives each sample its own gamma;
        ``"adaptive"`` uses :func:`adaptive_gamma` (FLSD-53).
    label_smoothing : float, default=0.0
        Mass in ``[0, 1)`` moved from the true class to the uniform
        distribution before the loss is taken.
    {loss_weights}

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


@Substitution(loss_inputs=LOSS_INPUTS, loss_weights=LOSS_WEIGHTS)
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
    {loss_inputs}
    label_smoothing : float, default=0.0
        :math:`\varepsilon` in ``[0, 1)``.
    confidence_penalty : float, default=0.0
        :math:`\beta`, weight of the entropy subtracted from the loss.
    {loss_weights}

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


@Substitution(loss_inputs=LOSS_INPUTS, loss_weights=LOSS_WEIGHTS)
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
    {loss_inputs}
    q : float, default=0.7
        Exponent in ``(0, 1]``.
    {loss_weights}

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


@Substitution(loss_reduction=LOSS_REDUCTION)
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
    {loss_reduction}

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


# Loss objects. Each carries its parameters, its value through the public
# function above (the reference, differentiated by autograd) and its closed
# form: the per-sample loss and its gradient with respect to the logits in a
# few vectorised operations and no graph. Autograd through the functions
# costs some forty small operations per step, more than a small network's own
# backward; :class:`DualHeadLoss` takes the closed forms when both heads have
# one. The tests hold the two equal, values and gradients.


@dataclass(frozen=True)
class _Loss:
    """A loss of one head: parameters, reference value and closed form."""

    def __call__(
        self, logits, target, *, alpha=None, sample_weight=None, reduction="mean"
    ):
        """The loss through its public function; see there for the arguments."""
        params = {f.name: getattr(self, f.name) for f in fields(self)}
        return self.function(
            logits,
            target,
            alpha=alpha,
            sample_weight=sample_weight,
            reduction=reduction,
            **params,
        )

    def loss_gradient(self, logits, log_p, target, one_hot):
        """Per-sample loss and its gradient with respect to the logits.

        Parameters
        ----------
        logits, log_p : torch.Tensor of shape (n_samples, n_classes)
            The logits and their log-softmax.
        target : torch.LongTensor of shape (n_samples,)
            Class indices.
        one_hot : torch.Tensor of shape (n_samples, n_classes)
            The targets one-hot, in the logits' dtype.

        Returns
        -------
        loss : torch.Tensor of shape (n_samples,)
        gradient : torch.Tensor of shape (n_samples, n_classes)
            Both before class and sample weights.
        """
        raise NotImplementedError


@dataclass(frozen=True)
class FocalLoss(_Loss):
    r""":func:`focal_loss` as an object, with its closed form.

    With :math:`f_k = -(1 - p_k)^{\gamma} \log p_k` and the target
    distribution :math:`q` (one-hot without smoothing),
    :math:`\ell = \sum_k q_k f_k` and

    .. math:: \frac{\partial \ell}{\partial z_j} = q_j G_j - p_j \sum_k q_k G_k,
        \qquad G_k = p_k \frac{d f_k}{d p_k}
        = (1 - p_k)^{\gamma} \Big(\gamma p_k \frac{\log p_k}{1 - p_k} - 1\Big)

    so that ``gamma=0`` gives the cross-entropy's :math:`p_j - q_j`. Gamma is
    a constant (``"adaptive"`` computes it without gradient).

    Examples
    --------
    >>> import torch
    >>> from sk_dualhead.losses import FocalLoss
    >>> FocalLoss(gamma=2.0)(torch.tensor([[2.0, 0.0]]), torch.tensor([1]))
    tensor(1.6501)
    """

    gamma: object = 2.0
    label_smoothing: float = 0.0
    function = staticmethod(focal_loss)

    def loss_gradient(self, logits, log_p, target, one_hot):
        one_minus_p, gamma, modulating = _focal_factors(
            logits, log_p, target, self.gamma
        )
        q = _smooth(one_hot, self.label_smoothing) if self.label_smoothing else one_hot
        q_modulating = q * modulating
        per_sample = -(q_modulating * log_p).sum(dim=1)
        # (1 - p)^(gamma - 1) log p as (1 - p)^gamma log p / (1 - p), which
        # has no inf * 0 for gamma < 1 as p -> 1. log p / (1 - p) tends to -1
        # there; the floor on the divisor keeps it finite (in [-1, 0]) where
        # 1 - p rounds to 0, and its value then does not matter: it is
        # multiplied by (1 - p)^gamma = 0, or by gamma = 0.
        ratio = log_p / one_minus_p.clamp_min(torch.finfo(log_p.dtype).tiny)
        p = log_p.exp()
        q_g = q_modulating * (gamma * p * ratio - 1.0)
        return per_sample, q_g - p * q_g.sum(dim=1, keepdim=True)


@dataclass(frozen=True)
class SmoothedCrossEntropy(_Loss):
    r""":func:`smoothed_cross_entropy` as an object, with its closed form.

    .. math:: \frac{\partial \ell}{\partial z_j} = p_j - q_j
        + \beta p_j (\log p_j + H(p))

    Examples
    --------
    >>> import torch
    >>> from sk_dualhead.losses import SmoothedCrossEntropy
    >>> SmoothedCrossEntropy(0.1)(torch.tensor([[2.0, 0.0]]), torch.tensor([0]))
    tensor(0.2269)
    """

    label_smoothing: float = 0.0
    confidence_penalty: float = 0.0
    function = staticmethod(smoothed_cross_entropy)

    def loss_gradient(self, logits, log_p, target, one_hot):
        p = log_p.exp()
        q = _smooth(one_hot, self.label_smoothing) if self.label_smoothing else one_hot
        per_sample = -(q * log_p).sum(dim=1)
        grad = p - q
        if self.confidence_penalty:
            # As in the reference, p log p is 0 where p underflows, never 0 * -inf.
            p_log_p = p * log_p
            entropy = -p_log_p.sum(dim=1, keepdim=True)
            per_sample = per_sample - self.confidence_penalty * entropy.squeeze(1)
            grad = grad + self.confidence_penalty * (p_log_p + p * entropy)
        return per_sample, grad


@dataclass(frozen=True)
class GeneralizedCrossEntropy(_Loss):
    r""":func:`generalized_cross_entropy` as an object, with its closed form.

    .. math:: \frac{\partial \ell}{\partial z_j}
        = p_y^{\,q} \, (p_j - \mathbb{1}[j = y])

    Examples
    --------
    >>> import torch
    >>> from sk_dualhead.losses import GeneralizedCrossEntropy
    >>> GeneralizedCrossEntropy(q=1.0)(torch.tensor([[0.0, 0.0]]), torch.tensor([0]))
    tensor(0.5000)
    """

    q: float = 0.7
    function = staticmethod(generalized_cross_entropy)

    def loss_gradient(self, logits, log_p, target, one_hot):
        q_log_p_true = self.q * log_p.gather(1, target.unsqueeze(1))
        per_sample = -torch.expm1(q_log_p_true).squeeze(1) / self.q
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


def _term_weights(target, sample_weight, alpha, like):
    """Per-sample weights of the main, auxiliary and consistency terms, or None.

    Both heads' terms weigh each sample by ``sample_weight * alpha[target]``,
    the consistency term by ``sample_weight`` alone (each factor where
    given); None when every sample counts alike.
    """
    if sample_weight is None and alpha is None:
        return None
    ones = torch.ones_like(like)
    head = _reduce(_weigh_classes(ones, alpha, target), sample_weight, "none")
    consistency = ones if sample_weight is None else sample_weight
    return torch.stack([head, head, consistency])


class _FusedDualHeadTerms(torch.autograd.Function):
    """:class:`DualHeadLoss`'s terms, with closed-form gradients.

    The logits come flattened to ``(n_members * n_samples, n_classes)``, the
    members one after another. The forward computes each member's four
    terms and the gradients of the main, auxiliary and consistency terms
    with respect to the logits, without an autograd graph; the backward
    scales them by the incoming gradient of each term, so that any term (not
    only the total) can be differentiated, as the adversarial strategy does
    with the main term. The three terms go through the weighing and the mean
    together, stacked, since on small batches the number of operations, not
    their size, sets the cost.
    """

    @staticmethod
    def forward(
        ctx, main_logits, aux_logits, target, sample_weight, alpha, n_members, loss
    ):
        main_log_p = F.log_softmax(main_logits, dim=1)
        aux_log_p = F.log_softmax(aux_logits, dim=1)
        # Shared by both heads; scatter_ rather than F.one_hot, which checks
        # the targets' range at the cost of a reduction.
        one_hot = torch.zeros_like(main_log_p).scatter_(1, target.unsqueeze(1), 1.0)
        main, grad_main = loss.main_loss.loss_gradient(
            main_logits, main_log_p, target, one_hot
        )
        aux, grad_aux = loss.aux_loss.loss_gradient(
            aux_logits, aux_log_p, target, one_hot
        )
        temperature = loss.consistency_temperature
        if temperature != 1:
            # At T = 1 the heads' log-softmax serve as they are: z / 1 is z.
            aux_log_p = F.log_softmax(aux_logits / temperature, dim=1)
            main_log_p = F.log_softmax(main_logits / temperature, dim=1)
        consistency, grad_consistency = _kl_consistency_closed_form(
            aux_log_p, main_log_p, temperature
        )
        per_sample = torch.stack([main, aux, consistency])
        grads = torch.stack([grad_main, grad_aux, grad_consistency])
        weight = _term_weights(target, sample_weight, alpha, like=main)
        if weight is not None:
            per_sample = per_sample * weight
            grads = grads * weight.unsqueeze(2)
        n_samples = per_sample.shape[1] // n_members
        terms = per_sample.view(3, n_members, n_samples).mean(dim=2)
        # Each term is a mean over its member's samples: each counts 1/n.
        ctx.save_for_backward(grads.view(3, n_members, n_samples, -1) / n_samples)
        ctx.weights = loss.weights
        return torch.cat([_total(terms, loss.weights).unsqueeze(0), terms])

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_terms):
        (grads,) = ctx.saved_tensors
        w_main, w_aux, w_consistency = ctx.weights
        g_total, g_main, g_aux, g_consistency = grad_terms[:, :, None, None]
        # Each term reaches the logits directly and through the total.
        grad_main_logits = grads[0] * g_main.add(g_total, alpha=w_main)
        grad_aux_logits = torch.addcmul(
            grads[1] * g_aux.add(g_total, alpha=w_aux),
            grads[2],
            g_consistency.add(g_total, alpha=w_consistency),
        )
        n_classes = grads.shape[-1]
        return (
            grad_main_logits.view(-1, n_classes),
            grad_aux_logits.view(-1, n_classes),
        ) + (None,) * 5


def _total(terms, weights):
    """``w_main * main + w_aux * aux + w_consistency * consistency``.

    Each weight in add's alpha rather than in an operation of its own.
    """
    w_main, w_aux, w_consistency = weights
    total = (terms[0] * w_main).add_(terms[1], alpha=w_aux)
    return total.add_(terms[2], alpha=w_consistency)


class DualHeadLoss(nn.Module):
    """The combined loss of the two heads, for one network or several.

    ``total = w_main * main_loss(main) + w_aux * aux_loss(aux)
    + w_consistency * KL(main.detach() -> aux)``

    The logits may carry leading member dimensions, ``(..., n_samples,
    n_classes)``: each member's terms are means over its own samples,
    weighted by its own row of ``sample_weight``, and the result has one
    column per member. The loss holds no parameters; being a
    :class:`torch.nn.Module` lets skorch treat it as its criterion.

    When both heads' losses carry a closed form (``loss_gradient``, as the
    loss objects of this module do) and a gradient is wanted, the terms and
    their gradients come from the closed forms in one autograd node, several
    operations fewer per step than autograd through the functions; other
    losses go through autograd. Both give the same terms and gradients, to
    rounding.

    Parameters
    ----------
    main_loss : callable
        ``main_loss(logits, target, alpha=..., sample_weight=...,
        reduction=...)`` for the main head, e.g. ``FocalLoss(gamma=2.0)``.
    aux_loss : callable
        The same for the auxiliary head.
    weights : tuple of float
        ``(w_main, w_aux, w_consistency)``.
    class_weights : torch.Tensor of shape (n_classes,), default=None
        Weights of the classes in both heads' terms, by the sample's true
        class (float64, moved to the logits' device and dtype when used).
    consistency_temperature : float, default=1.0
        Temperature of the KL consistency term.

    Examples
    --------
    >>> import torch
    >>> from sk_dualhead.losses import DualHeadLoss, FocalLoss, SmoothedCrossEntropy
    >>> loss = DualHeadLoss(FocalLoss(gamma=2.0), SmoothedCrossEntropy(0.15),
    ...                     weights=(0.7, 0.25, 0.05))
    >>> z = torch.zeros(4, 2)
    >>> terms = loss(z, z, torch.tensor([0, 1, 0, 1]))
    >>> [round(v, 4) for v in terms.tolist()]  # total, main, aux, consistency
    [0.2946, 0.1733, 0.6931, 0.0]
    >>> loss(torch.zeros(3, 4, 2), torch.zeros(3, 4, 2), torch.tensor([0, 1, 0, 1])).shape
    torch.Size([4, 3])
    """

    #: Names of the entries returned by :meth:`forward`, in order.
    term_names = ("loss", "main_loss", "aux_loss", "consistency_loss")

    def __init__(
        self,
        main_loss,
        aux_loss,
        weights,
        class_weights=None,
        consistency_temperature=1.0,
    ):
        super().__init__()
        self.main_loss = main_loss
        self.aux_loss = aux_loss
        self.weights = tuple(weights)
        self.class_weights = class_weights
        self.consistency_temperature = consistency_temperature

    def forward(self, main_logits, aux_logits, target, sample_weight=None):
        """Return ``tensor([total, main, aux, consistency])``, per member.

        Parameters
        ----------
        main_logits, aux_logits : torch.Tensor of shape (..., n_samples, n_classes)
            Both heads' logits; leading dimensions index members.
        target : torch.LongTensor of shape (..., n_samples)
            Class indices, per member or shared.
        sample_weight : torch.Tensor of shape (..., n_samples), default=None
            Weights of the samples, per member or shared.

        Returns
        -------
        terms : torch.Tensor of shape (4, ...)
        """
        members = main_logits.shape[:-2]
        n_members = members.numel()
        n_classes = main_logits.shape[-1]
        main_flat = main_logits.reshape(-1, n_classes)
        aux_flat = aux_logits.reshape(-1, n_classes)
        target = target.expand(main_logits.shape[:-1]).reshape(-1)
        if sample_weight is not None:
            sample_weight = sample_weight.expand(
                *members, main_logits.shape[-2]
            ).reshape(-1)
        if self._fuses(main_logits, aux_logits, sample_weight):
            terms = _FusedDualHeadTerms.apply(
                main_flat, aux_flat, target, sample_weight, self.class_weights,
                n_members, self,
            )
        else:
            terms = self._composed_terms(
                main_flat, aux_flat, target, sample_weight, n_members
            )
        return terms.view(4, *members)

    def _composed_terms(self, main_logits, aux_logits, target, sample_weight, n_members):
        """The terms through autograd over the losses' public functions."""
        alpha = self.class_weights
        per_sample = torch.stack(
            [
                self.main_loss(
                    main_logits, target, alpha=alpha, sample_weight=sample_weight,
                    reduction="none",
                ),
                self.aux_loss(
                    aux_logits, target, alpha=alpha, sample_weight=sample_weight,
                    reduction="none",
                ),
                kl_consistency(
                    aux_logits,
                    main_logits,
                    temperature=self.consistency_temperature,
                    sample_weight=sample_weight,
                    reduction="none",
                ),
            ]
        )
        terms = per_sample.view(3, n_members, -1).mean(dim=2)
        return torch.cat([_total(terms, self.weights).unsqueeze(0), terms])

    def main_term(self, main_logits, target, sample_weight=None):
        """The main head's term alone, per member, differentiable."""
        n_classes = main_logits.shape[-1]
        target = target.expand(main_logits.shape[:-1]).reshape(-1)
        if sample_weight is not None:
            sample_weight = sample_weight.expand(
                *main_logits.shape[:-1]
            ).reshape(-1)
        per_sample = self.main_loss(
            main_logits.reshape(-1, n_classes),
            target,
            alpha=self.class_weights,
            sample_weight=sample_weight,
            reduction="none",
        )
        return per_sample.view(main_logits.shape[:-1]).mean(dim=-1)

    def _fuses(self, main_logits, aux_logits, sample_weight):
        """Whether the closed forms apply.

        They do when both losses have one and a gradient is wanted with
        respect to the logits alone. Without gradient the composition is the
        cheaper: the closed forms' extra work is the gradient itself.
        """
        if not torch.is_grad_enabled() or not (
            main_logits.requires_grad or aux_logits.requires_grad
        ):
            return False
        if sample_weight is not None and sample_weight.requires_grad:
            return False
        return all(
            hasattr(loss, "loss_gradient") for loss in (self.main_loss, self.aux_loss)
        )
