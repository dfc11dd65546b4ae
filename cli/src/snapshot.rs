//! `sqlscore snapshot`: a read-only copy of a DuckDB file for dashboards (see
//! `sqlscore_duckdb::snapshot`). Enabling it publishes a copy now; every later job run of the
//! file publishes again, so a dashboard reading the copy follows the jobs without ever locking
//! the file they write.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use sqlscore_duckdb::snapshot;

use crate::BoxError;

#[derive(Args)]
pub struct SnapshotArgs {
    /// The DuckDB file jobs write.
    #[arg(long, default_value = "sqlscore-demo.duckdb")]
    db: PathBuf,
    /// Where the copy goes (default: next to the file, `NAME.snapshot.duckdb`).
    #[arg(long)]
    to: Option<PathBuf>,
    /// During a long run, publish after a committed batch at most this often (seconds); runs
    /// always publish when they start and end.
    #[arg(long, default_value_t = 10.0)]
    every: f64,
    /// Stop publishing (the last copy stays).
    #[arg(long, conflicts_with_all = ["to"])]
    off: bool,
    /// Print the copy's path only (for scripts).
    #[arg(long)]
    quiet: bool,
}

pub fn run(args: SnapshotArgs) -> Result<(), BoxError> {
    if !args.db.exists() {
        return Err(format!("{}: no such database (run `make demo` first, or pass --db)", args.db.display()).into());
    }
    let conn = crate::jobs::open(&args.db)?;
    if args.off {
        let was = snapshot::disable(&conn)?;
        println!("{}: {}", args.db.display(), if was { "snapshots off" } else { "no snapshot was enabled" });
        return Ok(());
    }
    if !(args.every.is_finite() && args.every >= 0.0) {
        return Err(format!("--every must be a number of seconds >= 0, not {}", args.every).into());
    }
    let to = args.to.clone().unwrap_or_else(|| snapshot::default_path(&args.db));
    let cfg = snapshot::enable(&conn, &to, Duration::from_secs_f64(args.every))?;
    let p = snapshot::publish(&conn, &cfg.path)?;
    for (view, why) in &p.skipped {
        eprintln!("warning: view {view} is not in the copy: {why}");
    }
    if args.quiet {
        println!("{}", p.path.display());
        return Ok(());
    }
    println!(
        "{} published to {}: {} tables, {} views in {:.2} s; every job run of {} publishes it again",
        args.db.display(),
        p.path.display(),
        p.tables,
        p.views,
        p.seconds,
        args.db.display()
    );
    Ok(())
}
