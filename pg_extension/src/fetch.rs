//! Copying an SPI tuple table into typed columns for the engine: the batch functions and job
//! batches read rows this way. Raw SPI and one `heap_deform_tuple` per row: pgrx's typed per-cell
//! accessors cost more than scoring a cheap model (perf: 60% of a logistic-regression batch run).

use pgrx::prelude::*;
use sqlscore_core::{Batch, Column, ColumnData, Error, QueryProblem};

use crate::convert::{numeric_to_f64, text_from_datum, type_name};
use crate::errors::{report, PgResult};

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

/// What precedes the features in each row.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Leading {
    /// The row key (an integer).
    Key,
    /// The row key, then the name of the model that scores the row (text).
    KeyAndModel,
}

/// Rows copied out of SPI memory.
pub struct Fetched {
    pub ids: Vec<Option<i64>>,
    /// Per row, with [`Leading::KeyAndModel`]; empty otherwise.
    pub models: Vec<Option<String>>,
    features: Vec<Feature>,
    /// Whether features carry their column names (bound by name) or not (bound by position).
    named: bool,
}

impl Fetched {
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn batch(&self) -> Batch<'_> {
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
        let batch = Batch::new(columns, n);
        if self.named {
            batch
        } else {
            batch.bound_by_position()
        }
    }
}

fn int(d: pg_sys::Datum, oid: pg_sys::Oid) -> i64 {
    match oid {
        pg_sys::INT2OID => d.value() as i16 as i64,
        pg_sys::INT4OID => d.value() as i32 as i64,
        _ => d.value() as i64,
    }
}

/// Copies the `got` tuples of `table` (an SPI tuple table, possibly null when `got` is 0).
///
/// # Safety
/// `table` must be the live `SPI_tuptable` of the query just run, holding `got` tuples, and SPI
/// must stay connected until this returns.
pub unsafe fn copy_tuptable(
    function: &str,
    table: *mut pg_sys::SPITupleTable,
    got: usize,
    leading: Leading,
    named: bool,
) -> PgResult<Fetched> {
    let bad = |problem, reason: String, hint: &str| {
        report(Error::BadQuery { function: function.into(), problem, reason, hint: Some(hint.into()) })
    };
    let mut fetched = Fetched { ids: Vec::with_capacity(got), models: Vec::new(), features: Vec::new(), named };
    if table.is_null() {
        return Ok(fetched);
    }
    let meta = match leading {
        Leading::Key => 1,
        Leading::KeyAndModel => 2,
    };
    // SAFETY: the caller guarantees a live tuple table; its tupdesc describes every tuple, and
    // each datum is read with its column's type before SPI frees the table.
    unsafe {
        let desc = (*table).tupdesc;
        let natts = (*desc).natts as usize;
        let attr = |i: usize| &*(*desc).attrs.as_ptr().add(i);
        if natts <= meta {
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
        if leading == Leading::KeyAndModel && ![pg_sys::TEXTOID, pg_sys::VARCHAROID].contains(&attr(1).atttypid) {
            return Err(bad(
                QueryProblem::Shape,
                format!("the query's second column (the model name) is {}, expected text", type_name(attr(1).atttypid)),
                "SELECT id, 'anomaly_' || sensor_id, feature1, ... FROM ...",
            ));
        }
        for i in meta..natts {
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
        if leading == Leading::KeyAndModel {
            fetched.models.reserve(got);
        }
        let mut values = vec![pg_sys::Datum::from(0usize); natts];
        let mut nulls = vec![false; natts];
        for r in 0..got {
            let tuple = *(*table).vals.add(r);
            pg_sys::heap_deform_tuple(tuple, desc, values.as_mut_ptr(), nulls.as_mut_ptr());
            fetched.ids.push((!nulls[0]).then(|| int(values[0], id_oid)));
            if leading == Leading::KeyAndModel {
                fetched.models.push(if nulls[1] {
                    None
                } else {
                    Some(text_from_datum(values[1], "model").map_err(report)?)
                });
            }
            for (k, f) in fetched.features.iter_mut().enumerate() {
                let (d, null) = (values[k + meta], nulls[k + meta]);
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
    }
    Ok(fetched)
}
