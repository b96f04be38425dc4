#!/usr/bin/env bash
# Set up ./.venv for trbot on a fresh machine: the CPU build of PyTorch first (otherwise pip
# would fetch a multi-GB CUDA build for sentence-transformers), then trbot with its dev tools.
# Safe to run again: an existing .venv is reused and only what is missing is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install --quiet --disable-pip-version-check torch==2.13.0
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
echo "trbot is set up in .venv ($(.venv/bin/python --version))"
