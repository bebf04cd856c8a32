"""The PyTorch module: an MLP trunk shared by two linear heads.

This module knows nothing of scikit-learn or skorch.
"""

import functools
import math

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


class PeriodicEmbedding(nn.Module):
    """Periodic embeddings of continuous features, PLR (Gorishniy et al. 2022).

    Each feature ``x`` becomes ``v = [cos(2 pi c x), sin(2 pi c x)]`` for
    ``n_frequencies`` learned frequencies ``c`` of its own, initialised from
    ``N(0, sigma ** 2)``, followed by a linear layer of its own
    (``2 * n_frequencies -> d_embedding``) and a ReLU; the embeddings of all
    features are concatenated.

    Parameters
    ----------
    n_features : int
        Number of continuous input columns.
    n_frequencies : int
        Learned frequencies per feature.
    d_embedding : int
        Width of each feature's embedding.
    sigma : float
        Standard deviation of the initial frequencies.

    References
    ----------
    .. [1] Gorishniy, Rubachev and Babenko, "On Embeddings for Numerical
       Features in Tabular Deep Learning", NeurIPS 2022.

    Examples
    --------
    >>> import torch
    >>> from sk_dualhead._network import PeriodicEmbedding
    >>> embed = PeriodicEmbedding(3, n_frequencies=4, d_embedding=5, sigma=0.03)
    >>> tuple(embed(torch.zeros(2, 3)).shape), embed.output_width
    ((2, 15), 15)
    """

    def __init__(self, n_features, *, n_frequencies, d_embedding, sigma):
        super().__init__()
        self.frequencies = nn.Parameter(sigma * torch.randn(n_features, n_frequencies))
        # nn.Linear's initialisation, one layer per feature.
        bound = 1 / math.sqrt(2 * n_frequencies)
        self.weight = nn.Parameter(
            torch.empty(n_features, 2 * n_frequencies, d_embedding).uniform_(
                -bound, bound
            )
        )
        self.bias = nn.Parameter(
            torch.empty(n_features, d_embedding).uniform_(-bound, bound)
        )
        self.output_width = n_features * d_embedding

    def forward(self, X):
        """Embed ``X`` of shape (n, n_features) into (n, ``output_width``)."""
        angles = 2 * math.pi * self.frequencies * X[..., None]
        periodic = torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)
        embedded = torch.einsum("nfi,fio->nfo", periodic, self.weight) + self.bias
        return torch.relu(embedded).flatten(1)


#: Embeddings of the continuous input columns, by name; ``None`` feeds them
#: to the trunk as they are. ``"periodic"``: 16 frequencies and 16 values per
#: column (RealMLP: 16 and 4; rtdl_num_embeddings: 48 and 24). Inputs are
#: robust-scaled and smoothly clipped to about ``[-3, 3]``, where frequencies
#: drawn with ``sigma=0.03`` start well under half a period: smooth, almost
#: linear features at first, sharper ones only where training raises a
#: frequency. On the quality benchmark's tables ``sigma=0.03`` ranked and
#: calibrated a little better than 0.1 and much better than 1.0.
NUMERICAL_EMBEDDINGS = {
    None: None,
    "periodic": functools.partial(
        PeriodicEmbedding, n_frequencies=16, d_embedding=16, sigma=0.03
    ),
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
    to the trunk as they are or through ``numerical_embedding``; each
    remaining column holds the integer code of one categorical feature,
    looked up in its own learned embedding.

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
    numerical_embedding : {None, "periodic"}, default=None
        Embedding of the continuous columns, a key of
        :data:`NUMERICAL_EMBEDDINGS`; ``None`` feeds them as they are.

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
        numerical_embedding=None,
    ):
        super().__init__()
        self.n_continuous = n_continuous
        make_embedding = NUMERICAL_EMBEDDINGS[numerical_embedding]
        # None adds no module, so the default network's weights draw the
        # same random numbers as before the option existed.
        self.numerical_embedding = (
            None if make_embedding is None else make_embedding(n_continuous)
        )
        self.embeddings = nn.ModuleList(
            nn.Embedding(cardinality, embedding_dim(cardinality))
            for cardinality in category_cardinalities
        )
        width = (
            n_continuous
            if self.numerical_embedding is None
            else self.numerical_embedding.output_width
        ) + sum(e.embedding_dim for e in self.embeddings)
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

    def trunk_inputs(self, X):
        """The trunk's input: continuous columns, embedded or not, then embeddings."""
        inputs = X[:, : self.n_continuous]
        if self.numerical_embedding is not None:
            inputs = self.numerical_embedding(inputs)
        if self.embeddings:
            codes = X[:, self.n_continuous :].long()
            inputs = torch.cat(
                [inputs]
                + [embed(codes[:, i]) for i, embed in enumerate(self.embeddings)],
                dim=1,
            )
        return inputs

    def encode(self, X):
        """Output of the trunk, which both heads read."""
        return self.trunk(self.trunk_inputs(X))

    def forward(self, X):
        """Return ``(main_logits, aux_logits)``."""
        hidden = self.encode(X)
        return self.main_head(hidden), self.aux_head(hidden)


#: In-place forms of the activations, for buffers an inference pass owns.
_IN_PLACE_ACTIVATIONS = {
    nn.ReLU: torch.relu_,
    nn.Tanh: torch.tanh_,
    nn.SiLU: functools.partial(nn.functional.silu, inplace=True),
    nn.SELU: functools.partial(nn.functional.selu, inplace=True),
}


class InferencePass:
    """Forward passes of a :class:`DualHeadNetwork` in eval mode, into reused buffers.

    ``module(X)`` allocates every activation afresh: on the CPU a 1,024-row
    chunk through a 256-wide trunk asks the allocator for a few MB per chunk,
    which the C library, depending on what the process allocated before,
    maps and unmaps again (minor page faults on every chunk). Here each
    linear layer writes into a buffer of its own (``torch.addmm(...,
    out=)``), activations run in place, and the heads asked for are one
    matrix product written straight into the caller's output.

    Every call computes exactly ``n_rows`` rows (fewer are padded with
    zeros): BLAS picks its kernels by matrix shape, so with one shape a row's
    logits are bit-for-bit the same whatever rows are predicted with it.

    Parameters
    ----------
    network : DualHeadNetwork
        The network, in eval mode; its weights are read, never copied.
    heads : tuple of {"main", "aux"}
        The heads whose logits are written, side by side, in this order.
    n_rows : int
        Rows per call.

    Examples
    --------
    >>> import torch
    >>> from sk_dualhead._network import DualHeadNetwork, InferencePass
    >>> net = DualHeadNetwork(n_continuous=4, n_classes=3, hidden_sizes=(8,)).eval()
    >>> X, out = torch.randn(5, 4), torch.empty(16, 6)
    >>> with torch.inference_mode():
    ...     InferencePass(net, ("main", "aux"), n_rows=16)(X, out=out)
    ...     main, aux = net(X)
    >>> torch.allclose(out[:5], torch.cat([main, aux], dim=1), atol=1e-6)
    True
    """

    def __init__(self, network, heads, n_rows):
        self.network = network
        self.n_rows = n_rows
        device = network.main_head.weight.device
        head_layers = [getattr(network, f"{head}_head") for head in heads]
        self.head_weight = torch.cat([layer.weight for layer in head_layers]).t()
        self.head_bias = torch.cat([layer.bias for layer in head_layers])
        self.buffers = [
            torch.empty(n_rows, layer.out_features, device=device)
            if isinstance(layer, nn.Linear)
            else None
            for layer in network.trunk
        ]
        self.padded = None

    def __call__(self, X, out):
        """Write the heads' logits of ``X`` (at most ``n_rows`` rows) into ``out``.

        ``out`` has ``n_rows`` rows; those past ``len(X)`` hold the padding's.
        """
        if len(X) < self.n_rows:
            if self.padded is None:
                self.padded = X.new_zeros(self.n_rows, X.shape[1])
            self.padded[: len(X)] = X
            X = self.padded
        hidden = self.network.trunk_inputs(X)
        for layer, buffer in zip(self.network.trunk, self.buffers):
            if buffer is not None:
                hidden = torch.addmm(layer.bias, hidden, layer.weight.t(), out=buffer)
            elif type(layer) in _IN_PLACE_ACTIVATIONS:
                # hidden is a buffer of this pass or a normalisation's fresh
                # output, never the caller's X: the trunk starts with a
                # linear layer.
                hidden = _IN_PLACE_ACTIVATIONS[type(layer)](hidden)
            else:
                hidden = layer(hidden)
        torch.addmm(self.head_bias, hidden, self.head_weight, out=out)
