"""sk_dualhead: a two-headed neural network classifier for scikit-learn.

The public estimator is :class:`DualHeadClassifier`; loss functions live in
:mod:`sk_dualhead.losses`, the strategy table in :mod:`sk_dualhead.strategies`
and the preprocessing in :mod:`sk_dualhead.preprocessing`.
"""

from .estimator import DualHeadClassifier

__version__ = "0.1.0"

__all__ = ["DualHeadClassifier", "__version__"]
