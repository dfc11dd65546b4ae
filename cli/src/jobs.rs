//! `sqlscore job create | list | run | status | runs | cancel | drop`: one tool for the jobs of a
//! DuckDB file (run here, through `sqlscore_duckdb::jobs`) and of a PostgreSQL database (run by the
//! server, through the extension's job SQL; see `pg_jobs`).
//!
//! Output: a progress bar when stdout is a terminal, plain log lines otherwise; with `--json` the
//! last line of stdout is one JSON object. Exit status: 0 succeeded (or nothing new), 1 failed, 3
//! cancelled, 4 busy (another process holds the DuckDB file, or the PostgreSQL job is running).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;
use sqlscore_duckdb::jobs::{self, sidecar, Event, JobSpec, RunConfig, RunSummary};

use crate::BoxError;

#[derive(Subcommand)]
pub enum JobCommand {
    /// Declare a job: SOURCE is a table or a file glob ('lake/readings/*.parquet', CSV too);
    /// TARGET is a table or a folder ending in '/' (Parquet files).
    Create(CreateArgs),
    /// List the jobs of a database.
    List {
        #[arg(long)]
        db: String,
        #[arg(long)]
        json: bool,
    },
    /// Run a job once: score what is new since its last run.
    Run(RunArgs),
    /// A job's definition, its last run, and the run in progress if any.
    Status {
        name: String,
        #[arg(long)]
        db: String,
        #[arg(long)]
        json: bool,
    },
    /// A job's runs, newest first (all jobs' without NAME).
    Runs {
        name: Option<String>,
        #[arg(long)]
        db: String,
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// Stop a job's run in progress after its current batch (committed batches stay).
    Cancel {
        name: String,
        #[arg(long)]
        db: String,
    },
    /// Remove a job and its bookkeeping; its target stays.
    Drop {
        name: String,
        #[arg(long)]
        db: String,
    },
}

#[derive(Args)]
pub struct CreateArgs {
    name: String,
    /// A DuckDB file or a postgres:// URL.
    #[arg(long)]
    db: String,
    #[arg(long)]
    source: String,
    /// Integer column identifying each row (the incremental key of a table source).
    #[arg(long)]
    key: String,
    /// SQL expression over the source's columns naming each row's model, e.g. "'anomaly_' || sensor_id".
    #[arg(long)]
    model: String,
    #[arg(long)]
    target: String,
    /// Columns bound to the model's inputs in order (default: the inputs' names).
    #[arg(long, value_delimiter = ',')]
    features: Option<Vec<String>>,
    /// Source columns copied into the target.
    #[arg(long, value_delimiter = ',')]
    carry: Vec<String>,
    /// What a row that cannot be scored does: raise (the run fails), null, reject (set aside).
    #[arg(long, default_value = "reject")]
    on_error: String,
    /// score, plus label and/or probabilities.
    #[arg(long, value_delimiter = ',', default_value = "score")]
    outputs: Vec<String>,
    /// Rows per batch (one transaction each); default 1,000,000 in DuckDB, 10,000 in PostgreSQL.
    #[arg(long)]
    batch_rows: Option<u64>,
}

#[derive(Args)]
pub struct RunArgs {
    name: String,
    #[arg(long)]
    db: String,
    /// Print one JSON object as the last line (run_id, status, rows_scored, rows_rejected, seconds, error).
    #[arg(long)]
    json: bool,
    /// DuckDB: threads for reading and scoring (default: the cores but one, which the writer uses).
    #[arg(long)]
    threads: Option<usize>,
    /// PostgreSQL: run in background workers (sqlscore.submit_job) and follow the run.
    #[arg(long = "async")]
    run_async: bool,
    /// PostgreSQL with --async: background workers.
    #[arg(long, default_value_t = 1)]
    workers: i32,
    /// No progress output (the summary line and --json stay).
    #[arg(long)]
    quiet: bool,
}

/// How a command ended, for the exit status.
pub enum Outcome {
    Ok,
    Failed,
    Cancelled,
    Busy,
}

impl Outcome {
    pub fn code(&self) -> u8 {
        match self {
            Outcome::Ok => 0,
            Outcome::Failed => 1,
            Outcome::Cancelled => 3,
            Outcome::Busy => 4,
        }
    }
}

pub fn run(cmd: JobCommand) -> Result<Outcome, BoxError> {
    // `job run --json`: whatever happens, the last line of output is one JSON object.
    let json_run = match &cmd {
        JobCommand::Run(a) if a.json => Some(a.name.clone()),
        _ => None,
    };
    match dispatch(cmd) {
        Err(e) if is_busy(&e) => {
            eprintln!("error: {e}");
            if let Some(job) = json_run {
                println!(
                    "{}",
                    json!({"job": job, "run_id": null, "status": "busy", "rows_scored": 0, "rows_rejected": 0, "seconds": 0.0, "error": e.to_string()})
                );
            }
            Ok(Outcome::Busy)
        }
        Err(e) => {
            if let Some(job) = json_run {
                eprintln!("error: {e}");
                println!(
                    "{}",
                    json!({"job": job, "run_id": null, "status": "failed", "rows_scored": 0, "rows_rejected": 0, "seconds": 0.0, "error": e.to_string()})
                );
                return Ok(Outcome::Failed);
            }
            Err(e)
        }
        ok => ok,
    }
}

fn dispatch(cmd: JobCommand) -> Result<Outcome, BoxError> {
    let db = match &cmd {
        JobCommand::Create(a) => a.db.clone(),
        JobCommand::Run(a) => a.db.clone(),
        JobCommand::List { db, .. }
        | JobCommand::Status { db, .. }
        | JobCommand::Runs { db, .. }
        | JobCommand::Cancel { db, .. }
        | JobCommand::Drop { db, .. } => db.clone(),
    };
    if crate::pg::is_url(&db) {
        return crate::pg_jobs::run(cmd);
    }
    let path = PathBuf::from(&db);
    // Only `create` may start a database; anything else on a missing file is a typo.
    if !matches!(cmd, JobCommand::Create(_)) && !path.exists() {
        return Err(format!("{db}: no such database file (sqlscore job create ... --db {db} starts one)").into());
    }
    match cmd {
        JobCommand::Create(a) => create(&path, a),
        JobCommand::List { json, .. } => list(&path, json),
        JobCommand::Run(a) => run_duckdb(&path, a),
        JobCommand::Status { name, json, .. } => status(&path, &name, json),
        JobCommand::Runs { name, limit, json, .. } => runs(&path, name.as_deref(), limit, json),
        JobCommand::Cancel { name, .. } => cancel(&path, &name),
        JobCommand::Drop { name, .. } => {
            let conn = open(&path)?;
            jobs::drop_job(&conn, &name)?;
            println!("dropped job {name} (its target stays)");
            Ok(Outcome::Ok)
        }
    }
}

/// Accessors for the PostgreSQL side.
impl CreateArgs {
    pub fn db(&self) -> &str {
        &self.db
    }

    #[allow(clippy::type_complexity)]
    pub fn parts(&self) -> (&str, &str, &str, &str, &str, Option<&[String]>, &[String], &str, &[String], Option<u64>) {
        (
            &self.name,
            &self.source,
            &self.key,
            &self.model,
            &self.target,
            self.features.as_deref(),
            &self.carry,
            &self.on_error,
            &self.outputs,
            self.batch_rows,
        )
    }
}

impl RunArgs {
    pub fn db(&self) -> &str {
        &self.db
    }
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn json(&self) -> bool {
        self.json
    }
    pub fn run_async(&self) -> bool {
        self.run_async
    }
    pub fn workers(&self) -> i32 {
        self.workers
    }
    pub fn quiet(&self) -> bool {
        self.quiet
    }
}

/// Opens the database; a file another process holds is reported with what that process is doing.
pub(crate) fn open(path: &Path) -> Result<duckdb::Connection, BoxError> {
    sqlscore_duckdb::open(path).map_err(|e| {
        let text = e.to_string();
        if text.contains("lock") {
            let running = running_runs(path);
            let what = if running.is_empty() {
                String::new()
            } else {
                format!(
                    "\n{}",
                    running
                        .iter()
                        .map(|p| format!("job {} run {} is in progress (pid {})", p.job, p.run_id, p.pid))
                        .collect::<Vec<_>>()
                        .join("\n")
                )
            };
            format!("{}: the database is in use by another process{what}\n({text})", path.display()).into()
        } else {
            e.into()
        }
    })
}

/// A database file another process holds, or (PostgreSQL, SQLSTATE 55P03) a job already running.
fn is_busy(e: &BoxError) -> bool {
    let text = e.to_string();
    text.contains("in use by another process") || text.contains("(55P03)")
}

/// Runs in progress on this database, from their run files.
fn running_runs(db: &Path) -> Vec<sidecar::Progress> {
    let Some(dir) = db.parent().map(|d| if d.as_os_str().is_empty() { Path::new(".") } else { d }) else {
        return Vec::new();
    };
    let prefix = format!("{}.sqlscore-run-", db.file_name().map(|n| n.to_string_lossy()).unwrap_or_default());
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if let Some(job) = n.strip_prefix(&prefix).and_then(|r| r.strip_suffix(".json")) {
                if let Some(p) = sidecar::RunFile::new(db, job).live() {
                    out.push(p);
                }
            }
        }
    }
    out
}

fn create(path: &Path, a: CreateArgs) -> Result<Outcome, BoxError> {
    let conn = open(path)?;
    let mut spec = JobSpec::new(&a.name, &a.source, &a.key, &a.model, &a.target);
    spec.features = a.features;
    spec.carry = a.carry;
    spec.on_error = a.on_error.parse().map_err(|e: sqlscore_core::Error| format!("job \"{}\": {e}", a.name))?;
    spec.outputs = a.outputs;
    if let Some(b) = a.batch_rows {
        spec.batch_rows = b;
    }
    jobs::create_job(&conn, &spec)?;
    let info = jobs::job(&conn, &a.name)?;
    println!(
        "created job {}: {} -> {} (model {}, on_error {})",
        a.name,
        info.spec.source,
        info.spec.target,
        info.spec.model,
        info.spec.on_error.as_str()
    );
    Ok(Outcome::Ok)
}

fn list(path: &Path, json: bool) -> Result<Outcome, BoxError> {
    let conn = open(path)?;
    let all = jobs::jobs(&conn)?;
    let last: Vec<Option<jobs::RunInfo>> =
        all.iter().map(|j| jobs::runs(&conn, Some(&j.spec.name), 1).ok().and_then(|mut r| r.pop())).collect();
    if json {
        let v: Vec<_> = all
            .iter()
            .zip(&last)
            .map(|(j, r)| {
                json!({"name": j.spec.name, "source": j.spec.source, "key": j.spec.key, "model": j.spec.model,
                       "target": j.spec.target, "on_error": j.spec.on_error.as_str(), "watermark": j.watermark,
                       "last_run_id": r.as_ref().map(|r| r.run_id), "last_status": r.as_ref().map(|r| r.status.clone())})
            })
            .collect();
        println!("{}", serde_json::Value::Array(v));
        return Ok(Outcome::Ok);
    }
    let rows: Vec<Vec<String>> = all
        .iter()
        .zip(&last)
        .map(|(j, r)| {
            vec![
                j.spec.name.clone(),
                j.spec.source.clone(),
                j.spec.model.clone(),
                j.spec.target.clone(),
                j.spec.on_error.as_str().into(),
                r.as_ref().map_or("".into(), |r| format!("{} ({})", r.run_id, r.status)),
            ]
        })
        .collect();
    crate::display::print_table(&["name", "source", "model", "target", "on_error", "last run"], &rows);
    Ok(Outcome::Ok)
}

fn runs(path: &Path, name: Option<&str>, limit: usize, json: bool) -> Result<Outcome, BoxError> {
    // A busy file is reported (exit 4) by `run` above.
    let conn = open(path)?;
    if let Some(n) = name {
        jobs::job(&conn, n)?;
    }
    let list = jobs::runs(&conn, name, limit)?;
    if json {
        let v: Vec<_> = list.iter().map(run_json).collect();
        println!("{}", serde_json::Value::Array(v));
        return Ok(Outcome::Ok);
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|r| {
            vec![
                r.run_id.to_string(),
                r.job.clone(),
                r.status.clone(),
                r.started_at.clone(),
                r.seconds.map_or("".into(), |s| format!("{s:.2}")),
                r.rows_scored.to_string(),
                r.rows_rejected.to_string(),
                r.files_scored.to_string(),
                r.error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    crate::display::print_table(
        &["run_id", "job", "status", "started_at", "seconds", "rows_scored", "rows_rejected", "files", "error"],
        &rows,
    );
    Ok(Outcome::Ok)
}

fn run_json(r: &jobs::RunInfo) -> serde_json::Value {
    json!({"run_id": r.run_id, "job": r.job, "status": r.status, "started_at": r.started_at, "finished_at": r.finished_at,
           "seconds": r.seconds, "rows_scored": r.rows_scored, "rows_rejected": r.rows_rejected,
           "files_scored": r.files_scored, "error": r.error})
}

fn status(path: &Path, name: &str, json: bool) -> Result<Outcome, BoxError> {
    // A run in progress holds the file: its run file tells how far it is.
    if let Some(p) = sidecar::RunFile::new(path, name).live() {
        let elapsed = sidecar::now_unix() - p.started_unix;
        let rate = p.rows_done as f64 / elapsed.max(1e-3);
        if json {
            println!(
                "{}",
                json!({"job": name, "status": "running", "run_id": p.run_id, "pid": p.pid, "rows_scored": p.rows_done,
                       "rows_total": p.rows_total, "files_scored": p.files_done, "files_total": p.files_total,
                       "seconds": elapsed, "rows_per_s": rate})
            );
        } else {
            let total = p.rows_total.map_or("?".into(), |t| t.to_string());
            println!(
                "job {name}: run {} in progress (pid {}): {} of {total} rows, {} of {} files, {:.0} rows/s, {:.1} s",
                p.run_id, p.pid, p.rows_done, p.files_done, p.files_total, rate, elapsed
            );
        }
        return Ok(Outcome::Ok);
    }
    // A busy file is reported (exit 4) by `run` above.
    let conn = open(path)?;
    let info = jobs::job(&conn, name)?;
    let last = jobs::runs(&conn, Some(name), 1)?.pop();
    if json {
        println!(
            "{}",
            json!({"job": name, "source": info.spec.source, "key": info.spec.key, "model": info.spec.model,
                   "target": info.spec.target, "features": info.spec.features, "carry": info.spec.carry,
                   "on_error": info.spec.on_error.as_str(), "outputs": info.spec.outputs, "batch_rows": info.spec.batch_rows,
                   "watermark": info.watermark, "created_at": info.created_at,
                   "last_run": last.as_ref().map(run_json)})
        );
        return Ok(Outcome::Ok);
    }
    println!("job {name}");
    println!("  source:   {} (key {})", info.spec.source, info.spec.key);
    println!("  model:    {}", info.spec.model);
    println!("  features: {}", info.spec.features.as_ref().map_or("by name".into(), |f| f.join(", ")));
    if !info.spec.carry.is_empty() {
        println!("  carry:    {}", info.spec.carry.join(", "));
    }
    println!("  target:   {}", info.spec.target);
    println!(
        "  on_error: {}; outputs: {}; batch_rows: {}",
        info.spec.on_error.as_str(),
        info.spec.outputs.join(", "),
        info.spec.batch_rows
    );
    if let Some(w) = info.watermark {
        println!("  scored up to key {w}");
    }
    match last {
        Some(r) => println!(
            "  last run: {} {} at {} ({} rows scored, {} rejected, {} files{}){}",
            r.run_id,
            r.status,
            r.started_at,
            r.rows_scored,
            r.rows_rejected,
            r.files_scored,
            r.seconds.map_or(String::new(), |s| format!(", {s:.2} s")),
            r.error.map_or(String::new(), |e| format!("\n  error: {e}"))
        ),
        None => println!("  never run"),
    }
    Ok(Outcome::Ok)
}

fn cancel(path: &Path, name: &str) -> Result<Outcome, BoxError> {
    let file = sidecar::RunFile::new(path, name);
    let Some(p) = file.live() else {
        println!("job {name} has no run in progress");
        return Ok(Outcome::Ok);
    };
    // SAFETY: kill() with a pid and a signal number has no memory-safety preconditions.
    let rc = unsafe { libc::kill(p.pid as libc::pid_t, libc::SIGTERM) };
    if rc != 0 {
        return Err(format!(
            "job {name}: cannot signal run {} (pid {}): {}",
            p.run_id,
            p.pid,
            std::io::Error::last_os_error()
        )
        .into());
    }
    println!("job {name}: cancel requested for run {} (pid {}); it stops after its current batch", p.run_id, p.pid);
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(60) && sidecar::process_alive(p.pid) && file.read().is_some() {
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(Outcome::Ok)
}

static CANCEL: AtomicBool = AtomicBool::new(false);

fn cancelled() -> bool {
    CANCEL.load(Ordering::Relaxed)
}

extern "C" fn on_signal(_: libc::c_int) {
    CANCEL.store(true, Ordering::Relaxed);
}

/// SIGINT and SIGTERM stop a run after its current batch instead of killing the process, so the
/// run is recorded as cancelled (a kill -9 is recovered by the next run instead).
fn catch_signals() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { libc::signal(sig, on_signal as *const () as libc::sighandler_t) };
    }
}

fn run_duckdb(path: &Path, a: RunArgs) -> Result<Outcome, BoxError> {
    if a.run_async {
        return Err(format!(
            "job \"{}\": --async submits a run to PostgreSQL's background workers; a DuckDB job runs in this process \
             (start it in the background, or from cron or a systemd timer, and follow it with sqlscore job status)",
            a.name
        )
        .into());
    }
    let conn = open(path)?;
    let mut report = Reporter::new(&a.name, a.quiet);
    let result = run_reported(&conn, &a.name, path, a.threads, &mut report);
    // The database is closed before the summary, so a dashboard can open it at once.
    drop(conn);
    let summary = result?;
    report.finish(&summary);
    if a.json {
        println!("{}", summary_json(&summary));
    }
    Ok(match summary.status.as_str() {
        "succeeded" => Outcome::Ok,
        "cancelled" => Outcome::Cancelled,
        _ => Outcome::Failed,
    })
}

/// Runs a DuckDB job with this command's progress output and signal handling (SIGINT/SIGTERM
/// and `job cancel` stop it after its batch). The caller prints the summary (`report.finish`).
pub(crate) fn run_reported(
    conn: &duckdb::Connection,
    name: &str,
    db_path: &Path,
    threads: Option<usize>,
    report: &mut Reporter,
) -> Result<RunSummary, jobs::JobError> {
    catch_signals();
    let mut on_event = |e: &Event| report.event(e);
    let cfg = RunConfig {
        threads: threads.unwrap_or_else(|| RunConfig::default().threads),
        interrupt: Some(cancelled),
        on_event: Some(&mut on_event),
        db_path: Some(db_path.to_path_buf()),
    };
    jobs::run_job(conn, name, cfg)
}

fn summary_json(s: &RunSummary) -> serde_json::Value {
    json!({"job": s.job, "run_id": s.run_id, "status": s.status, "rows_scored": s.rows_scored,
           "rows_rejected": s.rows_rejected, "files_scored": s.files_scored,
           "files_new": s.plan.new_files, "files_rewritten": s.plan.rewritten_files,
           "files_unchanged": s.plan.unchanged_files, "seconds": s.seconds,
           "error": s.error.as_ref().map(|e| e.to_string())})
}

/// Progress: a bar on a terminal, log lines otherwise (at most one every 2 s, plus one per run
/// phase), on stdout.
pub struct Reporter {
    job: String,
    quiet: bool,
    tty: bool,
    bar: Option<ProgressBar>,
    last_line: Option<Instant>,
}

impl Reporter {
    pub fn new(job: &str, quiet: bool) -> Reporter {
        Reporter { job: job.to_string(), quiet, tty: std::io::stdout().is_terminal(), bar: None, last_line: None }
    }

    pub fn planned(&mut self, run_id: i64, what: &str, total: Option<u64>) {
        if self.quiet {
            return;
        }
        println!("job {} run {run_id}: {what}", self.job);
        if self.tty && total.is_some_and(|t| t > 0) {
            let bar = ProgressBar::with_draw_target(total, ProgressDrawTarget::stdout());
            bar.set_style(
                ProgressStyle::with_template("  [{bar:40}] {human_pos}/{human_len} rows  {msg}  ETA {eta}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            self.bar = Some(bar);
        }
    }

    pub fn progress(&mut self, run_id: i64, done: u64, total: Option<u64>, seconds: f64) {
        if self.quiet {
            return;
        }
        if let Some(bar) = &self.bar {
            bar.set_position(done);
            bar.set_message(format!("{:.0} rows/s", done as f64 / seconds.max(1e-3)));
            return;
        }
        if self.last_line.is_some_and(|t| t.elapsed() < Duration::from_secs(2)) && total != Some(done) {
            return;
        }
        self.last_line = Some(Instant::now());
        let rate = done as f64 / seconds.max(1e-3);
        let of = match total {
            Some(t) if t > 0 => {
                let eta = (t.saturating_sub(done)) as f64 / rate.max(1.0);
                format!("{done}/{t} rows ({:.0}%), {rate:.0} rows/s, ETA {eta:.0} s", 100.0 * done as f64 / t as f64)
            }
            _ => format!("{done} rows, {rate:.0} rows/s"),
        };
        println!("job {} run {run_id}: {of}", self.job);
    }

    pub fn event(&mut self, e: &Event) {
        match e {
            Event::Planned { run_id, plan, .. } => {
                let files = plan.new_files + plan.rewritten_files + plan.unchanged_files;
                let rows = plan.rows.map_or("? rows".into(), |r| format!("{r} rows"));
                let what = if plan.batches == 0 {
                    if files > 0 {
                        format!("nothing new ({} files already scored)", plan.unchanged_files)
                    } else {
                        "nothing new".into()
                    }
                } else if files > 0 || plan.keys.is_none() {
                    format!(
                        "{} new {}, {} rewritten, {} already scored: {rows} in {} {}",
                        plan.new_files,
                        if plan.new_files == 1 { "file" } else { "files" },
                        plan.rewritten_files,
                        plan.unchanged_files,
                        plan.batches,
                        if plan.batches == 1 { "batch" } else { "batches" }
                    )
                } else {
                    let (lo, hi) = plan.keys.unwrap_or_default();
                    format!("{rows} with keys {lo}..{hi} in {} batch(es)", plan.batches)
                };
                self.planned(*run_id, &what, plan.rows);
            }
            Event::Batch { run_id, rows_done, rows_total, seconds, .. } => {
                self.progress(*run_id, *rows_done, *rows_total, *seconds)
            }
        }
    }

    pub fn finish(&mut self, s: &RunSummary) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        let rate = s.rows_scored as f64 / s.seconds.max(1e-3);
        let files = match s.files_scored {
            0 => String::new(),
            1 => ", 1 file".into(),
            n => format!(", {n} files"),
        };
        match &s.error {
            None => println!(
                "job {} run {}: {}: {} rows scored, {} rejected{files} in {:.2} s ({rate:.0} rows/s)",
                s.job, s.run_id, s.status, s.rows_scored, s.rows_rejected, s.seconds
            ),
            Some(e) => {
                println!(
                    "job {} run {}: {} after {} rows scored, {} rejected{files} in {:.2} s",
                    s.job, s.run_id, s.status, s.rows_scored, s.rows_rejected, s.seconds
                );
                eprintln!("error: {e}");
            }
        }
        match &s.snapshot {
            Some(Ok(p)) => println!("  snapshot for dashboards published: {} ({:.2} s)", p.path.display(), p.seconds),
            Some(Err(e)) => eprintln!("warning: the dashboard's copy was not updated: {e}"),
            None => {}
        }
    }
}
