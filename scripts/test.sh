#!/usr/bin/env bash
# Install the package with its test extras and run the test suite.
# torch is pinned to the CPU build first so that no dependency pulls a CUDA one.
# The docs and dask extras come too: the suite builds the documentation with
# warnings as errors (tests/test_docs.py, about a minute) and runs a grid
# search on a two-process dask cluster (tests/test_dask.py); the integrations
# extra lets tests/test_integrations.py check MAPIE and dcurves; the
# accelerate extra lets tests/test_accelerate.py train data-parallel on the CPU;
# the explain extra (SHAP) is optional and its test skips without it.
# tests/test_report.py renders the validation report in headless Chromium, Debian's
# chromium package, installed here when missing and when this runs as root.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] \
    && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
python -m pip install --quiet --upgrade pip
python -m pip install --quiet "torch==2.13.0"
python -m pip install --quiet -e ".[test,docs,dask,integrations,accelerate]"
python -m pip install --quiet -e ".[explain]" || echo "note: shap not installed; its test skips"
python -m pytest -p no:cacheprovider "$@"
