# One entry point for every job. Each target bootstraps what it needs on a fresh machine.
SHELL := /bin/bash
UV := $(shell command -v uv 2>/dev/null || echo "python3 -m uv")
PY := .venv/bin/python
SIZE ?= 20000
SEED ?= 7
# Test processes: the suite waits on servers and subprocesses much of the time.
TEST_WORKERS ?= 2
HISTORY ?= data/sandbox/history
export DAGSTER_DISABLE_TELEMETRY := 1
export DO_NOT_TRACK := 1

.PHONY: help setup demo test sandbox generate pipeline dagster dashboard api bench lint docker-check

help:
	@echo "make demo       stand-ins + booking API + pipeline + dashboard (the main job)"
	@echo "                ARGS=--new-passwords gives the dashboard's demo users new passwords"
	@echo "make test       the whole test suite"
	@echo "make sandbox    generate history (SIZE=$(SIZE)) if missing, run the four stand-ins"
	@echo "make generate   (re)generate the sandbox history: SIZE=, SEED="
	@echo "make pipeline   one full pipeline run (starts the stand-ins if none are running)"
	@echo "make dagster    the Dagster UI and daemon (dagster dev -w workspace.yaml)"
	@echo "make dashboard  serve the dashboard (python -m dashboard create-demo-users makes users)"
	@echo "make api        serve the booking API on 127.0.0.1:8000 (docs at /docs); it books"
	@echo "                through the tenants' APIs and Duffel: run 'make sandbox' first (or"
	@echo "                set their URLs and secrets in .env)"
	@echo "make bench      run the benchmarks and print their figures"
	@echo "make lint       ruff, and sqlfluff over the dbt models"
	@echo "make docker-check  build the container image with podman and check each role end to end"

# Python deps from the lock file; uv itself from PyPI when it is missing. Compiled to bytecode
# once here: where PYTHONDONTWRITEBYTECODE is set, every process (each dbt run, Dagster run,
# server) would otherwise compile every module it imports from source, seconds each time.
.venv/.synced: pyproject.toml uv.lock Makefile
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install --quiet uv
	$(UV) sync --frozen --quiet --compile-bytecode
	@touch $@

.env:
	cp .env.example .env

setup: .venv/.synced .env
	$(PY) -m compileall -q -x '/(data|\.venv)/' . >/dev/null
	$(PY) -m warehouse.manifest

$(HISTORY)/events.parquet: | setup
	$(PY) -m sandbox generate --size $(SIZE) --seed $(SEED) --out $(HISTORY)

generate: setup
	$(PY) -m sandbox generate --size $(SIZE) --seed $(SEED) --out $(HISTORY)

sandbox: setup $(HISTORY)/events.parquet
	$(PY) -m sandbox serve --history $(HISTORY)

demo: setup $(HISTORY)/events.parquet
	$(PY) -m orchestration.demo --history $(HISTORY) $(ARGS)

pipeline: setup $(HISTORY)/events.parquet
	$(PY) -m sandbox pipeline --history $(HISTORY)

dagster: setup
	DAGSTER_HOME=$(CURDIR)/data/dagster_home $(PY) -c "from orchestration import pipeline; pipeline.ensure_dagster_home()"
	DAGSTER_HOME=$(CURDIR)/data/dagster_home .venv/bin/dagster dev -w workspace.yaml

dashboard: setup
	$(PY) -m dashboard

# Migrations first, then uvicorn; BOOKING_* settings from the environment or .env.
api: setup
	$(PY) -m booking

test: setup
	$(UV) sync --frozen --quiet --compile-bytecode --inexact --group spark  # dbt-spark and pyspark: the models on Spark too
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadscope  # scopes: tests/conftest.py worker_group

bench: setup
	$(UV) sync --frozen --quiet --compile-bytecode --inexact --group bench  # dlt (the peer comparison) and py-spy (profiling)
	$(PY) -m benchmarks

lint: setup
	.venv/bin/ruff check . && .venv/bin/ruff format --check .
	.venv/bin/sqlfluff lint dbt_project/models

docker-check:
	bash scripts/docker-check.sh
