//! The batch path for big jobs. Per-row functions pay ONNX Runtime's per-call cost on every row;
//! `score_batch(model, query)` reads the query through a cursor, `sqlscore.batch_size` rows at a
//! time, scores each batch in one run, and streams `(id, score)` rows back:
//!
//!     INSERT INTO scores SELECT * FROM sqlscore.score_batch('churn', 'SELECT id, age, income FROM customers');
//!
//! The query's first column is the row key (an integer type); the others are the features, bound
//! to the model's inputs by name (or in order, for a single-input model). Between batches the
//! query checks for cancellation, so `statement_timeout` and `pg_cancel_backend` stay prompt.

use std::sync::Arc;

use pgrx::prelude::*;
use pgrx::AnyNumeric;
use sqlscore_core::{Batch, Column, ColumnData, Model, Predictions, Want};

use crate::convert::type_name;
use pgrx::pg_sys::panic::ErrorReport;
use crate::errors::{invalid, report, PgResult};
use crate::guc;
use crate::registry::{resolve, spi_error};

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
    ids: Vec<i64>,
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
            })
            .collect();
        Batch::new(columns, n)
    }
}

fn fetch(cursor_name: &str, rows: i64) -> PgResult<(Fetched, bool)> {
    Spi::connect(|c| {
        let mut cursor = c.find_cursor(cursor_name)?;
        let table = cursor.fetch(rows as _)?;
        let ncols = table.columns()?;
        let got = table.len();
        let mut fetched = Fetched { ids: Vec::with_capacity(got), features: Vec::new() };
        for i in 2..=ncols {
            let oid = table.column_type_oid(i)?.value();
            let store = match oid {
                pg_sys::FLOAT8OID | pg_sys::FLOAT4OID | pg_sys::NUMERICOID => Store::F64(Vec::with_capacity(got)),
                pg_sys::INT2OID | pg_sys::INT4OID | pg_sys::INT8OID => Store::I64(Vec::with_capacity(got)),
                pg_sys::BOOLOID => Store::Bool(Vec::with_capacity(got)),
                pg_sys::TEXTOID | pg_sys::VARCHAROID => Store::Text(Vec::with_capacity(got)),
                other => Store::Unsupported(type_name(other)),
            };
            fetched.features.push(Feature { name: table.column_name(i)?, oid, store, validity: vec![0; got.div_ceil(64)] });
        }
        let id_oid = if ncols >= 1 { table.column_type_oid(1)?.value() } else { pg_sys::InvalidOid };
        for (r, row) in table.enumerate() {
            let id = match id_oid {
                pg_sys::INT2OID => row.get::<i16>(1)?.map(i64::from),
                pg_sys::INT4OID => row.get::<i32>(1)?.map(i64::from),
                _ => row.get::<i64>(1)?,
            };
            fetched.ids.push(id.unwrap_or(0));
            for (k, f) in fetched.features.iter_mut().enumerate() {
                let col = k + 2;
                let valid = match (&mut f.store, f.oid) {
                    (Store::F64(v), pg_sys::FLOAT8OID) => push(v, row.get::<f64>(col)?),
                    (Store::F64(v), pg_sys::FLOAT4OID) => push(v, row.get::<f32>(col)?.map(f64::from)),
                    (Store::F64(v), _) => {
                        push(v, row.get::<AnyNumeric>(col)?.map(|n| f64::try_from(n).unwrap_or(f64::NAN)))
                    }
                    (Store::I64(v), pg_sys::INT2OID) => push(v, row.get::<i16>(col)?.map(i64::from)),
                    (Store::I64(v), pg_sys::INT4OID) => push(v, row.get::<i32>(col)?.map(i64::from)),
                    (Store::I64(v), _) => push(v, row.get::<i64>(col)?),
                    (Store::Bool(v), _) => push(v, row.get::<bool>(col)?),
                    (Store::Text(v), _) => push(v, row.get::<String>(col)?),
                    (Store::Unsupported(_), _) => false,
                };
                if valid {
                    f.validity[r / 64] |= 1 << (r % 64);
                }
            }
        }
        let more = got as i64 == rows;
        if more {
            cursor.detach_into_name();
        }
        Ok::<_, pgrx::spi::Error>((fetched, more))
    })
    .map_err(spi_error)
}

fn push<T: Default>(v: &mut Vec<T>, value: Option<T>) -> bool {
    let valid = value.is_some();
    v.push(value.unwrap_or_default());
    valid
}


/// Opens the cursor and returns an iterator that fetches, scores and yields batch by batch.
fn stream<T: 'static>(
    model: &str,
    query: &str,
    batch_size: Option<i32>,
    want: Want,
    extract: fn(Predictions) -> Vec<Option<T>>,
) -> PgResult<impl Iterator<Item = (i64, Option<T>)>> {
    let label = model.to_string();
    let model: Arc<Model> = resolve(model)?;
    model.check_want(&label, want).map_err(report)?;
    let rows = i64::from(batch_size.unwrap_or_else(|| guc::BATCH_SIZE.get()).max(1));
    let opts = guc::run_options();
    let cursor = Spi::connect(|c| c.try_open_cursor(query, &[]).map(|cur| cur.detach_into_name()))
        .map_err(|e| invalid(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, format!("score_batch query failed: {e}"), None))?;
    let mut buffer: std::vec::IntoIter<(i64, Option<T>)> = Vec::new().into_iter();
    let mut done = false;
    Ok(std::iter::from_fn(move || loop {
        if let Some(item) = buffer.next() {
            return Some(item);
        }
        if done {
            return None;
        }
        check_for_interrupts!();
        let (fetched, more) = match fetch(&cursor, rows) {
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
                report(e).report(PgLogLevel::ERROR);
                return None;
            }
        };
        buffer = fetched.ids.iter().copied().zip(extract(predictions)).collect::<Vec<_>>().into_iter();
    }))
}

/// Scores every row of `query` in batches; returns (id, score) per row.
#[pg_extern(volatile, parallel_unsafe)]
fn score_batch(
    model: &str,
    query: &str,
    batch_size: default!(Option<i32>, "NULL"),
) -> Result<TableIterator<'static, (name!(id, i64), name!(score, Option<f64>))>, ErrorReport> {
    let rows = stream(model, query, batch_size, Want::Score, |p| match p {
        Predictions::Score(v) => v,
        _ => Vec::new(),
    })?;
    Ok(TableIterator::new(rows))
}

/// Like `score_batch`, returning the predicted label.
#[pg_extern(volatile, parallel_unsafe)]
fn predict_batch(
    model: &str,
    query: &str,
    batch_size: default!(Option<i32>, "NULL"),
) -> Result<TableIterator<'static, (name!(id, i64), name!(label, Option<String>))>, ErrorReport> {
    let rows = stream(model, query, batch_size, Want::Label, |p| match p {
        Predictions::Label(v) => v,
        _ => Vec::new(),
    })?;
    Ok(TableIterator::new(rows))
}
