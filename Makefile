# The two commands of the README:
#   make study   build the virtual environment, execute every notebook, render the book
#   make test    build the virtual environment, run the unit tests, nbval over every notebook and
#                the browser test of the rendered book (tests/browser: it reuses _build/html, or
#                renders the notebooks' stored outputs first with `make book-quick`)
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

.PHONY: study test book book-quick browser-deps env clean bench

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
	rm -rf _build/html _build/.doctrees _build/.jupyter_cache _build/jupyter_execute
	$(VENV)/bin/jupyter-book build -W -n --keep-going .
	@echo "The book is at file://$(CURDIR)/_build/html/index.html"

study: book

# The book from the notebooks' stored outputs, without executing them (about a minute).
# local_extensions paths are relative to the config file, hence the absolute tools/ path.
book-quick: env
	rm -rf _build/html _build/.doctrees
	mkdir -p _build
	sed -e 's/execute_notebooks: force/execute_notebooks: "off"/' \
	    -e 's#book_ext: tools/#book_ext: $(CURDIR)/tools/#' _config.yml > _build/_config_quick.yml
	$(VENV)/bin/jupyter-book build -W -n --keep-going . --config _build/_config_quick.yml

# Headless Chromium for tests/browser, from Debian (root only); without it those tests skip.
browser-deps:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing chromium and chromium-driver (apt-get)"; \
	  apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 || \
	  { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium chromium-driver >/dev/null 2>&1; } || \
	  echo "warning: could not install chromium; the browser tests will be skipped"; \
	else \
	  echo "warning: chromium/chromedriver not found and not root: the browser tests will be skipped (apt-get install -y chromium chromium-driver)"; \
	fi

# Test processes: the CPUs, at most four (each runs a kernel and imports torch); TEST_WORKERS=1
# runs serially. --dist loadfile keeps every notebook's cells, in order, in one process.
TEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 2); [ "$$n" -gt 4 ] && n=4; echo $$n)

test: env browser-deps
	@test -f _build/html/index.html || $(MAKE) book-quick
	$(PY) -m pytest tests book --nbval-lax --nbval-current-env -p no:cacheprovider \
	    -n $(TEST_WORKERS) --dist loadfile

bench: env
	$(PY) -m aimoe_lib.bench

clean:
	rm -rf _build $(VENV) .pytest_cache .hypothesis
