"""The PyTorch module: an MLP trunk shared by two linear heads.

This module knows nothing of scikit-learn or skorch.
"""

import torch
from torch import nn

ACTIVATIONS = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "selu": nn.SELU,
    "tanh": nn.Tanh,
}

NORMALIZATIONS = {
    None: None,
    "batchnorm": nn.BatchNorm1d,
    "layernorm": nn.LayerNorm,
}


def embedding_dim(cardinality):
    """Width of the learned embedding for a categorical column.

    The fast.ai rule of thumb ``1.6 * n ** 0.56``, capped at 16: wide enough
    for a few hundred levels, small enough for tables of a few thousand rows.
    """
    return int(min(16, round(1.6 * cardinality**0.56)))


class DualHeadNetwork(nn.Module):
    """A shared MLP trunk feeding a main and an auxiliary linear head.

    The input is one float matrix: the first ``n_continuous`` columns are fed
    to the trunk as they are; each remaining column holds the integer code of
    one categorical feature, looked up in its own learned embedding.

    Parameters
    ----------
    n_continuous : int
        Number of continuous input columns.
    n_classes : int
        Number of output logits of each head.
    hidden_sizes : tuple of int, default=(256, 256)
        Widths of the trunk's hidden layers; ``()`` gives two linear models
        on a shared input.
    activation : {"relu", "gelu", "silu", "selu", "tanh"}, default="relu"
        Non-linearity after each hidden layer.
    dropout : float, default=0.0
        Dropout probability after each hidden layer.
    normalization : {None, "batchnorm", "layernorm"}, default=None
        Normalisation after each hidden linear layer.
    category_cardinalities : tuple of int, default=()
        Number of codes of each embedded categorical column.

    Examples
    --------
    >>> import torch
    >>> from sk_dualhead._network import DualHeadNetwork
    >>> net = DualHeadNetwork(n_continuous=4, n_classes=3, hidden_sizes=(8,))
    >>> main, aux = net(torch.zeros(5, 4))
    >>> tuple(main.shape), tuple(aux.shape)
    ((5, 3), (5, 3))
    """

    def __init__(
        self,
        n_continuous,
        n_classes,
        hidden_sizes=(256, 256),
        activation="relu",
        dropout=0.0,
        normalization=None,
        category_cardinalities=(),
    ):
        super().__init__()
        self.n_continuous = n_continuous
        self.embeddings = nn.ModuleList(
            nn.Embedding(cardinality, embedding_dim(cardinality))
            for cardinality in category_cardinalities
        )
        width = n_continuous + sum(e.embedding_dim for e in self.embeddings)
        layers = []
        for size in hidden_sizes:
            layers.append(nn.Linear(width, size))
            if NORMALIZATIONS[normalization] is not None:
                layers.append(NORMALIZATIONS[normalization](size))
            layers.append(ACTIVATIONS[activation]())
            if dropout:
                layers.append(nn.Dropout(dropout))
            width = size
        self.trunk = nn.Sequential(*layers)
        self.main_head = nn.Linear(width, n_classes)
        self.aux_head = nn.Linear(width, n_classes)

    def encode(self, X):
        """Output of the trunk, which both heads read."""
        if self.embeddings:
            codes = X[:, self.n_continuous :].long()
            X = torch.cat(
                [X[:, : self.n_continuous]]
                + [embed(codes[:, i]) for i, embed in enumerate(self.embeddings)],
                dim=1,
            )
        return self.trunk(X)

    def forward(self, X):
        """Return ``(main_logits, aux_logits)``."""
        hidden = self.encode(X)
        return self.main_head(hidden), self.aux_head(hidden)
