# The two commands of the README: `make demo` and `make test`. Each sets up its own venv.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint unit integration faults bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed-embedded: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[embedded]'
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.installed-embedded

demo: $(VENV)/.installed-embedded
	$(BIN)/streamlearn demo

test: $(VENV)/.installed-dev lint
	$(BIN)/python -m pytest

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

unit: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -m "not integration"

integration: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -m integration

faults: $(VENV)/.installed-dev
	STREAMLEARN_FAULT_SEEDS=all $(BIN)/python -m pytest tests/integration/test_crash_recovery.py -s

bench: $(VENV)/.installed-dev
	$(BIN)/python -m benchmarks.harness

# Issue 7's retention figures (~8 minutes; add ARGS=--profile for where the time goes, ~3 more).
.PHONY: bench-retention
bench-retention: $(VENV)/.installed-dev
	$(BIN)/python -m benchmarks.retention $(ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
