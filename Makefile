# `make demo` and `make test` set everything up on a fresh machine: a venv at .venv with the
# exact versions of requirements.lock (hash-checked, the CPU build of torch included), then
# the project in editable mode on top of them, nothing else resolved.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.mefeat-installed
LOCK   := requirements.lock
# The CPU build of torch: a looser requirement can pull a multi-GB CUDA build. Its wheel comes
# from the PyTorch CPU index (pip's --extra-index-url https://download.pytorch.org/whl/cpu)
# or a local --find-links folder.
TORCH  ?= torch==2.13.0+cpu

.PHONY: setup demo test test-slow test-latest test-install lock lint mutants clean

setup: $(STAMP)

$(STAMP): $(LOCK) pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --require-hashes --no-deps -r $(LOCK)
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .
	$(BIN)/pip check
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/mefeat demo --out demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

# requirements.lock from pyproject.toml's ranges (extras test and ray, and the build system's
# setuptools and wheel, which `make setup` builds with) and $(TORCH), by pip-tools' resolver,
# every file hash included; `make lock` after changing a dependency.
LOCKVENV := .venv-lock
lock:
	rm -rf $(LOCKVENV)
	$(PYTHON) -m venv $(LOCKVENV)
	$(LOCKVENV)/bin/pip install -q pip-tools==7.7.0
	echo "$(TORCH)" > $(LOCKVENV)/torch.txt
	CUSTOM_COMPILE_COMMAND="make lock" $(LOCKVENV)/bin/pip-compile --quiet --upgrade \
	    --generate-hashes --allow-unsafe --strip-extras --all-build-deps \
	    --no-emit-index-url --no-emit-find-links --extra test --extra ray \
	    -c $(LOCKVENV)/torch.txt -o $(LOCK) pyproject.toml
	rm -rf $(LOCKVENV)

# The default suite against the newest versions pyproject.toml allows, without the lock, in a
# throwaway venv: the next upstream release that breaks a promise shows up here first.
# TORCH_LATEST picks torch (default: the newest pip finds, a CUDA build on most machines).
LATEST := .venv-latest
TORCH_LATEST ?= torch
test-latest:
	rm -rf $(LATEST)
	$(PYTHON) -m venv $(LATEST)
	$(LATEST)/bin/pip install -q --upgrade pip
	$(LATEST)/bin/pip install -q --upgrade "$(TORCH_LATEST)"
	$(LATEST)/bin/pip install -q --upgrade -e ".[test,ray]"
	$(LATEST)/bin/pip freeze --exclude-editable > $(LATEST)/versions.txt
	$(LATEST)/bin/python -m pytest -q -p no:cacheprovider
	@echo "tested against: $(LATEST)/versions.txt"

# `pip install .` (not editable) into a clean venv, then the commands run from another folder.
test-install: $(STAMP)
	$(BIN)/python -m pytest -q -m slow tests/test_install.py

lint: $(STAMP)
	$(BIN)/ruff check .

# Mutation testing of the core modules ([tool.mutmut] in pyproject.toml); hours on 2 cores.
# `make mutants MUTANTS="mefeat.metrics*"` runs the mutants of one module only.
MUTANTS ?=
mutants: $(STAMP)
	$(BIN)/mutmut run --max-children 2 $(MUTANTS)
	$(BIN)/mutmut results

clean:
	rm -rf demo .pytest_cache mutants
