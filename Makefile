# mixtrain — `make demo` runs the main job, `make test` runs the tests; both set up first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Re-run setup only when what it installs changed.
SETUP_HASH := $(shell cat requirements.lock pyproject.toml scripts/setup_venv.sh scripts/torchvision_cpu_compat.py 2>/dev/null | sha256sum | cut -c1-16)
STAMP := $(VENV)/.setup-$(SETUP_HASH)
export HF_HUB_OFFLINE := 1
export HF_HUB_DISABLE_TELEMETRY := 1
export AXOLOTL_DO_NOT_TRACK := 1
export DO_NOT_TRACK := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup lint test test-fast demo bench clean

setup: $(STAMP)

$(STAMP):
	PYTHON=$(PYTHON) bash scripts/setup_venv.sh
	rm -f $(VENV)/.setup-*
	touch $(STAMP)

# Lint (ruff: rules + format) and types (mypy on src/) run before the tests; both take seconds.
lint: setup
	$(VENV)/bin/ruff check src tests benchmarks scripts
	$(VENV)/bin/ruff format --check src tests benchmarks scripts
	$(VENV)/bin/mypy

# Two pytest sessions side by side, one per core (scripts/run_tests.py); MIXTRAIN_TEST_LANES=1 runs one.
test: lint
	$(PY) scripts/run_tests.py $(ARGS)

test-fast: setup
	$(PY) -m pytest tests/unit tests/cli -q -rs

demo: setup
	bash scripts/demo.sh

bench: setup
	$(PY) benchmarks/bench_datasets.py
	$(PY) benchmarks/bench_workflow.py
	$(PY) benchmarks/bench_finetune.py
	$(PY) benchmarks/bench_inference.py
	$(PY) benchmarks/bench_eval.py
	$(PY) benchmarks/bench_serve.py
	$(PY) benchmarks/bench_ingest.py
	# GPU: 7B shapes, mixtrain vs TRL (benchmarks/README.md); without CUDA, the tiny CPU smoke run with its checks.
	if $(PY) -c "import sys, torch; sys.exit(not torch.cuda.is_available())"; then $(PY) benchmarks/bench_gpu.py; \
	else $(PY) -m pytest benchmarks/test_bench_gpu_smoke.py -q -s -p no:cacheprovider; fi
	$(PY) benchmarks/bench_ui.py

clean:
	rm -rf $(VENV) .pytest_cache
