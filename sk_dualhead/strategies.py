"""Named loss strategies: which loss each head learns with, and how they mix.

A strategy is data, not code: an entry of :data:`STRATEGIES` names the loss of
the main head, the loss of the auxiliary head, their parameters, the three
weights of the combined loss and any extra training behaviour (class
balancing, adversarial inputs, calibration). The estimator's own knobs
(:data:`KNOBS` and ``loss_weights``) override an entry's values, so a
``GridSearchCV`` can sweep the strategy and the knobs together.
:func:`choose_strategy` is the ``strategy="auto"`` rule.
"""

import dataclasses
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from .losses import (
    DualHeadLoss,
    FocalLoss,
    GeneralizedCrossEntropy,
    SmoothedCrossEntropy,
    class_balanced_alpha,
)

__all__ = [
    "Strategy",
    "STRATEGIES",
    "KNOBS",
    "resolve_strategy",
    "class_weights",
    "build_loss",
    "estimate_label_noise",
    "choose_strategy",
]


@dataclass(frozen=True)
class Strategy:
    """One row of the strategy table.

    Parameters
    ----------
    use_case : str
        When to choose it, in a few words.
    main_loss, aux_loss : loss object
        Loss of each head, an object of :mod:`sk_dualhead.losses` such as
        :class:`~sk_dualhead.losses.FocalLoss`, holding its parameters.
    weights : tuple of float
        ``(w_main, w_aux, w_consistency)`` of the combined loss.
    class_balance_beta : float or None, default=None
        When set, both heads weigh classes by
        :func:`~sk_dualhead.losses.class_balanced_alpha` with this ``beta``,
        and predictions are corrected for the prior shift that causes.
    adversarial_epsilon : float, default=0.0
        When positive, half of the main loss is taken on FGSM-perturbed
        inputs: each continuous input column moves by this much (in units
        of the preprocessed features) in the direction that raises the loss.
    always_calibrate : bool, default=False
        Fit temperature scaling even when ``calibration=None``.
    """

    use_case: str
    main_loss: object
    aux_loss: object
    weights: tuple
    class_balance_beta: float = None
    adversarial_epsilon: float = 0.0
    always_calibrate: bool = False


STRATEGIES = MappingProxyType(
    {
        "balanced": Strategy(
            use_case="general classification, the default",
            main_loss=FocalLoss(gamma=2.0),
            aux_loss=SmoothedCrossEntropy(label_smoothing=0.15),
            weights=(0.7, 0.25, 0.05),
        ),
        "focal_smooth": Strategy(
            use_case="severe class imbalance, rare-event detection",
            main_loss=FocalLoss(gamma=2.0),
            # No label smoothing on the focal head, though the design note
            # suggests a light one: a smoothed focal loss keeps the full
            # cross-entropy pull toward every wrong class while damping the
            # pull toward the true one, so even 0.01 capped the probabilities
            # and stopped training early on breast cancer (ECE 0.10 against
            # 0.04 without). The auxiliary head carries the smoothing.
            aux_loss=SmoothedCrossEntropy(label_smoothing=0.1),
            weights=(0.7, 0.25, 0.05),
            class_balance_beta=0.999,
        ),
        "confidence_aware": Strategy(
            use_case="risk scores that must be accurate probabilities",
            main_loss=FocalLoss(gamma="adaptive"),
            aux_loss=SmoothedCrossEntropy(label_smoothing=0.1, confidence_penalty=0.1),
            weights=(0.7, 0.25, 0.05),
            always_calibrate=True,
        ),
        "adversarial": Strategy(
            use_case="noisy features and labels",
            main_loss=FocalLoss(gamma=2.0),
            aux_loss=GeneralizedCrossEntropy(q=0.7),
            weights=(0.7, 0.25, 0.05),
            adversarial_epsilon=0.05,
        ),
        "double_focal": Strategy(
            use_case=(
                "the design note's rejected design, focal loss on both heads; "
                "a baseline for benchmarks, never chosen by 'auto'"
            ),
            main_loss=FocalLoss(gamma=2.0),
            aux_loss=FocalLoss(gamma=2.0),
            weights=(0.7, 0.25, 0.05),
        ),
    }
)

#: Estimator knob -> (what it overrides, parameter name). ``"main_loss"``
#: and ``"aux_loss"`` name a parameter of a head's loss object, which a knob
#: sets only where that loss has it (``noise_q`` leaves a cross-entropy
#: alone); ``None`` names a field of :class:`Strategy`.
KNOBS = MappingProxyType(
    {
        "gamma": ("main_loss", "gamma"),
        "label_smoothing": ("aux_loss", "label_smoothing"),
        "confidence_penalty": ("aux_loss", "confidence_penalty"),
        "noise_q": ("aux_loss", "q"),
        "class_balance_beta": (None, "class_balance_beta"),
        "adversarial_epsilon": (None, "adversarial_epsilon"),
    }
)


def resolve_strategy(strategy, *, loss_weights=None, **knobs):
    """The :class:`Strategy` entry with the knobs applied.

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
    entry : Strategy

    Examples
    --------
    >>> from sk_dualhead.strategies import resolve_strategy
    >>> resolve_strategy("adversarial", adversarial_epsilon=0.1).adversarial_epsilon
    0.1
    >>> resolve_strategy("balanced", noise_q=0.5).aux_loss
    SmoothedCrossEntropy(label_smoothing=0.15, confidence_penalty=0.0)
    """
    if strategy not in STRATEGIES:
        raise ValueError(
            f"Unknown strategy {strategy!r}; valid strategies are "
            f"{sorted(STRATEGIES)}."
        )
    entry = STRATEGIES[strategy]
    changes = {} if loss_weights is None else {"weights": tuple(loss_weights)}
    for knob, value in knobs.items():
        if value is None:
            continue
        target, name = KNOBS[knob]
        if target is None:
            changes[name] = value
            continue
        loss = changes.get(target, getattr(entry, target))
        if hasattr(loss, name):
            changes[target] = dataclasses.replace(loss, **{name: value})
    return dataclasses.replace(entry, **changes)


def class_weights(entry, class_counts):
    """Class weights of a resolved strategy, or None when it does not balance.

    Parameters
    ----------
    entry : Strategy
        A resolved strategy (see :func:`resolve_strategy`).
    class_counts : array-like of shape (n_classes,) or None
        Training samples per class.

    Returns
    -------
    alpha : torch.Tensor of shape (n_classes,), float64, or None

    Examples
    --------
    >>> from sk_dualhead.strategies import class_weights, resolve_strategy
    >>> class_weights(resolve_strategy("focal_smooth"), [900, 100])
    tensor([0.2764, 1.7236], dtype=torch.float64)
    """
    if entry.class_balance_beta is None:
        return None
    if class_counts is None:
        raise ValueError(
            "This strategy balances classes by their counts; pass class_counts."
        )
    return class_balanced_alpha(class_counts, entry.class_balance_beta)


def build_loss(strategy, *, loss_weights=None, class_counts=None, **knobs):
    """Build the :class:`~sk_dualhead.losses.DualHeadLoss` of a strategy.

    Parameters
    ----------
    strategy : str or Strategy
        A key of :data:`STRATEGIES`, or an entry already resolved (then
        ``loss_weights`` and the knobs must be left out).
    loss_weights : tuple of float, default=None
        ``(w_main, w_aux, w_consistency)``; ``None`` keeps the strategy's.
    class_counts : array-like of shape (n_classes,), default=None
        Training samples per class; needed by class-balancing strategies.
    **knobs : float or None
        Values for the keys of :data:`KNOBS`; ``None`` keeps the strategy's.

    Returns
    -------
    loss : DualHeadLoss

    Examples
    --------
    >>> from sk_dualhead.strategies import build_loss
    >>> build_loss("balanced", gamma=1.0).main_loss
    FocalLoss(gamma=1.0, label_smoothing=0.0)
    """
    entry = (
        strategy
        if isinstance(strategy, Strategy)
        else resolve_strategy(strategy, loss_weights=loss_weights, **knobs)
    )
    return DualHeadLoss(
        entry.main_loss,
        entry.aux_loss,
        weights=entry.weights,
        class_weights=class_weights(entry, class_counts),
    )


#: Out-of-fold disagreement above which ``auto`` calls the labels noisy (see
#: :func:`estimate_label_noise`); clean tables where a linear model does well
#: stay below it, and 20% of flipped labels alone reach it.
NOISE_THRESHOLD = 0.2

#: Minority/majority class ratio below which ``auto`` calls the data imbalanced.
IMBALANCE_THRESHOLD = 0.1


def estimate_label_noise(X, y, *, random_state=None):
    """Share of labels that a cheap out-of-fold model disagrees with.

    A standardised logistic regression predicts every sample out of fold
    (5-fold, stratified); the estimate is the share of samples whose
    predicted class is not their label. It measures label noise and the
    overlap of the classes alike (a linear model also misses regions it
    cannot fit), so it is an upper bound on the noise rate, and the
    threshold :data:`NOISE_THRESHOLD` is set accordingly high.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Numeric features (the preprocessed matrix).
    y : ndarray of shape (n_samples,)
        Encoded class labels ``0 .. n_classes - 1``.
    random_state : int, RandomState instance or None, default=None
        Seeds the fold assignment.

    Returns
    -------
    rate : float
        In ``[0, 1]``; 0 when a class has too few samples for 2 folds.

    Examples
    --------
    >>> import numpy as np
    >>> from sk_dualhead.strategies import estimate_label_noise
    >>> rng = np.random.RandomState(0)
    >>> X = rng.normal(size=(400, 2))
    >>> y = (X[:, 0] > 0).astype(int)
    >>> float(estimate_label_noise(X, y, random_state=0)) < 0.05
    True
    >>> y[rng.rand(400) < 0.3] ^= 1
    >>> float(estimate_label_noise(X, y, random_state=0)) > 0.2
    True
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    n_splits = min(5, int(np.bincount(y).min()))
    if n_splits < 2:
        return 0.0
    folds = StratifiedKFold(n_splits, shuffle=True, random_state=random_state)
    predicted = cross_val_predict(
        make_pipeline(StandardScaler(), LogisticRegression(max_iter=200)),
        X,
        y,
        cv=folds,
    )
    return float(np.mean(predicted != y))


def choose_strategy(
    y, *, calibrated_probabilities=False, noisy_labels="auto", X=None, random_state=None
):
    """The ``strategy="auto"`` rule of the design note, applied to data.

    1. minority/majority class ratio below :data:`IMBALANCE_THRESHOLD`:
       ``"focal_smooth"``;
    2. else, calibrated probabilities requested: ``"confidence_aware"``;
    3. else, noisy labels (the flag, or with ``"auto"`` an estimate by
       :func:`estimate_label_noise` above :data:`NOISE_THRESHOLD`):
       ``"adversarial"``;
    4. else ``"balanced"``.

    Parameters
    ----------
    y : ndarray of shape (n_samples,)
        Encoded class labels ``0 .. n_classes - 1``.
    calibrated_probabilities : bool, default=False
        Whether the probabilities must be accurate.
    noisy_labels : bool or "auto", default="auto"
        Whether the labels are noisy; ``"auto"`` estimates it from ``X``.
    X : ndarray of shape (n_samples, n_features), default=None
        Numeric features; needed when ``noisy_labels="auto"``.
    random_state : int, RandomState instance or None, default=None
        Seeds the noise estimate.

    Returns
    -------
    name : str
        A key of :data:`STRATEGIES`.
    reason : str
        The measured traits that decided it.

    Examples
    --------
    >>> import numpy as np
    >>> from sk_dualhead.strategies import choose_strategy
    >>> choose_strategy(np.array([0] * 95 + [1] * 5))
    ('focal_smooth', 'minority/majority class ratio 0.053 < 0.1')
    """
    counts = np.bincount(y)
    ratio = counts.min() / counts.max()
    imbalance = f"minority/majority class ratio {ratio:.3f}"
    if ratio < IMBALANCE_THRESHOLD:
        return "focal_smooth", f"{imbalance} < {IMBALANCE_THRESHOLD}"
    imbalance += f" >= {IMBALANCE_THRESHOLD}"
    if calibrated_probabilities:
        return "confidence_aware", f"{imbalance}; calibrated probabilities requested"
    if noisy_labels == "auto":
        if X is None:
            raise ValueError("noisy_labels='auto' needs X to estimate the noise.")
        rate = estimate_label_noise(X, y, random_state=random_state)
        noisy = rate > NOISE_THRESHOLD
        sign = ">" if noisy else "<="
        noise = (
            f"out-of-fold disagreement of a logistic regression {rate:.3f} "
            f"{sign} {NOISE_THRESHOLD}"
        )
    else:
        noisy = bool(noisy_labels)
        noise = f"noisy_labels={noisy}"
    return ("adversarial" if noisy else "balanced"), f"{imbalance}; {noise}"
