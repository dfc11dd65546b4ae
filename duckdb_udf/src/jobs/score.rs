//! The scoring side of a run: it reads each unit of work on its own connection, loads the models
//! the rows name and scores them with core's grouped job scoring, one batch ahead of the writer.
//! It runs on a thread of its own, so that reading and scoring batch n+1 overlap with writing and
//! committing batch n (DuckDB writes a table from one thread).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use duckdb::arrow::array::ArrayRef;
use duckdb::arrow::compute::concat_batches;
use duckdb::arrow::record_batch::RecordBatch;
use duckdb::{params, Connection, OptionalExt};
use sqlscore_core::job::score_grouped_parallel;
use sqlscore_core::lake::quote_ident;
use sqlscore_core::{parse_ref, Batch, Dialect, Engine, Error, FileStat, Model, RowOutcome, RunOptions};

use super::define::{relation, JobInfo, FILE_COLUMN};
use super::{JobError, JobErrorKind};

/// DuckDB's words in engine messages.
pub static DUCKDB: Dialect = Dialect {
    // A job names models in the registry only; its NULL handling is the job's on_error.
    file_models: false,
    register_hint: "register it with sqlscore model push NAME FILE --db DATABASE",
    intra_threads_setting: "SQLSCORE_INTRA_THREADS",
    null_policy_setting: "the job's on_error",
    ..crate::dialect::DUCKDB
};

/// One unit of work: a key range or a set of files.
#[derive(Debug, Clone)]
pub enum Work {
    Keys(i64, i64),
    Files(Vec<FileStat>),
}

impl Work {
    /// The file a unit reads when it reads only one (for messages).
    pub fn single_file(&self) -> Option<&str> {
        match self {
            Work::Files(fs) if fs.len() == 1 => Some(fs[0].path.as_str()),
            _ => None,
        }
    }
}

/// A unit read and scored: its rows (None when it had none) and one outcome per row.
pub type Scored = (Work, Option<(RecordBatch, Vec<RowOutcome>)>);

pub struct Scorer {
    conn: Connection,
    info: JobInfo,
    engine: Engine,
    /// Models resolved in this run: a run scores every row with the version current at its start.
    models: HashMap<String, (Arc<Model>, i32)>,
    pool: Arc<rayon::ThreadPool>,
    interrupt: Option<fn() -> bool>,
}

impl Scorer {
    pub fn new(
        conn: Connection,
        info: JobInfo,
        threads: usize,
        interrupt: Option<fn() -> bool>,
    ) -> Result<Scorer, JobError> {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().map_err(|e| {
            JobError::new(&info.spec.name, JobErrorKind::Failed, format!("cannot start {threads} scoring threads: {e}"))
        })?;
        // The stored expression is checked again: it is spliced into every query this reads with.
        let probe_rel = relation(&info.source, &["probe.parquet".to_string()]);
        super::define::check_model_expr(&conn, &info.spec.name, &info.spec.model, &info.source, &probe_rel)?;
        Ok(Scorer { conn, info, engine: Engine::default(), models: HashMap::new(), pool: Arc::new(pool), interrupt })
    }

    fn name(&self) -> &str {
        &self.info.spec.name
    }

    pub fn job_name(&self) -> String {
        self.info.spec.name.clone()
    }

    fn fail(&self, msg: impl Into<String>) -> JobError {
        JobError::new(self.name(), JobErrorKind::Failed, msg)
    }

    fn db_err(&self) -> impl Fn(duckdb::Error) -> JobError + 'static {
        let name = self.name().to_string();
        move |e| JobError::new(&name, JobErrorKind::Failed, e.to_string())
    }

    pub fn cancelled(&self) -> bool {
        self.interrupt.is_some_and(|f| f())
    }

    /// Reads and scores one unit.
    pub fn produce(&mut self, work: Work) -> Result<Scored, JobError> {
        let Some(rb) = self.fetch(&work)? else { return Ok((work, None)) };
        match self.score(&rb, matches!(work, Work::Files(_))) {
            Ok(outcomes) => Ok((work, Some((rb, outcomes)))),
            Err(e) => Err(self.locate(e, &work)),
        }
    }

    /// Loads every model a batch names that this run has not loaded yet: one registry query for
    /// all of them, and their ONNX Runtime sessions built on the scoring threads (building a
    /// session costs about as much as scoring a thousand rows with it, and a lake run may meet a
    /// thousand models in its first batch). A name that is not registered is left to `resolve`,
    /// which reports it.
    fn preload(&mut self, models: &[Option<&str>]) -> Result<(), JobError> {
        let mut missing: Vec<&str> = Vec::new();
        let mut seen: HashSet<&str> = HashSet::new();
        for m in models.iter().flatten() {
            if !self.models.contains_key(*m) && seen.insert(m) {
                missing.push(m);
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        // name@version references resolve one by one; plain names (the usual case) in one query.
        let plain: Vec<&str> = missing.iter().copied().filter(|m| !m.contains('@')).collect();
        let list = plain.iter().map(|m| sqlscore_core::lake::quote_literal(m)).collect::<Vec<_>>().join(", ");
        let mut rows: Vec<(String, i32, String, Vec<u8>)> = Vec::new();
        if !plain.is_empty() {
            let sql = format!(
                "SELECT name, version, sha256, onnx FROM sqlscore_models WHERE name IN ({list}) \
                 QUALIFY version = max(version) OVER (PARTITION BY name)"
            );
            let mut stmt = self.conn.prepare(&sql).map_err(self.db_err())?;
            let found =
                stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))).map_err(self.db_err())?;
            for row in found {
                rows.push(row.map_err(self.db_err())?);
            }
        }
        let engine = &self.engine;
        let loaded: Vec<(String, i32, sqlscore_core::Result<Arc<Model>>)> = self.pool.install(|| {
            use rayon::prelude::*;
            rows.into_par_iter()
                .map(|(name, v, sha, onnx)| {
                    let m = engine.get_or_load(&name, &sha, || Ok(onnx));
                    (name, v, m)
                })
                .collect()
        });
        for (name, v, m) in loaded {
            let m = m.map_err(|e| self.fail(e.to_string()))?;
            self.models.insert(name, (m, v));
        }
        Ok(())
    }

    fn resolve(&mut self, name: &str) -> sqlscore_core::Result<(Arc<Model>, i32)> {
        if let Some(m) = self.models.get(name) {
            return Ok(m.clone());
        }
        let (base, version) = parse_ref(name)?;
        let row: Option<(i32, String, Vec<u8>)> = self
            .conn
            .query_row(
                "SELECT version, sha256, onnx FROM sqlscore_models WHERE name = ? AND (?::INTEGER IS NULL OR version = ?) \
                 ORDER BY version DESC LIMIT 1",
                params![base, version, version],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .map_err(|e| Error::Internal(format!("reading the model registry: {e}")))?;
        let Some((v, sha, onnx)) = row else {
            let mut known: Vec<String> = Vec::new();
            if let Ok(mut stmt) = self.conn.prepare("SELECT DISTINCT name FROM sqlscore_models ORDER BY name LIMIT 20")
            {
                if let Ok(rows) = stmt.query_map([], |r| r.get::<_, String>(0)) {
                    known = rows.filter_map(Result::ok).collect();
                }
            }
            return Err(Error::UnknownModel { model: name.to_string(), known });
        };
        let model = self.engine.get_or_load(name, &sha, || Ok(onnx))?;
        self.models.insert(name.to_string(), (model.clone(), v));
        Ok((model, v))
    }

    /// The query for one unit of work. Columns: key, model name, carried columns, features
    /// (listed, or every source column when bound by name), then the file for file sources.
    fn fetch_sql(&self, work: &Work) -> String {
        let spec = &self.info.spec;
        let key = quote_ident(&spec.key);
        let mut cols = vec![key.clone(), format!("CAST(({}) AS VARCHAR)", spec.model)];
        cols.extend(spec.carry.iter().map(|c| quote_ident(c)));
        let files = matches!(work, Work::Files(_));
        match &spec.features {
            Some(f) => cols.extend(f.iter().map(|c| quote_ident(c))),
            None if files => cols.push(format!("* EXCLUDE ({})", quote_ident(FILE_COLUMN))),
            None => cols.push("*".into()),
        }
        if files {
            cols.push(quote_ident(FILE_COLUMN));
        }
        match work {
            Work::Keys(a, b) => {
                format!(
                    "SELECT {} FROM {} WHERE {key} BETWEEN {a} AND {b}",
                    cols.join(", "),
                    relation(&self.info.source, &[])
                )
            }
            Work::Files(fs) => {
                let paths: Vec<String> = fs.iter().map(|f| f.path.clone()).collect();
                format!("SELECT {} FROM {}", cols.join(", "), relation(&self.info.source, &paths))
            }
        }
    }

    fn fetch(&self, work: &Work) -> Result<Option<RecordBatch>, JobError> {
        fetch_arrow(&self.conn, &self.fetch_sql(work))
            .map_err(|e| self.fail(format!("reading the source: {e}")).in_file(work.single_file()))
    }

    fn score(&mut self, rb: &RecordBatch, files: bool) -> Result<Vec<sqlscore_core::RowOutcome>, JobError> {
        let spec = self.info.spec.clone();
        let ncarry = spec.carry.len();
        let end = rb.num_columns() - usize::from(files);
        let schema = rb.schema();
        let features: Vec<(String, ArrayRef)> =
            (2 + ncarry..end).map(|i| (schema.field(i).name().clone(), rb.column(i).clone())).collect();
        let owned = super::arrow_in::Owned::new(&features);
        let mut batch = Batch::new(owned.columns(&features), rb.num_rows());
        if spec.features.is_some() {
            batch = batch.bound_by_position();
        }
        let models = super::arrow_in::model_names(rb.column(1).as_ref());
        self.preload(&models)?;
        let opts = RunOptions {
            null_policy: spec.on_error.null_policy(),
            batch_rows: self.engine.config().batch_rows,
            intra_threads: 1,
            interrupt: self.interrupt,
            dialect: &DUCKDB,
            evaluator: self.engine.config().evaluator,
        };
        let outputs = self.info.outputs;
        let pool = self.pool.clone();
        score_grouped_parallel(&batch, &models, |m| self.resolve(m), outputs, spec.on_error, opts, &pool).map_err(|e| {
            let kind = if matches!(e, Error::Cancelled { .. }) || self.cancelled() {
                JobErrorKind::Cancelled
            } else {
                JobErrorKind::Failed
            };
            JobError::new(self.name(), kind, e.to_string())
        })
    }

    /// Fetches, scores and commits one unit of work.
    /// A failed batch of several files: find the first file that fails alone, so the error names it.
    fn locate(&mut self, e: JobError, work: &Work) -> JobError {
        let Work::Files(fs) = work else { return e };
        if fs.len() == 1 {
            return e.in_file(Some(&fs[0].path));
        }
        if e.kind == JobErrorKind::Cancelled {
            return e;
        }
        for f in fs {
            let one = Work::Files(vec![f.clone()]);
            if let Ok(Some(rb)) = self.fetch(&one) {
                if let Err(e1) = self.score(&rb, true) {
                    return e1.in_file(Some(&f.path));
                }
            }
        }
        e
    }
}

/// Runs a fetch query and gathers its result into one batch (None when it has no rows).
fn fetch_arrow(conn: &Connection, sql: &str) -> Result<Option<RecordBatch>, String> {
    let mut stmt = conn.prepare(sql).map_err(|e| e.to_string())?;
    let batches: Vec<RecordBatch> = stmt.query_arrow([]).map_err(|e| e.to_string())?.collect();
    let Some(first) = batches.first() else { return Ok(None) };
    let all = concat_batches(&first.schema(), &batches).map_err(|e| format!("gathering the batch: {e}"))?;
    Ok((all.num_rows() > 0).then_some(all))
}
