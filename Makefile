# smoke-platform: every target installs what it needs into .venv first.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev
UV_VERSION := 0.13.8

export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
export BENTOML_HOME ?= $(CURDIR)/.bentoml
export DAGSTER_DISABLE_TELEMETRY := 1
export BENTOML_DO_NOT_TRACK := true
export NO_MKDOCS_2_WARNING := 1
export UV_COMPILE_BYTECODE := 1
export PATH := $(BIN):$(PATH)

.PHONY: setup dev-setup jars maven demo test test-fast lint format bench ui serve validate lock clean dagster-home browser up down docs docs-serve

$(STAMP): pyproject.toml requirements/lock.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] >= (3, 11), "smoke-platform needs Python 3.11+, found " + sys.version' 
	@command -v java >/dev/null || { echo "Java 17 is required (for Spark): install a JDK 17, e.g. 'apt-get install openjdk-17-jre-headless'"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check "uv==$(UV_VERSION)"
	$(BIN)/uv pip install -q --python $(BIN)/python -r requirements/lock.txt
	$(BIN)/uv pip install -q --python $(BIN)/python --no-deps -e .
	touch $@

# The test and lint tools (pytest, ruff, mypy, playwright, embedded PostgreSQL, ...):
# requirements/dev-lock.txt, the runtime set plus these; `make demo` does not need them.
$(DEV_STAMP): $(STAMP) requirements/dev-lock.txt
	$(BIN)/uv pip install -q --python $(BIN)/python -r requirements/dev-lock.txt
	touch $@

# Apache Kafka's broker, Spark's Kafka and Delta Lake connectors: jars from Maven Central, resolved by
# the machine's mvn from the pinned coordinates in jvm/*/pom.xml into .jars/ (git-ignored).
JARS := .jars
MVN_COPY = mvn -q -B -Dstyle.color=never dependency:copy-dependencies -DincludeScope=runtime

$(JARS)/kafka/.installed: jvm/kafka/pom.xml
	@$(MAKE) --no-print-directory maven
	rm -rf $(JARS)/kafka && $(MVN_COPY) -f jvm/kafka/pom.xml -DoutputDirectory=$(CURDIR)/$(JARS)/kafka
	touch $@

$(JARS)/spark-kafka/.installed: jvm/spark-kafka/pom.xml
	@$(MAKE) --no-print-directory maven
	rm -rf $(JARS)/spark-kafka && $(MVN_COPY) -f jvm/spark-kafka/pom.xml -DoutputDirectory=$(CURDIR)/$(JARS)/spark-kafka
	touch $@

$(JARS)/spark-delta/.installed: jvm/spark-delta/pom.xml
	@$(MAKE) --no-print-directory maven
	rm -rf $(JARS)/spark-delta && $(MVN_COPY) -f jvm/spark-delta/pom.xml -DoutputDirectory=$(CURDIR)/$(JARS)/spark-delta
	touch $@

jars: $(JARS)/kafka/.installed $(JARS)/spark-kafka/.installed $(JARS)/spark-delta/.installed

# A system tool from Debian: installed through apt when running as root, otherwise named.
# $(call debian,COMMAND,PACKAGE,WHAT IT IS FOR) (no commas in the arguments)
define debian
@command -v $(1) >/dev/null || { \
  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
    echo "installing Debian's $(2) ($(3))"; \
    DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null && \
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(2) >/dev/null; \
  else \
    echo "$(3) needs $(2): install it (sudo apt-get install $(2)) and run make again."; \
    exit 1; \
  fi; }
endef

# Maven resolves the jars.
maven:
	$(call debian,mvn,maven,fetching Apache Kafka's jars from Maven Central)

setup: $(STAMP) jars

dev-setup: setup $(DEV_STAMP)

# SQLite-backed Dagster instance for the demo (dagster.yaml at the root is the PostgreSQL one).
dagster-home:
	@mkdir -p $(DAGSTER_HOME)
	@test -f $(DAGSTER_HOME)/dagster.yaml || printf 'telemetry:\n  enabled: false\n' > $(DAGSTER_HOME)/dagster.yaml

demo: setup dagster-home
	$(BIN)/smoke demo

# The UI test drives Debian's chromium (a browser download is not possible here).
browser:
	$(call debian,chromium,chromium,the Dagster UI test)

test: dev-setup browser
	$(BIN)/pytest

# Unit tests only: no broker, service, database, Spark or browser (under a minute).
FAST := not (postgres or dagster or slow or bentoml or kafka or spark or ui)
test-fast: dev-setup
	$(BIN)/pytest -q -m "$(FAST)"

lint: dev-setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache
	$(BIN)/mkdocs build --strict --quiet

# The documentation site: docs/ -> site/ (the configuration page is generated from the
# settings tree); `make docs-serve` serves it on http://127.0.0.1:8000 while you edit.
docs: dev-setup
	$(BIN)/mkdocs build --strict

docs-serve: dev-setup
	$(BIN)/mkdocs serve -a 127.0.0.1:8000

format: dev-setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

validate: setup
	$(BIN)/dagster definitions validate -m smoke_platform.definitions

# Each area in its own process (each sets up its own stores and services).
BENCH_AREAS := gen graph train serving stream spark tables
bench: setup dagster-home
	@for area in $(BENCH_AREAS); do $(BIN)/python -m bench $$area || exit 1; done

bench-%: setup dagster-home
	$(BIN)/python -m bench $*

# Ports: make ui DAGSTER_PORT=3100, make serve SERVICE_PORT=3101, make up BROKER_PORT=... etc.
DAGSTER_PORT ?= 3000
SERVICE_PORT ?= 3001
BROKER_PORT ?= 9092
DASHBOARD_PORT ?= 3002

ui: setup dagster-home
	$(BIN)/dagster dev -h 127.0.0.1 -p $(DAGSTER_PORT)

# The whole stack as local processes (no Docker): broker, service, worker, producer,
# Spark job, Dagster webserver + daemon. Trains first if no model was promoted yet.
up: setup dagster-home
	$(BIN)/smoke up --broker-port $(BROKER_PORT) --service-port $(SERVICE_PORT) --dagster-port $(DAGSTER_PORT) --dashboard-port $(DASHBOARD_PORT)

down: setup
	$(BIN)/smoke down

# Serve the bento the Dagster asset built (run `make demo` first).
serve: setup
	$(BIN)/bentoml serve smoke_detector:latest --host 127.0.0.1 --port $(SERVICE_PORT)

# Re-resolve the pinned dependency set after editing pyproject.toml.
# (the runtime lock is resolved within the dev lock, so both pin the same versions)
lock: setup
	$(BIN)/uv pip compile pyproject.toml --extra dev --python-version 3.11 -o requirements/dev-lock.txt
	$(BIN)/uv pip compile pyproject.toml -c requirements/dev-lock.txt --python-version 3.11 -o requirements/lock.txt

# Build outputs only: the data, reports, models and Dagster runs (data/, reports/,
# .dagster_home/, .bentoml/, .stack/) are yours and stay; delete those by hand if you mean to.
clean:
	rm -rf $(VENV) $(JARS) .pytest_cache .mypy_cache .ruff_cache site
	@echo "kept (yours): data/ reports/ .dagster_home/ .bentoml/ .stack/ where present"
