"""Shared test settings and data."""

import pytest
import torch
from sklearn.datasets import make_classification

from sk_dualhead import DualHeadClassifier

# The networks under test are tiny: one thread is fastest, and several test
# processes sharing two cores would otherwise slow each other's spinning
# threads down by an order of magnitude.
torch.set_num_threads(1)

#: Small, fast settings of the tests that train: one tiny network, a few epochs.
FAST = dict(hidden_sizes=(16,), max_epochs=15, lr=1e-2, n_networks=1, random_state=0)


def fast_classifier(*args, **params):
    """A :class:`DualHeadClassifier` with :data:`FAST` settings, ``params`` over them."""
    return DualHeadClassifier(*args, **{**FAST, **params})


@pytest.fixture(scope="session")
def binary():
    return make_classification(
        n_samples=300, n_features=6, n_informative=4, random_state=0
    )


@pytest.fixture(scope="session")
def three_class():
    return make_classification(
        n_samples=300,
        n_features=6,
        n_informative=4,
        n_classes=3,
        n_clusters_per_class=1,
        random_state=1,
    )
