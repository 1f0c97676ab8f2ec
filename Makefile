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

# Debian's chromium for the browser test (tests/test_browser.py); best effort: without it that test skips,
# except under .ci/run, which makes a missing browser a failure
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO="sudo -n"; fi; \
	  ($$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver) \
	    >/dev/null 2>&1 || echo "could not install chromium: the browser test will be skipped"; }

test: setup browser
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python -m benchmarks.rd

.PHONY: setup demo test bench browser
