//! `sqlscore`: the command users run. `demo` is the embedded-DuckDB scenario `make demo` runs;
//! `model` manages a database's model registry; `job` declares and runs scoring jobs; `bench`
//! measures the hot paths.

mod bench;
mod bench_native;
mod bench_pg;
mod demo;
mod display;
mod jobs;
mod models;
mod pg;
mod pg_jobs;
mod snapshot;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "sqlscore", version, about = "SQL-native batch scoring of ONNX models")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// IoT anomaly scoring on an embedded DuckDB file: Parquet readings landed in a lake folder,
    /// scored incrementally by a job with one model per (device, sensor).
    Demo(demo::DemoArgs),
    /// Manage the models stored in a database.
    Model {
        #[command(subcommand)]
        command: models::ModelCommand,
    },
    /// Scoring jobs in a DuckDB file or a PostgreSQL database: create, list, run, status, runs,
    /// cancel, drop.
    Job {
        #[command(subcommand)]
        command: jobs::JobCommand,
    },
    /// Publish a read-only copy of a DuckDB file for dashboards, now and after every job run
    /// (readers of the copy never lock the file jobs write).
    Snapshot(snapshot::SnapshotArgs),
    /// Run SQL against a DuckDB file with sqlscore loaded, printing the rows.
    Sql {
        #[arg(long, default_value = "sqlscore-demo.duckdb")]
        db: PathBuf,
        query: String,
    },
    /// Benchmarks (see BENCHMARKS.md).
    Bench(bench::BenchArgs),
    /// Postgres benchmarks against a running cluster with the extension installed.
    BenchPg(bench_pg::BenchPgArgs),
    /// The native evaluator against ONNX Runtime, model by model (bench/native_models.py).
    BenchNative(bench_native::BenchNativeArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Job { command } = cli.command {
        return match jobs::run(command) {
            Ok(outcome) => ExitCode::from(outcome.code()),
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let result = match cli.command {
        Command::Job { .. } => Ok(()),
        Command::Demo(args) => demo::run(args),
        Command::Model { command } => models::run(command),
        Command::Snapshot(args) => snapshot::run(args),
        Command::Sql { db, query } => models::sql(&db, &query),
        Command::Bench(args) => bench::run(args),
        Command::BenchPg(args) => bench_pg::run(args),
        Command::BenchNative(args) => bench_native::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
