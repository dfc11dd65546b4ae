//! Writing one batch: results, rejects and bookkeeping in one DuckDB transaction. A Parquet
//! target's files are written under hidden names inside that transaction, made durable, listed in
//! `sqlscore_job_outputs` by the commit, and only then renamed into place; [`recover`] finishes or
//! removes what a killed run left between those steps.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use duckdb::arrow::array::{
    Array, ArrayRef, BooleanArray, Float64Array, Int32Array, Int64Array, ListArray, StringArray,
    TimestampMicrosecondArray,
};
use duckdb::arrow::compute::filter_record_batch;
use duckdb::arrow::datatypes::{Field, Float64Type, Schema};
use duckdb::arrow::record_batch::RecordBatch;
use duckdb::{params, Connection};
use sqlscore_core::lake::{output_for_batch, output_for_file, parse_temp_path, quote_ident, quote_literal, temp_path};
use sqlscore_core::{FileStat, RowOutcome, Source, Target};

use super::arrow_in::keys;
use super::define::{layout_select, relation};
use super::run::RunCtx;
use super::{JobError, JobErrorKind};

/// A batch's unit of work, as the bookkeeping records it.
pub enum Unit {
    /// Keys up to `hi` (the new watermark).
    Keys {
        hi: i64,
    },
    Files(Vec<FileStat>),
}

/// What a batch wrote.
#[derive(Debug, Default)]
pub struct Written {
    pub rows: u64,
    pub rejected: u64,
    pub rewritten: u64,
}

fn now_us() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
}

/// The target's columns for the rows that were not rejected, in the target's order.
fn results(
    run: &RunCtx<'_, '_>,
    rb: &RecordBatch,
    outcomes: &[RowOutcome],
    files: bool,
) -> Result<RecordBatch, JobError> {
    let n = rb.num_rows();
    let outputs = run.info().outputs;
    let ncarry = run.info().spec.carry.len();
    let mut cols: Vec<ArrayRef> = vec![rb.column(0).clone()];
    cols.extend((0..ncarry).map(|i| rb.column(2 + i).clone()));
    cols.push(Arc::new(Float64Array::from_iter(outcomes.iter().map(|o| o.score))));
    if outputs.label {
        cols.push(Arc::new(StringArray::from_iter(outcomes.iter().map(|o| o.label.as_deref()))));
    }
    if outputs.probabilities {
        cols.push(Arc::new(ListArray::from_iter_primitive::<Float64Type, _, _>(
            outcomes.iter().map(|o| o.probabilities.as_ref().map(|p| p.iter().map(|&x| Some(x)).collect::<Vec<_>>())),
        )));
    }
    cols.push(rb.column(1).clone());
    cols.push(Arc::new(Int32Array::from_iter(outcomes.iter().map(|o| o.version))));
    cols.push(Arc::new(Int64Array::from(vec![run.run_id(); n])));
    cols.push(Arc::new(TimestampMicrosecondArray::from(vec![now_us(); n]).with_timezone("UTC")));
    if files {
        cols.push(rb.column(rb.num_columns() - 1).clone());
    }
    let fields: Vec<Field> =
        cols.iter().enumerate().map(|(i, c)| Field::new(format!("c{i}"), c.data_type().clone(), true)).collect();
    let out = RecordBatch::try_new(Arc::new(Schema::new(fields)), cols)
        .map_err(|e| run.error(format!("building the results: {e}")))?;
    if outcomes.iter().any(|o| o.rejected.is_some()) {
        let keep = BooleanArray::from_iter(outcomes.iter().map(|o| Some(o.rejected.is_none())));
        return filter_record_batch(&out, &keep).map_err(|e| run.error(format!("setting rejects aside: {e}")));
    }
    Ok(out)
}

fn string_at(a: &dyn Array, r: usize) -> Option<String> {
    a.as_any().downcast_ref::<StringArray>().filter(|s| !s.is_null(r)).map(|s| s.value(r).to_string())
}

fn target_table(t: &str) -> (&str, &str) {
    t.rsplit_once('.').map_or(("main", t), |(s, n)| (s.rsplit('.').next().unwrap_or(s), n))
}

fn in_list(items: impl Iterator<Item = String>) -> String {
    items.map(|s| quote_literal(&s)).collect::<Vec<_>>().join(", ")
}

/// Writes one batch and commits it with its bookkeeping; Parquet files are published after the
/// commit.
pub fn write(
    run: &RunCtx<'_, '_>,
    seq: u32,
    unit: &Unit,
    rb: &RecordBatch,
    outcomes: &[RowOutcome],
    files: bool,
) -> Result<Written, JobError> {
    let conn = run.conn();
    let name = run.info().spec.name.clone();
    let fail = |what: &str, e: duckdb::Error| run.error(format!("{what}: {e}"));
    let mut written = Written::default();
    let out = if rb.num_rows() > 0 { Some(results(run, rb, outcomes, files)?) } else { None };
    written.rows = out.as_ref().map_or(0, |o| o.num_rows() as u64);

    // Rejected rows: key, file, model, reason.
    type Reject = (Option<i64>, Option<String>, Option<String>, String);
    let mut rejects: Vec<Reject> = Vec::new();
    if outcomes.iter().any(|o| o.rejected.is_some()) {
        let k = keys(rb.column(0).as_ref());
        for (r, o) in outcomes.iter().enumerate() {
            if let Some(why) = &o.rejected {
                let file = files.then(|| string_at(rb.column(rb.num_columns() - 1).as_ref(), r)).flatten();
                rejects.push((k[r], file, string_at(rb.column(1).as_ref(), r), why.clone()));
            }
        }
    }
    written.rejected = rejects.len() as u64;

    // Rows per file of this batch, for the ledger (a file's rows arrive together).
    let mut rows_per_file: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
    if files && rb.num_rows() > 0 {
        if let Some(col) = rb.column(rb.num_columns() - 1).as_any().downcast_ref::<StringArray>() {
            let mut run: Option<(&str, u64)> = None;
            for f in col.iter().flatten() {
                match &mut run {
                    Some((name, n)) if *name == f => *n += 1,
                    _ => {
                        if let Some((name, n)) = run.take() {
                            *rows_per_file.entry(name.to_string()).or_default() += n;
                        }
                        run = Some((f, 1));
                    }
                }
            }
            if let Some((name, n)) = run {
                *rows_per_file.entry(name.to_string()).or_default() += n;
            }
        }
    }

    let mut temps: Vec<(PathBuf, PathBuf)> = Vec::new();
    let result = (|| -> Result<(), JobError> {
        conn.execute_batch("BEGIN TRANSACTION").map_err(|e| fail("starting the batch transaction", e))?;
        let rewritten: Vec<String> = match unit {
            Unit::Files(fs) => {
                let mut stmt = conn
                    .prepare(&format!(
                        "SELECT path FROM sqlscore_job_files WHERE job = ? AND path IN ({})",
                        in_list(fs.iter().map(|f| f.path.clone()))
                    ))
                    .map_err(|e| fail("reading the file ledger", e))?;
                let rows = stmt
                    .query_map([&name], |r| r.get::<_, String>(0))
                    .map_err(|e| fail("reading the file ledger", e))?;
                rows.collect::<duckdb::Result<Vec<_>>>().map_err(|e| fail("reading the file ledger", e))?
            }
            Unit::Keys { .. } => Vec::new(),
        };
        written.rewritten = rewritten.len() as u64;
        if !rewritten.is_empty() {
            // A rewritten file's earlier results and rejects are replaced by this batch's.
            let list = in_list(rewritten.iter().cloned());
            if let Target::Table(t) = &run.info().target {
                let (schema, table) = target_table(t);
                conn.execute_batch(&format!(
                    "DELETE FROM {}.{} WHERE source_file IN ({list})",
                    quote_ident(schema),
                    quote_ident(table)
                ))
                .map_err(|e| fail("replacing a rewritten file's results", e))?;
            }
            conn.execute(
                &format!("DELETE FROM sqlscore_job_rejects WHERE job = ? AND source_file IN ({list})"),
                [&name],
            )
            .map_err(|e| fail("replacing a rewritten file's rejects", e))?;
        }

        let mut outputs_of: std::collections::HashMap<String, String> = std::collections::HashMap::new();
        match run.info().target.clone() {
            Target::Table(t) => {
                if let Some(out) = &out {
                    let (schema, table) = target_table(&t);
                    let mut app = conn.appender_to_db(table, schema).map_err(|e| fail("writing the target", e))?;
                    app.append_record_batch(out.clone()).map_err(|e| fail(&format!("writing the target {t}"), e))?;
                    app.flush().map_err(|e| fail(&format!("writing the target {t}"), e))?;
                }
            }
            Target::ParquetDir(dir) => {
                stage(run, unit)?;
                if let Some(out) = &out {
                    let mut app = conn
                        .appender_to_catalog_and_db("__sqlscore_stage", "temp", "main")
                        .map_err(|e| fail("staging results", e))?;
                    app.append_record_batch(out.clone()).map_err(|e| fail("staging results", e))?;
                    app.flush().map_err(|e| fail("staging results", e))?;
                }
                let key = quote_ident(&run.info().spec.key);
                let plan: Vec<(PathBuf, Option<String>)> = match unit {
                    Unit::Files(fs) => {
                        let glob = match &run.info().source {
                            Source::Files { glob, .. } => glob.clone(),
                            Source::Table(_) => String::new(),
                        };
                        fs.iter().map(|f| (output_for_file(&dir, &glob, &f.path), Some(f.path.clone()))).collect()
                    }
                    Unit::Keys { .. } if out.is_some() => vec![(output_for_batch(&dir, run.run_id(), seq), None)],
                    Unit::Keys { .. } => Vec::new(),
                };
                for (final_path, source) in plan {
                    if let Some(parent) = final_path.parent() {
                        std::fs::create_dir_all(parent).map_err(|e| run.error(format!("{}: {e}", parent.display())))?;
                    }
                    let tmp = temp_path(&final_path, &name, run.run_id());
                    let filter =
                        source.as_ref().map_or(String::new(), |s| format!(" WHERE source_file = {}", quote_literal(s)));
                    conn.execute_batch(&format!(
                        "COPY (SELECT * FROM temp.__sqlscore_stage{filter} ORDER BY {key}) TO {} (FORMAT parquet)",
                        quote_literal(&tmp.to_string_lossy())
                    ))
                    .map_err(|e| fail(&format!("writing {}", final_path.display()), e))?;
                    temps.push((tmp.clone(), final_path.clone()));
                    // Durable (contents and name) before the commit that lists it, so a listed
                    // file is complete even after a power cut.
                    std::fs::File::open(&tmp)
                        .and_then(|f| f.sync_all())
                        .and_then(|_| tmp.parent().map_or(Ok(()), |d| std::fs::File::open(d)?.sync_all()))
                        .map_err(|e| run.error(format!("syncing {}: {e}", tmp.display())))?;
                    let rows = source.as_ref().map_or(written.rows, |s| rows_per_file.get(s).copied().unwrap_or(0));
                    conn.execute(
                        "INSERT INTO sqlscore_job_outputs VALUES (?, ?, ?, ?, current_timestamp)",
                        params![&name, run.run_id(), final_path.to_string_lossy(), rows as i64],
                    )
                    .map_err(|e| fail("recording an output file", e))?;
                    if let Some(s) = source {
                        outputs_of.insert(s, final_path.to_string_lossy().into_owned());
                    }
                }
                conn.execute_batch("DELETE FROM temp.__sqlscore_stage").map_err(|e| fail("staging results", e))?;
            }
        }

        if !rejects.is_empty() {
            let mut app = conn.appender("sqlscore_job_rejects").map_err(|e| fail("writing rejects", e))?;
            let at = duckdb::types::Value::Timestamp(duckdb::types::TimeUnit::Microsecond, now_us());
            for (k, file, model, why) in &rejects {
                app.append_row(params![&name, run.run_id(), k, file, model, why, at.clone()])
                    .map_err(|e| fail("writing rejects", e))?;
            }
            app.flush().map_err(|e| fail("writing rejects", e))?;
        }

        match unit {
            Unit::Files(fs) => {
                conn.execute(
                    &format!(
                        "DELETE FROM sqlscore_job_files WHERE job = ? AND path IN ({})",
                        in_list(fs.iter().map(|f| f.path.clone()))
                    ),
                    [&name],
                )
                .map_err(|e| fail("updating the file ledger", e))?;
                let mut app = conn.appender("sqlscore_job_files").map_err(|e| fail("updating the file ledger", e))?;
                let at = duckdb::types::Value::Timestamp(duckdb::types::TimeUnit::Microsecond, now_us());
                for f in fs {
                    let rows = rows_per_file.get(&f.path).copied().unwrap_or(0) as i64;
                    app.append_row(params![
                        &name,
                        &f.path,
                        f.size as i64,
                        f.mtime_us,
                        rows,
                        run.run_id(),
                        outputs_of.get(&f.path),
                        at.clone()
                    ])
                    .map_err(|e| fail("updating the file ledger", e))?;
                }
                app.flush().map_err(|e| fail("updating the file ledger", e))?;
            }
            Unit::Keys { hi } => {
                conn.execute("UPDATE sqlscore_jobs SET watermark = ? WHERE name = ?", params![hi, &name])
                    .map_err(|e| fail("moving the watermark", e))?;
            }
        }
        let (rows, rejected, files_done, rewritten_before, batches) = run.counters();
        let nfiles = if let Unit::Files(fs) = unit { fs.len() as u64 } else { 0 };
        conn.execute(
            "UPDATE sqlscore_job_runs SET rows_scored = ?, rows_rejected = ?, files_scored = ?, files_rewritten = ?, batches = ? \
             WHERE run_id = ?",
            params![
                (rows + written.rows) as i64,
                (rejected + written.rejected) as i64,
                (files_done + nfiles) as i64,
                (rewritten_before + written.rewritten) as i64,
                (batches + 1) as i64,
                run.run_id()
            ],
        )
        .map_err(|e| fail("recording progress", e))?;
        conn.execute_batch("COMMIT").map_err(|e| fail("committing the batch", e))
    })();
    if let Err(e) = result {
        let _ = conn.execute_batch("ROLLBACK");
        for (tmp, _) in &temps {
            let _ = std::fs::remove_file(tmp);
        }
        return Err(e);
    }
    for (tmp, final_path) in &temps {
        publish(tmp, final_path).map_err(|e| run.error(format!("publishing {}: {e}", final_path.display())))?;
    }
    Ok(written)
}

/// The session's staging table for a Parquet target, with the target's column types.
fn stage(run: &RunCtx<'_, '_>, unit: &Unit) -> Result<(), JobError> {
    if run.stage_ready().get() {
        return Ok(());
    }
    let info = run.info();
    let files = matches!(info.source, Source::Files { .. });
    // The column types come from the source, through the batch's own first file.
    let sample: Vec<String> = match unit {
        Unit::Files(fs) => fs.iter().take(1).map(|f| f.path.clone()).collect(),
        Unit::Keys { .. } => Vec::new(),
    };
    let sql = format!(
        "CREATE OR REPLACE TEMP TABLE __sqlscore_stage AS SELECT {} FROM {} LIMIT 0",
        layout_select(&info.spec, info.outputs, files),
        relation(&info.source, &sample)
    );
    run.conn().execute_batch(&sql).map_err(|e| run.error(format!("staging results: {e}")))?;
    run.stage_ready().set(true);
    Ok(())
}

/// Renames a committed file into place and makes the rename durable.
fn publish(tmp: &Path, final_path: &Path) -> std::io::Result<()> {
    std::fs::rename(tmp, final_path)?;
    if let Some(dir) = final_path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

fn temp_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            temp_files(&p, out);
        } else if parse_temp_path(&p).is_some() {
            out.push(p);
        }
    }
}

/// Finishes what a killed run left in a Parquet target: a temporary file whose output was
/// committed is published; one that was not is removed (its batch is scored again).
pub fn recover(conn: &Connection, job: &str, dir: &Path) -> Result<(), JobError> {
    let mut found = Vec::new();
    temp_files(dir, &mut found);
    for tmp in found {
        // Only this job's files: another job's (a shared or nested folder) are its own business.
        let Some((final_path, owner, run_id)) = parse_temp_path(&tmp) else { continue };
        if owner != job {
            continue;
        }
        let committed: bool = conn
            .query_row(
                "SELECT count(*) > 0 FROM sqlscore_job_outputs WHERE job = ? AND run_id = ? AND path = ?",
                params![job, run_id, final_path.to_string_lossy()],
                |r| r.get(0),
            )
            .map_err(|e| JobError::new(job, JobErrorKind::Failed, e.to_string()))?;
        let done = if committed { publish(&tmp, &final_path) } else { std::fs::remove_file(&tmp) };
        done.map_err(|e| JobError::new(job, JobErrorKind::Failed, format!("recovering {}: {e}", tmp.display())))?;
    }
    Ok(())
}
