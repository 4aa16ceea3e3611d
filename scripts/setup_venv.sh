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
# DeepSpeed (for --deepspeed_config zero2|zero3) builds against the installed torch, so it needs
# --no-build-isolation; its ops compile just-in-time on a GPU machine, never at install.
$PY -m pip show deepspeed >/dev/null 2>&1 || DS_BUILD_OPS=0 $PY -m pip install -q --disable-pip-version-check --no-build-isolation --no-deps deepspeed==0.18.9
$PY scripts/torchvision_cpu_compat.py
AXOLOTL_DO_NOT_TRACK=1 $PY -c "import axolotl, transformers, peft, pyiceberg; print('setup ok: axolotl', axolotl.__version__, '| transformers', transformers.__version__)"
