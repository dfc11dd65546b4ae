//! Declaring a job: everything is checked against the source once, when the job is created, so
//! a run fails only for reasons that arise later (a file with other columns, a model removed).

use std::collections::HashSet;
use std::path::PathBuf;

use duckdb::{params, Connection, OptionalExt};
use sqlscore_core::lake::{escape_glob, quote_ident, quote_literal};
use sqlscore_core::{OnError, Outputs, Source, Target};

use super::{db, schema, JobError, JobErrorKind};

/// What `sqlscore job create` declares.
#[derive(Debug, Clone)]
pub struct JobSpec {
    pub name: String,
    /// A table, or a glob of Parquet or CSV files (made absolute when the job is created).
    pub source: String,
    /// An integer column identifying a row: the incremental key of a table source, and the row
    /// id written to the target and the rejects.
    pub key: String,
    /// An SQL expression over the source's columns naming each row's model (`'anomaly_' || sensor_id`).
    pub model: String,
    /// A table, or a folder ending in `/` for Parquet files.
    pub target: String,
    /// Columns bound to the model's inputs in order; None binds the inputs to columns by name.
    pub features: Option<Vec<String>>,
    /// Source columns copied to the target next to the score.
    pub carry: Vec<String>,
    pub on_error: OnError,
    /// `score` plus optionally `label`, `probabilities`.
    pub outputs: Vec<String>,
    /// Rows per transaction (file sources: whole files of about this many rows).
    pub batch_rows: u64,
}

impl JobSpec {
    /// A job with the defaults: features by name, nothing carried, rejects kept aside, score only,
    /// batches of a million rows.
    pub fn new(name: &str, source: &str, key: &str, model: &str, target: &str) -> Self {
        JobSpec {
            name: name.into(),
            source: source.into(),
            key: key.into(),
            model: model.into(),
            target: target.into(),
            features: None,
            carry: Vec::new(),
            on_error: OnError::Reject,
            outputs: vec!["score".into()],
            batch_rows: 1_000_000,
        }
    }
}

/// A stored job, as runs and `sqlscore job list` see it.
#[derive(Debug, Clone)]
pub struct JobInfo {
    pub spec: JobSpec,
    pub source: Source,
    pub target: Target,
    pub outputs: Outputs,
    pub watermark: Option<i64>,
    pub created_at: String,
}

const MAX_BATCH_ROWS: u64 = 10_000_000;

fn check_job_name(name: &str) -> Result<(), JobError> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.');
    if ok {
        Ok(())
    } else {
        Err(JobError::new(
            name,
            JobErrorKind::Definition,
            "a job name is 1 to 100 letters, digits, '_', '-' or '.' (it also names files next to the database)",
        ))
    }
}

/// The relation a job reads: the table, or DuckDB's reader over `files` with each row's file.
pub(crate) fn relation(source: &Source, files: &[String]) -> String {
    match source {
        Source::Table(t) => t.split('.').map(quote_ident).collect::<Vec<_>>().join("."),
        Source::Files { format, .. } => {
            let list: Vec<String> = files.iter().map(|f| quote_literal(&escape_glob(f))).collect();
            let reader = match format {
                sqlscore_core::FileFormat::Parquet => "read_parquet",
                sqlscore_core::FileFormat::Csv => "read_csv",
            };
            format!("{reader}([{}], filename = '{FILE_COLUMN}')", list.join(", "))
        }
    }
}

/// The column a file reader adds with each row's file.
pub(crate) const FILE_COLUMN: &str = "__sqlscore_file";

/// Files a glob matches now, through DuckDB's own globbing (the reader's rules, `**` included).
pub(crate) fn glob_files(conn: &Connection, job: &str, glob: &str) -> Result<Vec<String>, JobError> {
    let mut stmt = conn.prepare("SELECT file FROM glob(?) ORDER BY file").map_err(db(job, JobErrorKind::Failed))?;
    let files = stmt
        .query_map([glob], |r| r.get::<_, String>(0))
        .and_then(|rows| rows.collect::<duckdb::Result<Vec<_>>>())
        .map_err(db(job, JobErrorKind::Failed))?;
    Ok(files)
}

/// The target table's columns, in the order runs append them.
pub(crate) fn target_columns(spec: &JobSpec, outputs: Outputs, files: bool) -> Vec<String> {
    let mut cols = vec![spec.key.clone()];
    cols.extend(spec.carry.iter().cloned());
    cols.push("score".into());
    if outputs.label {
        cols.push("label".into());
    }
    if outputs.probabilities {
        cols.push("probabilities".into());
    }
    cols.extend(["model", "model_version", "run_id", "scored_at"].map(String::from));
    if files {
        cols.push("source_file".into());
    }
    cols
}

/// The select list giving a target's columns their types (from the source for the key and the
/// carried columns), over the source relation with `LIMIT 0`.
pub(crate) fn layout_select(spec: &JobSpec, outputs: Outputs, files: bool) -> String {
    let mut cols: Vec<String> = std::iter::once(&spec.key).chain(&spec.carry).map(|c| quote_ident(c)).collect();
    cols.push("NULL::DOUBLE AS score".into());
    if outputs.label {
        cols.push("NULL::VARCHAR AS label".into());
    }
    if outputs.probabilities {
        cols.push("NULL::DOUBLE[] AS probabilities".into());
    }
    cols.push(
        "NULL::VARCHAR AS model, NULL::INTEGER AS model_version, NULL::BIGINT AS run_id, NULL::TIMESTAMPTZ AS scored_at"
            .into(),
    );
    if files {
        cols.push("NULL::VARCHAR AS source_file".into());
    }
    cols.join(", ")
}

/// Validates and stores a job; creates the target table or folder when missing.
pub fn create_job(conn: &Connection, spec: &JobSpec) -> Result<(), JobError> {
    let name = spec.name.as_str();
    check_job_name(name)?;
    let def = |msg: String| JobError::new(name, JobErrorKind::Definition, msg);
    let core_err = |e: sqlscore_core::Error| def(e.to_string());
    schema::ensure(conn).map_err(db(name, JobErrorKind::Failed))?;
    if job(conn, name).is_ok() {
        return Err(def("a job of this name exists (sqlscore job drop it first, or pick another name)".into()));
    }
    let mut spec = spec.clone();
    let source = Source::parse(&spec.source).map_err(core_err)?;
    let target = Target::parse(&spec.target).map_err(core_err)?;
    let outputs = Outputs::parse(spec.outputs.iter().map(String::as_str)).map_err(core_err)?;
    if !(1..=MAX_BATCH_ROWS).contains(&spec.batch_rows) {
        return Err(def(format!("batch_rows must be 1 to {MAX_BATCH_ROWS}, not {}", spec.batch_rows)));
    }
    let files = match &source {
        Source::Files { glob, .. } => {
            let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
            spec.source = sqlscore_core::lake::absolute_glob(glob, &cwd).map_err(core_err)?;
            let files = glob_files(conn, name, &spec.source)?;
            if files.is_empty() {
                return Err(def(format!(
                    "the source glob {} matches no file yet; the job is checked against the files' columns, so create it once the first file has landed",
                    spec.source
                )));
            }
            files[..1].to_vec()
        }
        Source::Table(_) => Vec::new(),
    };
    let source = Source::parse(&spec.source).map_err(core_err)?;
    let rel = relation(&source, &files);

    // Columns: every one named must exist; the key must be an integer.
    let columns: Vec<(String, String)> = {
        let mut stmt = conn
            .prepare(&format!("DESCRIBE SELECT * FROM {rel}"))
            .map_err(|e| def(format!("cannot read the source {}: {e}", spec.source)))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .and_then(|rows| rows.collect::<duckdb::Result<Vec<_>>>())
            .map_err(|e| def(format!("cannot read the source {}: {e}", spec.source)))?;
        rows.into_iter().filter(|(c, _)| c != FILE_COLUMN).collect()
    };
    let have = columns.iter().map(|(c, _)| c.as_str()).collect::<Vec<_>>().join(", ");
    let find = |col: &str, role: &str| -> Result<String, JobError> {
        // DuckDB matches identifiers case-insensitively.
        columns.iter().find(|(c, _)| c.eq_ignore_ascii_case(col)).map(|(_, t)| t.clone()).ok_or_else(|| {
            def(format!("the source {} has no column \"{col}\" (named as {role}); it has: {have}", spec.source))
        })
    };
    let key_type = find(&spec.key, "the key")?;
    let integers = ["TINYINT", "SMALLINT", "INTEGER", "BIGINT", "UTINYINT", "USMALLINT", "UINTEGER"];
    if !integers.contains(&key_type.as_str()) {
        return Err(def(format!(
            "the key \"{}\" is {key_type}; a job's key is an integer column (TINYINT to BIGINT) identifying each row",
            spec.key
        )));
    }
    if let Source::Table(t) = &source {
        // Rows with a NULL key could never be placed against the watermark.
        let (schema, table) =
            t.rsplit_once('.').map_or(("main", t.as_str()), |(s, n)| (s.rsplit('.').next().unwrap_or(s), n));
        let nullable: bool = conn
            .query_row(
                "SELECT coalesce(bool_or(is_nullable), true) FROM duckdb_columns() WHERE schema_name = ? AND table_name = ? AND column_name = ?",
                params![schema, table, &spec.key],
                |r| r.get(0),
            )
            .map_err(db(name, JobErrorKind::Failed))?;
        if nullable {
            return Err(def(format!(
                "the key \"{}\" of {t} may be NULL; a table source's key must be NOT NULL (ALTER TABLE {t} ALTER {} SET NOT NULL)",
                spec.key,
                quote_ident(&spec.key)
            )));
        }
    }
    for c in spec.features.iter().flatten() {
        find(c, "a feature")?;
    }
    for c in &spec.carry {
        let ty = find(c, "a carried column")?;
        let reserved =
            ["score", "label", "probabilities", "model", "model_version", "run_id", "scored_at", "source_file"];
        // DuckDB identifiers are case-insensitive: `Score` would clash with `score`.
        let lower = c.to_lowercase();
        if lower == spec.key.to_lowercase() || reserved.contains(&lower.as_str()) {
            return Err(def(format!(
                "the carried column \"{c}\" clashes with a column the job writes ({})",
                reserved.join(", ")
            )));
        }
        if ty.starts_with("ENUM") {
            return Err(def(format!(
                "the carried column \"{c}\" is an ENUM, which jobs cannot carry yet; carry it from a view that casts it to VARCHAR"
            )));
        }
    }
    if spec.features.as_ref().is_some_and(|f| f.is_empty()) {
        return Err(def("features is an empty list: name the feature columns, or leave it out to bind by name".into()));
    }

    // The model expression: parsed (never run) to be one expression over the source, then
    // prepared so DuckDB binds it (a missing column is refused here).
    check_model_expr(conn, name, &spec.model, &source, &rel)?;
    let probe = format!("SELECT CAST(({}) AS VARCHAR) FROM {rel} LIMIT 0", spec.model);
    if let Err(e) = conn.prepare(&probe) {
        return Err(def(format!(
            "the model expression {} does not work on the source {}: {e}",
            spec.model, spec.source
        )));
    }
    // Every model the current rows name must be registered (a lake is checked on its first file).
    let unknown: Vec<String> = {
        let sql = format!(
            // A name of our own for the model column: a source column `m` would win over an alias.
            "SELECT DISTINCT __sqlscore_m FROM (SELECT CAST(({}) AS VARCHAR) AS __sqlscore_m FROM {rel}) \
             WHERE __sqlscore_m IS NOT NULL AND __sqlscore_m NOT IN (SELECT __sqlscore_ref FROM sqlscore_model_refs) \
             ORDER BY 1 LIMIT 6",
            spec.model
        );
        let mut stmt = conn.prepare(&sql).map_err(|e| def(format!("checking the models: {e}")))?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0)).map_err(|e| def(e.to_string()))?;
        rows.collect::<duckdb::Result<Vec<_>>>().map_err(|e| def(e.to_string()))?
    };
    if !unknown.is_empty() {
        let shown = unknown.iter().take(5).map(|m| format!("\"{m}\"")).collect::<Vec<_>>().join(", ");
        return Err(def(format!(
            "the model expression names models that are not registered: {shown}{} (register them with sqlscore model push first)",
            if unknown.len() > 5 { ", ..." } else { "" }
        )));
    }

    let file_source = matches!(source, Source::Files { .. });
    match &target {
        Target::Table(t) => {
            let expected = target_columns(&spec, outputs, file_source);
            let existing: Vec<String> = {
                let (schema, table) = t.rsplit_once('.').unwrap_or(("main", t));
                let mut stmt = conn
                    .prepare(
                        "SELECT column_name FROM duckdb_columns() WHERE schema_name = ? AND table_name = ? ORDER BY column_index",
                    )
                    .map_err(db(name, JobErrorKind::Failed))?;
                let rows = stmt
                    .query_map([schema, table], |r| r.get::<_, String>(0))
                    .map_err(db(name, JobErrorKind::Failed))?;
                rows.collect::<duckdb::Result<Vec<_>>>().map_err(db(name, JobErrorKind::Failed))?
            };
            if existing.is_empty() {
                let sql = format!(
                    "CREATE TABLE {} AS SELECT {} FROM {rel} LIMIT 0",
                    t.split('.').map(quote_ident).collect::<Vec<_>>().join("."),
                    layout_select(&spec, outputs, file_source)
                );
                conn.execute_batch(&sql).map_err(|e| def(format!("creating the target {t}: {e}")))?;
            } else if existing != expected {
                return Err(def(format!(
                    "the target table {t} exists with columns ({}); this job writes ({}): drop it, or name another target",
                    existing.join(", "),
                    expected.join(", ")
                )));
            }
        }
        Target::ParquetDir(dir) => {
            std::fs::create_dir_all(dir)
                .map_err(|e| def(format!("creating the target folder {}: {e}", dir.display())))?;
            let abs = std::fs::canonicalize(dir).map_err(|e| def(format!("{}: {e}", dir.display())))?;
            // Outputs mirror source names: in (or around) the source folder they would overwrite
            // the sources or be read back as new ones.
            if let Source::Files { glob, .. } = &source {
                let base = std::fs::canonicalize(sqlscore_core::lake::glob_base(glob)).unwrap_or_default();
                if sqlscore_core::lake::nested(&abs, &base) {
                    return Err(def(format!(
                        "the target folder {} and the source folder {} overlap: outputs would overwrite or be read as sources; pick a folder outside the source's",
                        abs.display(),
                        base.display()
                    )));
                }
            }
            for other in jobs(conn)? {
                if let Target::ParquetDir(d) = &other.target {
                    if sqlscore_core::lake::nested(&abs, d) {
                        return Err(def(format!(
                            "the target folder {} overlaps job \"{}\"'s target {}: give each job a folder of its own",
                            abs.display(),
                            other.spec.name,
                            d.display()
                        )));
                    }
                }
            }
            spec.target = format!("{}/", abs.display());
        }
    }
    conn.execute(
        "INSERT INTO sqlscore_jobs (name, source, key, model, target, features, carry, on_error, outputs, batch_rows) \
         VALUES (?, ?, ?, ?, ?, ?::JSON::VARCHAR[], ?::JSON::VARCHAR[], ?, ?::JSON::VARCHAR[], ?)",
        params![
            name,
            spec.source,
            spec.key,
            spec.model,
            spec.target,
            spec.features.as_ref().map(|f| list_literal(f)),
            list_literal(&spec.carry),
            spec.on_error.as_str(),
            list_literal(&spec.outputs),
            spec.batch_rows as i64,
        ],
    )
    .map_err(db(name, JobErrorKind::Failed))?;
    Ok(())
}

/// Refuses a model expression that is not exactly one expression over the source. The text is
/// spliced into the queries a run reads with, and preparing a string of several statements in
/// DuckDB runs all but the last: so it is parsed (`json_serialize_sql`, which runs nothing) as the
/// query it becomes, which must be one SELECT of one item from the source alone. Runs check the
/// stored text again before reading.
pub(crate) fn check_model_expr(
    conn: &Connection,
    job: &str,
    expr: &str,
    source: &Source,
    rel: &str,
) -> Result<(), JobError> {
    let bad = |why: &str| {
        JobError::new(
            job,
            JobErrorKind::Definition,
            format!("the model expression {expr} is not one SQL expression over the source ({why})"),
        )
    };
    let probe = format!("SELECT CAST(({expr}) AS VARCHAR) FROM {rel} LIMIT 0");
    let text: String = conn
        .query_row(&format!("SELECT json_serialize_sql({})::VARCHAR", quote_literal(&probe)), [], |r| r.get(0))
        .map_err(db(job, JobErrorKind::Failed))?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|_| bad("unreadable parse"))?;
    if v["error"].as_bool() != Some(false) {
        return Err(bad(v["error_message"].as_str().unwrap_or("it does not parse")));
    }
    let statements = v["statements"].as_array().map_or(0, Vec::len);
    let node = &v["statements"][0]["node"];
    if statements != 1 || node["type"] != "SELECT_NODE" || node["select_list"].as_array().map_or(0, Vec::len) != 1 {
        return Err(bad("it must not end the expression or add statements"));
    }
    expression_allowed(conn, &node["select_list"][0]).map_err(|why| bad(&why))?;
    let from = &node["from_table"];
    let from_ok = match source {
        Source::Table(t) => {
            from["type"] == "BASE_TABLE"
                && from["table_name"]
                    .as_str()
                    .is_some_and(|n| n.eq_ignore_ascii_case(t.rsplit('.').next().unwrap_or(t)))
        }
        Source::Files { .. } => from["type"] == "TABLE_FUNCTION",
    };
    if !from_ok
        || !node["where_clause"].is_null()
        || node["group_expressions"].as_array().is_some_and(|g| !g.is_empty())
    {
        return Err(bad("it must not add FROM, WHERE or GROUP BY clauses"));
    }
    Ok(())
}

/// Functions an expression may not call even though DuckDB lists them as scalar: they change
/// state (sequences, the random seed) or are sqlscore's own internals (which take file paths).
const DENIED_FUNCTIONS: &[&str] = &["nextval", "currval", "setseed", "getenv"];

/// Walks a parsed expression and allows only what computes a value from the row: column
/// references, constants, operators, casts, CASE, comparisons and scalar functions. A subquery
/// or a table function inside it could read other tables or files, or write files (DuckDB's
/// `enable_profiling(save_location := ...)`), at create and on every fetch; an aggregate, window or
/// `*`/`COLUMNS` expression would change the fetch's shape.
fn expression_allowed(conn: &Connection, expr: &serde_json::Value) -> Result<(), String> {
    let scalar: HashSet<String> = {
        let mut stmt = conn
            .prepare("SELECT DISTINCT function_name FROM duckdb_functions() WHERE function_type = 'scalar'")
            .map_err(|e| format!("listing functions: {e}"))?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0)).map_err(|e| e.to_string())?;
        rows.filter_map(Result::ok).collect()
    };
    let mut stack = vec![expr];
    while let Some(v) = stack.pop() {
        match v {
            serde_json::Value::Array(items) => stack.extend(items),
            serde_json::Value::Object(map) => {
                if let Some(class) = map.get("class").and_then(|c| c.as_str()) {
                    match class {
                        "COLUMN_REF" | "CONSTANT" | "CAST" | "OPERATOR" | "CASE" | "BETWEEN" | "COMPARISON"
                        | "CONJUNCTION" | "COLLATE" | "LAMBDA" => {}
                        "FUNCTION" => {
                            let name = map.get("function_name").and_then(|n| n.as_str()).unwrap_or_default();
                            let lower = name.to_ascii_lowercase();
                            let schema = map.get("schema").and_then(|n| n.as_str()).unwrap_or_default();
                            if !scalar.contains(&lower)
                                || DENIED_FUNCTIONS.contains(&lower.as_str())
                                || lower.starts_with("sqlscore")
                                || !(schema.is_empty() || schema == "main" || schema == "pg_catalog")
                            {
                                return Err(format!("{name}() is not a scalar function it may call"));
                            }
                        }
                        "SUBQUERY" => return Err("it must not contain a subquery".into()),
                        "STAR" => return Err("it must not contain * or COLUMNS(...)".into()),
                        "WINDOW" => return Err("it must not contain a window function".into()),
                        other => return Err(format!("it must not contain a {} expression", other.to_lowercase())),
                    }
                }
                stack.extend(map.values());
            }
            _ => {}
        }
    }
    Ok(())
}

/// A VARCHAR[] as JSON text (`["a","b"]`), cast back by DuckDB: exact for any column name.
fn list_literal(items: &[String]) -> String {
    serde_json::to_string(items).unwrap_or_else(|_| "[]".into())
}

/// Removes a job and its bookkeeping (runs, rejects, file ledger); its target stays.
pub fn drop_job(conn: &Connection, name: &str) -> Result<(), JobError> {
    job(conn, name)?;
    let tx = conn.unchecked_transaction().map_err(db(name, JobErrorKind::Failed))?;
    for table in [
        "sqlscore_jobs WHERE name",
        "sqlscore_job_runs WHERE job",
        "sqlscore_job_rejects WHERE job",
        "sqlscore_job_files WHERE job",
        "sqlscore_job_outputs WHERE job",
    ] {
        tx.execute(&format!("DELETE FROM {table} = ?"), [name]).map_err(db(name, JobErrorKind::Failed))?;
    }
    tx.commit().map_err(db(name, JobErrorKind::Failed))
}

const JOB_COLUMNS: &str = "name, source, key, model, target, CAST(to_json(features) AS VARCHAR), \
     CAST(to_json(carry) AS VARCHAR), on_error, CAST(to_json(outputs) AS VARCHAR), batch_rows, watermark, \
     strftime(created_at, '%Y-%m-%d %H:%M:%S')";

/// A VARCHAR[] read as JSON text (exact for any column name).
fn parse_list(text: Option<String>) -> Option<Vec<String>> {
    serde_json::from_str(&text?).ok()
}

fn row_to_info(r: &duckdb::Row<'_>) -> duckdb::Result<(JobSpec, Option<i64>, String)> {
    let on_error: String = r.get(7)?;
    let spec = JobSpec {
        name: r.get(0)?,
        source: r.get(1)?,
        key: r.get(2)?,
        model: r.get(3)?,
        target: r.get(4)?,
        features: parse_list(r.get(5)?),
        carry: parse_list(r.get(6)?).unwrap_or_default(),
        on_error: on_error.parse().unwrap_or(OnError::Raise),
        outputs: parse_list(r.get(8)?).unwrap_or_else(|| vec!["score".into()]),
        batch_rows: r.get::<_, i64>(9)? as u64,
    };
    Ok((spec, r.get(10)?, r.get(11)?))
}

fn info(spec: JobSpec, watermark: Option<i64>, created_at: String) -> Result<JobInfo, JobError> {
    let bad = |e: sqlscore_core::Error| JobError::new(&spec.name, JobErrorKind::Definition, e.to_string());
    Ok(JobInfo {
        source: Source::parse(&spec.source).map_err(bad)?,
        target: Target::parse(&spec.target).map_err(bad)?,
        outputs: Outputs::parse(spec.outputs.iter().map(String::as_str)).map_err(bad)?,
        spec,
        watermark,
        created_at,
    })
}

/// One job by name.
pub fn job(conn: &Connection, name: &str) -> Result<JobInfo, JobError> {
    let not_found =
        || JobError::new(name, JobErrorKind::NotFound, "no such job in this database (sqlscore job list shows them)");
    if !schema::exists(conn).map_err(db(name, JobErrorKind::Failed))? {
        return Err(not_found());
    }
    let row = conn
        .query_row(&format!("SELECT {JOB_COLUMNS} FROM sqlscore_jobs WHERE name = ?"), [name], row_to_info)
        .optional()
        .map_err(db(name, JobErrorKind::Failed))?;
    let (spec, wm, created) = row.ok_or_else(not_found)?;
    info(spec, wm, created)
}

/// Every job, by name.
pub fn jobs(conn: &Connection) -> Result<Vec<JobInfo>, JobError> {
    if !schema::exists(conn).map_err(db("*", JobErrorKind::Failed))? {
        return Ok(Vec::new());
    }
    let mut stmt = conn
        .prepare(&format!("SELECT {JOB_COLUMNS} FROM sqlscore_jobs ORDER BY name"))
        .map_err(db("*", JobErrorKind::Failed))?;
    let rows = stmt.query_map([], row_to_info).map_err(db("*", JobErrorKind::Failed))?;
    let mut out = Vec::new();
    for r in rows {
        let (spec, wm, created) = r.map_err(db("*", JobErrorKind::Failed))?;
        out.push(info(spec, wm, created)?);
    }
    Ok(out)
}
