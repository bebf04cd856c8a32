"""The PyTorch module: members of an ensemble, packed into one network.

Every member is an MLP trunk shared by two linear heads. The members' weights
are stacked along a leading member dimension and applied with batched matrix
products, so that one forward, backward and optimizer step trains all of
them: on a CPU, small networks spend much of their time on the overhead of
each operation, which the members then share.

This module knows nothing of scikit-learn or skorch.
"""

import functools
import math

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["PackedDualHeadNetwork", "InferencePass"]


def _uniform(*shape, bound):
    return nn.Parameter(torch.empty(*shape).uniform_(-bound, bound))


class PackedLinear(nn.Module):
    """``n_members`` independent linear layers, applied at once.

    Each member's weight and bias are initialised as :class:`torch.nn.Linear`
    initialises its own. The input is ``(n_members, n, in_features)``, or
    ``(n, in_features)`` shared by all members; the output is
    ``(n_members, n, out_features)``.
    """

    def __init__(self, n_members, in_features, out_features):
        super().__init__()
        bound = 1 / math.sqrt(in_features) if in_features else 0.0
        self.weight = _uniform(n_members, in_features, out_features, bound=bound)
        self.bias = _uniform(n_members, 1, out_features, bound=bound)
        self.out_features = out_features

    def forward(self, X):
        if X.dim() == 2:
            X = X.expand(len(self.weight), *X.shape)
        return torch.baddbmm(self.bias, X, self.weight)


class PackedBatchNorm(nn.Module):
    """Batch normalisation of each member's features over its own batch."""

    def __init__(self, n_members, n_features, momentum=0.1, eps=1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n_members, n_features))
        self.bias = nn.Parameter(torch.zeros(n_members, n_features))
        self.register_buffer("running_mean", torch.zeros(n_members, n_features))
        self.register_buffer("running_var", torch.ones(n_members, n_features))
        self.momentum, self.eps = momentum, eps

    def forward(self, X):
        # (k, n, h) as (n, k * h): one channel per member and feature.
        k, n, h = X.shape
        normalized = F.batch_norm(
            X.transpose(0, 1).reshape(n, k * h),
            self.running_mean.view(-1),
            self.running_var.view(-1),
            self.weight.view(-1),
            self.bias.view(-1),
            self.training,
            self.momentum,
            self.eps,
        )
        return normalized.view(n, k, h).transpose(0, 1)


class PackedLayerNorm(nn.Module):
    """Layer normalisation with each member's own scale and shift."""

    def __init__(self, n_members, n_features, eps=1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n_members, 1, n_features))
        self.bias = nn.Parameter(torch.zeros(n_members, 1, n_features))
        self.eps = eps

    def forward(self, X):
        normalized = F.layer_norm(X, X.shape[-1:], eps=self.eps)
        return torch.addcmul(self.bias, normalized, self.weight)


class Dropout(nn.Dropout):
    """:class:`torch.nn.Dropout` with its mask drawn from 15 random bits a value.

    On the CPU torch's ``bernoulli_`` draws the mask at some 9 ns a value:
    with dropout after each hidden layer it took a third of the training
    time of the default network. Random integers and one comparison draw
    the same mask (keep probability ``1 - p`` to within ``2 ** -15``) in
    half the time.

    The input is ``(n_members, ...)``. After
    :meth:`PackedDualHeadNetwork.keep_members`, ``members`` holds the kept
    members' positions among the ``n_drawn`` the network was built with: the
    masks are drawn for all of them and the kept members' taken, so that a
    member's masks never depend on which others still train.
    """

    def __init__(self, p):
        super().__init__(p)
        self.members = self.n_drawn = None

    def forward(self, X):
        if not self.training or not self.p:
            return X
        shape = X.shape if self.members is None else (self.n_drawn, *X.shape[1:])
        bits = torch.empty(shape, dtype=torch.int16, device=X.device).random_()
        if self.members is not None:
            bits = bits.index_select(0, self.members)
        keep = (bits >= round(self.p * 32768)).to(X.dtype)
        return X * keep.mul_(1 / (1 - self.p))


ACTIVATIONS = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "selu": nn.SELU,
    "tanh": nn.Tanh,
}

NORMALIZATIONS = {
    None: None,
    "batchnorm": PackedBatchNorm,
    "layernorm": PackedLayerNorm,
}


class PeriodicEmbedding(nn.Module):
    """Periodic embeddings of continuous features, PLR (Gorishniy et al. 2022).

    Each feature ``x`` becomes ``v = [cos(2 pi c x), sin(2 pi c x)]`` for
    ``n_frequencies`` learned frequencies ``c`` of its own, initialised from
    ``N(0, sigma ** 2)``, followed by a linear layer of its own
    (``2 * n_frequencies -> d_embedding``) and a ReLU; the embeddings of all
    features are concatenated. Every member has its own frequencies and
    layers.

    Parameters
    ----------
    n_members : int
        Members of the ensemble.
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
    >>> embed = PeriodicEmbedding(2, 3, n_frequencies=4, d_embedding=5, sigma=0.03)
    >>> tuple(embed(torch.zeros(6, 3)).shape), embed.output_width
    ((2, 6, 15), 15)
    """

    def __init__(self, n_members, n_features, *, n_frequencies, d_embedding, sigma):
        super().__init__()
        self.frequencies = nn.Parameter(
            sigma * torch.randn(n_members, n_features, n_frequencies)
        )
        # nn.Linear's initialisation, one layer per member and feature.
        bound = 1 / math.sqrt(2 * n_frequencies)
        self.weight = _uniform(
            n_members, n_features, 2 * n_frequencies, d_embedding, bound=bound
        )
        self.bias = _uniform(n_members, 1, n_features, d_embedding, bound=bound)
        self.output_width = n_features * d_embedding

    def forward(self, X):
        """Embed ``X`` of shape ([n_members,] n, n_features) into (n_members, n, width)."""
        if X.dim() == 2:
            X = X.unsqueeze(0)
        angles = 2 * math.pi * self.frequencies.unsqueeze(1) * X[..., None]
        periodic = torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)
        embedded = torch.einsum("knfi,kfio->knfo", periodic, self.weight) + self.bias
        return torch.relu(embedded).flatten(2)


#: Embeddings of the continuous input columns, by name; ``None`` feeds them
#: to the trunk as they are. ``"periodic"``: 16 frequencies per column
#: (RealMLP: 16; rtdl_num_embeddings: 48) drawn with ``sigma=0.03``, and
#: 4 to 16 values per column (see :func:`embedding_width` and
#: ``docs/benchmarks/defaults.md``).
NUMERICAL_EMBEDDINGS = {
    None: None,
    "periodic": functools.partial(PeriodicEmbedding, n_frequencies=16, sigma=0.03),
}

#: Width of the embedding of a continuous column: most and fewest values,
#: and the total the columns of more than two values share.
MAX_EMBEDDING_WIDTH, MIN_EMBEDDING_WIDTH, TOTAL_EMBEDDING_WIDTH = 16, 4, 256


def embedding_width(n_columns):
    """Values per column when ``n_columns`` columns of many values are embedded.

    16 each up to 16 columns, then ``256 // n_columns``, at least 4: the
    first layer of a wide table costs about what a 256-wide second layer
    does, not many times more.
    """
    share = TOTAL_EMBEDDING_WIDTH // max(n_columns, 1)
    return min(MAX_EMBEDDING_WIDTH, max(MIN_EMBEDDING_WIDTH, share))


def embedding_dim(cardinality):
    """Width of the learned embedding for a categorical column.

    The fast.ai rule of thumb ``1.6 * n ** 0.56``, capped at 16: wide enough
    for a few hundred levels, small enough for tables of a few thousand rows.
    """
    return int(min(16, round(1.6 * cardinality**0.56)))


class PackedDualHeadNetwork(nn.Module):
    """``n_members`` networks, each a shared MLP trunk feeding two linear heads.

    The input is one float matrix, shared by the members: the first
    ``n_continuous`` columns are fed to the trunks as they are or through
    ``numerical_embedding``; each remaining column holds the integer code of
    one categorical feature, looked up in each member's own embedding. Every
    weight has the members as its leading dimension, and no member reads
    another's: training them together is training them apart, at once.

    Parameters
    ----------
    n_members : int
        Members of the ensemble.
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
    two_valued_columns : sequence of (int, float, float), default=()
        ``(column, low, high)`` of the continuous columns that take two
        values; with a numerical embedding, theirs is folded into the first
        layer (see :meth:`first_layer`).

    Attributes
    ----------
    init_kwargs : dict
        The arguments above, from which the same network can be built again.

    Examples
    --------
    >>> import torch
    >>> from sk_dualhead._network import PackedDualHeadNetwork
    >>> net = PackedDualHeadNetwork(2, n_continuous=4, n_classes=3, hidden_sizes=(8,))
    >>> main, aux = net(torch.zeros(5, 4))
    >>> tuple(main.shape), tuple(aux.shape)
    ((2, 5, 3), (2, 5, 3))
    """

    def __init__(
        self,
        n_members,
        n_continuous,
        n_classes,
        hidden_sizes=(256, 256),
        activation="relu",
        dropout=0.0,
        normalization=None,
        category_cardinalities=(),
        numerical_embedding=None,
        two_valued_columns=(),
    ):
        super().__init__()
        self.init_kwargs = {
            "n_members": n_members,
            "n_continuous": n_continuous,
            "n_classes": n_classes,
            "hidden_sizes": list(hidden_sizes),
            "activation": activation,
            "dropout": dropout,
            "normalization": normalization,
            "category_cardinalities": list(category_cardinalities),
            "numerical_embedding": numerical_embedding,
            "two_valued_columns": [list(entry) for entry in two_valued_columns],
        }
        self.n_members = n_members
        # Positions among the n_members built of those kept (keep_members).
        self.kept_members = None
        self.n_continuous = n_continuous
        self.n_classes = n_classes
        make_embedding = NUMERICAL_EMBEDDINGS[numerical_embedding]
        if make_embedding is None:
            two_valued_columns = ()
        two_valued = [int(column) for column, _, _ in two_valued_columns]
        many_valued = [j for j in range(n_continuous) if j not in set(two_valued)]
        # Rebuilt from init_kwargs, never saved: explicitly on the CPU (to be
        # moved with the module), so that a network built on the meta device
        # to load saved weights into has them too.
        columns = functools.partial(torch.tensor, dtype=torch.long, device="cpu")
        self.register_buffer("many_valued", columns(many_valued), persistent=False)
        self.register_buffer("two_valued", columns(two_valued), persistent=False)
        # Row 0 each two-valued column's low value, row 1 its high one.
        levels = [[low for _, low, _ in two_valued_columns],
                  [high for _, _, high in two_valued_columns]]
        self.register_buffer(
            "two_levels", torch.tensor(levels, device="cpu").view(2, -1), persistent=False
        )
        self.numerical_embedding = self.two_valued_embedding = None
        if make_embedding is not None:
            self.numerical_embedding = make_embedding(
                n_members, len(many_valued), d_embedding=embedding_width(len(many_valued))
            )
        if two_valued:
            self.two_valued_embedding = make_embedding(
                n_members, len(two_valued), d_embedding=MAX_EMBEDDING_WIDTH
            )
        # nn.Embedding's initialisation, N(0, 1), one table per member.
        self.embeddings = nn.ParameterList(
            nn.Parameter(torch.randn(n_members, cardinality, embedding_dim(cardinality)))
            for cardinality in category_cardinalities
        )
        width = (
            n_continuous
            if self.numerical_embedding is None
            else self.numerical_embedding.output_width
        )
        folded = 0 if self.two_valued_embedding is None else self.two_valued_embedding.output_width
        width += folded + sum(table.shape[-1] for table in self.embeddings)
        layers = []
        for size in hidden_sizes:
            layers.append(PackedLinear(n_members, width, size))
            if NORMALIZATIONS[normalization] is not None:
                layers.append(NORMALIZATIONS[normalization](n_members, size))
            layers.append(ACTIVATIONS[activation]())
            if dropout:
                layers.append(Dropout(dropout))
            width = size
        self.trunk = nn.Sequential(*layers)
        # Both heads in one layer: one batched product gives both.
        self.heads = PackedLinear(n_members, width, 2 * n_classes)
        self.two_valued_weight = None
        if folded:
            # The first layer is initialised on every embedded input; its rows
            # on the two-valued columns' embeddings become a parameter of
            # their own, folded by first_layer (slicing one parameter in
            # every step would zero-fill and copy its whole gradient).
            layer = self.trunk[0] if len(self.trunk) else self.heads
            start = self.numerical_embedding.output_width
            full = layer.weight.detach()
            layer.weight = nn.Parameter(torch.cat([full[:, :start], full[:, start + folded :]], 1))
            self.two_valued_weight = nn.Parameter(
                full[:, start : start + folded]
                .reshape(n_members, len(two_valued), MAX_EMBEDDING_WIDTH, -1)
                .clone()
            )

    @torch.no_grad()
    def keep_members(self, positions):
        """Drop every member but those at ``positions`` (an index tensor), in place.

        Each parameter and buffer keeps its object, sliced to the kept
        members, so an optimizer holding the parameters goes on with them;
        their gradients are cleared. The network no longer is the one
        ``init_kwargs`` build: it trains what is left of an ensemble whose
        stopped members are kept elsewhere.
        """
        for tensor in self.state_dict(keep_vars=True).values():
            tensor.data = tensor.data.index_select(0, positions.to(tensor.device))
            tensor.grad = None
        drawn = self.init_kwargs["n_members"]
        kept = torch.arange(drawn) if self.kept_members is None else self.kept_members
        self.kept_members = kept.index_select(0, positions.cpu())
        self.n_members = len(self.kept_members)
        for layer in self.trunk:
            if isinstance(layer, Dropout):
                layer.members = self.kept_members.to(self.heads.weight.device)
                layer.n_drawn = drawn

    def trunk_inputs(self, X):
        """The input of the first layer: continuous columns, category embeddings.

        ``X`` is ``(n, n_columns)``, shared by the members, or
        ``(n_members, n, n_columns)``, each member's own rows. With a
        numerical embedding the continuous columns of many values are
        embedded, and the two-valued ones come last, mapped to 0 and 1:
        :meth:`first_layer` folds their embeddings into its weights. The
        result is ``(n_members, n, width)``, or the continuous columns as
        they are when they are the whole input.
        """
        continuous = X[..., : self.n_continuous]
        inputs = [continuous]
        if self.numerical_embedding is not None:
            inputs = [self.numerical_embedding(continuous[..., self.many_valued])]
        if len(self.embeddings):
            codes = X[..., self.n_continuous :].long()
            if codes.dim() == 2:
                codes = codes.unsqueeze(0)
            inputs += [
                torch.take_along_dim(table, codes[..., i, None], dim=1)
                for i, table in enumerate(self.embeddings)
            ]
        if self.two_valued_embedding is not None:
            low, high = self.two_levels
            inputs.append((continuous[..., self.two_valued] - low) / (high - low))
        if len(inputs) == 1:
            return inputs[0]
        return torch.cat(
            [part.expand(self.n_members, *part.shape) if part.dim() == 2 else part
             for part in inputs],
            dim=2,
        )

    def first_layer(self):
        """The weight and bias of the first layer, as :meth:`trunk_inputs` needs them.

        A two-valued column's embedding takes two values, ``e0`` at its low
        value and ``e1`` at its high one, so on its two values it is
        ``e0 + t (e1 - e0)`` with ``t`` 0 or 1: the block of weights ``W``
        on that embedding (``two_valued_weight``) folds into one row
        ``(e1 - e0) W`` on ``t`` and a bias ``e0 W``. The network is the one
        that embeds every column; a two-valued column costs one row of the
        product, not 16.
        """
        layer = self.trunk[0] if len(self.trunk) else self.heads
        if self.two_valued_embedding is None:
            return layer.weight, layer.bias
        k, n_columns = self.n_members, len(self.two_valued)
        low, high = self.two_valued_embedding(self.two_levels).view(k, 2, n_columns, -1).unbind(1)
        # Rows and bias in one batched product, (k, f, 2, d) @ (k, f, d, o):
        # its gradient on the block is one product too, where two einsums'
        # were two outer products summed (a third of a step on wide one-hot
        # tables).
        folded = torch.stack([high - low, low], dim=2) @ self.two_valued_weight
        weight = torch.cat([layer.weight, folded[:, :, 0]], dim=1)
        bias = layer.bias + folded[:, :, 1].sum(1, keepdim=True)
        return weight, bias

    def forward(self, X):
        """Return ``(main_logits, aux_logits)``, each ``(n_members, n, n_classes)``."""
        inputs = self.trunk_inputs(X)
        if inputs.dim() == 2:
            inputs = inputs.expand(self.n_members, *inputs.shape)
        weight, bias = self.first_layer()
        logits = torch.baddbmm(bias, inputs, weight)
        if len(self.trunk):
            logits = self.heads(self.trunk[1:](logits))
        return logits[..., : self.n_classes], logits[..., self.n_classes :]


#: In-place forms of the activations, for buffers an inference pass owns.
_IN_PLACE_ACTIVATIONS = {
    nn.ReLU: torch.relu_,
    nn.Tanh: torch.tanh_,
    nn.SiLU: functools.partial(F.silu, inplace=True),
    nn.SELU: functools.partial(F.selu, inplace=True),
}

#: Which of the two heads' logit blocks each ``predict_head`` reads.
HEAD_SLICES = {"main": (0, 1), "aux": (1, 2), "mean": (0, 2)}


class InferencePass:
    """Forward passes of a :class:`PackedDualHeadNetwork` in eval mode, into reused buffers.

    ``module(X)`` allocates every activation afresh: on the CPU a 1,024-row
    chunk through a 256-wide trunk asks the allocator for a few MB per chunk,
    which the C library, depending on what the process allocated before,
    maps and unmaps again (minor page faults on every chunk). Here each
    linear layer writes into a buffer of its own (``torch.baddbmm(...,
    out=)``), activations run in place, and the heads asked for are one
    batched product written straight into the caller's output; a head whose
    output would be thrown away is not computed.

    Every call computes exactly ``n_rows`` rows (fewer are padded with
    zeros): BLAS picks its kernels by matrix shape, so with one shape a row's
    logits do not depend on how many rows are predicted with it (its
    position in the chunk can still change the last bit of a float32
    product).

    Parameters
    ----------
    network : PackedDualHeadNetwork
        The network, in eval mode; its weights are read, never copied.
    heads : {"main", "aux", "mean"}
        ``"main"`` or ``"aux"`` writes that head's logits, ``"mean"`` both,
        main then auxiliary, side by side.
    n_rows : int
        Rows per call.

    Examples
    --------
    >>> import torch
    >>> from sk_dualhead._network import PackedDualHeadNetwork, InferencePass
    >>> net = PackedDualHeadNetwork(2, 4, 3, hidden_sizes=(8,)).eval()
    >>> X, out = torch.randn(5, 4), torch.empty(2, 16, 6)
    >>> with torch.inference_mode():
    ...     InferencePass(net, "mean", n_rows=16)(X, out=out)
    ...     main, aux = net(X)
    >>> torch.allclose(out[:, :5], torch.cat([main, aux], dim=2), atol=1e-6)
    True
    """

    def __init__(self, network, heads, n_rows):
        self.network = network
        self.n_rows = n_rows
        with torch.no_grad():
            first_layer = network.first_layer()
        # Each linear layer's weight and bias; the first layer's folded once.
        self.weights = [
            (layer.weight, layer.bias) if isinstance(layer, PackedLinear) else None
            for layer in [*network.trunk, network.heads]
        ]
        self.weights[0] = first_layer
        first, last = HEAD_SLICES[heads]
        n_classes = network.n_classes
        head_weight, head_bias = self.weights.pop()
        self.head_weight = head_weight[..., first * n_classes : last * n_classes]
        self.head_bias = head_bias[..., first * n_classes : last * n_classes]
        device = self.head_weight.device
        self.buffers = [
            torch.empty(network.n_members, n_rows, layer.out_features, device=device)
            if isinstance(layer, PackedLinear)
            else None
            for layer in network.trunk
        ]
        self.padded = None

    def __call__(self, X, out):
        """Write the heads' logits of ``X`` (at most ``n_rows`` rows) into ``out``.

        ``out`` is ``(n_members, n_rows, n_logits)``; rows past ``len(X)``
        hold the padding's.
        """
        if len(X) < self.n_rows:
            if self.padded is None:
                self.padded = X.new_zeros(self.n_rows, X.shape[1])
            self.padded[: len(X)] = X
            X = self.padded
        hidden = self.network.trunk_inputs(X)
        if hidden.dim() == 2:
            hidden = hidden.expand(self.network.n_members, *hidden.shape)
        for layer, buffer, weights in zip(self.network.trunk, self.buffers, self.weights):
            if buffer is not None:
                weight, bias = weights
                hidden = torch.baddbmm(bias, hidden, weight, out=buffer)
            elif type(layer) in _IN_PLACE_ACTIVATIONS:
                # hidden is a buffer of this pass or a normalisation's fresh
                # output, never the caller's X: the trunk starts with a
                # linear layer.
                hidden = _IN_PLACE_ACTIVATIONS[type(layer)](hidden)
            else:
                hidden = layer(hidden)
        torch.baddbmm(self.head_bias, hidden, self.head_weight, out=out)
