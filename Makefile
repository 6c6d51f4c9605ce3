# Two commands on a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# what `make test` installs: the embedded one-box pieces, the demo's photo, the server clients and the
# real servers the tests start; pinned to the versions CI tested (constraints.txt, `make constraints`)
EXTRAS := embedded,demo,postgres,s3,servers,test

.PHONY: setup models demo lint test bench clean constraints

$(STAMP): pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[$(EXTRAS)]'
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

# re-pin after changing dependencies: the versions installed in .venv become constraints.txt
constraints: setup
	{ echo '# Versions CI tested (`make constraints` regenerates this from .venv after a dependency change).'; \
	  $(BIN)/pip freeze --exclude-editable | grep -v '^facestream'; } > constraints.txt

clean:
	rm -rf $(VENV) .pytest_cache
