"""Files of the command line: crafted pickles, whole-or-absent outputs, real-world tables."""

import errno
import hashlib
import gzip
import os
import pickle

import joblib
import numpy as np
import pandas as pd
import pytest

from sk_dualhead import DualHeadClassifier, cli
from sk_dualhead._io import Table, UserError, atomic_write, save_model
from sk_dualhead.cli import main

TINY = dict(max_epochs=3, n_networks=1, hidden_sizes=(16,), random_state=0)
MODEL_FILE = "model.skdh"
N_ROWS = 60


def _clean_table():
    """Numbers, a category with non-ASCII levels, a flag; no missing values."""
    rng = np.random.RandomState(0)
    frame = pd.DataFrame(
        {
            "age": rng.normal(50, 10, N_ROWS).round(2),
            "bmi": rng.normal(25, 4, N_ROWS).round(3),
            "site": rng.choice(["Tromsø", "Zürich", "Lyon"], N_ROWS),
            "smoker": rng.choice(["yes", "no"], N_ROWS),
        }
    )
    outcome = np.where(frame["age"] + 5 * rng.randn(N_ROWS) > 50, "disease", "healthy")
    return frame, outcome


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A model of the clean table, saved; its probabilities of the table."""
    folder = tmp_path_factory.mktemp("io")
    frame, outcome = _clean_table()
    model = DualHeadClassifier(**TINY).fit(frame, outcome)
    path = folder / MODEL_FILE
    save_model(model, path)
    return path, model.predict_proba(frame)


def _predict(model_path, data, tmp_path, *options):
    out = tmp_path / "predictions.csv"
    status = main(["predict", str(model_path), str(data), "--out", str(out), *options])
    assert status == 0
    return pd.read_csv(out, float_precision="round_trip")


def _proba(predictions):
    return predictions[["proba_disease", "proba_healthy"]].to_numpy()


def _error(argv, capsys, status=1):
    assert main(argv) == status
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


# ------------------------------------------------------------ crafted pickle


class _CreatesAFile:
    """Unpickling this opens (so creates) a file: any code could run instead."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return open, (str(self.path), "w")


@pytest.mark.parametrize("name", ["model.joblib", "model.pkl", "model.skdh"])
def test_a_crafted_pickle_is_refused_and_never_runs(name, fitted, tmp_path, capsys):
    witness = tmp_path / "witness"
    pickle.loads(pickle.dumps(_CreatesAFile(witness)))
    assert witness.exists(), "the crafted pickle must create a file when loaded"

    marker = tmp_path / "created-by-the-model-file"
    crafted = tmp_path / name
    crafted.write_bytes(pickle.dumps(_CreatesAFile(marker)))
    data = tmp_path / "new.csv"
    _clean_table()[0].to_csv(data, index=False)
    err = _error(["predict", str(crafted), str(data)], capsys)
    assert "is a pickle or joblib file" in err
    assert "runs whatever code it holds" in err and "--allow-pickle" in err
    assert not marker.exists()


def test_allow_pickle_loads_one_and_says_why_that_is_risky(tmp_path, capsys):
    marker = tmp_path / "created-by-the-model-file"
    crafted = tmp_path / "model.joblib"
    crafted.write_bytes(pickle.dumps(_CreatesAFile(marker)))
    data = tmp_path / "new.csv"
    _clean_table()[0].to_csv(data, index=False)
    err = _error(["predict", str(crafted), str(data), "--allow-pickle"], capsys)
    assert "warning: loading" in err and "runs any code it holds" in err
    assert "not a fitted DualHeadClassifier" in err
    assert marker.exists()  # the flag means what it says


def test_fit_writes_joblib_only_when_allowed(tmp_path, capsys):
    data = tmp_path / "train.csv"
    frame, outcome = _clean_table()
    frame.assign(outcome=outcome).to_csv(data, index=False)
    out = tmp_path / "model.joblib"
    command = ["fit", str(data), "--target", "outcome", "--cv", "0", "--quiet"]
    err = _error([*command, "--max-epochs", "1", "--out", str(out)], capsys)
    assert "names a pickle or joblib file" in err and "--allow-pickle" in err
    assert list(tmp_path.iterdir()) == [data]
    assert main([*command, "--max-epochs", "1", "--out", str(out), "--allow-pickle"]) == 0
    model = joblib.load(out)  # what Python users may still do
    np.testing.assert_array_equal(model.classes_, ["disease", "healthy"])


# ------------------------------------------------------ whole or absent


def test_atomic_write_keeps_the_previous_file_on_an_error(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("previous")
    with pytest.raises(RuntimeError), atomic_write(path, "w") as file:
        file.write("partial")
        file.flush()
        raise RuntimeError("disk full")
    assert path.read_text() == "previous"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_atomic_write_leaves_no_file_after_ctrl_c(tmp_path):
    path = tmp_path / "out.txt"
    with pytest.raises(KeyboardInterrupt), atomic_write(path, "w") as file:
        file.write("partial")
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_gives_the_permissions_of_a_plain_file(tmp_path):
    plain, atomic = tmp_path / "plain", tmp_path / "atomic"
    plain.write_text("x")
    with atomic_write(atomic, "w") as file:
        file.write("x")
    assert atomic.stat().st_mode == plain.stat().st_mode


def _interrupt_at_chunk(monkeypatch, n, error=KeyboardInterrupt):
    """Make predicting the ``n``-th chunk raise ``error``, after earlier chunks were written."""
    original, calls = cli._predictions, []

    def predictions(model, frame, path):
        calls.append(len(frame))
        if len(calls) == n:
            raise error
        return original(model, frame, path)

    monkeypatch.setattr(cli, "_predictions", predictions)
    return calls


@pytest.mark.parametrize("previous", [True, False], ids=["previous file", "no file"])
def test_ctrl_c_while_predicting_leaves_the_previous_output(
    previous, fitted, tmp_path, monkeypatch, capsys
):
    model_path, _ = fitted
    data, out = tmp_path / "new.csv", tmp_path / "predictions.csv"
    _clean_table()[0].to_csv(data, index=False)
    if previous:
        out.write_text("previous predictions\n")
    calls = _interrupt_at_chunk(monkeypatch, 3)
    command = ["predict", str(model_path), str(data), "--out", str(out)]
    err = _error([*command, "--chunk-rows", "10"], capsys, status=130)
    assert calls == [10, 10, 10] and "interrupted" in err
    if previous:
        assert out.read_text() == "previous predictions\n"
    expected = {"new.csv", "predictions.csv"} if previous else {"new.csv"}
    assert {p.name for p in tmp_path.iterdir()} == expected


def test_bad_value_in_a_late_chunk_leaves_the_previous_output(fitted, tmp_path, capsys):
    model_path, _ = fitted
    data, out = tmp_path / "new.csv", tmp_path / "predictions.csv"
    frame = _clean_table()[0].astype({"age": object})
    frame.loc[45, "age"] = "fifty"
    frame.to_csv(data, index=False)
    out.write_text("previous predictions\n")
    command = ["predict", str(model_path), str(data), "--out", str(out)]
    err = _error([*command, "--chunk-rows", "10"], capsys)
    assert "column 'age'" in err and "'fifty' (data row 46)" in err
    assert "not a number" in err and "leave the cell empty" in err
    assert out.read_text() == "previous predictions\n"
    assert {p.name for p in tmp_path.iterdir()} == {"new.csv", "predictions.csv"}


@pytest.mark.parametrize(
    "error, status, message",
    [
        (KeyboardInterrupt, 130, "interrupted"),
        (OSError(errno.ENOSPC, "No space left on device"), 1, "No space left on device"),
    ],
    ids=["ctrl-c", "disk full"],
)
def test_saving_a_model_is_whole_or_absent(error, status, message, tmp_path, monkeypatch, capsys):
    data, out = tmp_path / "train.csv", tmp_path / MODEL_FILE
    frame, outcome = _clean_table()
    frame.assign(outcome=outcome).to_csv(data, index=False)
    out.write_bytes(b"previous model")

    def fail(descriptor):
        raise error

    # fsync comes after every byte is written and before the rename.
    monkeypatch.setattr(os, "fsync", fail)
    command = ["fit", str(data), "--target", "outcome", "--cv", "0", "--quiet"]
    err = _error([*command, "--max-epochs", "1", "--out", str(out)], capsys, status)
    assert message in err
    assert out.read_bytes() == b"previous model"
    assert {p.name for p in tmp_path.iterdir()} == {"train.csv", MODEL_FILE}


# ----------------------------------------------------------- streaming


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_predictions_in_chunks_are_those_of_the_whole_table(suffix, fitted, tmp_path):
    if suffix == ".parquet":
        pytest.importorskip("pyarrow")
    model_path, expected = fitted
    frame = _clean_table()[0]
    data = tmp_path / f"new{suffix}"
    # Shuffled: the output follows the input's order, whatever it is.
    order = np.random.RandomState(1).permutation(N_ROWS)
    shuffled = frame.iloc[order]
    shuffled.to_csv(data, index=False) if suffix == ".csv" else shuffled.to_parquet(data)
    whole = _predict(model_path, data, tmp_path)
    chunked = _predict(model_path, data, tmp_path, "--chunk-rows", "7")
    pd.testing.assert_frame_equal(chunked, whole)
    np.testing.assert_array_equal(_proba(whole), expected[order])


# ------------------------------------------------- the files people have


def _write(frame, path, **to_csv):
    frame.to_csv(path, index=False, **to_csv)


DIALECTS = {
    "comma": (".csv", dict()),
    "semicolon": (".csv", dict(sep=";")),
    "tab": (".tsv", dict(sep="\t")),
    "pipe": (".csv", dict(sep="|")),
    "semicolon, decimal comma": (".csv", dict(sep=";", decimal=",")),
    "tab, decimal comma": (".csv", dict(sep="\t", decimal=",")),
    "UTF-8 byte-order mark": (".csv", dict(encoding="utf-8-sig")),
    "UTF-16": (".csv", dict(encoding="utf-16")),
    "Windows line ends": (".csv", dict(lineterminator="\r\n")),
    "every field quoted": (".csv", dict(quoting=1)),
    "gzip": (".csv.gz", dict(compression="gzip")),
}


@pytest.mark.parametrize("suffix, options", DIALECTS.values(), ids=DIALECTS)
def test_csv_dialects_give_the_same_predictions(suffix, options, fitted, tmp_path):
    model_path, expected = fitted
    data = tmp_path / f"new{suffix}"
    _write(_clean_table()[0], data, **options)
    np.testing.assert_array_equal(_proba(_predict(model_path, data, tmp_path)), expected)


def test_latin1_is_read_with_a_note(fitted, tmp_path, capsys):
    model_path, expected = fitted
    data = tmp_path / "new.csv"
    _write(_clean_table()[0], data, encoding="latin-1")
    proba = _proba(_predict(model_path, data, tmp_path))
    np.testing.assert_array_equal(proba, expected)
    err = capsys.readouterr().err
    assert "is not UTF-8 (byte 0xf8" in err and "read as Latin-1" in err
    assert "--encoding" in err


def test_a_wrong_encoding_given_is_named(fitted, tmp_path, capsys):
    model_path, _ = fitted
    data = tmp_path / "new.csv"
    _write(_clean_table()[0], data, encoding="latin-1")
    err = _error(["predict", str(model_path), str(data), "--encoding", "utf-8"], capsys)
    assert "cannot read" in err and "'utf-8' codec can't decode" in err
    err = _error(["predict", str(model_path), str(data), "--encoding", "klingon"], capsys)
    assert "unknown encoding: klingon" in err


MARKERS = ["NA", "?", "null", "", " NA ", "N/A", "NULL", "nan"]


def test_na_markers_are_read_as_missing_and_named(fitted, tmp_path, capsys):
    model_path, _ = fitted
    frame = _clean_table()[0].astype(object)
    rows = np.arange(len(MARKERS)) * 5
    blank = frame.copy()
    for row, marker in zip(rows, MARKERS):
        frame.loc[row, ["bmi", "site"]] = marker
        blank.loc[row, ["bmi", "site"]] = np.nan
    data, reference = tmp_path / "markers.csv", tmp_path / "blank.csv"
    _write(frame, data)
    _write(blank, reference)
    proba = _proba(_predict(model_path, data, tmp_path))
    np.testing.assert_array_equal(proba, _proba(_predict(model_path, reference, tmp_path)))
    assert np.isfinite(proba).all()
    err = capsys.readouterr().err
    assert "cells read as missing" in err
    for marker in ("NA", "?", "null", "", "N/A", "NULL", "nan"):
        assert f"{marker!r} (" in err, marker
    assert "'NA' ('bmi' 2, 'site' 2)" in err  # "NA" and " NA "


def test_numbers_with_spaces(fitted, tmp_path):
    model_path, expected = fitted
    frame = _clean_table()[0]
    spaced = frame.assign(
        age=[f"  {value} " for value in frame["age"]], site=" " + frame["site"] + "\t"
    )
    data = tmp_path / "spaced.csv"
    _write(spaced, data, sep=";")
    np.testing.assert_array_equal(_proba(_predict(model_path, data, tmp_path)), expected)


def _fit(frame, outcome, tmp_path, *options):
    data = tmp_path / "train.csv"
    frame.assign(outcome=outcome).to_csv(data, index=False)
    out = tmp_path / MODEL_FILE
    command = ["fit", str(data), "--target", "outcome", "--cv", "0", "--quiet"]
    return main([*command, "--max-epochs", "1", "--out", str(out), *options]), out


def test_identifier_columns_are_warned_about_and_can_be_dropped(tmp_path, capsys):
    frame, outcome = _clean_table()
    frame.insert(0, "patient_id", np.arange(1000, 1000 + N_ROWS))
    frame["code"] = [f"P{i:03d}" for i in range(N_ROWS)]
    status, out = _fit(frame, outcome, tmp_path)
    assert status == 0
    err = capsys.readouterr().err
    for column in ("patient_id", "code"):
        assert f"column {column!r} holds a different value in every row" in err
        assert f"--drop {column}" in err
    for column in ("age", "bmi"):  # measurements are all distinct too
        assert f"column {column!r}" not in err
    status, out = _fit(frame, outcome, tmp_path, "--drop", "patient_id", "code")
    assert status == 0 and "different value in every row" not in capsys.readouterr().err
    err = _error(
        ["fit", str(tmp_path / "train.csv"), "--target", "outcome", "--drop", "nope",
         "--out", str(out)],
        capsys,
    )
    assert "--drop names columns that" in err and "'nope'" in err


def test_dates_become_days_at_fit_and_predict(tmp_path, capsys):
    frame, outcome = _clean_table()
    frame["visit"] = pd.date_range("2021-03-01", periods=N_ROWS, freq="36h").strftime(
        "%Y-%m-%dT%H:%M"
    )
    frame.loc[3, "visit"] = ""
    status, out = _fit(frame, outcome, tmp_path)
    assert status == 0
    err = capsys.readouterr().err
    assert "column 'visit' holds dates or times (such as '2021-03-01T00:00')" in err
    assert "days since 1970-01-01" in err and "different value" not in err
    data = tmp_path / "new.csv"
    _write(frame, data)
    proba = _proba(_predict(out, data, tmp_path))
    assert np.isfinite(proba).all() and np.allclose(proba.sum(axis=1), 1)
    days = Table(tmp_path / "train.csv").read()["visit"]
    assert days[0] == (pd.Timestamp("2021-03-01") - pd.Timestamp("1970-01-01")).days
    assert days[1] == days[0] + 1.5 and np.isnan(days[3])


def test_ambiguous_dates_are_refused_by_column(tmp_path, capsys):
    frame, outcome = _clean_table()
    frame["visit"] = pd.date_range("2021-03-01", periods=N_ROWS).strftime("%d/%m/%Y")
    status, _ = _fit(frame, outcome, tmp_path)
    err = capsys.readouterr().err
    assert status == 1 and "Traceback" not in err
    assert "column 'visit'" in err and "'01/03/2021'" in err
    assert "YYYY-MM-DD" in err and "--drop visit" in err


def test_parquet_list_and_datetime_columns(fitted, tmp_path, capsys):
    pytest.importorskip("pyarrow")
    model_path, expected = fitted
    frame = _clean_table()[0]
    data = tmp_path / "new.parquet"
    frame.assign(seen=pd.date_range("2020-01-01", periods=N_ROWS, tz="UTC")).to_parquet(data)
    np.testing.assert_array_equal(_proba(_predict(model_path, data, tmp_path)), expected)
    table = Table(data).read()
    assert table["seen"].iloc[1] - table["seen"].iloc[0] == 1.0

    listed = tmp_path / "listed.parquet"
    frame.assign(site=[[1, 2]] * N_ROWS).to_parquet(listed)
    err = _error(["predict", str(model_path), str(listed)], capsys)
    assert "Column 'site' holds ndarray values" in err and "one value per cell" in err


def test_a_ragged_csv_names_the_delimiter(fitted, tmp_path, capsys):
    model_path, _ = fitted
    data = tmp_path / "ragged.csv"
    data.write_text("age;bmi;site;smoker\n1;2;a;no\n1;2;a;no;extra;more\n")
    err = _error(["predict", str(model_path), str(data)], capsys)
    assert "with delimiter ';'" in err and "--delimiter" in err


@pytest.mark.parametrize(
    "text, delimiter",
    [
        ("a;b;c\n1,5;2;x\n", ";"),
        ("a\tb\n1\t2\n", "\t"),
        ("a,b\n1,2\n", ","),
        ("a|b|c\n1|2|3\n", "|"),
        ("only\n1\n2\n", ","),
        ('a,b\n"x;y;z",1\n', ","),
    ],
)
def test_delimiter_detection(text, delimiter, tmp_path):
    path = tmp_path / "t.csv"
    path.write_text(text)
    assert Table(path).delimiter == delimiter


def test_gzip_is_sniffed_through_the_compression(tmp_path):
    path = tmp_path / "t.csv.gz"
    with gzip.open(path, "wt", encoding="latin-1") as file:
        file.write("a;b\n1;Zürich\n")
    table = Table(path)
    assert (table.encoding, table.delimiter) == ("latin-1", ";")
    assert table.read()["b"].tolist() == ["Zürich"]


def test_empty_tables(tmp_path):
    for text, message in [("", "is empty"), ("a;b\n", "no data rows")]:
        path = tmp_path / "t.csv"
        path.write_text(text)
        with pytest.raises(UserError, match=message):
            Table(path).read()
        with pytest.raises(UserError, match=message):
            list(Table(path).chunks())


def test_the_estimators_errors_end_without_a_traceback(fitted, tmp_path, capsys):
    frame, outcome = _clean_table()
    frame.loc[7, "age"] = np.inf
    status, _ = _fit(frame, outcome, tmp_path)
    err = capsys.readouterr().err
    assert status == 1 and "Traceback" not in err
    assert "cannot fit a model on" in err and "infinity in column(s) 'age'" in err
    model_path, _ = fitted
    data = tmp_path / "new.csv"
    _write(frame, data)
    err = _error(["predict", str(model_path), str(data)], capsys)
    assert "cannot predict the rows of" in err and "'age'" in err


def test_model_sha256_is_checked_before_loading(fitted, tmp_path, capsys):
    model_path, expected = fitted
    data = tmp_path / "new.csv"
    _write(_clean_table()[0], data)
    digest = hashlib.sha256(model_path.read_bytes()).hexdigest()
    proba = _proba(_predict(model_path, data, tmp_path, "--model-sha256", digest.upper()))
    np.testing.assert_array_equal(proba, expected)
    marker = tmp_path / "created-by-the-model-file"
    crafted = tmp_path / "model.joblib"
    crafted.write_bytes(pickle.dumps(_CreatesAFile(marker)))
    command = ["predict", str(crafted), str(data), "--allow-pickle"]
    err = _error([*command, "--model-sha256", digest], capsys)
    assert f"not the expected {digest}" in err and "not the file that was saved" in err
    assert not marker.exists()  # even with --allow-pickle
