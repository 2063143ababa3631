# Two entry points for a fresh machine: `make demo` and `make test` (each sets everything up).
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# Real MedMNIST files for offline runs and tests; a user's machine downloads through medmnist.
RASHOMON_DATA ?= $(if $(wildcard ../shared/data/pneumoniamnist.npz),$(abspath ../shared/data),)
export RASHOMON_DATA

.PHONY: setup demo test lint bench clean

$(BIN)/.installed: pyproject.toml scripts/setup.sh
	bash scripts/setup.sh $(PYTHON) $(VENV)
	touch $@

setup: $(BIN)/.installed

demo: setup
	$(BIN)/rashomon run

lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy src/rashomon
	$(BIN)/lint-imports

test: lint
	bash scripts/pytest.sh $(BIN)/python

bench: setup
	$(BIN)/python benchmarks/bench_sets.py
	$(BIN)/python benchmarks/bench_metrics.py

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache .mypy_cache
