"""Print, as a markdown table, what each bad input of the reliability tests gets.

Runs the cases of ``tests/test_reliability.py`` (``FIT_ERRORS``,
``INVALID_PARAMETERS``, ``PREDICT_ERRORS``, ``HANDLED``) and reports the
exception and message each one raises now, or that it is handled::

    PYTHONPATH=. python scripts/reliability_table.py > table.md
"""

import sys
import warnings
from pathlib import Path

import torch

from sk_dualhead import DualHeadClassifier

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
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


if __name__ == "__main__":
    torch.set_num_threads(1)
    print("| where | input | exception | message |")
    print("|---|---|---|---|")
    for where, name, (exception, message) in rows():
        print(f"| {where} | {name} | {exception} | {message} |")
