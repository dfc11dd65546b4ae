//! Postgres values -> engine columns. A per-row call becomes a one-row batch; a row value
//! (`score('m', t)`) becomes named columns so the engine binds them to inputs by name.

use pgrx::prelude::*;
use pgrx::{AnyElement, AnyNumeric};
use sqlscore_core::{Batch, Column, ColumnData};

use crate::errors::{invalid, PgResult};

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
}

const NULL_MASK: [u64; 1] = [0];

impl Row {
    pub fn positional(cells: Vec<Cell>) -> Self {
        Row { names: None, cells }
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
                Column::new(name, data, validity)
            })
            .collect();
        Batch::new(columns, 1)
    }
}

/// A composite value's attributes as named cells; a scalar as one positional cell.
pub fn any_element(value: &AnyElement) -> PgResult<Row> {
    let oid = value.oid();
    if !unsafe { pg_sys::type_is_rowtype(oid) } {
        return Ok(Row::positional(vec![scalar(value.datum(), oid)?]));
    }
    let tuple: PgHeapTuple<'_, AllocatedByRust> = unsafe { PgHeapTuple::from_composite_datum(value.datum()) };
    let mut names = Vec::new();
    let mut cells = Vec::new();
    for (attno, att) in tuple.attributes() {
        if att.is_dropped() {
            continue;
        }
        let ty = att.type_oid().value();
        let cell = match ty {
            pg_sys::TEXTOID | pg_sys::VARCHAROID => tuple.get_by_index::<String>(attno).map(|o| o.map(Cell::Text)),
            pg_sys::INT2OID => tuple.get_by_index::<i16>(attno).map(|o| o.map(|x| Cell::I64(x.into()))),
            pg_sys::INT4OID => tuple.get_by_index::<i32>(attno).map(|o| o.map(|x| Cell::I64(x.into()))),
            pg_sys::INT8OID => tuple.get_by_index::<i64>(attno).map(|o| o.map(Cell::I64)),
            pg_sys::FLOAT4OID => tuple.get_by_index::<f32>(attno).map(|o| o.map(|x| Cell::F64(x.into()))),
            pg_sys::FLOAT8OID => tuple.get_by_index::<f64>(attno).map(|o| o.map(Cell::F64)),
            pg_sys::NUMERICOID => tuple
                .get_by_index::<AnyNumeric>(attno)
                .map(|o| o.map(|n| Cell::F64(f64::try_from(n).unwrap_or(f64::NAN)))),
            pg_sys::BOOLOID => tuple.get_by_index::<bool>(attno).map(|o| o.map(Cell::Bool)),
            other => Ok(Some(Cell::Unsupported(type_name(other)))),
        }
        .map_err(|e| {
            invalid(PgSqlErrorCode::ERRCODE_DATATYPE_MISMATCH, format!("column \"{}\": {e}", att.name()), None)
        })?;
        names.push(att.name().to_string());
        cells.push(cell.unwrap_or(Cell::Null));
    }
    Ok(Row { names: Some(names), cells })
}

/// A non-composite `anyelement` (e.g. one feature of a one-input model).
fn scalar(datum: pg_sys::Datum, oid: pg_sys::Oid) -> PgResult<Cell> {
    unsafe {
        Ok(match oid {
            pg_sys::FLOAT8OID => f64::from_polymorphic_datum(datum, false, oid).map_or(Cell::Null, Cell::F64),
            pg_sys::FLOAT4OID => f32::from_polymorphic_datum(datum, false, oid).map_or(Cell::Null, |x| Cell::F64(x.into())),
            pg_sys::INT8OID => i64::from_polymorphic_datum(datum, false, oid).map_or(Cell::Null, Cell::I64),
            pg_sys::INT4OID => i32::from_polymorphic_datum(datum, false, oid).map_or(Cell::Null, |x| Cell::I64(x.into())),
            pg_sys::INT2OID => i16::from_polymorphic_datum(datum, false, oid).map_or(Cell::Null, |x| Cell::I64(x.into())),
            pg_sys::BOOLOID => bool::from_polymorphic_datum(datum, false, oid).map_or(Cell::Null, Cell::Bool),
            pg_sys::NUMERICOID => AnyNumeric::from_polymorphic_datum(datum, false, oid)
                .map_or(Cell::Null, |n| Cell::F64(f64::try_from(n).unwrap_or(f64::NAN))),
            pg_sys::TEXTOID | pg_sys::VARCHAROID => {
                String::from_polymorphic_datum(datum, false, oid).map_or(Cell::Null, Cell::Text)
            }
            other => Cell::Unsupported(type_name(other)),
        })
    }
}

pub fn type_name(oid: pg_sys::Oid) -> String {
    unsafe {
        let p = pg_sys::format_type_be(oid);
        let s = std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned();
        pg_sys::pfree(p.cast());
        s
    }
}
