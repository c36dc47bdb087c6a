# Two commands for a fresh machine: `make demo` and `make test`. Each sets itself up first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: setup chromium compose test lint typecheck layers unit e2e overlap celery demo airflow emulator bench bench-slow constraints docs clean

setup: $(STAMP)

# The provider and the emulator, editable, and the dev tools: the PEP 735 dependency group `dev` of
# pyproject.toml (not a published extra; `--group` needs pip >= 25.1). One pip command, one constraints file.
$(STAMP): pyproject.toml emulator/pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade "pip>=25.1"
	$(PIP) install --quiet -c constraints.txt --group dev -e ./emulator -e .
	touch $(STAMP)

LINT_DIRS := $(wildcard airflow_hyperv emulator tests bench scripts)

lint: setup
	$(VENV)/bin/ruff check $(LINT_DIRS)
	$(VENV)/bin/ruff format --check $(LINT_DIRS)

typecheck: setup
	$(VENV)/bin/mypy

# The import layering of [tool.importlinter] in pyproject.toml (provider, domain, emulator).
layers: setup
	$(VENV)/bin/lint-imports --no-cache

# Debian's Chromium for the headless-browser tests (tests/report/test_browser.py): installed with apt-get
# when missing (as root), instant when present; where it cannot be installed it says why and those skip.
chromium:
	@bash scripts/chromium.sh

# Debian's docker-compose for the offline `docker-compose config` check of docker/ (no engine needed).
compose:
	@bash scripts/compose.sh

unit: setup chromium compose
	$(VENV)/bin/pytest -q -m "not overlap and not celery" $(PYTEST_ARGS)

# End to end on real Airflow processes (scheduler, dag-processor, api-server, triggerer) on PostgreSQL.
e2e: setup
	$(VENV)/bin/pytest -m "e2e and not overlap and not celery" -q tests/e2e $(PYTEST_ARGS)

# The distributed run: the CeleryExecutor on Redis, a worker per site, one killed mid-run (docs/operations.md).
celery: setup
	$(VENV)/bin/pytest -m celery -q -s tests/e2e/test_celery.py $(PYTEST_ARGS)

# Overlapping runs of the shipped DAGs on one VM, in real Airflow (writes its section of docs/reliability.md).
overlap: setup
	$(VENV)/bin/pytest -m overlap -q -s tests/e2e/test_overlap_matrix.py $(PYTEST_ARGS)

# The whole suite: linter, type checker, import layers, every test (tests/packaging builds and installs
# the wheels). Every part runs even when an earlier one fails; the exit status is non-zero if any failed.
TEST_PARTS := lint typecheck layers unit
test: setup
	@failed=""; for part in $(TEST_PARTS); do \
		$(MAKE) --no-print-directory $$part || failed="$$failed $$part"; \
	done; \
	if [ -n "$$failed" ]; then echo "make test: FAILED:$$failed" >&2; exit 1; fi; \
	echo "make test: $(TEST_PARTS) passed"

demo: setup
	$(PY) -m airflow_hyperv.cli.main demo

# The real Airflow UI (airflow standalone) with the emulator and the example DAGs, until Ctrl-C.
airflow: setup
	$(PY) -m airflow_hyperv.cli.main airflow

emulator: setup
	$(VENV)/bin/hyperv-emulator --fleet emulator/hyperv_emulator/fleets/example.yaml --auth basic

bench: setup
	$(PY) -m bench.run

# The benchmarks slower than ~2 minutes: full bench.parse, bench.triggerer (~3 min), bench.fleet (~15 min).
bench-slow: setup
	$(PY) -m bench.run --slow

constraints:
	rm -rf /tmp/airflow-hyperv-constraints && $(PYTHON) -m venv /tmp/airflow-hyperv-constraints
	/tmp/airflow-hyperv-constraints/bin/pip install --quiet --upgrade "pip>=25.1"
	/tmp/airflow-hyperv-constraints/bin/pip install --quiet --group dev -e ./emulator -e .
	{ head -3 constraints.txt; /tmp/airflow-hyperv-constraints/bin/pip freeze --exclude-editable | grep -v '^-e'; } > constraints.txt.new
	mv constraints.txt.new constraints.txt

# Rewrite the DAG code blocks of README.md and docs/*.md from the example DAG regions they name
# (<!-- snippet: <file>#<region> -->); tests/docs/test_snippets.py fails while a block differs.
docs: setup
	$(PY) -m scripts.doc_snippets --write

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .demo .airflow
