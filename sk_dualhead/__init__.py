"""sk_dualhead: a two-headed neural network classifier for scikit-learn.

The public estimator is :class:`DualHeadClassifier`; loss functions live in
:mod:`sk_dualhead.losses`, the strategy table in :mod:`sk_dualhead.strategies`
and the preprocessing in :mod:`sk_dualhead.preprocessing`.
"""

# Defined before the imports below, which read it: no import cycle.
__version__ = "0.2.0.dev0"

from .estimator import DualHeadClassifier  # noqa: E402
from .serialization import load, save  # noqa: E402

__all__ = ["DualHeadClassifier", "load", "save", "__version__"]
