"""Shared test settings."""

import torch

# The networks under test are tiny: one thread is fastest, and several test
# processes sharing two cores would otherwise slow each other's spinning
# threads down by an order of magnitude.
torch.set_num_threads(1)
