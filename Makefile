# vardax_core — set-up, the six-step cycle, tests, benchmarks, UIs.
# Quick start: `make cycle` and `make test` (each installs first if needed).
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
PYTEST_ARGS ?=
# Two pytest workers (the CI machine has 2 cores); a test file stays on one worker, so
# module- and session-scoped fixtures (trained heads, the cycle run) are built once.
TEST_WORKERS ?= 2
CONFIG ?= configs/lorenz96.yaml
PREFECT_PORT ?= 4200
MLFLOW_PORT ?= 5000

# One project-local home for Prefect, MLflow, Zarr stores and caches (shared/STACK.md).
export VARDAX_HOME ?= $(CURDIR)/.vardax
export PREFECT_HOME ?= $(VARDAX_HOME)/prefect
export PREFECT_LOCAL_STORAGE_PATH ?= $(VARDAX_HOME)/prefect/storage
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 120
export MLFLOW_DISABLE_TELEMETRY ?= true
export MPLBACKEND ?= Agg
export MPLCONFIGDIR ?= $(VARDAX_HOME)/mpl
export PYTHONUNBUFFERED ?= 1
export VARDAX_PROJECT_DIR := $(CURDIR)
export JAX_COMPILATION_CACHE_DIR ?= $(VARDAX_HOME)/jax-cache

.PHONY: help setup test test-fast cycle bench dapper-venv serve ui clean

help:
	@echo "make cycle   install (if needed) and run the six-step cycle on $(CONFIG)"
	@echo "make test    install (if needed) and run the test suite"
	@echo "make setup   create $(VENV) and install the project with dev extras (idempotent)"
	@echo "make bench   run every benchmark under benchmarks/, regenerate benchmarks/RESULTS.md (BENCH_QUICK=1: tiny)"
	@echo "make dapper-venv  DAPPER in its own environment (the side-by-side EnKF of make bench; built by it)"
	@echo "make serve   a local Prefect server with the deployments and a worker (UI on :$(PREFECT_PORT))"
	@echo "make ui      the MLflow UI on the project's store (:$(MLFLOW_PORT))"

setup: $(STAMP)

# The interpreter for a new $(VENV): PYTHON if given, else the first Python >= 3.12 on PATH or
# installed by pyenv (scripts/find-python says what to install when there is none). A $(VENV)
# left by an older Python (< 3.12) is replaced.
PYTHON ?=

# Re-install only when the dependency files change; a second `make setup` is a no-op.
$(STAMP): pyproject.toml constraints.txt scripts/find-python
	@if test -x $(PY) && ! $(PY) -c 'import sys; assert sys.version_info >= (3, 12)' 2>/dev/null; then \
		echo "$(VENV) runs Python $$($(PY) -c 'import platform; print(platform.python_version())'), vardax_core needs >= 3.12: recreating it"; \
		rm -rf $(VENV); fi
	@if ! test -x $(PY); then \
		base="$(PYTHON)"; test -n "$$base" || base=$$(scripts/find-python) || exit 1; \
		echo "creating $(VENV) with $$base"; "$$base" -m venv $(VENV) || exit 1; fi
	@test -x $(VENV)/bin/uv || $(PY) -m pip install -q uv
	$(VENV)/bin/uv pip install -q --python $(PY) --compile-bytecode -c constraints.txt -e '.[dev,notebooks]'
	@touch $(STAMP)

# Tests put every compilation into JAX's cache, however short (by default only those over 1 s
# are kept): the suite builds the same models in many processes (two workers, the notebooks,
# the quick benchmark chain), and initialising a model is ~100 small compilations —
# build_posterior of the default flow head took 24 s cold, 4.5 s from the cache (measured).
TEST_ENV := JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0

test: setup
	@mkdir -p $(MPLCONFIGDIR)
	$(TEST_ENV) $(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

test-fast: setup
	$(TEST_ENV) $(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile -m "not slow" $(PYTEST_ARGS)

cycle: setup
	@mkdir -p $(MPLCONFIGDIR)
	$(PY) -m flows.cli cycle --config $(CONFIG)

serve: setup
	$(PY) -m flows.servers serve $(PREFECT_PORT)

ui: setup
	$(PY) -m flows.servers ui $(MLFLOW_PORT) $(CONFIG)

# `make bench`: every benchmark script (benchmarks/*.py but _*.py and report.py) with its JSON
# record into one run folder, stopping at the first failure, then benchmarks/RESULTS.md and
# benchmarks/figures/ regenerated from that run (benchmarks/_runner.py). BENCH_QUICK=1: tiny
# sizes (not representative); the report then goes to $(BENCH_OUT)/RESULTS.md unless
# BENCH_REPORT says otherwise. BENCH_OUT: the run folder (default $(VARDAX_HOME)/bench/<UTC time>).
# A full run also builds DAPPER's environment (the side-by-side EnKF of benchmarks/cycling.py);
# a quick run does without it.
BENCH_QUICK ?=
BENCH_OUT ?=
BENCH_REPORT ?=
QUICK := $(filter 1 yes true,$(BENCH_QUICK))
bench: setup $(if $(QUICK),,dapper-venv)
	@mkdir -p $(MPLCONFIGDIR)
	$(if $(QUICK),,VARDAX_DAPPER_PYTHON=$(DAPPER_PY)) $(PY) benchmarks/_runner.py $(if $(QUICK),--quick) \
		$(if $(BENCH_OUT),--out $(BENCH_OUT)) $(if $(BENCH_REPORT),--report $(BENCH_REPORT))

# DAPPER (benchmarks/dapper-requirements.txt) in its own environment under $(VARDAX_HOME), made
# with the project's interpreter and uv; rebuilt when the requirements change.
DAPPER_VENV ?= $(VARDAX_HOME)/dapper-venv
DAPPER_PY := $(DAPPER_VENV)/bin/python
dapper-venv: $(DAPPER_VENV)/.installed-stamp
$(DAPPER_VENV)/.installed-stamp: benchmarks/dapper-requirements.txt | $(STAMP)
	@test -x $(DAPPER_PY) || $(PY) -m venv $(DAPPER_VENV)
	$(VENV)/bin/uv pip install -q --python $(DAPPER_PY) -r benchmarks/dapper-requirements.txt
	@touch $@

clean:
	rm -rf $(VARDAX_HOME) .pytest_cache
