//! One run of a job: plan what is new, then per batch read (DuckDB reads the files in parallel and
//! hands Arrow arrays over) and score (see `score`), and write results, rejects and bookkeeping in
//! one transaction. Reading and scoring run one batch ahead, on their own thread and connection.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use duckdb::arrow::record_batch::RecordBatch;
use duckdb::{params, Connection};
use sqlscore_core::lake::{batch_files, key_ranges, plan_files, quote_ident, FilePlan, FileStat};
use sqlscore_core::{RowOutcome, Source, Target};

use super::define::{glob_files, job, relation, JobInfo};
use super::output::{self, Written};
use super::score::{Scored, Scorer, Work};
use super::{db, schema, sidecar, JobError, JobErrorKind};

/// How a run is carried out; everything has a default.
pub struct RunConfig<'a> {
    /// DuckDB threads for reading and scoring threads for the per-model groups (default: the
    /// cores but one, which the writer uses).
    pub threads: usize,
    /// Polled between batches and during ONNX Runtime runs; true stops the run (committed batches
    /// stay) with status `cancelled`.
    pub interrupt: Option<fn() -> bool>,
    /// Told of the plan and of every committed batch (progress bars, log lines).
    pub on_event: Option<&'a mut dyn FnMut(&Event)>,
    /// The database file, for the run file next to it that `sqlscore job status` and `cancel`
    /// read while the database is locked. None: no run file.
    pub db_path: Option<PathBuf>,
}

impl Default for RunConfig<'_> {
    fn default() -> Self {
        RunConfig {
            // The writer keeps one core busy on its own (DuckDB writes a table from one thread):
            // reading and scoring get the others.
            threads: std::thread::available_parallelism().map(|n| n.get().saturating_sub(1).max(1)).unwrap_or(1),
            interrupt: None,
            on_event: None,
            db_path: None,
        }
    }
}

/// What a run reports while it goes.
#[derive(Debug, Clone)]
pub enum Event {
    /// What the run found to do.
    Planned { run_id: i64, job: String, plan: PlanSummary },
    /// A batch committed.
    Batch { run_id: i64, rows_done: u64, rows_rejected: u64, rows_total: Option<u64>, files_done: u64, seconds: f64 },
}

#[derive(Debug, Clone, Default)]
pub struct PlanSummary {
    /// Files: new, rewritten, already scored (unchanged), vanished from the glob.
    pub new_files: usize,
    pub rewritten_files: usize,
    pub unchanged_files: usize,
    pub vanished_files: usize,
    /// Rows to score when known (tables; Parquet files), and batches.
    pub rows: Option<u64>,
    pub batches: usize,
    /// Table sources: the key range.
    pub keys: Option<(i64, i64)>,
}

/// How a run ended.
#[derive(Debug, Clone)]
pub struct RunSummary {
    pub job: String,
    pub run_id: i64,
    /// `succeeded`, `failed` or `cancelled`.
    pub status: String,
    pub rows_scored: u64,
    pub rows_rejected: u64,
    pub files_scored: u64,
    pub plan: PlanSummary,
    pub seconds: f64,
    pub error: Option<JobError>,
    /// The snapshot published when the run ended (None: the database publishes none), or why it
    /// could not be (the run's outcome stands either way).
    pub snapshot: Option<Result<crate::snapshot::Published, String>>,
}

/// A run as `sqlscore job runs` lists it.
#[derive(Debug, Clone)]
pub struct RunInfo {
    pub run_id: i64,
    pub job: String,
    pub status: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub rows_scored: i64,
    pub rows_rejected: i64,
    pub files_scored: i64,
    pub seconds: Option<f64>,
    pub error: Option<String>,
}

/// What a run left `running` by a process that is gone records (SQL over the run's row).
const INTERRUPTED: &str =
    "'interrupted: process ' || coalesce(pid::VARCHAR, '?') || ' ended without finishing the run \
     (killed or crashed); its committed batches stay, the rest is scored by the next run'";

/// Jobs running in this process, by (database file, job): two connections of one host must not
/// run one job at once (another process cannot: it cannot open the file while this one writes).
static RUNNING: Mutex<Option<HashSet<(String, String)>>> = Mutex::new(None);

struct RunningGuard((String, String));

impl RunningGuard {
    fn take(db: &str, job: &str) -> Option<RunningGuard> {
        let key = (db.to_string(), job.to_string());
        let inserted = {
            let mut set = RUNNING.lock().unwrap_or_else(|p| p.into_inner());
            set.get_or_insert_with(HashSet::new).insert(key.clone())
        };
        // Built only when taken: a guard made and dropped here would unregister the running job.
        if inserted {
            Some(RunningGuard(key))
        } else {
            None
        }
    }
}

impl Drop for RunningGuard {
    fn drop(&mut self) {
        let mut set = RUNNING.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = set.as_mut() {
            s.remove(&self.0);
        }
    }
}

/// Runs a job once: scores what is new since its last run. Errors before the run starts (no such
/// job, already running) are `Err`; a run that starts always ends with a summary, whose `error`
/// says why it failed or was cancelled.
pub fn run_job(conn: &Connection, name: &str, mut cfg: RunConfig<'_>) -> Result<RunSummary, JobError> {
    let info = job(conn, name)?;
    let db_file = crate::embed::database_file(conn).map_or_else(|| ":memory:".to_string(), |p| p.display().to_string());
    let _guard = RunningGuard::take(&db_file, name).ok_or_else(|| {
        JobError::new(name, JobErrorKind::Busy, "a run of this job is already in progress in this process")
    })?;
    schema::ensure(conn).map_err(db(name, JobErrorKind::Failed))?;
    let pid = std::process::id() as i32;
    // Runs left `running` were interrupted: this process holds the file, so nobody else runs them.
    conn.execute(
        &format!(
            "UPDATE sqlscore_job_runs SET status = 'failed', finished_at = current_timestamp, error = {INTERRUPTED} \
             WHERE job = ? AND status = 'running'"
        ),
        [name],
    )
    .map_err(db(name, JobErrorKind::Failed))?;
    let threads = cfg.threads.max(1);
    let run_id: i64 = conn
        .query_row(
            "INSERT INTO sqlscore_job_runs (run_id, job, status, threads, pid) \
             VALUES (nextval('sqlscore_job_run_ids'), ?, 'running', ?, ?) RETURNING run_id",
            params![name, threads as i32, pid],
            |r| r.get(0),
        )
        .map_err(db(name, JobErrorKind::Failed))?;
    let started = Instant::now();
    let run_file = cfg.db_path.as_ref().map(|p| sidecar::RunFile::new(p, name));
    let mut ctx = Run {
        conn,
        info,
        run_id,
        threads,
        interrupt: cfg.interrupt,
        started,
        rows_done: 0,
        rows_rejected: 0,
        files_done: 0,
        files_rewritten: 0,
        batches: 0,
        plan: PlanSummary::default(),
        run_file,
        on_event: cfg.on_event.take(),
        stage_ready: std::cell::Cell::new(false),
    };
    let result = ctx.execute();
    let (status, error) = match result {
        Ok(()) => ("succeeded", None),
        Err(e) if e.kind == JobErrorKind::Cancelled => ("cancelled", Some(e.in_run(run_id))),
        Err(e) => ("failed", Some(e.in_run(run_id))),
    };
    // A failed batch's transaction may still be open.
    let _ = conn.execute_batch("ROLLBACK");
    let _ = conn.execute_batch("DROP TABLE IF EXISTS temp.__sqlscore_stage");
    conn.execute(
        "UPDATE sqlscore_job_runs SET status = ?, finished_at = current_timestamp, error = ?, rows_scored = ?, \
         rows_rejected = ?, files_scored = ?, files_rewritten = ?, batches = ? WHERE run_id = ?",
        params![
            status,
            error.as_ref().map(|e| e.detail()),
            ctx.rows_done as i64,
            ctx.rows_rejected as i64,
            ctx.files_done as i64,
            ctx.files_rewritten as i64,
            ctx.batches as i64,
            run_id
        ],
    )
    .map_err(|e| JobError::new(name, JobErrorKind::Failed, e.to_string()).in_run(run_id))?;
    if let Some(f) = &ctx.run_file {
        f.remove();
    }
    let snapshot = match crate::snapshot::publish_configured(conn, crate::snapshot::Moment::Always) {
        Ok(p) => p.map(Ok),
        Err(e) => Some(Err(e.to_string())),
    };
    Ok(RunSummary {
        job: name.to_string(),
        run_id,
        status: status.into(),
        rows_scored: ctx.rows_done,
        rows_rejected: ctx.rows_rejected,
        files_scored: ctx.files_done,
        plan: ctx.plan.clone(),
        seconds: started.elapsed().as_secs_f64(),
        error,
        snapshot,
    })
}

pub(super) struct Run<'c, 'e> {
    conn: &'c Connection,
    info: JobInfo,
    run_id: i64,
    threads: usize,
    interrupt: Option<fn() -> bool>,
    started: Instant,
    rows_done: u64,
    rows_rejected: u64,
    files_done: u64,
    files_rewritten: u64,
    batches: u64,
    plan: PlanSummary,
    run_file: Option<sidecar::RunFile>,
    on_event: Option<&'e mut dyn FnMut(&Event)>,
    stage_ready: std::cell::Cell<bool>,
}

impl Run<'_, '_> {
    fn name(&self) -> &str {
        &self.info.spec.name
    }

    fn fail(&self, msg: impl Into<String>) -> JobError {
        JobError::new(self.name(), JobErrorKind::Failed, msg)
    }

    fn db_err(&self) -> impl Fn(duckdb::Error) -> JobError + 'static {
        let name = self.name().to_string();
        move |e| JobError::new(&name, JobErrorKind::Failed, e.to_string())
    }

    fn cancelled(&self) -> bool {
        self.interrupt.is_some_and(|f| f())
    }

    fn emit(&mut self, e: Event) {
        if let Some(f) = self.on_event.as_mut() {
            f(&e);
        }
    }

    fn execute(&mut self) -> Result<(), JobError> {
        self.conn.execute_batch(&format!("SET threads = {}", self.threads)).map_err(self.db_err())?;
        // The run file first: `sqlscore job cancel` finds the run from its very start.
        self.progress_file();
        if let Target::ParquetDir(dir) = &self.info.target {
            output::recover(self.conn, self.name(), dir)?;
        }
        let work = self.plan()?;
        self.emit(Event::Planned { run_id: self.run_id, job: self.name().to_string(), plan: self.plan.clone() });
        self.progress_file();
        if work.is_empty() {
            return Ok(());
        }
        // The scorer reads and scores batch n+1 on its own connection and thread while this one
        // writes and commits batch n; the channel holds one scored batch, so at most three are in
        // memory at once.
        let mut scorer = Scorer::new(
            self.conn.try_clone().map_err(self.db_err())?,
            self.info.clone(),
            self.threads,
            self.interrupt,
        )?;
        let (give, given) = std::sync::mpsc::sync_channel::<Result<Scored, JobError>>(1);
        std::thread::scope(|scope| {
            let units = work.len() as u32;
            scope.spawn(move || {
                for w in work {
                    // A panic is a bug, but it must end this run with an error, not the host.
                    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| scorer.produce(w)))
                        .unwrap_or_else(|p| {
                            let why = p
                                .downcast_ref::<&str>()
                                .map(|s| s.to_string())
                                .or_else(|| p.downcast_ref::<String>().cloned());
                            Err(JobError::new(
                                &scorer.job_name(),
                                JobErrorKind::Failed,
                                format!("internal error while scoring (please report it): {}", why.unwrap_or_default()),
                            ))
                        });
                    let failed = r.is_err();
                    if give.send(r).is_err() || failed {
                        break;
                    }
                    if scorer.cancelled() {
                        break;
                    }
                }
            });
            // Owned here, so an early return drops it and the scorer's next send ends its thread.
            let given = given;
            let mut seq = 0u32;
            loop {
                let next = given.recv();
                let cancel = || {
                    JobError::new(
                        self.name(),
                        JobErrorKind::Cancelled,
                        "cancelled before the next batch; committed batches stay",
                    )
                };
                let Ok(scored) = next else {
                    // Every batch written: a cancel that came after the last one changes nothing.
                    return if seq == units {
                        Ok(())
                    } else if self.cancelled() {
                        Err(cancel())
                    } else {
                        Err(self.fail(format!("the scoring thread stopped after {seq} of {units} batches")))
                    };
                };
                if self.cancelled() {
                    return Err(cancel());
                }
                let (w, rows) = scored?;
                let t = Instant::now();
                self.batch(seq, w, rows)?;
                // SQLSCORE_JOB_TRACE=1: per-batch write times on stderr (what BENCHMARKS.md's
                // breakdown comes from).
                if std::env::var_os("SQLSCORE_JOB_TRACE").is_some() {
                    eprintln!("batch {seq}: {} rows written in {:.3} s", self.rows_done, t.elapsed().as_secs_f64());
                }
                seq += 1;
                self.batches += 1;
                self.emit(Event::Batch {
                    run_id: self.run_id,
                    rows_done: self.rows_done,
                    rows_rejected: self.rows_rejected,
                    rows_total: self.plan.rows,
                    files_done: self.files_done,
                    seconds: self.started.elapsed().as_secs_f64(),
                });
                self.progress_file();
                // A dashboard's copy follows a long run at the snapshot's interval. A failed copy
                // never fails the run; the copy at the run's end reports the cause.
                let _ = crate::snapshot::publish_configured(self.conn, crate::snapshot::Moment::Progress);
            }
        })
    }

    fn progress_file(&self) {
        if let Some(f) = &self.run_file {
            f.write(&sidecar::Progress {
                pid: std::process::id(),
                run_id: self.run_id,
                job: self.name().to_string(),
                started_unix: sidecar::now_unix() - self.started.elapsed().as_secs_f64(),
                rows_done: self.rows_done,
                rows_total: self.plan.rows,
                files_done: self.files_done,
                files_total: (self.plan.new_files + self.plan.rewritten_files) as u64,
            });
        }
    }

    /// What is new: key ranges of about `batch_rows` rows, or batches of whole files.
    fn plan(&mut self) -> Result<Vec<Work>, JobError> {
        let batch_rows = self.info.spec.batch_rows.max(1);
        match self.info.source.clone() {
            Source::Table(_) => {
                let rel = relation(&self.info.source, &[]);
                let key = quote_ident(&self.info.spec.key);
                let wm = self.info.watermark;
                // A literal bound (not a parameter) so DuckDB can skip row groups by their min/max.
                let above = wm.map_or(String::new(), |w| format!(" AND {key} > {w}"));
                let (count, lo, hi): (i64, Option<i64>, Option<i64>) = self
                    .conn
                    .query_row(
                        &format!("SELECT count(*), min({key})::BIGINT, max({key})::BIGINT FROM {rel} WHERE {key} IS NOT NULL{above}"),
                        [],
                        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                    )
                    .map_err(self.db_err())?;
                self.plan.rows = Some(count as u64);
                let (Some(lo), Some(hi)) = (lo, hi) else { return Ok(Vec::new()) };
                self.plan.keys = Some((lo, hi));
                let conn = self.conn;
                let work: Vec<Work> = key_ranges(lo, hi, count as u64, batch_rows, |n| {
                    let qs: Vec<String> = (1..n).map(|i| format!("{}", i as f64 / n as f64)).collect();
                    let sql = format!(
                        "SELECT CAST(quantile_disc({key}, [{}]) AS VARCHAR) FROM {rel} WHERE {key} IS NOT NULL{above}",
                        qs.join(", ")
                    );
                    let list: Option<String> = conn.query_row(&sql, [], |r| r.get(0))?;
                    Ok::<_, duckdb::Error>(
                        list.unwrap_or_default()
                            .trim_matches(|c| c == '[' || c == ']')
                            .split(',')
                            .filter_map(|x| x.trim().parse().ok())
                            .collect(),
                    )
                })
                .map_err(self.db_err())?
                .into_iter()
                .map(|(a, b)| Work::Keys(a, b))
                .collect();
                self.plan.batches = work.len();
                Ok(work)
            }
            Source::Files { glob, format } => {
                let listing: Vec<FileStat> =
                    glob_files(self.conn, self.name(), &glob)?.iter().filter_map(|p| FileStat::of(p).ok()).collect();
                let mut scored = HashMap::new();
                {
                    let mut stmt = self
                        .conn
                        .prepare("SELECT path, size, mtime_us FROM sqlscore_job_files WHERE job = ?")
                        .map_err(self.db_err())?;
                    let rows = stmt
                        .query_map([self.name()], |r| {
                            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
                        })
                        .map_err(self.db_err())?;
                    for row in rows {
                        let (p, s, m) = row.map_err(self.db_err())?;
                        scored.insert(p, (s as u64, m));
                    }
                }
                let plan: FilePlan = plan_files(listing, &scored);
                self.plan.new_files = plan.new.len();
                self.plan.rewritten_files = plan.rewritten.len();
                self.plan.unchanged_files = plan.unchanged;
                self.plan.vanished_files = plan.vanished.len();
                let files: Vec<FileStat> = plan.to_score().cloned().collect();
                if files.is_empty() {
                    self.plan.rows = Some(0);
                    return Ok(Vec::new());
                }
                // Rows per file from the Parquet footers (no data read); CSV batches by bytes.
                let bytes: u64 = files.iter().map(|f| f.size).sum();
                let mut target_bytes = batch_rows.saturating_mul(64);
                if format == sqlscore_core::FileFormat::Parquet {
                    let list: Vec<String> = files
                        .iter()
                        .map(|f| sqlscore_core::lake::quote_literal(&sqlscore_core::lake::escape_glob(&f.path)))
                        .collect();
                    let rows: Option<i64> = self
                        .conn
                        .query_row(
                            &format!("SELECT sum(num_rows)::BIGINT FROM parquet_file_metadata([{}])", list.join(", ")),
                            [],
                            |r| r.get(0),
                        )
                        .map_err(|e| self.fail(format!("reading the Parquet footers of the new files: {e}")))?;
                    if let Some(rows) = rows.filter(|&r| r > 0) {
                        self.plan.rows = Some(rows as u64);
                        target_bytes = ((bytes as f64 / rows as f64) * batch_rows as f64).max(1.0) as u64;
                    } else {
                        self.plan.rows = Some(0);
                    }
                }
                let work: Vec<Work> = batch_files(files, target_bytes).into_iter().map(Work::Files).collect();
                self.plan.batches = work.len();
                Ok(work)
            }
        }
    }

    /// Writes and commits one scored unit of work.
    fn batch(&mut self, seq: u32, work: Work, rows: Option<(RecordBatch, Vec<RowOutcome>)>) -> Result<(), JobError> {
        let files = matches!(work, Work::Files(_));
        let Some((rb, outcomes)) = rows else {
            return self.commit_empty(&work);
        };
        let written: Written = output::write(self, seq, &work_files(&work), &rb, &outcomes, files)?;
        self.rows_done += written.rows;
        self.rows_rejected += written.rejected;
        if let Work::Files(fs) = &work {
            self.files_done += fs.len() as u64;
            self.files_rewritten += written.rewritten;
        }
        Ok(())
    }

    /// A unit with no rows still moves the watermark / records its files.
    fn commit_empty(&mut self, work: &Work) -> Result<(), JobError> {
        let empty = RecordBatch::new_empty(Arc::new(duckdb::arrow::datatypes::Schema::empty()));
        let written = output::write(self, 0, &work_files(work), &empty, &[], matches!(work, Work::Files(_)))?;
        if let Work::Files(fs) = work {
            self.files_done += fs.len() as u64;
            self.files_rewritten += written.rewritten;
        }
        Ok(())
    }
}

fn work_files(work: &Work) -> output::Unit {
    match work {
        Work::Keys(_, hi) => output::Unit::Keys { hi: *hi },
        Work::Files(fs) => output::Unit::Files(fs.clone()),
    }
}

// Accessors the writer needs.
impl<'c> Run<'c, '_> {
    pub(super) fn conn(&self) -> &'c Connection {
        self.conn
    }
    pub(super) fn info(&self) -> &JobInfo {
        &self.info
    }
    pub(super) fn run_id(&self) -> i64 {
        self.run_id
    }
    /// Whether this run's staging table (Parquet targets) exists.
    pub(super) fn stage_ready(&self) -> &std::cell::Cell<bool> {
        &self.stage_ready
    }
    pub(super) fn counters(&self) -> (u64, u64, u64, u64, u64) {
        (self.rows_done, self.rows_rejected, self.files_done, self.files_rewritten, self.batches)
    }
    pub(super) fn error(&self, msg: impl Into<String>) -> JobError {
        self.fail(msg)
    }
}

pub(super) type RunCtx<'c, 'e> = Run<'c, 'e>;

/// The runs of a job (or of every job), newest first.
pub fn runs(conn: &Connection, job_name: Option<&str>, limit: usize) -> Result<Vec<RunInfo>, JobError> {
    let who = job_name.unwrap_or("*");
    let me = std::process::id() as i32;
    if !schema::exists(conn).map_err(db(who, JobErrorKind::Failed))? {
        return Ok(Vec::new());
    }
    let mut stmt = conn
        .prepare(&format!(
            // A run left `running` by another process is over: this process holds the file, so
            // that one is gone (killed or crashed). Shown so at once; its job's next run records it.
            "SELECT run_id, job, \
                    CASE WHEN status = 'running' AND pid IS DISTINCT FROM ? THEN 'failed' ELSE status END, \
                    strftime(started_at, '%Y-%m-%d %H:%M:%S'), strftime(finished_at, '%Y-%m-%d %H:%M:%S'), \
                    rows_scored, rows_rejected, files_scored, epoch(finished_at) - epoch(started_at), \
                    CASE WHEN status = 'running' AND pid IS DISTINCT FROM ? THEN {INTERRUPTED} ELSE error END \
             FROM sqlscore_job_runs WHERE ?::VARCHAR IS NULL OR job = ? ORDER BY run_id DESC LIMIT ?"
        ))
        .map_err(db(who, JobErrorKind::Failed))?;
    let rows = stmt
        .query_map(params![me, me, job_name, job_name, limit as i64], |r| {
            Ok(RunInfo {
                run_id: r.get(0)?,
                job: r.get(1)?,
                status: r.get(2)?,
                started_at: r.get(3)?,
                finished_at: r.get(4)?,
                rows_scored: r.get(5)?,
                rows_rejected: r.get(6)?,
                files_scored: r.get(7)?,
                seconds: r.get(8)?,
                error: r.get(9)?,
            })
        })
        .map_err(db(who, JobErrorKind::Failed))?;
    rows.collect::<duckdb::Result<Vec<_>>>().map_err(db(who, JobErrorKind::Failed))
}
