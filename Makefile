# `make demo` and `make test` set everything up on a fresh machine: a venv at .venv with the
# pinned CPU build of torch (a looser requirement can pull a multi-GB CUDA build), then the
# project in editable mode.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.mefeat-installed
TORCH  ?= torch==2.13.0

.PHONY: setup demo test test-slow lint mutants bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip "setuptools>=69,<82" wheel
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e ".[test,ray]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/mefeat demo --out demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

lint: $(STAMP)
	$(BIN)/ruff check .

# Mutation testing of the core modules ([tool.mutmut] in pyproject.toml); hours on 2 cores.
# `make mutants MUTANTS="mefeat.train.metrics*"` runs the mutants of one module only.
MUTANTS ?=
mutants: $(STAMP)
	$(BIN)/mutmut run --max-children 2 $(MUTANTS)
	$(BIN)/mutmut results

clean:
	rm -rf demo .pytest_cache mutants
