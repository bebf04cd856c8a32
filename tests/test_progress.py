"""What DualHeadClassifier prints while it trains, by ``verbose`` level."""

import sys

import pytest
from sklearn.datasets import make_classification

from sk_dualhead import DualHeadClassifier

TINY = dict(
    hidden_sizes=(8,), max_epochs=3, early_stopping=False, n_networks=1, random_state=0
)


@pytest.fixture(scope="module")
def data():
    return make_classification(n_samples=80, n_features=4, random_state=0)


def test_verbose_0_is_silent(data, capsys):
    DualHeadClassifier(verbose=0, **TINY).fit(*data)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_verbose_1_prints_each_loss_term_per_epoch(data, capsys):
    DualHeadClassifier(verbose=1, **TINY).fit(*data)
    lines = capsys.readouterr().out.strip().splitlines()
    header = lines[0].split()
    for term in (
        "train_loss",
        "train_main_loss",
        "train_aux_loss",
        "train_consistency_loss",
    ):
        assert term in header
    # Header, rule, one row per epoch.
    assert len(lines) == 2 + TINY["max_epochs"]


def test_verbose_2_shows_a_progress_bar_instead_of_the_table(data, capsys):
    pytest.importorskip("tqdm")
    DualHeadClassifier(verbose=2, **TINY).fit(*data)
    captured = capsys.readouterr()
    assert "train_main_loss" not in captured.out
    assert "3/3" in captured.err and "epoch" in captured.err
    assert "train_loss=" in captured.err


def test_verbose_2_stops_early_with_the_bar_closed(data, capsys):
    pytest.importorskip("tqdm")
    model = DualHeadClassifier(
        verbose=2, hidden_sizes=(8,), max_epochs=200, n_iter_no_change=1,
        n_networks=1, random_state=0,
    ).fit(*data)
    (member,) = model.members_
    assert member.n_epochs < 200
    assert f"{member.n_epochs}/200" in capsys.readouterr().err


def test_verbose_2_without_tqdm_says_what_to_install(data, monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    with pytest.raises(ImportError, match=r"sk-dualhead\[progress\]"):
        DualHeadClassifier(verbose=2, **TINY).fit(*data)
