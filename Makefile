# Two commands for a newcomer: `make run` (serve on :8080 with the outbox worker) and `make test` (the whole suite).
SHELL := /bin/bash
PY := .venv/bin/python

# The database `make test` uses: the docker-compose PostgreSQL by default (.ci/run creates the same
# role and database on a machine without Docker). pytest makes its own test_ database beside it.
TEST_DATABASE_URL ?= postgresql://messaging_user:messaging_password@127.0.0.1:5432/messaging_service

.PHONY: help setup run test pytest e2e e2e-http fuzz bench lint format migrate superuser clean

help:
	@echo "make run        install into .venv, migrate, serve on :8080 and run the outbox worker (Ctrl-C stops both)"
	@echo "make test       lint, pytest on PostgreSQL, then bin/test.sh against a real gunicorn"
	@echo "make fuzz       schemathesis against the OpenAPI schema on a fresh gunicorn and database"
	@echo "make bench      the service beside a minimal Django+DRF baseline under wrk (docs/PERFORMANCE.md)"
	@echo "make lint       ruff check, ruff format --check and mypy (django-stubs, djangorestframework-stubs)"
	@echo "make format     ruff format and ruff check --fix"
	@echo "make superuser  create an admin login"

setup:
	@bin/bootstrap.sh dev

run:
	@BIND_ADDRESS="$${BIND_ADDRESS:-127.0.0.1}" bin/run.sh

test: setup lint pytest e2e

pytest: setup
	DATABASE_URL="$${DATABASE_URL:-$(TEST_DATABASE_URL)}" $(PY) -m pytest

e2e: setup
	DATABASE_URL="$${DATABASE_URL:-$(TEST_DATABASE_URL)}" bin/e2e.sh
	DATABASE_URL="$${DATABASE_URL:-$(TEST_DATABASE_URL)}" E2E_PROVIDER_MODE=http bin/e2e.sh

# The same end-to-end run with the service sending over HTTP to the provider simulator.
e2e-http: setup
	DATABASE_URL="$${DATABASE_URL:-$(TEST_DATABASE_URL)}" E2E_PROVIDER_MODE=http bin/e2e.sh

# Not part of `make test` (it takes most of a minute); .ci/run runs it after the tests.
fuzz: setup
	DATABASE_URL="$${DATABASE_URL:-$(TEST_DATABASE_URL)}" bin/fuzz.sh

# Not part of `make test`: about 12-15 minutes, needs PostgreSQL, Redis and wrk (installed if missing).
# BENCH_QUICK=1 for a smoke run; BENCH_SCENARIOS, BENCH_DURATION, BENCH_CONNECTIONS: docs/PERFORMANCE.md.
bench:
	bin/bench.sh

lint: setup
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy .

format: setup
	.venv/bin/ruff format .
	.venv/bin/ruff check --fix .

migrate: setup
	$(PY) manage.py migrate

superuser: setup
	$(PY) manage.py createsuperuser

clean:
	rm -rf .venv var staticfiles .pytest_cache .ruff_cache .hypothesis
