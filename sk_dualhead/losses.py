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

import torch
import torch.nn.functional as F
from torch import nn

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
    one_hot = F.one_hot(target, n_classes).to(dtype)
    return one_hot * (1.0 - label_smoothing) + label_smoothing / n_classes


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
    # 1 - p computed as -expm1(log p) keeps precision when p is close to 1.
    one_minus_p = -torch.expm1(log_p)
    if isinstance(gamma, str):
        if gamma != "adaptive":
            raise ValueError(f"gamma must be a number or 'adaptive', got {gamma!r}.")
        gamma = adaptive_gamma(logits, target)
    gamma = torch.as_tensor(gamma, dtype=log_p.dtype, device=log_p.device)
    if gamma.ndim == 1:
        gamma = gamma.unsqueeze(1)
    modulating = one_minus_p.clamp_min(0.0).pow(gamma)
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


class DualHeadLoss(nn.Module):
    """The combined loss of the two heads.

    ``total = w_main * main_loss(main) + w_aux * aux_loss(aux)
    + w_consistency * KL(main.detach() -> aux)``

    It holds no parameters; being a :class:`torch.nn.Module` lets skorch
    treat it as its criterion.

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
