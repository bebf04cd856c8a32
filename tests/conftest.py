"""Shared test settings and data."""

import pytest
import torch
from sklearn.datasets import make_classification

# The networks under test are tiny: one thread is fastest, and several test
# processes sharing two cores would otherwise slow each other's spinning
# threads down by an order of magnitude.
torch.set_num_threads(1)


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
