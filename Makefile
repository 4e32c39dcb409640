# Two commands on a fresh machine: `make run` (install, then materialize the whole graph
# on the embedded defaults) and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install run test lint dev dg-dev check-defs

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	@# grep: this machine's pip config prints a "Location ... is ignored" line per package
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]' 2>&1 \
		| { grep -v "is ignored: it is neither a file nor a directory" || true; }
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/retention-assets run

test: $(STAMP)
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

dev: $(STAMP)
	$(VENV)/bin/dagster dev -h 127.0.0.1 -p 3000

# The same UI through `dg` (dagster-dg-cli; reads [tool.dg] in pyproject.toml).
dg-dev: $(STAMP)
	$(VENV)/bin/dg dev --host 127.0.0.1 --port 3000

# Loads every definition without starting anything (CI runs it before the tests).
check-defs: $(STAMP)
	$(VENV)/bin/dg check defs
