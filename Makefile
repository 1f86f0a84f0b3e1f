# The two commands of the README:
#   make study   build the virtual environment, execute every notebook, render the book
#   make test    build the virtual environment, run the unit tests and nbval over every notebook
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
# Kernels are looked up in the project's own environment only, never in a user-wide kernelspec.
export JUPYTER_DATA_DIR := $(CURDIR)/$(VENV)/share/jupyter
export JUPYTER_PLATFORM_DIRS := 1
export MPLBACKEND := Agg
export PYDEVD_DISABLE_FILE_VALIDATION := 1

.PHONY: study test book env clean bench

$(VENV)/.installed: requirements.txt pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11 or run 'make PYTHON=python3 ...'"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (aimoe)" >/dev/null
	touch $@

env: $(VENV)/.installed

# Fresh execution every time: jupyter-cache hashes only notebook code, not aimoe_lib.
book: env
	rm -rf _build/html _build/.jupyter_cache _build/jupyter_execute
	$(VENV)/bin/jupyter-book build -W -n --keep-going .
	@echo "The book is at file://$(CURDIR)/_build/html/index.html"

study: book

test: env
	$(PY) -m pytest tests book --nbval-lax --nbval-current-env -p no:cacheprovider

bench: env
	$(PY) -m aimoe_lib.bench

clean:
	rm -rf _build $(VENV) .pytest_cache .hypothesis
