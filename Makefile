# django-mitto: developer commands. `make demo` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
POSTGRES_URL ?= postgres://postgres@127.0.0.1:5432/postgres
DEMO_PORT ?= 8000
SANDBOX_PORT ?= 5800
# `make mutation`: processes at a time, and the modules (default: all; see tests/mutation.py).
MUTATION_JOBS ?= 2
MUTATION_MODULES ?=

.PHONY: venv demo test test-sqlite test-postgres lint bench mutation clean

$(BIN)/activate: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test]"
	touch $(BIN)/activate

venv: $(BIN)/activate

## The example project on SQLite with the sandbox: http://127.0.0.1:8000/admin/
demo: venv
	$(BIN)/python example_project/demo.py --port $(DEMO_PORT) --sandbox-port $(SANDBOX_PORT)

## The whole test suite: SQLite, then PostgreSQL.
test: venv
	$(MAKE) --no-print-directory test-sqlite test-postgres

test-sqlite: venv
	$(BIN)/python -m pytest --cov --cov-report=

test-postgres: venv
	DATABASE_URL=$(POSTGRES_URL) $(BIN)/python -m pytest --cov --cov-append --cov-report=term

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m django makemigrations django_mitto --check --dry-run --settings=tests.settings --pythonpath=.

bench: venv
	$(BIN)/python bench/bench_sandbox.py

## Mutation testing of the modules that hold the rules (slow: not part of `make test`).
## Prints the score per module; docs/mutants.md explains each surviving mutant.
mutation: $(VENV)/.mutation-installed
	$(BIN)/python tests/mutation.py --jobs $(MUTATION_JOBS) $(MUTATION_MODULES)

$(VENV)/.mutation-installed: $(BIN)/activate
	$(BIN)/pip install --quiet -e ".[test,mutation]"
	touch $@

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .coverage htmlcov mutants
