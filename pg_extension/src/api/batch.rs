//! The batch path for big jobs. Per-row functions pay ONNX Runtime's per-call cost on every row;
//! `score_batch(model, query)` reads the query through a cursor, `sqlscore.batch_size` rows at a
//! time, scores each batch in one run, and returns `(id, score)` rows batch by batch (in FROM,
//! PostgreSQL collects them in a tuplestore, which spills to disk past work_mem):
//!
//!     INSERT INTO scores SELECT * FROM sqlscore.score_batch('churn', 'SELECT id, age, income FROM customers');
//!
//! The query's first column is the row key (an integer type); the others are the features, bound
//! to the model's inputs by name (or in order, for a single-input model). Between batches the
//! query checks for cancellation, so `statement_timeout` and `pg_cancel_backend` stay prompt.

use std::sync::Arc;

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;
use sqlscore_core::{Batch, Column, ColumnData, Error, Model, Predictions, QueryProblem, Want};

use crate::convert::{numeric_to_f64, text_from_datum, type_name};
use crate::errors::{report, PgResult};
use crate::guc;
use crate::registry::resolve;

enum Store {
    F64(Vec<f64>),
    I64(Vec<i64>),
    Bool(Vec<bool>),
    Text(Vec<String>),
    Unsupported(String),
}

struct Feature {
    name: String,
    oid: pg_sys::Oid,
    store: Store,
    validity: Vec<u64>,
}

/// One fetched batch, copied out of SPI memory.
struct Fetched {
    ids: Vec<Option<i64>>,
    features: Vec<Feature>,
}

impl Fetched {
    fn batch(&self) -> Batch<'_> {
        let n = self.ids.len();
        let columns = self
            .features
            .iter()
            .map(|f| {
                let data = match &f.store {
                    Store::F64(v) => ColumnData::F64(v),
                    Store::I64(v) => ColumnData::I64(v),
                    Store::Bool(v) => ColumnData::Bool(v),
                    Store::Text(v) => ColumnData::Str(v.iter().map(String::as_str).collect()),
                    Store::Unsupported(t) => ColumnData::Unsupported { type_name: t.clone() },
                };
                let all_valid = f.validity.iter().enumerate().all(|(w, bits)| {
                    let used = (n - w * 64).min(64);
                    used == 64 && *bits == u64::MAX || used < 64 && *bits == (1u64 << used) - 1
                });
                Column::new(Some(f.name.clone()), data, (!all_valid).then_some(&f.validity[..]))
                    .with_sql_type(type_name(f.oid))
            })
            .collect();
        Batch::new(columns, n)
    }
}

/// Fetches the next `rows` rows of the cursor and copies them into typed columns. Raw SPI and
/// one `heap_deform_tuple` per row: pgrx's typed per-cell accessors cost more than scoring a
/// cheap model (perf: 60% of a logistic-regression batch run).
fn fetch(function: &str, cursor_name: &str, rows: i64) -> PgResult<(Fetched, bool)> {
    let name = std::ffi::CString::new(cursor_name).unwrap_or_default();
    let bad = |problem, reason: String, hint: &str| {
        report(Error::BadQuery { function: function.into(), problem, reason, hint: Some(hint.into()) })
    };
    // SAFETY: inside Spi::connect; the portal is the cursor this call opened (checked non-null);
    // SPI_tuptable holds SPI_processed tuples described by its tupdesc until SPI_freetuptable;
    // every datum is read with its column's type before the table is freed.
    Spi::connect(|_client| unsafe {
        let portal = pg_sys::SPI_cursor_find(name.as_ptr());
        if portal.is_null() {
            return Err(report(Error::Internal(format!("{function} lost its cursor"))));
        }
        pg_sys::SPI_cursor_fetch(portal, true, rows as _);
        let table = pg_sys::SPI_tuptable;
        let got = pg_sys::SPI_processed as usize;
        let mut fetched = Fetched { ids: Vec::with_capacity(got), features: Vec::new() };
        if table.is_null() {
            return Ok((fetched, false));
        }
        let desc = (*table).tupdesc;
        let natts = (*desc).natts as usize;
        let attr = |i: usize| &*(*desc).attrs.as_ptr().add(i);
        if natts < 2 {
            return Err(bad(
                QueryProblem::Shape,
                "the query must return the row key and at least one feature column".into(),
                "SELECT id, feature1, feature2, ... FROM ...",
            ));
        }
        let id_oid = attr(0).atttypid;
        if ![pg_sys::INT2OID, pg_sys::INT4OID, pg_sys::INT8OID].contains(&id_oid) {
            return Err(bad(
                QueryProblem::KeyType,
                format!("the query's first column (the row key) is {}, expected an integer type", type_name(id_oid)),
                "put the integer key first, e.g. SELECT id, ... (cast with id::bigint)",
            ));
        }
        for i in 1..natts {
            let a = attr(i);
            let oid = a.atttypid;
            let store = match oid {
                pg_sys::FLOAT8OID | pg_sys::FLOAT4OID | pg_sys::NUMERICOID => Store::F64(Vec::with_capacity(got)),
                pg_sys::INT2OID | pg_sys::INT4OID | pg_sys::INT8OID => Store::I64(Vec::with_capacity(got)),
                pg_sys::BOOLOID => Store::Bool(Vec::with_capacity(got)),
                pg_sys::TEXTOID | pg_sys::VARCHAROID => Store::Text(Vec::with_capacity(got)),
                other => Store::Unsupported(type_name(other)),
            };
            let name = std::ffi::CStr::from_ptr(a.attname.data.as_ptr()).to_string_lossy().into_owned();
            fetched.features.push(Feature { name, oid, store, validity: vec![0; got.div_ceil(64)] });
        }
        let mut values = vec![pg_sys::Datum::from(0usize); natts];
        let mut nulls = vec![false; natts];
        for r in 0..got {
            let tuple = *(*table).vals.add(r);
            pg_sys::heap_deform_tuple(tuple, desc, values.as_mut_ptr(), nulls.as_mut_ptr());
            let int = |d: pg_sys::Datum, oid: pg_sys::Oid| match oid {
                pg_sys::INT2OID => d.value() as i16 as i64,
                pg_sys::INT4OID => d.value() as i32 as i64,
                _ => d.value() as i64,
            };
            fetched.ids.push((!nulls[0]).then(|| int(values[0], id_oid)));
            for (k, f) in fetched.features.iter_mut().enumerate() {
                let (d, null) = (values[k + 1], nulls[k + 1]);
                if !null {
                    f.validity[r / 64] |= 1 << (r % 64);
                }
                match &mut f.store {
                    Store::F64(v) => v.push(match (null, f.oid) {
                        (true, _) => 0.0,
                        (false, pg_sys::FLOAT8OID) => f64::from_bits(d.value() as u64),
                        (false, pg_sys::FLOAT4OID) => f64::from(f32::from_bits(d.value() as u32)),
                        (false, _) => numeric_to_f64(d, &f.name).map_err(report)?,
                    }),
                    Store::I64(v) => v.push(if null { 0 } else { int(d, f.oid) }),
                    Store::Bool(v) => v.push(!null && d.value() != 0),
                    Store::Text(v) => {
                        v.push(if null { String::new() } else { text_from_datum(d, &f.name).map_err(report)? })
                    }
                    Store::Unsupported(_) => {}
                }
            }
        }
        pg_sys::SPI_freetuptable(table);
        let more = got as i64 == rows;
        if !more {
            pg_sys::SPI_cursor_close(portal);
        }
        Ok((fetched, more))
    })
}

/// Opens the cursor and returns an iterator that fetches, scores and yields batch by batch.
fn stream<T: 'static>(
    function: &'static str,
    model: Option<&str>,
    query: Option<&str>,
    batch_size: Option<i32>,
    want: Want,
    extract: fn(Predictions) -> Vec<Option<T>>,
) -> PgResult<impl Iterator<Item = (Option<i64>, Option<T>)>> {
    let null = |argument: &str| report(Error::NullArgument { function: function.into(), argument: argument.into() });
    let model = model.ok_or_else(|| null("model"))?;
    let query = query.ok_or_else(|| null("query"))?;
    let label = model.to_string();
    let model: Arc<Model> = resolve(model)?;
    model.check_want(&label, want).map_err(report)?;
    let rows = i64::from(batch_size.unwrap_or_else(|| guc::BATCH_SIZE.get()).max(1));
    let opts = guc::run_options();
    let cursor = Spi::connect(|c| c.try_open_cursor(query, &[]).map(|cur| cur.detach_into_name())).map_err(|e| {
        report(Error::BadQuery {
            function: function.into(),
            problem: QueryProblem::Failed,
            reason: e.to_string(),
            hint: None,
        })
    })?;
    let mut buffer: std::vec::IntoIter<(Option<i64>, Option<T>)> = Vec::new().into_iter();
    let mut done = false;
    Ok(std::iter::from_fn(move || loop {
        if let Some(item) = buffer.next() {
            return Some(item);
        }
        if done {
            return None;
        }
        check_for_interrupts!();
        let (fetched, more) = match fetch(function, &cursor, rows) {
            Ok(x) => x,
            Err(e) => {
                e.report(PgLogLevel::ERROR);
                return None;
            }
        };
        done = !more;
        if fetched.ids.is_empty() {
            continue;
        }
        let batch = fetched.batch();
        let all: Vec<usize> = (0..fetched.ids.len()).collect();
        let predictions = match model.predict(&label, &batch, &all, want, opts) {
            Ok(p) => p,
            Err(e) => {
                // A cancel is PostgreSQL's own error (statement_timeout, pg_cancel_backend).
                check_for_interrupts!();
                report(e).report(PgLogLevel::ERROR);
                return None;
            }
        };
        buffer = fetched.ids.iter().copied().zip(extract(predictions)).collect::<Vec<_>>().into_iter();
    }))
}

/// Scores every row of `query` in batches; returns (id, score) per row. Not STRICT: a NULL model
/// or query is an error naming the argument (a NULL batch size means the session's setting).
/// No fixed search_path: `query` is the caller's and resolves names as the caller does.
// The result type must be spelled out: pgrx reads the column names from the signature.
#[allow(clippy::type_complexity)]
#[pg_extern(volatile, parallel_unsafe)]
fn score_batch(
    model: Option<&str>,
    query: Option<&str>,
    batch_size: default!(Option<i32>, "NULL"),
) -> Result<TableIterator<'static, (name!(id, Option<i64>), name!(score, Option<f64>))>, ErrorReport> {
    let rows = stream("sqlscore.score_batch", model, query, batch_size, Want::Score, Predictions::into_scores)?;
    Ok(TableIterator::new(rows))
}

/// Like `score_batch`, returning the predicted label.
#[allow(clippy::type_complexity)]
#[pg_extern(volatile, parallel_unsafe)]
fn predict_batch(
    model: Option<&str>,
    query: Option<&str>,
    batch_size: default!(Option<i32>, "NULL"),
) -> Result<TableIterator<'static, (name!(id, Option<i64>), name!(label, Option<String>))>, ErrorReport> {
    let rows = stream("sqlscore.predict_batch", model, query, batch_size, Want::Label, Predictions::into_labels)?;
    Ok(TableIterator::new(rows))
}
