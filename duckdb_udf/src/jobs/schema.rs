//! The job tables in the user's DuckDB file, next to the model registry. Plain tables without
//! indexes: a job has few rows here, and DuckDB updates of indexed rows inside one transaction
//! (delete + insert of a ledger entry) are what its index implementation handles worst.

use duckdb::Connection;

const DDL: &str = r#"
CREATE TABLE IF NOT EXISTS sqlscore_jobs (
    name        VARCHAR NOT NULL,
    source      VARCHAR NOT NULL,
    key         VARCHAR NOT NULL,
    model       VARCHAR NOT NULL,
    target      VARCHAR NOT NULL,
    features    VARCHAR[],
    carry       VARCHAR[] NOT NULL,
    on_error    VARCHAR NOT NULL,
    outputs     VARCHAR[] NOT NULL,
    batch_rows  BIGINT NOT NULL,
    -- Table sources: every key up to this one is scored (or rejected).
    watermark   BIGINT,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT current_timestamp
);
CREATE SEQUENCE IF NOT EXISTS sqlscore_job_run_ids;
CREATE TABLE IF NOT EXISTS sqlscore_job_runs (
    run_id          BIGINT NOT NULL,
    job             VARCHAR NOT NULL,
    status          VARCHAR NOT NULL,
    started_at      TIMESTAMPTZ NOT NULL DEFAULT current_timestamp,
    finished_at     TIMESTAMPTZ,
    rows_scored     BIGINT NOT NULL DEFAULT 0,
    rows_rejected   BIGINT NOT NULL DEFAULT 0,
    files_scored    BIGINT NOT NULL DEFAULT 0,
    files_rewritten BIGINT NOT NULL DEFAULT 0,
    batches         BIGINT NOT NULL DEFAULT 0,
    threads         INTEGER,
    pid             INTEGER,
    error           VARCHAR
);
CREATE TABLE IF NOT EXISTS sqlscore_job_rejects (
    job         VARCHAR NOT NULL,
    run_id      BIGINT NOT NULL,
    key         BIGINT,
    source_file VARCHAR,
    model       VARCHAR,
    error       VARCHAR NOT NULL,
    rejected_at TIMESTAMPTZ NOT NULL
);
-- File sources: what each file looked like when it was scored.
CREATE TABLE IF NOT EXISTS sqlscore_job_files (
    job       VARCHAR NOT NULL,
    path      VARCHAR NOT NULL,
    size      BIGINT NOT NULL,
    mtime_us  BIGINT NOT NULL,
    rows      BIGINT NOT NULL,
    run_id    BIGINT NOT NULL,
    output    VARCHAR,
    scored_at TIMESTAMPTZ NOT NULL
);
-- Parquet targets: files whose rows are committed. A file written under its temporary name is
-- published (renamed) only once listed here; a temporary file not listed is a run's leftover.
CREATE TABLE IF NOT EXISTS sqlscore_job_outputs (
    job        VARCHAR NOT NULL,
    run_id     BIGINT NOT NULL,
    path       VARCHAR NOT NULL,
    rows       BIGINT NOT NULL,
    written_at TIMESTAMPTZ NOT NULL
)
"#;

/// Creates the job tables when missing (a read-only database keeps what it has).
pub fn ensure(conn: &Connection) -> duckdb::Result<()> {
    conn.execute_batch(DDL)
}

/// Whether the job tables exist (a database no job was ever created in has none).
pub fn exists(conn: &Connection) -> duckdb::Result<bool> {
    conn.query_row(
        "SELECT count(*) > 0 FROM duckdb_tables() WHERE table_name = 'sqlscore_jobs' AND schema_name = 'main'",
        [],
        |r| r.get(0),
    )
}
