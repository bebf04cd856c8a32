#!/usr/bin/env bash
# Install the package and run the demo on data that ships with scikit-learn.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --quiet --upgrade pip
python -m pip install --quiet "torch==2.13.0"
python -m pip install --quiet -e ".[plot]"
sk-dualhead demo "$@"
