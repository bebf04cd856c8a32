"""Named loss strategies: which loss each head learns with, and how they mix.

A strategy is data, not code: an entry of :data:`STRATEGIES` names the loss of
the main head, the loss of the auxiliary head, their parameters and the three
weights of the combined loss. The estimator's own knobs (``gamma``,
``label_smoothing``, ``loss_weights``) override an entry's values, so a
``GridSearchCV`` can sweep the strategy and the knobs together.
"""

from dataclasses import dataclass, field
from functools import partial
from types import MappingProxyType
from typing import Callable, Mapping

from .losses import DualHeadLoss, focal_loss, smoothed_cross_entropy

__all__ = ["Strategy", "STRATEGIES", "build_loss"]


@dataclass(frozen=True)
class Strategy:
    """One row of the strategy table.

    Parameters
    ----------
    use_case : str
        When to choose it, in a few words.
    main_loss, aux_loss : callable
        Loss functions of :mod:`sk_dualhead.losses` for each head.
    main_params, aux_params : mapping
        Keyword arguments of each loss.
    weights : tuple of float
        ``(w_main, w_aux, w_consistency)`` of the combined loss.
    """

    use_case: str
    main_loss: Callable
    aux_loss: Callable
    weights: tuple
    main_params: Mapping = field(default_factory=dict)
    aux_params: Mapping = field(default_factory=dict)


STRATEGIES = MappingProxyType(
    {
        "balanced": Strategy(
            use_case="general classification, the default",
            main_loss=focal_loss,
            main_params={"gamma": 2.0},
            aux_loss=smoothed_cross_entropy,
            aux_params={"label_smoothing": 0.15},
            weights=(0.7, 0.25, 0.05),
        ),
    }
)

#: Estimator knob -> (which head's parameters it overrides, parameter name).
KNOBS = MappingProxyType(
    {
        "gamma": ("main_params", "gamma"),
        "label_smoothing": ("aux_params", "label_smoothing"),
    }
)


def build_loss(strategy, *, loss_weights=None, **knobs):
    """Build the :class:`~sk_dualhead.losses.DualHeadLoss` of a strategy.

    Parameters
    ----------
    strategy : str
        A key of :data:`STRATEGIES`.
    loss_weights : tuple of float, default=None
        ``(w_main, w_aux, w_consistency)``; ``None`` keeps the strategy's.
    **knobs : float or None
        Values for the keys of :data:`KNOBS`; ``None`` keeps the strategy's.

    Returns
    -------
    loss : DualHeadLoss

    Examples
    --------
    >>> from sk_dualhead.strategies import build_loss
    >>> build_loss("balanced", gamma=1.0).weights
    (0.7, 0.25, 0.05)
    """
    if strategy not in STRATEGIES:
        raise ValueError(
            f"Unknown strategy {strategy!r}; valid strategies are "
            f"{sorted(STRATEGIES)}."
        )
    entry = STRATEGIES[strategy]
    params = {"main_params": dict(entry.main_params), "aux_params": dict(entry.aux_params)}
    for knob, value in knobs.items():
        if value is not None:
            head, name = KNOBS[knob]
            params[head][name] = value
    return DualHeadLoss(
        main_loss=partial(entry.main_loss, **params["main_params"]),
        aux_loss=partial(entry.aux_loss, **params["aux_params"]),
        weights=tuple(entry.weights if loss_weights is None else loss_weights),
    )
