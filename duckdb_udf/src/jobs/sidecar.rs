//! The run file: `<database>.sqlscore-run-<job>.json`, written next to the database file while a
//! run goes. DuckDB lets no other process open a file another one writes, not even read-only, so
//! `sqlscore job status` and `sqlscore job cancel` learn of a run in progress (its process, run id
//! and progress) from this file instead. It is replaced atomically (write + rename) after every
//! batch and removed when the run ends; a file left by a killed run names a process that is gone.

use std::path::{Path, PathBuf};

/// What the run file holds.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Progress {
    pub pid: u32,
    pub run_id: i64,
    pub job: String,
    pub started_unix: f64,
    pub rows_done: u64,
    pub rows_total: Option<u64>,
    pub files_done: u64,
    pub files_total: u64,
}

pub fn now_unix() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

pub struct RunFile {
    path: PathBuf,
    db: PathBuf,
}

impl RunFile {
    pub fn new(db: &Path, job: &str) -> RunFile {
        let mut name = db.as_os_str().to_owned();
        name.push(format!(".sqlscore-run-{job}.json"));
        RunFile { path: PathBuf::from(name), db: db.to_path_buf() }
    }

    /// Best effort: progress reporting never fails a run.
    pub fn write(&self, p: &Progress) {
        let Ok(text) = serde_json::to_string(p) else { return };
        let mut tmp = self.path.clone().into_os_string();
        tmp.push(".tmp");
        if std::fs::write(&tmp, text).is_ok() {
            let _ = std::fs::rename(&tmp, &self.path);
        }
    }

    pub fn read(&self) -> Option<Progress> {
        serde_json::from_str(&std::fs::read_to_string(&self.path).ok()?).ok()
    }

    pub fn remove(&self) {
        let _ = std::fs::remove_file(&self.path);
    }

    /// The run in progress, if the file names a live process that has the database open (a
    /// file left by a killed run may name a pid since reused by another program).
    pub fn live(&self) -> Option<Progress> {
        self.read().filter(|p| process_alive(p.pid) && holds(p.pid, &self.db))
    }
}

/// Whether process `pid` has `db` open (Linux: its /proc/<pid>/fd links). Where /proc cannot be
/// read (another user's process), assume it does.
fn holds(pid: u32, db: &Path) -> bool {
    let Ok(target) = std::fs::canonicalize(db) else { return false };
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return true };
    fds.flatten().any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l == target))
}

/// Whether a process exists (Linux: its /proc entry).
pub fn process_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}
