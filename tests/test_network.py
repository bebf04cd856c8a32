"""The packed torch module, its numerical embeddings and its inference pass."""

import copy

import numpy as np
import pytest
import torch
from conftest import fast_classifier
from sklearn.utils._param_validation import InvalidParameterError
from test_tabular import make_table

from sk_dualhead._network import (
    ACTIVATIONS,
    NORMALIZATIONS,
    NUMERICAL_EMBEDDINGS,
    Dropout,
    InferencePass,
    PackedDualHeadNetwork,
    PeriodicEmbedding,
    embedding_width,
)


def _inputs(n_rows, n_continuous, cardinalities, seed=0):
    """Continuous columns, then one integer code column per category."""
    generator = torch.Generator().manual_seed(seed)
    continuous = torch.randn(n_rows, n_continuous, generator=generator)
    codes = [
        torch.randint(cardinality, (n_rows, 1), generator=generator).float()
        for cardinality in cardinalities
    ]
    return torch.cat([continuous, *codes], dim=1)


def _network(n_members=3, n_continuous=4, cardinalities=(5,), **params):
    torch.manual_seed(0)
    return PackedDualHeadNetwork(
        n_members,
        n_continuous=n_continuous,
        n_classes=3,
        hidden_sizes=params.pop("hidden_sizes", (8,)),
        category_cardinalities=cardinalities,
        **params,
    )


def test_periodic_embedding_shape_and_formula():
    torch.manual_seed(0)
    embed = PeriodicEmbedding(2, 3, n_frequencies=4, d_embedding=5, sigma=0.5)
    X = torch.randn(7, 3)
    out = embed(X)
    assert out.shape == (2, 7, 15) and embed.output_width == 15
    # Member 1's block of feature 1, computed by hand from the formula.
    angles = 2 * np.pi * embed.frequencies[1, 1] * X[:, 1:2]
    periodic = torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)
    expected = torch.relu(periodic @ embed.weight[1, 1] + embed.bias[1, 0, 1])
    torch.testing.assert_close(out[1, :, 5:10], expected)


def test_periodic_frequencies_start_at_sigma():
    torch.manual_seed(0)
    embed = PeriodicEmbedding(2, 100, n_frequencies=16, d_embedding=2, sigma=0.03)
    assert embed.frequencies.std().item() == pytest.approx(0.03, rel=0.1)


@pytest.mark.parametrize(
    ("n_columns", "width"), [(0, 16), (1, 16), (16, 16), (30, 8), (64, 4), (500, 4)]
)
def test_embedding_width_shrinks_with_the_number_of_columns(n_columns, width):
    assert embedding_width(n_columns) == width
    network = _network(n_continuous=n_columns, cardinalities=(), numerical_embedding="periodic")
    assert network.numerical_embedding.output_width == n_columns * width


#: Of the four continuous columns of ``_two_valued_inputs``, (column, low, high).
TWO_VALUED = [(1, 0.0, 1.0), (3, -0.5, 2.5)]


def _two_valued_inputs(n_rows=40, cardinalities=(5,)):
    # Column 1 a 0/1 indicator, column 3 a scaled numeric of two values.
    X = _inputs(n_rows, 4, cardinalities)
    X[:, 1] = (X[:, 1] > 0).float()
    X[:, 3] = torch.where(X[:, 3] > 0, 2.5, -0.5)
    return X


@pytest.mark.parametrize("hidden_sizes", [(8,), ()])
def test_two_valued_columns_fold_into_the_first_layer(hidden_sizes):
    # The network computes what it would with every column embedded: the
    # two-valued columns' embeddings concatenated to the input and multiplied
    # by the first layer's full weight.
    network = _network(
        hidden_sizes=hidden_sizes, numerical_embedding="periodic",
        two_valued_columns=TWO_VALUED,
    )
    X = _two_valued_inputs()
    assert network.many_valued.tolist() == [0, 2]
    embedded = torch.cat(
        [
            network.numerical_embedding(X[:, [0, 2]]),
            network.embeddings[0][:, X[:, 4].long()],
            network.two_valued_embedding(X[:, [1, 3]]),
        ],
        dim=2,
    )
    layer = network.trunk[0] if hidden_sizes else network.heads
    full_weight = torch.cat(
        [layer.weight, network.two_valued_weight.flatten(1, 2)], dim=1
    )
    expected = torch.baddbmm(layer.bias, embedded, full_weight)
    if hidden_sizes:
        expected = network.heads(network.trunk[1:](expected))
    main, aux = network(X)
    torch.testing.assert_close(torch.cat([main, aux], dim=2), expected)
    # Each two-valued column costs one row of the first layer, not 16.
    category_width = network.embeddings[0].shape[-1]
    assert network.first_layer()[0].shape[1] == 2 * 16 + category_width + 2
    # Every weight of the first layer starts as nn.Linear's would on all
    # the embedded inputs.
    bound = 1 / np.sqrt(full_weight.shape[1])
    assert full_weight.abs().max() <= bound
    assert full_weight.abs().max() > 0.9 * bound


@pytest.mark.parametrize("numerical_embedding", list(NUMERICAL_EMBEDDINGS))
@pytest.mark.parametrize("normalization", list(NORMALIZATIONS))
def test_each_member_is_the_network_it_would_be_alone(normalization, numerical_embedding):
    # Member 1 of a packed network computes what a one-member network with
    # member 1's weights computes: no member reads another's weights.
    packed = _network(
        cardinalities=(5, 7), normalization=normalization,
        numerical_embedding=numerical_embedding, two_valued_columns=TWO_VALUED,
    )
    alone = _network(
        n_members=1, cardinalities=(5, 7), normalization=normalization,
        numerical_embedding=numerical_embedding, two_valued_columns=TWO_VALUED,
    )
    alone.load_state_dict({k: v[1:2] for k, v in packed.state_dict().items()})
    X = _two_valued_inputs(6, (5, 7))
    for mode in (packed.train, packed.eval):
        mode()
        alone.train(packed.training)
        main, aux = packed(X)
        assert main.shape == aux.shape == (3, 6, 3)
        expected = alone(X)
        torch.testing.assert_close(main[1:2], expected[0])
        torch.testing.assert_close(aux[1:2], expected[1])


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("normalization", list(NORMALIZATIONS))
def test_kept_members_compute_and_draw_what_they_did_among_all(normalization, training):
    # Dropping members twice leaves the others' outputs as they were, with
    # the same seed in train mode too: dropout still draws every member's
    # mask and the kept members take their own.
    network = _network(
        n_members=5, cardinalities=(5, 7), normalization=normalization, dropout=0.3,
        numerical_embedding="periodic", two_valued_columns=TWO_VALUED,
    ).train(training)
    X = _two_valued_inputs(6, (5, 7))
    torch.manual_seed(1)
    expected = torch.cat(copy.deepcopy(network)(X), dim=2)[[2, 4]]
    parameters = list(network.parameters())
    network.keep_members(torch.tensor([0, 2, 3, 4]))
    network.keep_members(torch.tensor([1, 3]))  # members 2 and 4 of the five
    assert network.n_members == 2 and network.kept_members.tolist() == [2, 4]
    assert list(network.parameters()) == parameters  # an optimizer keeps them
    assert {len(tensor) for tensor in network.state_dict().values()} == {2}
    torch.manual_seed(1)
    torch.testing.assert_close(torch.cat(network(X), dim=2), expected, rtol=0, atol=0)


def test_every_parameter_and_buffer_has_the_members_first():
    network = _network(
        n_members=4, normalization="batchnorm", numerical_embedding="periodic",
        dropout=0.1,
    )
    assert {len(tensor) for tensor in network.state_dict().values()} == {4}


def test_gradients_of_one_member_stay_in_that_member():
    network = _network(numerical_embedding="periodic", two_valued_columns=TWO_VALUED)
    main, aux = network(_two_valued_inputs(32))
    (main[2].sum() + aux[2].sum()).backward()
    for name, parameter in network.named_parameters():
        assert parameter.grad[2].abs().sum() > 0, name
        assert parameter.grad[:2].abs().sum() == 0, name


def test_members_take_their_own_copies_of_the_inputs():
    network = _network(cardinalities=(5,))
    X = _inputs(6, 4, (5,))
    copies = X.expand(3, *X.shape).clone()
    copies[1, :, :4] += 1.0
    main, _ = network(copies)
    shared, _ = network(X)
    torch.testing.assert_close(main[[0, 2]], shared[[0, 2]])
    assert not torch.allclose(main[1], shared[1])


def test_periodic_network_without_continuous_columns():
    network = _network(n_continuous=0, numerical_embedding="periodic")
    main, _ = network(_inputs(4, 0, (5,)))
    assert main.shape == (3, 4, 3)


def test_network_rebuilds_from_its_init_kwargs():
    network = _network(
        normalization="layernorm", numerical_embedding="periodic",
        two_valued_columns=TWO_VALUED,
    )
    twin = PackedDualHeadNetwork(**network.init_kwargs)
    twin.load_state_dict(network.state_dict())
    X = _two_valued_inputs(5)
    torch.testing.assert_close(twin.eval()(X), network.eval()(X), rtol=0, atol=0)


def test_dropout_keeps_one_minus_p_and_rescales():
    torch.manual_seed(0)
    dropout = Dropout(0.3)
    out = dropout(torch.ones(400_000))
    kept = out > 0
    assert kept.float().mean().item() == pytest.approx(0.7, abs=0.003)
    torch.testing.assert_close(out[kept], torch.full_like(out[kept], 1 / 0.7))
    assert torch.equal(dropout.eval()(out), out)


def _inferred(network, X, heads, n_rows):
    """Logits of ``heads`` for ``X`` from an :class:`InferencePass`, by chunks."""
    forward = InferencePass(network, heads, n_rows)
    width = network.n_classes * (2 if heads == "mean" else 1)
    chunks = []
    for start in range(0, len(X), n_rows):
        out = torch.full((network.n_members, n_rows, width), torch.nan)
        forward(X[start : start + n_rows], out=out)
        chunks.append(out)
    return torch.cat(chunks, dim=1)[:, : len(X)]


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
@pytest.mark.parametrize("normalization", list(NORMALIZATIONS))
@pytest.mark.parametrize("numerical_embedding", list(NUMERICAL_EMBEDDINGS))
def test_inference_pass_matches_the_module(
    activation, normalization, numerical_embedding
):
    network = _network(
        hidden_sizes=(16, 8),
        activation=activation,
        dropout=0.5,
        normalization=normalization,
        cardinalities=(5, 40),
        numerical_embedding=numerical_embedding,
        two_valued_columns=TWO_VALUED,
    )
    X = _two_valued_inputs(50, (5, 40))
    network.train()(X)  # moves BatchNorm's running statistics off their start
    network.eval()
    with torch.inference_mode():
        main, aux = network(X)
        both = _inferred(network, X, "mean", n_rows=16)
        aux_only = _inferred(network, X, "aux", n_rows=16)
        # The weights are untouched by the in-place activations.
        again = network(X)
    torch.testing.assert_close(both, torch.cat([main, aux], dim=2))
    torch.testing.assert_close(aux_only, aux)
    torch.testing.assert_close(again[0], main, rtol=0, atol=0)


def test_inference_pass_row_does_not_depend_on_its_neighbours():
    network = _network(n_continuous=6, cardinalities=(), hidden_sizes=(32, 32)).eval()
    X = _inputs(37, 6, ())
    with torch.inference_mode():
        together = _inferred(network, X, "mean", n_rows=16)
        alone = torch.cat(
            [_inferred(network, X[i : i + 1], "mean", 16) for i in range(37)], dim=1
        )
    # Equal to float32 rounding: on some CPUs BLAS rounds a row's product in
    # the last bit differently at another position in the chunk.
    torch.testing.assert_close(alone, together, rtol=1e-5, atol=1e-7)


def test_inference_pass_without_hidden_layers_leaves_the_input_alone():
    network = _network(n_continuous=5, cardinalities=(), hidden_sizes=()).eval()
    X = _inputs(16, 5, ())
    before = X.clone()
    with torch.inference_mode():
        logits = _inferred(network, X, "main", n_rows=16)
        expected = network(X)[0]
    torch.testing.assert_close(logits, expected)
    torch.testing.assert_close(X, before, rtol=0, atol=0)


@pytest.fixture(scope="module")
def table():
    return make_table(400)


def test_estimator_fits_a_raw_table_with_periodic_embedding(table):
    X, y = table
    clf = fast_classifier(numerical_embedding="periodic").fit(X, y)
    network = clf.network_
    assert isinstance(network.numerical_embedding, PeriodicEmbedding)
    # Every continuous column is embedded: one-hot levels and missing
    # indicators, two-valued, through the first layer; the high-cardinality
    # city keeps its category embedding.
    continuous = clf.preprocessor_.transform(X)[:, : clf.preprocessor_.n_continuous_]
    levels = [np.unique(column) for column in continuous.T]
    two_valued = [j for j, values in enumerate(levels) if len(values) == 2]
    assert 0 < len(two_valued) < continuous.shape[1]
    assert network.two_valued.tolist() == two_valued
    assert network.init_kwargs["two_valued_columns"] == [
        [j, *levels[j].tolist()] for j in two_valued
    ]
    assert len(network.embeddings) == len(clf.preprocessor_.category_cardinalities_) == 1
    proba = clf.predict_proba(X)
    assert proba.shape == (len(y), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert clf.score(X, y) > 0.6


def test_estimator_finds_the_two_valued_columns_of_a_raw_array():
    rng = np.random.default_rng(0)
    X = np.column_stack([
        rng.normal(size=200), rng.choice([-1.0, 3.0], 200), np.full(200, 2.0)
    ])
    y = (X[:, 0] + X[:, 1] > 1).astype(int)
    clf = fast_classifier(preprocessing=None).fit(X, y)
    # A constant column is one of two values: its step is taken as one.
    assert clf.network_.init_kwargs["two_valued_columns"] == [[1, -1.0, 3.0], [2, 2.0, 3.0]]
    assert clf.network_.many_valued.tolist() == [0]
    assert np.isfinite(clf.predict_proba(X)).all()


def test_periodic_embedding_changes_the_fit(table):
    X, y = table
    plain = fast_classifier(numerical_embedding=None).fit(X, y)
    periodic = fast_classifier(numerical_embedding="periodic").fit(X, y)
    assert plain.network_.numerical_embedding is None
    assert plain.network_.init_kwargs["two_valued_columns"] == []
    assert not np.allclose(plain.predict_proba(X), periodic.predict_proba(X))


def test_unknown_numerical_embedding_is_a_clear_error(table):
    X, y = table
    with pytest.raises(InvalidParameterError, match="'numerical_embedding'.*periodic"):
        fast_classifier(numerical_embedding="fourier").fit(X, y)
