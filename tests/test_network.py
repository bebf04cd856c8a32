"""The torch module and its optional numerical embeddings."""

import numpy as np
import pytest
import torch
from sklearn.utils._param_validation import InvalidParameterError

from sk_dualhead import DualHeadClassifier
from sk_dualhead._network import (
    NUMERICAL_EMBEDDINGS,
    ACTIVATIONS,
    NORMALIZATIONS,
    DualHeadNetwork,
    InferencePass,
    PeriodicEmbedding,
)

from test_tabular import FAST, make_table


def _inputs(n_rows, n_continuous, cardinalities, seed=0):
    """Continuous columns, then one integer code column per category."""
    generator = torch.Generator().manual_seed(seed)
    continuous = torch.randn(n_rows, n_continuous, generator=generator)
    codes = [
        torch.randint(cardinality, (n_rows, 1), generator=generator).float()
        for cardinality in cardinalities
    ]
    return torch.cat([continuous, *codes], dim=1)


def _periodic_network(n_continuous, n_classes=2, cardinalities=(5,)):
    """A small network with periodic embeddings and embedded categories."""
    return DualHeadNetwork(
        n_continuous=n_continuous,
        n_classes=n_classes,
        hidden_sizes=(8,),
        category_cardinalities=cardinalities,
        numerical_embedding="periodic",
    )


def test_periodic_embedding_shape_and_formula():
    torch.manual_seed(0)
    embed = PeriodicEmbedding(3, n_frequencies=4, d_embedding=5, sigma=0.5)
    X = torch.randn(7, 3)
    out = embed(X)
    assert out.shape == (7, 15) == (7, embed.output_width)
    # Feature 1's block, computed by hand from the formula.
    angles = 2 * np.pi * embed.frequencies[1] * X[:, 1:2]
    periodic = torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)
    expected = torch.relu(periodic @ embed.weight[1] + embed.bias[1])
    torch.testing.assert_close(out[:, 5:10], expected)


def test_periodic_frequencies_start_at_sigma():
    torch.manual_seed(0)
    embed = PeriodicEmbedding(100, n_frequencies=16, d_embedding=2, sigma=0.03)
    assert embed.frequencies.std().item() == pytest.approx(0.03, rel=0.1)


def test_periodic_network_shapes_with_category_embeddings():
    net = _periodic_network(4, n_classes=3, cardinalities=(5, 7))
    main, aux = net(_inputs(6, 4, (5, 7)))
    assert main.shape == aux.shape == (6, 3)
    embedded_width = net.numerical_embedding.output_width + sum(
        e.embedding_dim for e in net.embeddings
    )
    assert net.trunk[0].in_features == embedded_width
    assert net.numerical_embedding.frequencies.shape[0] == 4


def test_periodic_network_without_continuous_columns():
    net = _periodic_network(0)
    main, _ = net(_inputs(4, 0, (5,)))
    assert main.shape == (4, 2)


def test_gradients_reach_frequencies_and_linear_layers():
    torch.manual_seed(0)
    net = _periodic_network(4)
    main, aux = net(_inputs(32, 4, (5,)))
    (main.sum() + aux.sum()).backward()
    embed = net.numerical_embedding
    for name, parameter in [
        ("frequencies", embed.frequencies),
        ("weight", embed.weight),
        ("bias", embed.bias),
        ("trunk", net.trunk[0].weight),
    ]:
        assert parameter.grad is not None, name
        assert parameter.grad.abs().sum() > 0, name


def test_no_numerical_embedding_feeds_the_columns_as_they_are():
    net = DualHeadNetwork(n_continuous=4, n_classes=2, hidden_sizes=(8,))
    assert net.numerical_embedding is None
    # No parameter beyond the trunk and heads: the default network draws
    # the same random numbers as before the option existed.
    assert {name.split(".")[0] for name, _ in net.named_parameters()} == {
        "trunk",
        "main_head",
        "aux_head",
    }
    X = _inputs(5, 4, ())
    torch.testing.assert_close(net.encode(X), net.trunk(X), rtol=0, atol=0)


def test_numerical_embedding_names_match_the_estimator_options():
    options = DualHeadClassifier._parameter_constraints["numerical_embedding"]
    assert options[0].options == {name for name in NUMERICAL_EMBEDDINGS if name}
    assert None in options


def _inferred(network, X, heads, n_rows):
    """Logits of ``heads`` for ``X`` from an :class:`InferencePass`, by chunks."""
    forward = InferencePass(network, heads, n_rows)
    out = torch.full((-(-len(X) // n_rows) * n_rows, 3 * len(heads)), torch.nan)
    for start in range(0, len(X), n_rows):
        forward(X[start : start + n_rows], out=out[start : start + n_rows])
    return out[: len(X)]


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
@pytest.mark.parametrize("normalization", list(NORMALIZATIONS))
@pytest.mark.parametrize("numerical_embedding", list(NUMERICAL_EMBEDDINGS))
def test_inference_pass_matches_the_module(
    activation, normalization, numerical_embedding
):
    network = DualHeadNetwork(
        n_continuous=4,
        n_classes=3,
        hidden_sizes=(16, 8),
        activation=activation,
        dropout=0.5,
        normalization=normalization,
        category_cardinalities=(5, 40),
        numerical_embedding=numerical_embedding,
    )
    X = _inputs(50, 4, (5, 40))
    network.train()(X)  # moves BatchNorm's running statistics off their start
    network.eval()
    with torch.inference_mode():
        main, aux = network(X)
        both = _inferred(network, X, ("main", "aux"), n_rows=16)
        aux_only = _inferred(network, X, ("aux",), n_rows=16)
        # The weights are untouched by the in-place activations.
        again = network(X)
    torch.testing.assert_close(both, torch.cat([main, aux], dim=1))
    torch.testing.assert_close(aux_only, aux)
    torch.testing.assert_close(again[0], main, rtol=0, atol=0)


def test_inference_pass_row_does_not_depend_on_its_neighbours():
    network = DualHeadNetwork(n_continuous=6, n_classes=3, hidden_sizes=(32, 32))
    network.eval()
    X = _inputs(37, 6, ())
    with torch.inference_mode():
        together = _inferred(network, X, ("main", "aux"), n_rows=16)
        alone = torch.cat(
            [_inferred(network, X[i : i + 1], ("main", "aux"), 16) for i in range(37)]
        )
    torch.testing.assert_close(alone, together, rtol=0, atol=0)


def test_inference_pass_without_hidden_layers_leaves_the_input_alone():
    network = DualHeadNetwork(n_continuous=5, n_classes=3, hidden_sizes=()).eval()
    X = _inputs(16, 5, ())
    before = X.clone()
    with torch.inference_mode():
        logits = _inferred(network, X, ("main",), n_rows=16)
        expected = network(X)[0]
    torch.testing.assert_close(logits, expected)
    torch.testing.assert_close(X, before, rtol=0, atol=0)


@pytest.fixture(scope="module")
def table():
    return make_table(400)


def test_estimator_fits_a_raw_table_with_periodic_embedding(table):
    X, y = table
    clf = DualHeadClassifier(numerical_embedding="periodic", **FAST).fit(X, y)
    module = clf.net_.module_
    assert isinstance(module.numerical_embedding, PeriodicEmbedding)
    # Every continuous column is embedded; the high-cardinality city keeps
    # its category embedding.
    n_columns = len(clf.preprocessor_.get_feature_names_out())
    n_embedded = len(clf.preprocessor_.category_cardinalities_)
    assert module.numerical_embedding.frequencies.shape[0] == n_columns - n_embedded
    assert len(module.embeddings) == n_embedded == 1
    proba = clf.predict_proba(X)
    assert proba.shape == (len(y), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert clf.score(X, y) > 0.6


def test_default_fit_is_unchanged_by_the_option(table):
    X, y = table
    default = DualHeadClassifier(**FAST).fit(X, y)
    explicit = DualHeadClassifier(numerical_embedding=None, **FAST).fit(X, y)
    periodic = DualHeadClassifier(numerical_embedding="periodic", **FAST).fit(X, y)
    np.testing.assert_array_equal(default.predict_proba(X), explicit.predict_proba(X))
    assert not np.allclose(default.predict_proba(X), periodic.predict_proba(X))


def test_unknown_numerical_embedding_is_a_clear_error(table):
    X, y = table
    with pytest.raises(InvalidParameterError, match="'numerical_embedding'.*periodic"):
        DualHeadClassifier(numerical_embedding="fourier", **FAST).fit(X, y)
