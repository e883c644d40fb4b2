# Two entry points for a fresh clone: `make quickstart` (the main job) and `make test`.
# Both create .venv on first use; later runs reuse it.
VENV ?= .venv
PY := $(VENV)/bin/python

$(VENV)/.local: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[local]'
	touch $@

$(VENV)/.dev: $(VENV)/.local
	$(PY) -m pip install --quiet -e '.[local,dev,ray]'
	touch $@

.PHONY: quickstart test lint typecheck
quickstart: $(VENV)/.local
	$(VENV)/bin/forkpath models pull qwen2.5-coder-0.5b
	$(VENV)/bin/forkpath batch examples/quickstart.yaml --out runs/quickstart

lint: $(VENV)/.dev
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

typecheck: $(VENV)/.dev
	$(PY) .ci/typecheck.py

test: lint typecheck
	$(PY) -m pytest
