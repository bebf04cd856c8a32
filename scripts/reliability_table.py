"""Print, as a markdown table, what each bad input of the reliability tests gets.

Runs the cases of ``tests/test_reliability.py`` (``FIT_ERRORS``,
``INVALID_PARAMETERS``, ``PREDICT_ERRORS``, ``HANDLED``) and reports the
exception and message each one raises now, or that it is handled; then the
files of ``tests/test_io.py`` and ``tests/test_serialization.py`` given to
the command line, with its exit status and what it printed on stderr. The
table in ``docs/reliability.md`` is this script's output::

    PYTHONPATH=. python scripts/reliability_table.py > docs/reliability.md
"""

import contextlib
import io
import json
import pickle
import sys
import tempfile
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import sk_dualhead
from sk_dualhead import DualHeadClassifier
from sk_dualhead._io import save_model
from sk_dualhead.cli import main
from sk_dualhead.preprocessing import TabularPreprocessor

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import test_io  # noqa: E402
import test_reliability as cases  # noqa: E402


def outcome(call):
    """Return the exception's name and message, or that the call was handled."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            proba = call()
    except Exception as exc:
        message = " ".join(str(exc).split()).replace("|", "\\|")
        return f"`{type(exc).__name__}`", message
    return "handled", f"valid probabilities, shape {proba.shape}"


def rows():
    def estimator(params):
        return DualHeadClassifier(**{**cases.TINY, **params})

    for name, (X, y, fit_kwargs, params, *_) in cases.FIT_ERRORS.items():
        yield "fit", name, outcome(lambda: estimator(params).fit(X, y, **fit_kwargs))
    for name, (params, _) in cases.INVALID_PARAMETERS.items():
        yield "fit", name, outcome(lambda: estimator(params).fit(cases.X, cases.y))
    models = {
        "frame_model": estimator({}).fit(cases.FRAME, cases.y),
        "array_model": estimator({}).fit(cases.X, cases.y),
        "raw_model": estimator({"preprocessing": None}).fit(cases.X, cases.y),
    }
    for name, (model, X, *_) in cases.PREDICT_ERRORS.items():
        yield "predict*", name, outcome(lambda: models[model].predict_proba(X))
    for name, (X, y, X_new, params) in cases.HANDLED.items():
        fitted = lambda: estimator(params).fit(X, y).predict_proba(X_new)  # noqa: E731
        yield "fit, predict_proba", name, outcome(fitted)


def command_line(argv, folder):
    """Exit status of the command line and what it wrote on stderr, one line.

    Paths are shown relative to ``folder``.
    """
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
        status = main([str(arg) for arg in argv])
    text = stderr.getvalue().replace(f"{folder}/", "")
    lines = [line for line in text.splitlines() if line.strip()]
    message = " / ".join(lines).replace("|", "\\|") or "(nothing)"
    kind = "handled" if status == 0 else f"exit {status}"
    return kind, message


def _file_cases(folder):
    """(input, write the file, extra options) of the command line's predict."""
    frame, _ = test_io._clean_table()
    spaced = frame.assign(age=[f"  {v} " for v in frame["age"]])
    markers = frame.astype(object)
    for row, marker in enumerate(test_io.MARKERS):
        markers.loc[5 * row, ["bmi", "site"]] = marker
    text_in_numbers = frame.astype({"age": object})
    text_in_numbers.loc[45, "age"] = "fifty"
    cases = {
        f"CSV, {name}": (lambda path, o=options: frame.to_csv(path, index=False, **o), suffix)
        for name, (suffix, options) in test_io.DIALECTS.items()
    }
    cases.update(
        {
            "CSV, Latin-1": (lambda p: frame.to_csv(p, index=False, encoding="latin-1"), ".csv"),
            "CSV, NA markers " + ", ".join(map(repr, test_io.MARKERS)): (
                lambda p: markers.to_csv(p, index=False), ".csv"),
            "CSV, numbers with surrounding spaces": (
                lambda p: spaced.to_csv(p, index=False, sep=";"), ".csv"),
            "CSV, ISO dates in an extra column": (
                lambda p: frame.assign(visit="2021-03-04").to_csv(p, index=False), ".csv"),
            "CSV, text in a numeric column (row 46)": (
                lambda p: text_in_numbers.to_csv(p, index=False), ".csv"),
            "CSV, ragged rows": (
                lambda p: p.write_text("age;bmi;site;smoker\n1;2;a;no\n1;2;a;no;x;y\n"), ".csv"),
            "CSV, empty": (lambda p: p.write_text(""), ".csv"),
            "CSV, header only": (lambda p: p.write_text("age,bmi,site,smoker\n"), ".csv"),
            "CSV, a model column missing": (
                lambda p: frame.drop(columns="bmi").to_csv(p, index=False), ".csv"),
            "Parquet, a datetime column": (
                lambda p: frame.assign(seen=pd.Timestamp("2020-01-01", tz="UTC")).to_parquet(p),
                ".parquet"),
            "Parquet, a list column": (
                lambda p: frame.assign(site=[[1, 2]] * len(frame)).to_parquet(p), ".parquet"),
        }
    )
    return cases


def _fit_cases():
    """Tables given to fit: identifiers, dates, ambiguous dates."""
    frame, outcome = test_io._clean_table()
    return {
        "fit, identifier columns": frame.assign(
            patient_id=np.arange(len(frame)), code=[f"P{i}" for i in range(len(frame))]
        ),
        "fit, ISO datetimes": frame.assign(
            visit=pd.date_range("2021-03-01", periods=len(frame), freq="36h").strftime(
                "%Y-%m-%dT%H:%M"
            )
        ),
        "fit, ambiguous dates (day/month/year)": frame.assign(
            visit=pd.date_range("2021-03-01", periods=len(frame)).strftime("%d/%m/%Y")
        ),
    }, outcome


class _CreatesAFile:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return open, (str(self.path), "w")


def _model_files(folder):
    """Model files given to predict: crafted, damaged and foreign ones."""
    saved = folder / "preprocessor.skdh"
    sk_dualhead.save(TabularPreprocessor().fit(np.arange(6.0).reshape(3, 2)), saved)
    data = saved.read_bytes()
    with zipfile.ZipFile(saved) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}

    def rewrite(path, **changes):
        with zipfile.ZipFile(path, "w") as archive:
            for name, content in {**members, **changes}.items():
                archive.writestr(name, content)

    manifest = json.loads(members["manifest.json"])
    return {
        "a crafted pickle that creates a file": lambda p: p.write_bytes(
            pickle.dumps(_CreatesAFile(folder / "created-by-the-model-file"))
        ),
        "a truncated model file": lambda p: p.write_bytes(data[: len(data) // 2]),
        "a model file with a changed byte": lambda p: rewrite(
            p, **{"model.json": members["model.json"].replace(b"true", b"false", 1)}
        ),
        "a model file of a newer format": lambda p: rewrite(
            p, **{"manifest.json": json.dumps({**manifest, "format_version": 99})}
        ),
        "a zip archive that is not a model": lambda p: rewrite(p, **{"extra.txt": b"x"}),
        "a text file": lambda p: p.write_text("not a model"),
        "a model file holding a TabularPreprocessor": lambda p: p.write_bytes(data),
    }


def cli_rows():
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        frame, outcome = test_io._clean_table()
        model = DualHeadClassifier(**test_io.TINY).fit(frame, outcome)
        model_path = folder / test_io.MODEL_FILE
        save_model(model, model_path)
        for name, (write, suffix) in _file_cases(folder).items():
            data = folder / f"data{suffix}"
            write(data)
            command = ["predict", model_path, data, "--out", folder / "p.csv"]
            yield "CLI predict", name, command_line(command, folder)
        tables, outcome = _fit_cases()
        for name, table in tables.items():
            data = folder / "train.csv"
            table.assign(outcome=outcome).to_csv(data, index=False)
            command = ["fit", data, "--target", "outcome", "--cv", "0", "--quiet"]
            command += ["--max-epochs", "1", "--out", folder / test_io.MODEL_FILE]
            yield "CLI fit", name, command_line(command, folder)
        data = folder / "data.csv"
        frame.to_csv(data, index=False)
        for name, write in _model_files(folder).items():
            path = folder / "model.skdh"
            write(path)
            yield "CLI predict", name, command_line(["predict", path, data], folder)
        created = (folder / "created-by-the-model-file").exists()
        yield "CLI predict", "(the crafted pickle's file)", (
            "created" if created else "never created",
            "checked after the run above",
        )


if __name__ == "__main__":
    torch.set_num_threads(1)
    print("# What every bad input gets\n")
    print(
        "Written by `scripts/reliability_table.py` from the cases of "
        "`tests/test_reliability.py`, `tests/test_io.py` and "
        "`tests/test_serialization.py`: the estimator's exception and message, "
        "then the command line's exit status and what it printed on stderr.\n"
    )
    print("| where | input | exception | message |")
    print("|---|---|---|---|")
    for where, name, (exception, message) in rows():
        print(f"| {where} | {name} | {exception} | {message} |")
    print()
    print("| where | input | outcome | stderr |")
    print("|---|---|---|---|")
    for where, name, (outcome, message) in cli_rows():
        print(f"| {where} | {name} | {outcome} | {message} |")
