#!/usr/bin/env bash
# Install the package with its test extras and run the test suite.
# torch is pinned to the CPU build first so that no dependency pulls a CUDA one.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --quiet --upgrade pip
python -m pip install --quiet "torch==2.13.0"
python -m pip install --quiet -e ".[test]"
python -m pytest -p no:cacheprovider "$@"
