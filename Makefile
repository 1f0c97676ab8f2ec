# The README's two commands: `make demo` and `make test`. Both set up .venv from scratch.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

$(BIN)/mostore: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, pinned: a CPU build of 2.13.0; the project's range then installs nothing more
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test,bench]'
	touch $(BIN)/mostore

setup: $(BIN)/mostore

demo: setup
	$(BIN)/mostore demo

test: setup
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python -m benchmarks.rd

.PHONY: setup demo test bench
