# django-mitto: developer commands. `make demo` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
POSTGRES_URL ?= postgres://postgres@127.0.0.1:5432/postgres
DEMO_PORT ?= 8000
SANDBOX_PORT ?= 5800
# `make mutation`: processes at a time, and the modules (default: all; see tests/mutation.py).
# MUTATION_SAMPLE=150 checks 150 mutants of each module drawn with MUTATION_SEED (default: all).
MUTATION_JOBS ?= 2
MUTATION_MODULES ?=
MUTATION_SAMPLE ?=
MUTATION_SEED ?= 1
# MUTATION_POSTGRES=postgres://...: the survivors on SQLite are checked again on PostgreSQL.
MUTATION_POSTGRES ?=

# The newest and the oldest supported Python and Django, each in a venv of its own. The
# interpreter is the first of these that runs (a pyenv shim for a version not selected does not).
find_python = $(firstword $(foreach p,$(1) $(sort $(wildcard $(HOME)/.pyenv/versions/$(2)*/bin/$(1))),$(shell $(p) -V >/dev/null 2>&1 && echo $(p))))
PYTHON_NEWEST ?= $(call find_python,python3.13,3.13)
PYTHON_OLDEST ?= $(call find_python,python3.10,3.10)
VENV_NEWEST ?= .venv-py313
VENV_OLDEST ?= .venv-py310
DJANGO_NEWEST ?= Django>=6.0,<7.0
DJANGO_OLDEST ?= Django>=4.2,<5.0

#: The quick suite: SQLite only, no browser, no Celery worker, no package build, no demo.
QUICK = not postgres and not browser and not celery and not packaging and not demo

.PHONY: venv venv-newest venv-oldest demo test test-sqlite test-postgres test-quick \
	test-newest test-newest-sqlite test-newest-postgres test-oldest test-prepared test-all lint typecheck bench \
	mutation clean

$(BIN)/activate: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test,tasks]"
	touch $(BIN)/activate

venv: $(BIN)/activate

$(VENV_NEWEST)/bin/activate: setup.cfg pyproject.toml
	@test -n "$(PYTHON_NEWEST)" || { echo "Python 3.13 not found: set PYTHON_NEWEST"; exit 1; }
	$(PYTHON_NEWEST) -m venv $(VENV_NEWEST)
	$(VENV_NEWEST)/bin/pip install --quiet --upgrade pip
	$(VENV_NEWEST)/bin/pip install --quiet -e ".[test,tasks]" "$(DJANGO_NEWEST)"
	touch $@

$(VENV_OLDEST)/bin/activate: setup.cfg pyproject.toml
	@test -n "$(PYTHON_OLDEST)" || { echo "Python 3.10 not found: set PYTHON_OLDEST"; exit 1; }
	$(PYTHON_OLDEST) -m venv $(VENV_OLDEST)
	$(VENV_OLDEST)/bin/pip install --quiet --upgrade pip
	# No "tasks" extra: django-tasks-db needs Django 5.2+ (its tests skip on 4.2).
	$(VENV_OLDEST)/bin/pip install --quiet -e ".[test]" "$(DJANGO_OLDEST)"
	touch $@

venv-newest: $(VENV_NEWEST)/bin/activate
venv-oldest: $(VENV_OLDEST)/bin/activate

## The example project on SQLite with the sandbox: http://127.0.0.1:8000/admin/
demo: venv
	$(BIN)/python example_project/demo.py --port $(DEMO_PORT) --sandbox-port $(SANDBOX_PORT)

## The whole test suite: SQLite, then PostgreSQL (Python and Django of .venv).
test: venv
	$(MAKE) --no-print-directory test-sqlite test-postgres

test-sqlite: venv
	$(BIN)/python -m pytest --cov --cov-report=

test-postgres: venv
	DATABASE_URL=$(POSTGRES_URL) $(BIN)/python -m pytest --cov --cov-append --cov-report=term

## The tests of django-mitto's own SQL (reports, sends, bulk) on PostgreSQL with prepared
## statements and server-side binding, as README's "Performance" section advises for busy sites.
PREPARED_TESTS = tests/test_callbacks.py tests/test_views.py tests/test_views_reports.py \
	tests/test_services.py tests/test_backends.py tests/test_inbound.py tests/test_optouts.py \
	tests/test_guarantees.py
test-prepared: venv
	DATABASE_URL=$(POSTGRES_URL) MITTO_TEST_PREPARED=1 MITTO_TEST_DB_NAME=test_django_mitto_prepared \
		$(BIN)/python -m pytest -p no:cacheprovider $(PREPARED_TESTS)

## The quick suite (see QUICK) on SQLite.
test-quick: venv
	$(BIN)/python -m pytest -m "$(QUICK)"

## The whole suite on the newest Python and Django: every test on SQLite, then the tests that
## only PostgreSQL runs (NEWEST_POSTGRES= runs every test on PostgreSQL as well).
NEWEST_POSTGRES ?= postgres
test-newest: venv-newest
	$(MAKE) --no-print-directory test-newest-sqlite test-newest-postgres

test-newest-sqlite: venv-newest
	$(VENV_NEWEST)/bin/python -m pytest -p no:cacheprovider

test-newest-postgres: venv-newest
	DATABASE_URL=$(POSTGRES_URL) $(VENV_NEWEST)/bin/python -m pytest -p no:cacheprovider \
		$(if $(NEWEST_POSTGRES),-m "$(NEWEST_POSTGRES)")

## The quick suite on the oldest Python and Django.
test-oldest: venv-oldest
	$(VENV_OLDEST)/bin/python -m pytest -p no:cacheprovider -m "$(QUICK)"

## Every suite CI runs.
test-all: test test-newest test-oldest test-prepared

## Type check (mypy with the Django and DRF stubs; config in setup.cfg).
typecheck: venv
	$(BIN)/python -m mypy

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m django makemigrations django_mitto --check --dry-run --settings=tests.settings --pythonpath=.
	$(BIN)/python -m mypy

## Every benchmark (PostgreSQL and Redis; each prints its figures, baseline and subject side by side).
BENCH_DATABASE ?= postgres://postgres@127.0.0.1:5432/mitto_bench
bench: venv
	$(BIN)/python bench/bench_send.py --database $(BENCH_DATABASE)
	$(BIN)/python bench/bench_bulk.py --database $(BENCH_DATABASE)
	$(BIN)/python bench/bench_bulk.py --memory 1000000 --database $(BENCH_DATABASE)
	$(BIN)/python bench/bench_reports_view.py --database $(BENCH_DATABASE)
	$(BIN)/python bench/bench_reports.py --database $(BENCH_DATABASE)
	$(BIN)/python bench/bench_worker_tasks.py --database $(BENCH_DATABASE)
	$(BIN)/python bench/bench_workers.py --count 20000
	$(BIN)/python bench/bench_sandbox.py
	$(BIN)/python bench/bench_sandbox_memory.py

## Mutation testing of the modules that hold the rules (slow: not part of `make test`).
## Prints the score per module; docs/mutants.md explains each surviving mutant.
mutation: $(VENV)/.mutation-installed
	$(BIN)/python tests/mutation.py --jobs $(MUTATION_JOBS) \
		$(if $(MUTATION_SAMPLE),--sample $(MUTATION_SAMPLE) --seed $(MUTATION_SEED)) \
		$(if $(MUTATION_POSTGRES),--postgres $(MUTATION_POSTGRES)) $(MUTATION_MODULES)

$(VENV)/.mutation-installed: $(BIN)/activate
	$(BIN)/pip install --quiet -e ".[test,mutation]"
	touch $@

clean:
	rm -rf $(VENV) $(VENV_NEWEST) $(VENV_OLDEST) build dist *.egg-info .pytest_cache .coverage htmlcov .mypy_cache
