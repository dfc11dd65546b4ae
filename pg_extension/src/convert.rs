//! Postgres values -> engine columns. A per-row call becomes a one-row batch; a row value
//! (`score('m', t)`) becomes named columns so the engine binds them to inputs by name.

use pgrx::prelude::*;
use pgrx::{AnyElement, AnyNumeric};
use sqlscore_core::{Batch, Column, ColumnData, Error};

use crate::errors::{report, PgResult};

/// A NUMERIC datum as f64: NaN and ±Infinity map to themselves (as float8 'NaN' does, which tree
/// models read as a missing value); a value outside float8's range is an error, not a silent NaN.
pub fn numeric_to_f64(d: pg_sys::Datum, column: &str) -> Result<f64, Error> {
    // SAFETY: the caller passes a non-NULL datum of type numeric.
    let n = unsafe { AnyNumeric::from_datum(d, false) };
    let Some(n) = n else { return Ok(f64::NAN) };
    f64::try_from(n.clone()).map_err(|_| lossy_numeric(&n, column))
}

/// The error for a NUMERIC beyond float8's range; a long value is shortened to its first digits.
fn lossy_numeric(n: &AnyNumeric, column: &str) -> Error {
    let text = n.to_string();
    let value = if text.len() > 24 { format!("{}... ({} characters)", &text[..16], text.len()) } else { text };
    Error::LossyValue { column: format!("column \"{column}\""), value, target: "double precision".into() }
}

/// A text/varchar datum as a Rust string, converted from the database's encoding to UTF-8 (a
/// LATIN1 `'é'` is `é`). Bytes that are not valid in that encoding (possible in a SQL_ASCII
/// database) are an error naming the column, never a panic or an empty string.
pub fn text_from_datum(d: pg_sys::Datum, column: &str) -> Result<String, Error> {
    // SAFETY: the caller passes a non-NULL text/varchar datum; detoasting gives a varlena that
    // lives in the current memory context, read as bytes; pg_server_to_any returns either the
    // same bytes or a palloc'd NUL-terminated copy, both read before this function returns.
    let bytes = unsafe {
        let text = pg_sys::pg_detoast_datum_packed(d.cast_mut_ptr());
        let raw = pgrx::varlena::varlena_to_byte_slice(text);
        let converted = pg_sys::pg_server_to_any(raw.as_ptr().cast(), raw.len() as i32, pg_sys::pg_enc::PG_UTF8 as i32);
        if converted.cast_const() == raw.as_ptr().cast() {
            raw.to_vec()
        } else {
            std::ffi::CStr::from_ptr(converted).to_bytes().to_vec()
        }
    };
    String::from_utf8(bytes).map_err(|_| Error::LossyValue {
        column: format!("column \"{column}\""),
        value: "a text value".into(),
        target: "UTF-8 text".into(),
    })
}

/// PostgreSQL's name of a type, formatted once per type per backend: messages need it, the
/// per-row path must not pay a catalog lookup for it.
pub fn cached_type_name(oid: pg_sys::Oid) -> &'static str {
    thread_local! {
        static NAMES: std::cell::RefCell<std::collections::HashMap<pg_sys::Oid, &'static str>> =
            std::cell::RefCell::new(std::collections::HashMap::new());
    }
    NAMES.with(|names| {
        let mut names = names.borrow_mut();
        if let Some(n) = names.get(&oid) {
            return *n;
        }
        let name: &'static str = Box::leak(type_name(oid).into_boxed_str());
        // Bounded by the number of distinct column types a backend scores; stop caching past 1,000.
        if names.len() < 1000 {
            names.insert(oid, name);
        }
        name
    })
}

/// One value of one feature, owned.
pub enum Cell {
    F64(f64),
    I64(i64),
    Bool(bool),
    Text(String),
    Null,
    Unsupported(String),
}

/// Owned storage a one-row `Batch` borrows from.
pub struct Row {
    pub names: Option<Vec<String>>,
    pub cells: Vec<Cell>,
    /// Each cell's SQL type, for messages (None for VARIADIC float8 arguments).
    pub types: Option<Vec<&'static str>>,
}

const NULL_MASK: [u64; 1] = [0];

impl Row {
    pub fn positional(cells: Vec<Cell>) -> Self {
        Row { names: None, cells, types: None }
    }

    pub fn batch(&self) -> Batch<'_> {
        let columns = self
            .cells
            .iter()
            .enumerate()
            .map(|(i, cell)| {
                let name = self.names.as_ref().map(|n| n[i].clone());
                let (data, validity) = match cell {
                    Cell::F64(v) => (ColumnData::F64(std::slice::from_ref(v)), None),
                    Cell::I64(v) => (ColumnData::I64(std::slice::from_ref(v)), None),
                    Cell::Bool(v) => (ColumnData::Bool(std::slice::from_ref(v)), None),
                    Cell::Text(s) => (ColumnData::Str(vec![s.as_str()]), None),
                    Cell::Null => (ColumnData::Null, Some(&NULL_MASK[..])),
                    Cell::Unsupported(t) => (ColumnData::Unsupported { type_name: t.clone() }, None),
                };
                let column = Column::new(name, data, validity);
                match self.types.as_ref().map(|t| t[i]) {
                    Some(t) => column.with_sql_type(t),
                    None => column,
                }
            })
            .collect();
        Batch::new(columns, 1)
    }
}

/// A composite value's attributes as named cells; a scalar as one positional cell.
pub fn any_element(value: &AnyElement) -> PgResult<Row> {
    let oid = value.oid();
    // SAFETY: oid is the type of a value PostgreSQL passed us.
    if !unsafe { pg_sys::type_is_rowtype(oid) } {
        let mut row = Row::positional(vec![scalar(value.datum(), oid)?]);
        row.types = Some(vec![cached_type_name(oid)]);
        return Ok(row);
    }
    // SAFETY: the value is a composite datum (checked above) that lives for this call.
    let tuple: PgHeapTuple<'_, AllocatedByRust> = unsafe { PgHeapTuple::from_composite_datum(value.datum()) };
    let mut names = Vec::new();
    let mut cells = Vec::new();
    let mut types = Vec::new();
    for (attno, att) in tuple.attributes() {
        if att.is_dropped() {
            continue;
        }
        let ty = att.type_oid().value();
        let cell = match ty {
            pg_sys::TEXTOID | pg_sys::VARCHAROID => {
                // The raw datum, converted by text_from_datum (pgrx's String conversion panics on
                // text that is not UTF-8).
                let mut is_null = false;
                // SAFETY: the value is a composite datum (checked above); detoasting gives its
                // tuple header, and attno is one of its attributes.
                let d = unsafe {
                    let header = pg_sys::pg_detoast_datum(value.datum().cast_mut_ptr()) as pg_sys::HeapTupleHeader;
                    pg_sys::GetAttributeByNum(header, attno.get() as pg_sys::AttrNumber, &mut is_null)
                };
                if is_null {
                    Ok(None)
                } else {
                    Ok(Some(Cell::Text(text_from_datum(d, att.name()).map_err(report)?)))
                }
            }
            pg_sys::INT2OID => tuple.get_by_index::<i16>(attno).map(|o| o.map(|x| Cell::I64(x.into()))),
            pg_sys::INT4OID => tuple.get_by_index::<i32>(attno).map(|o| o.map(|x| Cell::I64(x.into()))),
            pg_sys::INT8OID => tuple.get_by_index::<i64>(attno).map(|o| o.map(Cell::I64)),
            pg_sys::FLOAT4OID => tuple.get_by_index::<f32>(attno).map(|o| o.map(|x| Cell::F64(x.into()))),
            pg_sys::FLOAT8OID => tuple.get_by_index::<f64>(attno).map(|o| o.map(Cell::F64)),
            pg_sys::NUMERICOID => match tuple.get_by_index::<AnyNumeric>(attno) {
                Ok(Some(n)) => Ok(Some(Cell::F64(numeric_value(n, att.name())?))),
                other => other.map(|_| None),
            },
            pg_sys::BOOLOID => tuple.get_by_index::<bool>(attno).map(|o| o.map(Cell::Bool)),
            other => Ok(Some(Cell::Unsupported(type_name(other)))),
        }
        .map_err(|e| {
            report(Error::LossyValue {
                column: format!("column \"{}\"", att.name()),
                value: "its value".into(),
                target: format!("{e}"),
            })
        })?;
        names.push(att.name().to_string());
        cells.push(cell.unwrap_or(Cell::Null));
        types.push(cached_type_name(ty));
    }
    Ok(Row { names: Some(names), cells, types: Some(types) })
}

fn numeric_value(n: AnyNumeric, column: &str) -> PgResult<f64> {
    f64::try_from(n.clone()).map_err(|_| report(lossy_numeric(&n, column)))
}

/// A non-composite `anyelement` (e.g. one feature of a one-input model).
fn scalar(datum: pg_sys::Datum, oid: pg_sys::Oid) -> PgResult<Cell> {
    // SAFETY: datum is a non-NULL value of type `oid` (the functions are STRICT), read with the
    // conversion for that type.
    unsafe {
        Ok(match oid {
            pg_sys::FLOAT8OID => f64::from_polymorphic_datum(datum, false, oid).map_or(Cell::Null, Cell::F64),
            pg_sys::FLOAT4OID => {
                f32::from_polymorphic_datum(datum, false, oid).map_or(Cell::Null, |x| Cell::F64(x.into()))
            }
            pg_sys::INT8OID => i64::from_polymorphic_datum(datum, false, oid).map_or(Cell::Null, Cell::I64),
            pg_sys::INT4OID => {
                i32::from_polymorphic_datum(datum, false, oid).map_or(Cell::Null, |x| Cell::I64(x.into()))
            }
            pg_sys::INT2OID => {
                i16::from_polymorphic_datum(datum, false, oid).map_or(Cell::Null, |x| Cell::I64(x.into()))
            }
            pg_sys::BOOLOID => bool::from_polymorphic_datum(datum, false, oid).map_or(Cell::Null, Cell::Bool),
            pg_sys::NUMERICOID => match AnyNumeric::from_polymorphic_datum(datum, false, oid) {
                Some(n) => Cell::F64(numeric_value(n, "feature 1")?),
                None => Cell::Null,
            },
            pg_sys::TEXTOID | pg_sys::VARCHAROID => Cell::Text(text_from_datum(datum, "feature 1").map_err(report)?),
            other => Cell::Unsupported(type_name(other)),
        })
    }
}

/// PostgreSQL's name of a type (`double precision`, `numeric(10,2)` without the modifier).
pub fn type_name(oid: pg_sys::Oid) -> String {
    // SAFETY: format_type_be returns a palloc'd C string for any type oid; freed after copying.
    unsafe {
        let p = pg_sys::format_type_be(oid);
        let s = std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned();
        pg_sys::pfree(p.cast());
        s
    }
}
