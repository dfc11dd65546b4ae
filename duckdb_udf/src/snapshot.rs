//! Read-only snapshots of a DuckDB database, for dashboards and other readers.
//!
//! DuckDB lets one process hold a database file read-write, and then no other process may open
//! it, not even read-only; a reader that holds it open keeps the writer out in turn. A BI tool
//! reading the job's own file would therefore fail while a job runs, or make the next job fail.
//!
//! So the writer publishes a copy instead. In one read transaction it copies every table of the
//! database (the model registry without the model bytes) and re-creates every view into a new
//! file under a hidden name. It syncs that file and renames it over the snapshot path. Readers
//! open the snapshot read-only:
//! - a reader still holding the previous copy keeps reading it (the old file lives on until it is
//!   closed);
//! - the reader's next connection sees the new copy;
//! - nothing ever locks the snapshot path against the writer.
//!
//! A database enables publishing once ([`enable`], stored in `sqlscore_snapshot`). Every job run
//! then publishes when it starts (the run shows as `running`), after a committed batch once
//! `min_interval` has passed since the last copy, and when it ends. The copy carries a table
//! `sqlscore_snapshot_info` saying when it was taken, for a dashboard's "as of".

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use duckdb::Connection;

/// Views of the registry call the extension's functions, which a reader without the extension
/// cannot run; the copy has `sqlscore_models` (without the bytes) instead.
const SKIPPED_VIEWS: &[&str] = &["sqlscore_model_refs", "sqlscore_model_list"];

const DDL: &str =
    "CREATE TABLE IF NOT EXISTS sqlscore_snapshot (path VARCHAR NOT NULL, min_interval_s DOUBLE NOT NULL)";

/// Why a snapshot could not be enabled or published.
#[derive(Debug)]
pub struct SnapshotError {
    pub path: Option<PathBuf>,
    pub message: String,
}

impl fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.path {
            Some(p) => write!(f, "snapshot {}: {}", p.display(), self.message),
            None => write!(f, "snapshot: {}", self.message),
        }
    }
}

impl std::error::Error for SnapshotError {}

fn err(path: &Path) -> impl Fn(&dyn fmt::Display) -> SnapshotError + 'static {
    let path = path.to_path_buf();
    move |e| SnapshotError { path: Some(path.clone()), message: e.to_string() }
}

/// Where a database publishes its snapshot, and how often during a run.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotConfig {
    pub path: PathBuf,
    pub min_interval: Duration,
}

/// What one publication copied.
#[derive(Debug, Clone)]
pub struct Published {
    pub path: PathBuf,
    pub tables: usize,
    pub views: usize,
    /// Views that could not be re-created in the copy, with DuckDB's reason.
    pub skipped: Vec<(String, String)>,
    pub seconds: f64,
}

/// The snapshot path a database file gets by default: `x.duckdb` publishes `x.snapshot.duckdb`.
pub fn default_path(db: &Path) -> PathBuf {
    let stem = db.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "db".into());
    db.with_file_name(format!("{stem}.snapshot.duckdb"))
}

/// Makes every later job run of this database publish to `path` (absolute, so runs started from
/// another directory write the same file), replacing an earlier setting.
pub fn enable(conn: &Connection, path: &Path, min_interval: Duration) -> Result<SnapshotConfig, SnapshotError> {
    let path = std::path::absolute(path).map_err(|e| err(path)(&e))?;
    if path.extension().is_none_or(|e| e != "duckdb") {
        return Err(err(&path)(&"the snapshot path must end in .duckdb"));
    }
    refuse_own_file(conn, &path)?;
    let e = err(&path);
    let done = conn.execute_batch(&format!("BEGIN; {DDL}; DELETE FROM sqlscore_snapshot")).and_then(|_| {
        conn.execute(
            "INSERT INTO sqlscore_snapshot VALUES (?, ?)",
            duckdb::params![path.display().to_string(), min_interval.as_secs_f64()],
        )?;
        conn.execute_batch("COMMIT")
    });
    if let Err(x) = done {
        let _ = conn.execute_batch("ROLLBACK");
        return Err(e(&x));
    }
    Ok(SnapshotConfig { path, min_interval })
}

/// A copy renamed over the database itself (or its WAL) would replace the job's file with a copy
/// lacking the model bytes, and lose what the writer writes afterwards: refused, whatever way
/// the path names it (`..`, symbolic or hard links).
fn refuse_own_file(conn: &Connection, dest: &Path) -> Result<(), SnapshotError> {
    let Some(main) = crate::embed::database_file(conn) else { return Ok(()) };
    let same = |a: &Path, b: &Path| -> bool {
        use std::os::unix::fs::MetadataExt;
        match (std::fs::metadata(a), std::fs::metadata(b)) {
            (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
            _ => false,
        }
    };
    // The folder by identity and the name as given: catches a destination that does not exist yet.
    let canonical =
        |p: &Path| -> Option<PathBuf> { Some(std::fs::canonicalize(p.parent()?).ok()?.join(p.file_name()?)) };
    let main_wal = wal(&main);
    for own in [&main, &main_wal] {
        if same(own, dest) || (canonical(own).is_some() && canonical(own) == canonical(dest)) {
            return Err(err(dest)(&"the snapshot cannot be the database file itself (or its WAL)"));
        }
    }
    Ok(())
}

/// Stops publishing; the last copy stays where it is. Returns whether publishing was enabled.
pub fn disable(conn: &Connection) -> Result<bool, SnapshotError> {
    let was = config(conn)?.is_some();
    if was {
        conn.execute_batch("DELETE FROM sqlscore_snapshot")
            .map_err(|e| SnapshotError { path: None, message: e.to_string() })?;
    }
    Ok(was)
}

/// The database's snapshot setting, if publishing is enabled.
pub fn config(conn: &Connection) -> Result<Option<SnapshotConfig>, SnapshotError> {
    let e = |x: duckdb::Error| SnapshotError { path: None, message: x.to_string() };
    let exists: bool = conn
        .query_row(
            "SELECT count(*) > 0 FROM duckdb_tables() WHERE table_name = 'sqlscore_snapshot' \
             AND schema_name = 'main' AND database_name = current_database()",
            [],
            |r| r.get(0),
        )
        .map_err(e)?;
    if !exists {
        return Ok(None);
    }
    let mut stmt = conn.prepare("SELECT path, min_interval_s FROM sqlscore_snapshot LIMIT 1").map_err(e)?;
    let mut rows = stmt.query([]).map_err(e)?;
    match rows.next().map_err(e)? {
        None => Ok(None),
        Some(r) => Ok(Some(SnapshotConfig {
            path: PathBuf::from(r.get::<_, String>(0).map_err(e)?),
            min_interval: Duration::from_secs_f64(r.get::<_, f64>(1).map_err(e)?.max(0.0)),
        })),
    }
}

/// When the last copy of each snapshot path was published by this process, and how long it took:
/// the interval between copies during a run.
/// Failed copies count too: a copy failing late (disk full) is not retried after every batch.
static LAST: Mutex<Option<HashMap<PathBuf, (Instant, Duration)>>> = Mutex::new(None);

/// One publication at a time in a process: the connections of one DuckDB instance share the
/// catalog names a copy is attached under, and two copies of one file would race for its name.
static PUBLISHING: Mutex<()> = Mutex::new(());

/// During a run, copies take at most a fifth of the time: the next one waits, from the end of the
/// last, at least four times as long as that one took (10M scored rows take about 2 s on 2 cores).
const MAX_SHARE: u32 = 4;

/// Why a publication is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Moment {
    /// A run ended (or a user asked): always published, with every core (nothing else of the
    /// run is working).
    Always,
    /// A batch committed: published if `min_interval` has passed since the last copy.
    Progress,
}

/// Publishes the configured snapshot, if the database has one and it is due. `Ok(None)`: nothing
/// to do.
pub fn publish_configured(conn: &Connection, moment: Moment) -> Result<Option<Published>, SnapshotError> {
    let Some(cfg) = config(conn)? else { return Ok(None) };
    if moment == Moment::Progress {
        let last = LAST.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, took)) = last.as_ref().and_then(|m| m.get(&cfg.path)) {
            if at.elapsed() < cfg.min_interval.max(*took * MAX_SHARE) {
                return Ok(None);
            }
        }
    }
    publish_with(conn, &cfg.path, moment == Moment::Always).map(Some)
}

/// Publishes a copy of the connection's database at `dest` now (see the module documentation).
/// The connection must not be inside a transaction.
pub fn publish(conn: &Connection, dest: &Path) -> Result<Published, SnapshotError> {
    publish_with(conn, dest, true)
}

fn publish_with(conn: &Connection, dest: &Path, all_cores: bool) -> Result<Published, SnapshotError> {
    let _one = PUBLISHING.lock().unwrap_or_else(|p| p.into_inner());
    let t = Instant::now();
    let dest = std::path::absolute(dest).map_err(|e| err(dest)(&e))?;
    let e = err(&dest);
    refuse_own_file(conn, &dest)?;
    let dir = dest.parent().ok_or_else(|| e(&"no parent folder"))?;
    let name = dest.file_name().ok_or_else(|| e(&"no file name"))?.to_string_lossy().into_owned();
    sweep_leftovers(dir, &name);
    // Hidden, and unique per process and call.
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}.{}-{seq}.sqlscore-tmp", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let _ = std::fs::remove_file(wal(&tmp));
    let main: String = conn.query_row("SELECT current_database()", [], |r| r.get(0)).map_err(|x| e(&x))?;
    // The copy re-compresses every table and scales with threads. `threads` is the whole DuckDB
    // instance's setting: raised only once the run is over (the end of a run, or a user's call),
    // never under a running scorer, and put back afterwards.
    let threads: i64 =
        conn.query_row("SELECT current_setting('threads')::BIGINT", [], |r| r.get(0)).map_err(|x| e(&x))?;
    let cores = std::thread::available_parallelism().map(|n| n.get() as i64).unwrap_or(1);
    let raise = all_cores && cores > threads;
    if raise {
        conn.execute_batch(&format!("SET threads = {cores}")).map_err(|x| e(&x))?;
    }
    let alias = format!("__sqlscore_snapshot_{}_{seq}", std::process::id());
    let result = write_copy(conn, &main, &alias, &tmp).and_then(|(tables, views, skipped)| {
        // The copy gets the database's permissions: a private database gets a private copy.
        if let Some(m) = crate::embed::database_file(conn).and_then(|p| std::fs::metadata(p).ok()) {
            std::fs::set_permissions(&tmp, m.permissions())?;
        }
        sync_file(&tmp)?;
        // A WAL left next to the destination (someone opened the copy read-write) would be
        // replayed into the new copy by its next reader.
        match std::fs::remove_file(wal(&dest)) {
            Err(x) if x.kind() != std::io::ErrorKind::NotFound => return Err(x.into()),
            _ => {}
        }
        std::fs::rename(&tmp, &dest)?;
        sync_file(dir)?;
        Ok((tables, views, skipped))
    });
    if raise {
        let _ = conn.execute_batch(&format!("SET threads = {threads}"));
    }
    LAST.lock()
        .unwrap_or_else(|p| p.into_inner())
        .get_or_insert_with(HashMap::new)
        .insert(dest.clone(), (Instant::now(), t.elapsed()));
    match result {
        Ok((tables, views, skipped)) => {
            Ok(Published { path: dest, tables, views, skipped, seconds: t.elapsed().as_secs_f64() })
        }
        Err(x) => {
            // Whichever step failed: no transaction left open, the caller's catalog current again,
            // only this call's copy detached.
            let _ = conn.execute_batch("ROLLBACK");
            let _ = conn.execute_batch(&format!("USE {}", quote(&main)));
            let _ = conn.execute_batch(&format!("DETACH DATABASE IF EXISTS {}", quote(&alias)));
            let _ = std::fs::remove_file(&tmp);
            let _ = std::fs::remove_file(wal(&tmp));
            Err(e(&x))
        }
    }
}

/// Removes the temporary copies of `name` that processes no longer running left (killed while
/// writing one).
fn sweep_leftovers(dir: &Path, name: &str) {
    let prefix = format!(".{name}.");
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = file.strip_prefix(&prefix) else { continue };
        let rest = rest.strip_suffix(".wal").unwrap_or(rest);
        let Some(pid_seq) = rest.strip_suffix(".sqlscore-tmp") else { continue };
        let pid = pid_seq.split('-').next().and_then(|p| p.parse::<u32>().ok());
        if pid.is_some_and(|pid| !crate::jobs::sidecar::process_alive(pid)) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

fn wal(p: &Path) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(".wal");
    PathBuf::from(s)
}

fn sync_file(p: &Path) -> std::io::Result<()> {
    std::fs::File::open(p)?.sync_all()
}

fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

type Copied = (usize, usize, Vec<(String, String)>);

/// Copies tables and views into a new database file at `tmp`, reading one consistent snapshot of
/// the source, and detaches it (which checkpoints it: the file is complete without a WAL).
fn write_copy(conn: &Connection, main: &str, alias: &str, tmp: &Path) -> Result<Copied, Box<dyn std::error::Error>> {
    let q = quote;
    let a = quote(alias);
    let lit = |s: &str| format!("'{}'", s.replace('\'', "''"));
    conn.execute_batch(&format!("ATTACH {} AS {a}", lit(&tmp.display().to_string())))?;
    conn.execute_batch("BEGIN TRANSACTION")?;
    let tables: Vec<String> = conn
        .prepare(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() \
             AND schema_name = 'main' AND NOT temporary AND table_name <> 'sqlscore_snapshot' ORDER BY table_name",
        )?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for t in &tables {
        let select = if t == "sqlscore_models" {
            // The model bytes stay in the job's file: a dashboard lists models, it does not run them.
            "SELECT * EXCLUDE (onnx)".to_string()
        } else {
            "SELECT *".to_string()
        };
        conn.execute_batch(&format!("CREATE TABLE {a}.main.{} AS {select} FROM {}.main.{}", q(t), q(main), q(t)))?;
    }
    conn.execute_batch(&format!(
        "CREATE TABLE {a}.main.sqlscore_snapshot_info AS SELECT current_timestamp AS published_at, {} AS source",
        lit(&crate::embed::database_file(conn).map(|p| p.display().to_string()).unwrap_or_default())
    ))?;
    conn.execute_batch("COMMIT")?;
    let mut pending: Vec<(String, String)> = conn
        .prepare(
            "SELECT view_name, sql FROM duckdb_views() WHERE database_name = current_database() \
             AND schema_name = 'main' AND NOT internal AND NOT temporary ORDER BY view_name",
        )?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    pending.retain(|(v, _)| !SKIPPED_VIEWS.contains(&v.as_str()));
    // A view's text names its relations unqualified: created with the copy as the default catalog,
    // it reads the copy's tables. Each is its own statement (a failed one ends only itself), and
    // views over views are retried until no more can be created.
    conn.execute_batch(&format!("USE {a}"))?;
    let mut views = 0;
    let mut failed: Vec<(String, String)> = Vec::new();
    loop {
        failed.clear();
        let before = pending.len();
        for (v, sql) in std::mem::take(&mut pending) {
            match conn.execute_batch(&sql) {
                Ok(()) => views += 1,
                Err(e) => {
                    failed.push((v.clone(), e.to_string()));
                    pending.push((v, sql));
                }
            }
        }
        if pending.is_empty() || pending.len() == before {
            break;
        }
    }
    conn.execute_batch(&format!("USE {}; DETACH DATABASE {a}", q(main)))?;
    Ok((tables.len() + 1, views, failed))
}
