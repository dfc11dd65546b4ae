//! What a job reads and writes, as the user spelled it, and which data-lake files a run scores.
//!
//! A job's source is a table (incremental by key) or a file glob (each file scored once); its
//! target is a table or a folder of Parquet files (a spelling ending in `/`). Lake runs compare
//! the files a glob matches now with the ledger of files already scored: a file is new, rewritten
//! (same path, other size or modification time: its earlier results are replaced), or unchanged.
//! Output files are written under a hidden temporary name in the target folder and renamed into
//! place only after the run's bookkeeping committed, so a reader never sees half a file and a
//! killed run leaves nothing visible. The front ends do the reading and writing; the rules live
//! here so they are the same wherever a job runs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Where a job's rows come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A table (optionally schema-qualified), read incrementally by its key.
    Table(String),
    /// Files matched by a glob; each file is scored once.
    Files { glob: String, format: FileFormat },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    Parquet,
    Csv,
}

impl FileFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            FileFormat::Parquet => "parquet",
            FileFormat::Csv => "csv",
        }
    }
}

/// Where a job's results go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Table(String),
    /// A folder of Parquet files (spelled with a trailing `/`).
    ParquetDir(PathBuf),
}

fn setting(name: &str, value: &str, reason: impl Into<String>) -> Error {
    Error::InvalidSetting { name: name.into(), value: format!("'{value}'"), reason: reason.into() }
}

/// A table name as the job may use it in SQL: one to three dot-separated plain identifiers.
/// Anything else is refused rather than quoted, so a name can never carry SQL.
pub fn check_table_name(what: &str, name: &str) -> Result<()> {
    let expected = if what == "target" {
        "expected a table name (letters, digits and _, optionally schema.table) or a folder ending in '/' (e.g. 'lake/scores/')"
    } else {
        "expected a table name (letters, digits and _, optionally schema-qualified) or a file glob such as 'lake/readings/*.parquet'"
    };
    let parts: Vec<&str> = name.split('.').collect();
    let plain = |p: &str| {
        let mut chars = p.chars();
        matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    let most = if what == "target" { 2 } else { 3 };
    if parts.len() > most || !parts.iter().all(|p| plain(p)) {
        return Err(setting(what, name, expected));
    }
    Ok(())
}

/// `"name"` with embedded quotes doubled: an identifier both DuckDB and PostgreSQL read as written.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `'text'` with embedded quotes doubled.
pub fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

impl Source {
    /// A glob (it has a wildcard or a `/`, or names a data file) or a table name.
    pub fn parse(text: &str) -> Result<Source> {
        let t = text.trim();
        if t.is_empty() {
            return Err(setting("source", text, "expected a table name or a file glob"));
        }
        let lower = t.to_ascii_lowercase();
        let looks_like_file = t.contains(['*', '?', '[', '/'])
            || [".parquet", ".parq", ".csv", ".tsv", ".csv.gz", ".tsv.gz"].iter().any(|e| lower.ends_with(e));
        if !looks_like_file {
            check_table_name("source", t)?;
            return Ok(Source::Table(t.to_string()));
        }
        if t.contains("://") {
            return Err(setting("source", text, "jobs read local files only (copy or mount remote data first)"));
        }
        let format = if lower.ends_with(".parquet") || lower.ends_with(".parq") {
            FileFormat::Parquet
        } else if [".csv", ".tsv", ".csv.gz", ".tsv.gz"].iter().any(|e| lower.ends_with(e)) {
            FileFormat::Csv
        } else {
            return Err(setting(
                "source",
                text,
                "a file glob must end in .parquet or .csv (e.g. 'lake/readings/*.parquet'), so the format is known",
            ));
        };
        Ok(Source::Files { glob: t.to_string(), format })
    }
}

impl Target {
    /// A folder when it ends in `/`, else a table name.
    pub fn parse(text: &str) -> Result<Target> {
        let t = text.trim();
        if t.ends_with('/') {
            if t.contains("://") {
                return Err(setting("target", text, "Parquet targets are local folders"));
            }
            return Ok(Target::ParquetDir(PathBuf::from(t)));
        }
        if t.contains('/') {
            return Err(setting("target", text, "a Parquet folder target ends with '/' (e.g. 'lake/scores/')"));
        }
        check_table_name("target", t)?;
        Ok(Target::Table(t.to_string()))
    }
}

/// A file as a run sees it: the path the glob gave, its size and modification time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileStat {
    pub path: String,
    pub size: u64,
    /// Modification time, microseconds since the Unix epoch.
    pub mtime_us: i64,
}

impl FileStat {
    pub fn of(path: &str) -> std::io::Result<FileStat> {
        let meta = std::fs::metadata(path)?;
        let mtime_us =
            meta.modified()?.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0);
        Ok(FileStat { path: path.to_string(), size: meta.len(), mtime_us })
    }
}

/// What a run does with the files the glob matches.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FilePlan {
    /// Never scored: scored now.
    pub new: Vec<FileStat>,
    /// Scored before, changed since (size or modification time): scored again, and the results of
    /// the earlier contents are replaced.
    pub rewritten: Vec<FileStat>,
    /// Scored, unchanged: skipped.
    pub unchanged: usize,
    /// In the ledger but no longer matched (deleted or moved): their results stay.
    pub vanished: Vec<String>,
}

impl FilePlan {
    pub fn to_score(&self) -> impl Iterator<Item = &FileStat> {
        self.new.iter().chain(&self.rewritten)
    }
}

/// Compares the files matched now with the ledger (`path -> (size, mtime_us)` of scored files).
/// Files come back in path order, so runs are reproducible.
pub fn plan_files(mut listing: Vec<FileStat>, scored: &HashMap<String, (u64, i64)>) -> FilePlan {
    listing.sort_by(|a, b| a.path.cmp(&b.path));
    let mut plan = FilePlan::default();
    for f in listing {
        match scored.get(&f.path) {
            None => plan.new.push(f),
            Some(&(size, mtime)) if size == f.size && mtime == f.mtime_us => plan.unchanged += 1,
            Some(_) => plan.rewritten.push(f),
        }
    }
    let matched: std::collections::HashSet<&str> =
        plan.new.iter().chain(&plan.rewritten).map(|f| f.path.as_str()).collect();
    let mut vanished: Vec<String> =
        scored.keys().filter(|p| !matched.contains(p.as_str()) && std::fs::metadata(p).is_err()).cloned().collect();
    vanished.sort();
    plan.vanished = vanished;
    plan
}

/// Splits the files to score into batches of about `target_bytes` (at least one file each), in
/// order. Each batch is one transaction: its files are all scored, or none is.
pub fn batch_files(files: Vec<FileStat>, target_bytes: u64) -> Vec<Vec<FileStat>> {
    let mut out: Vec<Vec<FileStat>> = Vec::new();
    let mut bytes = 0u64;
    for f in files {
        match out.last_mut() {
            Some(last) if bytes + f.size <= target_bytes => {
                bytes += f.size;
                last.push(f);
            }
            _ => {
                bytes = f.size;
                out.push(vec![f]);
            }
        }
    }
    out
}

/// Splits the keys `lo..=hi` (`count` of them, NULLs excluded) into ranges of about `batch_rows`
/// rows. Dense keys (a sequence) split by arithmetic; sparse or skewed keys (snowflake ids,
/// timestamps) at their quantiles, which `quantiles(n)` returns (the keys at 1/n, ..., (n-1)/n)
/// when asked. Every key of `lo..=hi` lies in exactly one range; ranges are ascending.
pub fn key_ranges<E>(
    lo: i64,
    hi: i64,
    count: u64,
    batch_rows: u64,
    quantiles: impl FnOnce(u64) -> std::result::Result<Vec<i64>, E>,
) -> std::result::Result<Vec<(i64, i64)>, E> {
    let n = count.div_ceil(batch_rows.max(1)).max(1);
    let span = hi as i128 - lo as i128 + 1;
    let mut bounds: Vec<i64> = if n <= 1 {
        Vec::new()
    } else if span != count as i128 {
        quantiles(n)?
    } else {
        let width = (span + n as i128 - 1) / n as i128;
        (1..n as i128).map(|i| (lo as i128 + i * width - 1).min(hi as i128) as i64).collect()
    };
    bounds.push(hi);
    bounds.sort_unstable();
    bounds.dedup();
    let mut out = Vec::new();
    let mut a = lo;
    for b in bounds {
        if b >= a && b <= hi {
            out.push((a, b));
            if b == i64::MAX {
                break;
            }
            a = b + 1;
        }
    }
    Ok(out)
}

/// A glob made absolute against `cwd`, its fixed folder part normalised (`a/x/../b/*.csv` ->
/// `/cwd/a/b/*.csv`), so cron and other directories see the same files. `.` or `..` after a
/// wildcard is refused: DuckDB keeps them in the paths it returns, and outputs named after such
/// paths could land outside the target folder.
pub fn absolute_glob(glob: &str, cwd: &Path) -> Result<String> {
    let joined =
        if Path::new(glob).is_absolute() { glob.to_string() } else { cwd.join(glob).to_string_lossy().into_owned() };
    let base = glob_base(&joined);
    let pattern = &joined[base.len()..];
    if pattern.split('/').any(|c| c == "." || c == "..") {
        return Err(setting("source", glob, "'.' or '..' after a wildcard; write the folder without them"));
    }
    let mut parts: Vec<&str> = Vec::new();
    for c in base.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    Ok(format!("/{}{}{pattern}", parts.join("/"), if parts.is_empty() { "" } else { "/" }))
}

/// The fixed directory part of a glob (before the first component with a wildcard).
pub fn glob_base(glob: &str) -> &str {
    let cut = glob.find(['*', '?', '[']).unwrap_or(glob.len());
    match glob[..cut].rfind('/') {
        Some(i) => &glob[..=i],
        None => "",
    }
}

/// Where the results of source file `path` (matched by `glob`) go in a Parquet target folder:
/// the same path relative to the glob's base, ending in `.parquet` (`2026/11/r1.csv` ->
/// `2026/11/r1.csv.parquet`). One output per source file, so rescoring a rewritten file replaces
/// exactly its results.
pub fn output_for_file(dir: &Path, glob: &str, path: &str) -> PathBuf {
    let base = glob_base(glob);
    let rel = path.strip_prefix(base).unwrap_or(path).trim_start_matches('/');
    let rel = if rel.to_ascii_lowercase().ends_with(".parquet") { rel.to_string() } else { format!("{rel}.parquet") };
    dir.join(rel)
}

/// The output of batch `seq` of run `run_id` from a table source.
pub fn output_for_batch(dir: &Path, run_id: i64, seq: u32) -> PathBuf {
    dir.join(format!("run-{run_id:08}-part-{seq:05}.parquet"))
}

const TEMP_SUFFIX: &str = ".sqlscore-tmp";

/// The hidden name a job's file is written under before it is published: same folder (so the
/// rename is atomic), a leading dot and a suffix that no `*.parquet` glob matches, and the job and
/// run that wrote it, so one job's recovery never touches another's files. Job names have no `~`.
pub fn temp_path(final_path: &Path, job: &str, run_id: i64) -> PathBuf {
    let name = final_path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    final_path.with_file_name(format!(".{name}~{job}.run{run_id}{TEMP_SUFFIX}"))
}

/// For a file in a target folder: the final path, job and run id when it is a temporary output.
pub fn parse_temp_path(path: &Path) -> Option<(PathBuf, String, i64)> {
    let name = path.file_name()?.to_str()?;
    let inner = name.strip_prefix('.')?.strip_suffix(TEMP_SUFFIX)?;
    let (rest, run) = inner.rsplit_once(".run")?;
    let (final_name, job) = rest.rsplit_once('~')?;
    Some((path.with_file_name(final_name), job.to_string(), run.parse().ok()?))
}

/// A path for DuckDB's file readers, which expand `*`, `?` and `[...]` even in a list of paths:
/// those characters are bracketed so a file named `r[1].parquet` is read as itself.
pub fn escape_glob(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        match c {
            '[' => out.push_str("[[]"),
            '*' => out.push_str("[*]"),
            '?' => out.push_str("[?]"),
            c => out.push(c),
        }
    }
    out
}

/// Whether one folder is the other or inside it (compared as written; canonicalize first).
pub fn nested(a: &Path, b: &Path) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(path: &str, size: u64, mtime_us: i64) -> FileStat {
        FileStat { path: path.into(), size, mtime_us }
    }

    #[test]
    fn sources_and_targets() {
        assert_eq!(Source::parse("readings").unwrap(), Source::Table("readings".into()));
        assert_eq!(Source::parse("main.readings").unwrap(), Source::Table("main.readings".into()));
        assert_eq!(
            Source::parse("lake/r/*.parquet").unwrap(),
            Source::Files { glob: "lake/r/*.parquet".into(), format: FileFormat::Parquet }
        );
        assert!(matches!(Source::parse("x.csv").unwrap(), Source::Files { format: FileFormat::Csv, .. }));
        assert!(Source::parse("lake/*").unwrap_err().to_string().contains("must end in .parquet or .csv"));
        assert!(Source::parse("t; DROP TABLE x").is_err());
        assert!(Source::parse("s3://bucket/*.parquet").is_err());
        assert_eq!(Target::parse("out/").unwrap(), Target::ParquetDir("out/".into()));
        assert_eq!(Target::parse("scores").unwrap(), Target::Table("scores".into()));
        assert!(Target::parse("out/x").unwrap_err().to_string().contains("ends with '/'"));
        assert!(Target::parse("a b").is_err());
        assert!(Target::parse("c.s.t").unwrap_err().to_string().contains("schema.table"));
    }

    #[test]
    fn plans_new_rewritten_unchanged() {
        let scored: HashMap<String, (u64, i64)> =
            [("/l/a.parquet".to_string(), (10, 1)), ("/l/b.parquet".to_string(), (10, 1))].into();
        let plan = plan_files(
            vec![stat("/l/c.parquet", 5, 1), stat("/l/b.parquet", 11, 1), stat("/l/a.parquet", 10, 1)],
            &scored,
        );
        assert_eq!(plan.new, vec![stat("/l/c.parquet", 5, 1)]);
        assert_eq!(plan.rewritten, vec![stat("/l/b.parquet", 11, 1)]);
        assert_eq!(plan.unchanged, 1);
        // A touched file (same size, new mtime) is rewritten too.
        let plan = plan_files(vec![stat("/l/a.parquet", 10, 2)], &scored);
        assert_eq!(plan.rewritten.len(), 1);
        assert_eq!(plan.vanished, vec!["/l/b.parquet".to_string()]);
    }

    #[test]
    fn key_ranges_cover_every_key_once() {
        let none = |_| -> std::result::Result<Vec<i64>, ()> { panic!("dense keys need no quantiles") };
        assert_eq!(key_ranges(1, 10, 10, 4, none).unwrap(), vec![(1, 4), (5, 8), (9, 10)]);
        assert_eq!(key_ranges(5, 5, 1, 1000, none).unwrap(), vec![(5, 5)]);
        // Sparse: split at the quantiles the caller computes.
        let q = |n| -> std::result::Result<Vec<i64>, ()> {
            assert_eq!(n, 3);
            Ok(vec![100, 100, 2000])
        };
        assert_eq!(key_ranges(1, 1_000_000, 9, 3, q).unwrap(), vec![(1, 100), (101, 2000), (2001, 1_000_000)]);
        let ext = |_| -> std::result::Result<Vec<i64>, ()> { Ok(vec![0]) };
        assert_eq!(key_ranges(i64::MIN, i64::MAX, 4, 2, ext).unwrap(), vec![(i64::MIN, 0), (1, i64::MAX)]);
    }

    #[test]
    fn globs_made_absolute() {
        let cwd = Path::new("/w");
        assert_eq!(absolute_glob("lake/x/../r/*.csv", cwd).unwrap(), "/w/lake/r/*.csv");
        assert_eq!(absolute_glob("/l/./r/**/*.parquet", cwd).unwrap(), "/l/r/**/*.parquet");
        assert!(absolute_glob("lake/*/../*.parquet", cwd).unwrap_err().to_string().contains("after a wildcard"));
    }

    #[test]
    fn batches_by_bytes() {
        let files = vec![stat("a", 4, 0), stat("b", 4, 0), stat("c", 9, 0), stat("d", 1, 0)];
        let b = batch_files(files, 8);
        let names: Vec<Vec<&str>> = b.iter().map(|g| g.iter().map(|f| f.path.as_str()).collect()).collect();
        assert_eq!(names, vec![vec!["a", "b"], vec!["c"], vec!["d"]]);
    }

    #[test]
    fn output_and_temp_names() {
        assert_eq!(glob_base("/l/r/*.parquet"), "/l/r/");
        assert_eq!(glob_base("/l/r/**/x*.csv"), "/l/r/");
        assert_eq!(glob_base("*.csv"), "");
        let out = output_for_file(Path::new("/o"), "/l/r/**/*.csv", "/l/r/2026/a.csv");
        assert_eq!(out, PathBuf::from("/o/2026/a.csv.parquet"));
        assert_eq!(output_for_file(Path::new("/o"), "/l/*.parquet", "/l/a.parquet"), PathBuf::from("/o/a.parquet"));
        let tmp = temp_path(&out, "iot.v2", 12);
        assert_eq!(tmp, PathBuf::from("/o/2026/.a.csv.parquet~iot.v2.run12.sqlscore-tmp"));
        assert_eq!(parse_temp_path(&tmp), Some((out, "iot.v2".to_string(), 12)));
        // A file name with '~' or '.run' in it still parses back.
        let odd = PathBuf::from("/o/x~y.run3.parquet");
        assert_eq!(parse_temp_path(&temp_path(&odd, "j", 4)), Some((odd, "j".to_string(), 4)));
        assert_eq!(escape_glob("/l/r[1]*?.parquet"), "/l/r[[]1][*][?].parquet");
        assert!(nested(Path::new("/l/r"), Path::new("/l/r/out")) && !nested(Path::new("/l/a"), Path::new("/l/ab")));
        assert_eq!(parse_temp_path(Path::new("/o/a.parquet")), None);
        assert_eq!(output_for_batch(Path::new("/o"), 3, 7), PathBuf::from("/o/run-00000003-part-00007.parquet"));
    }
}
