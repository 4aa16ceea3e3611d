#!/usr/bin/env bash
# Create .venv and install mixtrain with every pinned dependency (requirements.lock).
# torch==2.13.0 is pinned in the same lock, on the same pip command, so pip never swaps it for a
# CUDA build. Idempotent: the Makefile skips this when the inputs' hash matches its stamp.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
PY=.venv/bin/python
$PY -m pip install -q --disable-pip-version-check -r requirements.lock
$PY -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
$PY scripts/torchvision_cpu_compat.py
AXOLOTL_DO_NOT_TRACK=1 $PY -c "import axolotl, transformers, peft, pyiceberg; print('setup ok: axolotl', axolotl.__version__, '| transformers', transformers.__version__)"
