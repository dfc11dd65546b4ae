//! Scoring jobs in a DuckDB database: declared once (stored in the file, in `sqlscore_jobs`),
//! run by a host program (the `sqlscore` command, or any Rust program through [`run_job`]).
//! DuckDB has no scheduler and no background process, so a run is a call: cron, a systemd timer
//! or an orchestrator decides when.
//!
//! A run reads what is new in the source (keys above the job's watermark in a table, or files the
//! ledger has not seen in a glob), scores it with the engine's grouped scoring (one ONNX Runtime
//! call per model per batch; the same semantics as PostgreSQL jobs, from `sqlscore_core::job`),
//! and writes each batch, its rejects and its bookkeeping in one transaction. A Parquet target
//! gets files written under a hidden name and renamed into place after that commit; the next run
//! finishes or removes what a killed run left. So a run killed at any moment loses nothing and
//! scores nothing twice.

mod arrow_in;
mod define;
mod output;
mod run;
mod schema;
mod score;
pub mod sidecar;

use std::fmt;

pub use define::{create_job, drop_job, job, jobs, JobInfo, JobSpec};
pub use run::{run_job, runs, Event, PlanSummary, RunConfig, RunInfo, RunSummary};

/// Why a job call failed, with the job, run and file it concerns; `message` is the engine's or
/// DuckDB's own text (which names the model and column).
#[derive(Debug, Clone)]
pub struct JobError {
    pub job: String,
    pub run_id: Option<i64>,
    pub file: Option<String>,
    pub kind: JobErrorKind,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobErrorKind {
    /// The definition is wrong (unknown column, bad expression, bad target).
    Definition,
    /// No such job.
    NotFound,
    /// The job is already running in this process.
    Busy,
    /// A run failed while scoring or writing.
    Failed,
    /// The run was cancelled (signal or cancel flag); committed batches stay.
    Cancelled,
}

impl JobError {
    pub(crate) fn new(job: &str, kind: JobErrorKind, message: impl Into<String>) -> Self {
        JobError { job: job.to_string(), run_id: None, file: None, kind, message: message.into() }
    }

    pub(crate) fn in_run(mut self, run_id: i64) -> Self {
        self.run_id.get_or_insert(run_id);
        self
    }

    pub(crate) fn in_file(mut self, file: Option<&str>) -> Self {
        if self.file.is_none() {
            self.file = file.map(str::to_string);
        }
        self
    }

    /// The message without the job/run/file prefix (what the run's row records).
    pub fn detail(&self) -> String {
        match &self.file {
            Some(f) => format!("file {f}: {}", self.message),
            None => self.message.clone(),
        }
    }
}

impl fmt::Display for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "job \"{}\"", self.job)?;
        if let Some(r) = self.run_id {
            write!(f, " run {r}")?;
        }
        write!(f, ": {}", self.detail())
    }
}

impl std::error::Error for JobError {}

/// `map_err` helper: a DuckDB error as a job error of `kind`.
pub(crate) fn db(job: &str, kind: JobErrorKind) -> impl Fn(duckdb::Error) -> JobError + '_ {
    move |e| JobError::new(job, kind, e.to_string())
}
