# `make demo`, `make test` and `make test-fast` set everything up on a fresh Debian machine (idempotent), then run.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
FASHION_MNIST := /usr/share/datasets/fashion-mnist
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup compiler demo test test-fast bench clean

setup: $(STAMP) $(FASHION_MNIST) compiler

compiler:  # the C++ CPU kernels (mnet_jax/ops/cpu_kernels.cc) are compiled on first use
	command -v $(CXX) >/dev/null || ($(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq g++)

$(FASHION_MNIST):
	$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq dataset-fashion-mnist

$(STAMP): requirements.txt pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,bench]'  # bench: torch, the benchmark's peer, also used by its test
	touch $(STAMP)

demo: setup
	$(PY) -m sweeps.launch --config experiments/demo.py --workdir runs/demo --parallel 2

test: setup  # the whole suite (what CI runs)
	$(PY) -m pytest -q -n 2 tests

test-fast: setup  # the unit-level tests: everything not marked slow
	$(PY) -m pytest -q -n 2 -m "not slow" tests

bench: setup
	$(PY) -m mnet_jax.bench

clean:
	rm -rf $(VENV) runs
