# Two commands on a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup models demo lint test bench clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

models: setup
	$(BIN)/facestream models prepare

demo: models
	$(BIN)/facestream demo

# The rules CI holds: ruff over everything, mypy strict over schemas/, pipeline/, agents/ (pyproject.toml).
lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy

test: lint models
	$(BIN)/python -m pytest -q tests

bench: models
	$(BIN)/facestream bench all

clean:
	rm -rf $(VENV) .pytest_cache
