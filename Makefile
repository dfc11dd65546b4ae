# sqlscore: the user's entry points. `make demo` and `make test` work on a fresh machine: each
# installs what it needs (Python venv with pinned packages, DuckDB's shared library) and is safe
# to run twice.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CARGO ?= cargo
EXT_VERSION := v$(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
# libduckdb.so for the CLI host, from npm (the `bundled` feature would compile DuckDB's C++ for ~30 min).
DUCKDB_NPM := @duckdb/node-bindings-linux-x64@1.5.6-r.1
DUCKDB_LIB_DIR := $(CURDIR)/.cache/duckdb-lib
export DUCKDB_LIB_DIR
EXTENSION := dist/sqlscore.duckdb_extension
CLI := target/release/sqlscore

DEVICES ?= 3
SENSORS ?= 5
HOURS ?= 24

.PHONY: demo test test-core test-duckdb extension cli venv duckdb-lib demo-models bench clean

demo: venv extension cli demo-models
	$(CLI) demo --devices $(DEVICES) --sensors $(SENSORS) --hours $(HOURS)

test: venv extension cli test-core test-duckdb

test-core: venv
	$(CARGO) test --release -p sqlscore-core

test-duckdb: venv extension cli
	$(PY) -m pytest -q tests/duckdb tests/cli

venv: $(VENV)/.installed
$(VENV)/.installed: python/requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r python/requirements.txt
	touch $@

duckdb-lib: $(DUCKDB_LIB_DIR)/libduckdb.so
$(DUCKDB_LIB_DIR)/libduckdb.so:
	command -v npm >/dev/null || (apt-get update -qq && apt-get install -y -qq npm)
	mkdir -p .cache/npm $(DUCKDB_LIB_DIR)
	cd .cache/npm && npm pack --silent $(DUCKDB_NPM) >/dev/null
	tar xzf .cache/npm/duckdb-node-bindings-linux-x64-*.tgz -C $(DUCKDB_LIB_DIR) --strip-components=1 package/libduckdb.so
	touch $@

# Built alone: in one cargo invocation with the CLI, feature unification would turn the CLI's
# duckdb crate into an extension too.
extension: venv
	$(CARGO) build --release -p sqlscore-duckdb --features loadable --lib
	$(PYTHON) scripts/package_extension.py target/release/libsqlscore_duckdb.so $(EXTENSION) $(EXT_VERSION)

cli: duckdb-lib
	$(CARGO) build --release -p sqlscore-cli

demo-models: venv
	$(PY) models/make_demo_models.py --devices $(DEVICES) --sensors $(SENSORS)

bench: venv extension cli
	$(CLI) bench --threads 1
	$(CLI) bench --threads 2 --per-row-models 0

clean:
	rm -rf dist target/bench sqlscore-demo.duckdb sqlscore-demo.duckdb.wal demo-data
