# sqlscore: the user's entry points. `make demo` and `make test` work on a fresh machine: each
# installs what it needs (Python venv with pinned packages, DuckDB's shared library) and is safe
# to run twice.

SHELL := /bin/bash
# The test targets share the machine's PostgreSQL install and ports: one target at a time (cargo and
# the tests parallelise inside).
.NOTPARALLEL:
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
# The DuckDB releases the extension repository (dist/repository) serves; both are tested.
DUCKDB_VERSIONS := v1.5.6 v2.0.1
CLI := target/release/sqlscore

DEVICES ?= 3
SENSORS ?= 5
HOURS ?= 24

PG_CONFIG := /usr/lib/postgresql/15/bin/pg_config
PGRX_VERSION := 0.18.1
PG_URL := postgres://postgres@127.0.0.1:$${SQLSCORE_PGPORT:-5499}/postgres

.PHONY: fuzz lint demo test test-core test-duckdb test-pg pg-install-test extension test-extension cli venv duckdb-lib demo-models bench bench-native bench-pg bench-jobs bench-lake bench-snapshot \
        pg-deps pg-install demo-pg pg-stop clean dashboard dashboard-stop test-dashboard test-python

demo: venv extension cli demo-models
	$(CLI) demo --devices $(DEVICES) --sensors $(SENSORS) --hours $(HOURS)

test: venv extension cli test-core test-duckdb test-pg test-dashboard test-python

test-core: venv
	$(CARGO) test --release -p sqlscore-core

# DuckDB: unit-style and golden tests, the CLI and its lake jobs, the bounded fuzz run (tests/fuzz;
# its PostgreSQL half runs in test-pg), and the Rust embedding API's jobs (cli/tests/embed_jobs.rs).
test-duckdb: venv extension test-extension cli
	@# tmux: the job command's progress bar is tested on a real terminal.
	@command -v tmux >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tmux)
	$(PY) -m pytest -q -p no:cacheprovider tests/duckdb tests/cli tests/fuzz \
	  --deselect tests/fuzz/test_fuzz.py::test_fuzz_postgres
	$(CARGO) test --release -p sqlscore-cli --bins --test embed_jobs

venv: $(VENV)/.installed
$(VENV)/.installed: python/requirements.txt Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV) || \
	  (apt-get update -qq && apt-get install -y -qq python3-venv && $(PYTHON) -m venv $(VENV))
	$(PY) -m pip install -q --disable-pip-version-check -r python/requirements.txt
	# A second DuckDB, to test that the same extension file loads into the 2.0 line too.
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --target $(VENV)/duckdb-2.0.1 duckdb==2.0.1
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
	@# INSTALL sqlscore FROM 'dist/repository' (or its URL when served over HTTP): see README.
	$(PYTHON) scripts/extension_repository.py $(EXTENSION) dist/repository $(DUCKDB_VERSIONS)

# The same extension with test-only switches (fault injection) in dist/test/; the shipped file
# never has them. Built after `extension` (cargo keeps both feature sets' artifacts).
test-extension: venv extension
	$(CARGO) build --release -p sqlscore-duckdb --features loadable,test-hooks --lib
	mkdir -p dist/test
	$(PYTHON) scripts/package_extension.py target/release/libsqlscore_duckdb.so dist/test/sqlscore.duckdb_extension $(EXT_VERSION)
	$(CARGO) build --release -p sqlscore-duckdb --features loadable --lib

cli: duckdb-lib
	$(CARGO) build --release -p sqlscore-cli

demo-models: venv
	$(PY) models/make_demo_models.py --devices $(DEVICES) --sensors $(SENSORS)

bench: venv extension cli
	$(CLI) bench --threads 1
	$(CLI) bench --threads 2 --per-row-models 0

# PostgreSQL: Debian's server and headers, pg_cron, clang for pgrx's bindgen, sudo to run the
# server as `postgres`; cargo-pgrx from the same pin as the crate's pgrx.
pg-deps:
	@pkgs="postgresql-15 postgresql-server-dev-15 postgresql-15-cron libclang-dev clang sudo"; \
	missing=$$(for p in $$pkgs; do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; fi
	@$(CARGO) pgrx --version 2>/dev/null | grep -q "$(PGRX_VERSION)" || $(CARGO) install cargo-pgrx --version $(PGRX_VERSION) --locked --force
	@grep -q "pg15" $${PGRX_HOME:-$$HOME/.pgrx}/config.toml 2>/dev/null || $(CARGO) pgrx init --pg15 $(PG_CONFIG)

# Installs the release build into the machine's PostgreSQL 15: CREATE EXTENSION sqlscore works
# in any cluster of it.
pg-install: pg-deps
	cd pg_extension && $(CARGO) pgrx install --release --pg-config $(PG_CONFIG)

# The test build: the same extension plus test-only SQL (sqlscore.selftest_panic). `make
# pg-install` puts the shipped build back.
pg-install-test: pg-deps
	cd pg_extension && $(CARGO) pgrx install --release --pg-config $(PG_CONFIG) --features test-hooks

# A throwaway cluster (port 5499) for the golden SQL tests and the tokio-postgres integration
# tests; removed afterwards, also on failure. The test build is installed for the run and the
# shipped one reinstalled after it.
test-pg: venv pg-install-test cli
	scripts/pg-cluster.sh stop
	# Backends inherit an address-space cap: a runaway allocation fails one statement, never the machine.
	prlimit --as=$$((4 << 30)) scripts/pg-cluster.sh start
	trap 'scripts/pg-cluster.sh stop; $(MAKE) --no-print-directory pg-install >/dev/null' EXIT; \
	scripts/pg-regress.sh && \
	PGOPTIONS='-c sqlscore.engine=onnxruntime' SQLSCORE_REGRESS_OUT=target/pg_regress_ort scripts/pg-regress.sh && \
	SQLSCORE_PG_URL=$(PG_URL) $(CARGO) test --release -p sqlscore-cli --test postgres && \
	SQLSCORE_PG_URL=$(PG_URL) FUZZ_REQUIRE_PG=1 FUZZ_PG_LOG=$${SQLSCORE_PGROOT:-/tmp/sqlscore-pg}/server.log \
	  $(PY) -m pytest -q -p no:cacheprovider tests/fuzz/test_fuzz.py::test_fuzz_postgres && \
	SQLSCORE_PG_URL=$(PG_URL) $(PY) -m pytest -q -p no:cacheprovider tests/pg_jobs

# The long fuzz run against both engines (shipped builds): FUZZ_CALLS generated calls per engine
# (default 20000, about 10 minutes) from FUZZ_SEED, plus every targeted case. `make test` runs 1000.
fuzz: venv extension pg-install
	FUZZ_CALLS=$${FUZZ_CALLS:-20000} tests/fuzz/run.sh

# The demo scenario inside Postgres; the cluster keeps running for you to look (make pg-stop).
demo-pg: venv pg-install cli demo-models
	scripts/pg-cluster.sh start
	$(CLI) demo --db $(PG_URL) --devices $(DEVICES) --sensors $(SENSORS) --hours $(HOURS)
	@echo "psql $(PG_URL) -c 'SELECT * FROM anomaly_scores LIMIT 5'   # make pg-stop when done"

pg-stop:
	scripts/pg-cluster.sh stop

# The "Sensor anomalies" dashboard (Apache Superset, pinned in dashboard/requirements.txt, in its
# own venv) on http://127.0.0.1:$(DASHBOARD_PORT)/superset/dashboard/sqlscore/, over the demo's
# DuckDB file (after `make demo`; read through its snapshot copy, which every job run republishes)
# or a PostgreSQL database: make dashboard DB=postgres://... (after `make demo-pg`). Viewers need no
# login; the admin password is in .cache/superset/admin_password. `make dashboard-stop` stops it.
DB ?= sqlscore-demo.duckdb
DASHBOARD_PORT ?= 8088
dashboard: cli
	@# Not echoed: DB may hold a password.
	@SQLSCORE_DASHBOARD_PORT=$(DASHBOARD_PORT) scripts/dashboard.sh up "$(DB)"

dashboard-stop:
	SQLSCORE_DASHBOARD_PORT=$(DASHBOARD_PORT) scripts/dashboard.sh stop

# The dashboard end to end (tests/dashboard): on a fresh DuckDB demo and a PostgreSQL demo database,
# every chart's data from Superset's API against the same SQL run directly, new scores showing while
# Superset runs, read-only viewers, and a headless Chromium screenshot in which every chart is drawn
# (target/dashboard/*.png). Its own Superset (port 8097, state in target/dashboard) and PostgreSQL
# cluster (port 5498); about 1 minute on 2 cores once Superset and Chromium are installed.
test-dashboard: venv extension cli demo-models pg-install
	@command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)
	$(DASH_TEST_ENV) scripts/dashboard.sh stop
	$(DASH_TEST_ENV) scripts/pg-cluster.sh stop
	$(DASH_TEST_ENV) scripts/pg-cluster.sh start
	trap '$(DASH_TEST_ENV) scripts/pg-cluster.sh stop; $(DASH_TEST_ENV) scripts/dashboard.sh stop' EXIT; \
	$(DASH_TEST_ENV) SQLSCORE_PG_URL=postgres://postgres@127.0.0.1:5498/postgres \
	  scripts/dashboard.sh pytest -q -p no:cacheprovider tests/dashboard
# Its own Superset and PostgreSQL cluster: neither `make dashboard` nor `make demo-pg` is touched.
DASH_TEST_ENV := SQLSCORE_DASHBOARD_HOME=$(CURDIR)/target/dashboard/superset SQLSCORE_DASHBOARD_PORT=8097 \
  SQLSCORE_PGPORT=5498 SQLSCORE_PGROOT=/tmp/sqlscore-pg-dashboard

# The Python package (python/: sqlscore.register, score_frame) against real DuckDB (the extension
# installed by name from dist/repository) and PostgreSQL (its own cluster, port 5496), with models
# trained by scikit-learn, XGBoost, LightGBM and CatBoost. Its own venv (.cache/pkg-venv, locked in
# python/requirements-test.txt), where `pip install ./python` must resolve by itself.
PKG_VENV := .cache/pkg-venv
PY_TEST_ENV := SQLSCORE_PGPORT=5496 SQLSCORE_PGROOT=/tmp/sqlscore-pg-python
test-python: extension pg-install
	test -x $(PKG_VENV)/bin/python || $(PYTHON) -m venv $(PKG_VENV)
	$(PKG_VENV)/bin/pip install -q --disable-pip-version-check -r python/requirements-test.txt
	$(PKG_VENV)/bin/pip install -q --disable-pip-version-check --force-reinstall --no-deps ./python
	$(PKG_VENV)/bin/pip install -q --disable-pip-version-check ./python
	$(PY_TEST_ENV) scripts/pg-cluster.sh stop
	$(PY_TEST_ENV) scripts/pg-cluster.sh start
	trap '$(PY_TEST_ENV) scripts/pg-cluster.sh stop' EXIT; \
	SQLSCORE_PG_URL=postgres://postgres@127.0.0.1:5496/postgres $(PKG_VENV)/bin/python -m pytest -q -p no:cacheprovider python/tests

# The native evaluator against ONNX Runtime, model by model, 1 thread, batches of 2,048 rows
# (BENCHMARKS.md "Native evaluator"). The models are exported once by bench/native_models.py.
bench-native: venv cli
	[ -f target/bench/native/x_2048x20.f32 ] || $(PY) bench/native_models.py target/bench/native
	$(CLI) bench-native

bench-pg: venv pg-install cli
	scripts/pg-cluster.sh start
	$(CLI) bench-pg --url $(PG_URL)

# Scoring jobs (bench/jobs_bench.py): run_job, submit_job with 1 and 2 workers and the Python
# pipeline over JOBS_ROWS readings scored by JOBS_MODELS per-sensor models, then COPY ingest and
# commit->score latency with a stream. About 8 min at the defaults on an idle 2-core machine; a quick
# check: make bench-jobs JOBS_ROWS=200000 JOBS_MODELS=50
JOBS_ROWS ?= 10000000
JOBS_MODELS ?= 1000
bench-jobs: venv pg-install
	scripts/pg-cluster.sh start
	$(PY) bench/jobs_bench.py --url $(PG_URL) --rows $(JOBS_ROWS) --models $(JOBS_MODELS)

# Lake jobs (bench/lake_bench.py): `sqlscore job run` over LAKE_ROWS readings in LAKE_FILES Parquet
# files scored by LAKE_MODELS per-sensor models, with 1 and 2 threads, against the Python pipeline a
# team writes for the same incremental job (bench/lake_pipeline.py), plus a run with nothing new.
# The lake, the models and the registry are cached under target/bench/lake. A quick check:
# make bench-lake LAKE_ROWS=200000 LAKE_MODELS=50 LAKE_FILES=10
LAKE_ROWS ?= 10000000
LAKE_MODELS ?= 1000
LAKE_FILES ?= 100
bench-lake: venv extension cli
	$(PY) bench/lake_bench.py --rows $(LAKE_ROWS) --models $(LAKE_MODELS) --files $(LAKE_FILES)

# What the dashboard's snapshot costs a DuckDB job (bench/snapshot_bench.py), on the database
# bench-lake's job_1 phase leaves (10M scored rows; made first when missing). About 1 minute.
bench-snapshot: venv extension cli
	[ -f target/bench/lake/job_1.duckdb ] || $(PY) bench/lake_bench.py --rows $(LAKE_ROWS) --models $(LAKE_MODELS) --files $(LAKE_FILES) --only job_1
	$(PY) bench/snapshot_bench.py --reps 2

# The code checks CI runs: formatting, and clippy with warnings as errors over every crate, test
# and the loadable extension (its own feature set: it is built alone, see `extension`).
lint: duckdb-lib pg-deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --release -- -D warnings
	$(CARGO) clippy -p sqlscore-duckdb --features loadable,test-hooks --release -- -D warnings

clean:
	rm -rf dist target/bench sqlscore-demo.duckdb sqlscore-demo.duckdb.wal demo-data
