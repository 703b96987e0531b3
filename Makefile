# The two commands: `make run` (the whole service, embedded) and `make test` (everything CI runs).
# Both create the virtual environment in .venv and install the project into it first.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
DEV    := $(VENV)/.installed-dev-stamp
ARGS   ?=

.PHONY: run test lint typecheck unit bench clean

# The service alone: what `make run` needs, nothing more. uv installs (in parallel, from its
# cache) in a few seconds what pip takes half a minute for; it is installed into the venv first.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@test -x $(BIN)/uv || $(BIN)/python -m pip install --quiet --disable-pip-version-check uv
	$(BIN)/uv pip install --quiet --python $(BIN)/python -e .
	@touch $@

# The service plus the test, lint and benchmark tools.
$(DEV): $(STAMP)
	$(BIN)/uv pip install --quiet --python $(BIN)/python -e '.[dev]'
	@touch $@

run: $(STAMP)
	$(BIN)/pricestream run $(ARGS)

lint: $(DEV)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(DEV)
	$(BIN)/mypy

unit: $(DEV)
	scripts/test-deps
	$(BIN)/pytest $(ARGS)

test: lint typecheck unit

bench: $(DEV)
	$(BIN)/python bench/pipeline.py $(ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache build *.egg-info
