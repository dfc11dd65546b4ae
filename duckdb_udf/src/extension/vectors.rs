//! DuckDB vectors -> core columns (borrowed, no per-row copies for numbers). DuckDB flattens a
//! scalar function's input chunk before the call, so every vector is a flat array of `n` values
//! plus a validity mask; everything here goes through the checked views of `ffi.rs`.

use libduckdb_sys as sys;
use sqlscore_core::{Column, ColumnData, DecimalValues, Error};

use super::ffi::{is_valid, VectorRef};

/// Feature columns of one call. A single STRUCT argument (a whole row: `score('m', t)`) expands to
/// one named column per field, so the engine binds by name.
pub struct Features<'a> {
    specs: Vec<Spec<'a>>,
}

struct Spec<'a> {
    vector: VectorRef<'a>,
    name: Option<String>,
    /// The row's validity when it is more than the vector's own mask: a struct's rows, or
    /// list/array elements (a row with a NULL element is a NULL feature).
    mask: Option<Vec<u64>>,
    /// LIST/ARRAY rows, or why the list cannot be a feature vector.
    list: Option<Result<ListRows<'a>, String>>,
}

/// A LIST/ARRAY column's rows, borrowed from DuckDB: row `r` is `values[starts[r]..][..width]`.
struct ListRows<'a> {
    values: ColumnData<'a>,
    starts: Vec<usize>,
    width: usize,
}

impl<'a> Features<'a> {
    /// `vectors`: the feature arguments (after the model arguments), `n` rows each.
    pub fn new(vectors: &[VectorRef<'a>], n: usize) -> Result<Self, Error> {
        let mut specs = Vec::new();
        if let [single] = vectors {
            if single.type_id() == sys::DUCKDB_TYPE_DUCKDB_TYPE_STRUCT {
                let parent = single.validity();
                for (i, name) in single.struct_names().into_iter().enumerate() {
                    let child = single.struct_child(i).ok_or_else(|| internal("struct child"))?;
                    specs.push(Spec::new(child, Some(name), parent, n)?);
                }
                return Ok(Features { specs });
            }
        }
        for &v in vectors {
            specs.push(Spec::new(v, None, None, n)?);
        }
        Ok(Features { specs })
    }

    /// The columns, once (list values move into them).
    pub fn columns(&mut self) -> Result<Vec<Column<'_>>, Error> {
        let lists: Vec<_> = self.specs.iter_mut().map(|s| s.list.take()).collect();
        self.specs
            .iter()
            .zip(lists)
            .map(|(s, list)| {
                let mask = s.mask.as_deref().or(s.vector.validity());
                let data = match list {
                    Some(Ok(ListRows { values, starts, width })) => {
                        ColumnData::List { values: Box::new(values), starts, width }
                    }
                    Some(Err(type_name)) => ColumnData::Unsupported { type_name },
                    None => column_data(s.vector, mask)?,
                };
                let ty = type_name(s.vector.type_id());
                Ok(Column::new(s.name.clone(), data, mask).with_sql_type(ty))
            })
            .collect()
    }
}

impl<'a> Spec<'a> {
    fn new(vector: VectorRef<'a>, name: Option<String>, parent: Option<&[u64]>, n: usize) -> Result<Self, Error> {
        let list = list_values(vector, n)?;
        let elements = list.as_ref().and_then(|l| l.as_ref().ok()).map(|(_, mask)| mask.as_slice());
        let mask = if parent.is_none() && elements.is_none() {
            None
        } else {
            let mut combined = vec![u64::MAX; n.div_ceil(64)];
            for m in [parent, vector.validity(), elements].into_iter().flatten() {
                for (c, w) in combined.iter_mut().zip(m) {
                    *c &= w;
                }
            }
            Some(combined)
        };
        Ok(Spec { vector, name, mask, list: list.map(|l| l.map(|(rows, _)| rows)) })
    }
}

fn internal(what: &str) -> Error {
    Error::Internal(format!("DuckDB vector: unreadable {what}"))
}

/// The rows and the mask of rows whose elements are all valid.
type ListValues<'a> = Result<(ListRows<'a>, Vec<u64>), String>;

/// For LIST/ARRAY vectors of numbers: (the elements, each row's start, width, rows whose
/// elements are all valid), borrowed from DuckDB; for other LIST/ARRAY vectors, what they are
/// (they cannot be feature vectors); None for other vectors. NULL rows are never read (their list
/// entries are garbage).
fn list_values<'a>(v: VectorRef<'a>, n: usize) -> Result<Option<ListValues<'a>>, Error> {
    let (width, child, ranges): (usize, VectorRef<'a>, Vec<Option<std::ops::Range<usize>>>) =
        if let Some((width, child)) = v.array() {
            (width, child, (0..n).map(|r| v.is_valid(r).then(|| r * width..(r + 1) * width)).collect())
        } else if let Some(list) = v.list() {
            let ranges: Vec<_> = (0..n).map(|r| list.range(r)).collect();
            for (r, range) in ranges.iter().enumerate() {
                if v.is_valid(r) && range.is_none() {
                    return Err(internal("list entry"));
                }
            }
            let mut lengths = ranges.iter().flatten().map(|r| r.len());
            let width = lengths.next().unwrap_or(1);
            if let Some(other) = lengths.find(|l| *l != width) {
                return Ok(Some(Err(format!("a LIST whose length varies by row ({width} and {other})"))));
            }
            (width, list.child, ranges)
        } else {
            return Ok(None);
        };
    let child_id = child.type_id();
    if !is_numeric_type(child_id) {
        let kind = if v.type_id() == sys::DUCKDB_TYPE_DUCKDB_TYPE_LIST { "LIST" } else { "ARRAY" };
        let child_name = match child_id {
            sys::DUCKDB_TYPE_DUCKDB_TYPE_LIST => "LIST".to_string(),
            sys::DUCKDB_TYPE_DUCKDB_TYPE_ARRAY => "ARRAY".to_string(),
            other => type_name(other),
        };
        return Ok(Some(Err(format!("a {kind} of {child_name}"))));
    }
    let inner = column_data(child, child.validity())?;
    let child_valid = child.validity();
    let mut starts = vec![0usize; n];
    let mut mask = vec![u64::MAX; n.div_ceil(64)];
    for (r, range) in ranges.into_iter().enumerate() {
        match range {
            Some(range) if range.clone().all(|i| is_valid(child_valid, i)) => starts[r] = range.start,
            _ => mask[r / 64] &= !(1u64 << (r % 64)),
        }
    }
    Ok(Some(Ok((ListRows { values: inner, starts, width }, mask))))
}

/// Element types a list/array feature may have.
fn is_numeric_type(id: sys::DUCKDB_TYPE) -> bool {
    matches!(
        id,
        sys::DUCKDB_TYPE_DUCKDB_TYPE_DOUBLE
            | sys::DUCKDB_TYPE_DUCKDB_TYPE_FLOAT
            | sys::DUCKDB_TYPE_DUCKDB_TYPE_TINYINT
            | sys::DUCKDB_TYPE_DUCKDB_TYPE_SMALLINT
            | sys::DUCKDB_TYPE_DUCKDB_TYPE_INTEGER
            | sys::DUCKDB_TYPE_DUCKDB_TYPE_BIGINT
            | sys::DUCKDB_TYPE_DUCKDB_TYPE_UTINYINT
            | sys::DUCKDB_TYPE_DUCKDB_TYPE_USMALLINT
            | sys::DUCKDB_TYPE_DUCKDB_TYPE_UINTEGER
            | sys::DUCKDB_TYPE_DUCKDB_TYPE_UBIGINT
            | sys::DUCKDB_TYPE_DUCKDB_TYPE_DECIMAL
    )
}

/// DuckDB's name of a type, for messages.
pub fn type_name(id: sys::DUCKDB_TYPE) -> String {
    match id {
        sys::DUCKDB_TYPE_DUCKDB_TYPE_DOUBLE => "DOUBLE",
        sys::DUCKDB_TYPE_DUCKDB_TYPE_FLOAT => "FLOAT",
        sys::DUCKDB_TYPE_DUCKDB_TYPE_TINYINT => "TINYINT",
        sys::DUCKDB_TYPE_DUCKDB_TYPE_SMALLINT => "SMALLINT",
        sys::DUCKDB_TYPE_DUCKDB_TYPE_INTEGER => "INTEGER",
        sys::DUCKDB_TYPE_DUCKDB_TYPE_BIGINT => "BIGINT",
        sys::DUCKDB_TYPE_DUCKDB_TYPE_UTINYINT => "UTINYINT",
        sys::DUCKDB_TYPE_DUCKDB_TYPE_USMALLINT => "USMALLINT",
        sys::DUCKDB_TYPE_DUCKDB_TYPE_UINTEGER => "UINTEGER",
        sys::DUCKDB_TYPE_DUCKDB_TYPE_UBIGINT => "UBIGINT",
        sys::DUCKDB_TYPE_DUCKDB_TYPE_BOOLEAN => "BOOLEAN",
        sys::DUCKDB_TYPE_DUCKDB_TYPE_DECIMAL => "DECIMAL",
        sys::DUCKDB_TYPE_DUCKDB_TYPE_HUGEINT => "HUGEINT (cast it to BIGINT or DOUBLE)",
        sys::DUCKDB_TYPE_DUCKDB_TYPE_UHUGEINT => "UHUGEINT (cast it to BIGINT or DOUBLE)",
        sys::DUCKDB_TYPE_DUCKDB_TYPE_LIST => "a LIST (of numbers, the same length in every row, to feed a wide input)",
        sys::DUCKDB_TYPE_DUCKDB_TYPE_ARRAY => "an ARRAY (of numbers, to feed a wide input)",
        sys::DUCKDB_TYPE_DUCKDB_TYPE_VARCHAR => "VARCHAR",
        sys::DUCKDB_TYPE_DUCKDB_TYPE_DATE => "DATE",
        sys::DUCKDB_TYPE_DUCKDB_TYPE_TIMESTAMP | sys::DUCKDB_TYPE_DUCKDB_TYPE_TIMESTAMP_TZ => "TIMESTAMP",
        sys::DUCKDB_TYPE_DUCKDB_TYPE_INTERVAL => "INTERVAL",
        sys::DUCKDB_TYPE_DUCKDB_TYPE_BLOB => "BLOB",
        sys::DUCKDB_TYPE_DUCKDB_TYPE_STRUCT => "STRUCT (pass a whole row as the only feature argument)",
        sys::DUCKDB_TYPE_DUCKDB_TYPE_MAP => "MAP",
        sys::DUCKDB_TYPE_DUCKDB_TYPE_ENUM => "ENUM (cast it to VARCHAR)",
        sys::DUCKDB_TYPE_DUCKDB_TYPE_UUID => "UUID",
        sys::DUCKDB_TYPE_DUCKDB_TYPE_SQLNULL => "NULL",
        other => return format!("unsupported type #{other}"),
    }
    .to_string()
}

/// One vector's values as a core column. `mask` guards string reads: NULL rows hold garbage.
fn column_data<'a>(v: VectorRef<'a>, mask: Option<&[u64]>) -> Result<ColumnData<'a>, Error> {
    let ty = v.logical_type();
    let id = ty.id();
    let read = |what: &str| internal(what);
    Ok(match id {
        sys::DUCKDB_TYPE_DUCKDB_TYPE_DOUBLE => ColumnData::F64(v.values().ok_or_else(|| read("DOUBLE"))?),
        sys::DUCKDB_TYPE_DUCKDB_TYPE_FLOAT => ColumnData::F32(v.values().ok_or_else(|| read("FLOAT"))?),
        sys::DUCKDB_TYPE_DUCKDB_TYPE_TINYINT => ColumnData::I8(v.values().ok_or_else(|| read("TINYINT"))?),
        sys::DUCKDB_TYPE_DUCKDB_TYPE_SMALLINT => ColumnData::I16(v.values().ok_or_else(|| read("SMALLINT"))?),
        sys::DUCKDB_TYPE_DUCKDB_TYPE_INTEGER => ColumnData::I32(v.values().ok_or_else(|| read("INTEGER"))?),
        sys::DUCKDB_TYPE_DUCKDB_TYPE_BIGINT => ColumnData::I64(v.values().ok_or_else(|| read("BIGINT"))?),
        sys::DUCKDB_TYPE_DUCKDB_TYPE_UTINYINT | sys::DUCKDB_TYPE_DUCKDB_TYPE_BOOLEAN => {
            ColumnData::U8(v.values().ok_or_else(|| read("UTINYINT"))?)
        }
        sys::DUCKDB_TYPE_DUCKDB_TYPE_USMALLINT => ColumnData::U16(v.values().ok_or_else(|| read("USMALLINT"))?),
        sys::DUCKDB_TYPE_DUCKDB_TYPE_UINTEGER => ColumnData::U32(v.values().ok_or_else(|| read("UINTEGER"))?),
        sys::DUCKDB_TYPE_DUCKDB_TYPE_UBIGINT => ColumnData::U64(v.values().ok_or_else(|| read("UBIGINT"))?),
        sys::DUCKDB_TYPE_DUCKDB_TYPE_DECIMAL => {
            let (internal_type, scale) = ty.decimal().ok_or_else(|| read("DECIMAL"))?;
            let values = match internal_type {
                sys::DUCKDB_TYPE_DUCKDB_TYPE_SMALLINT => DecimalValues::I16(v.values().ok_or_else(|| read("DECIMAL"))?),
                sys::DUCKDB_TYPE_DUCKDB_TYPE_INTEGER => DecimalValues::I32(v.values().ok_or_else(|| read("DECIMAL"))?),
                sys::DUCKDB_TYPE_DUCKDB_TYPE_BIGINT => DecimalValues::I64(v.values().ok_or_else(|| read("DECIMAL"))?),
                _ => DecimalValues::Wide(v.values().ok_or_else(|| read("DECIMAL"))?),
            };
            ColumnData::Decimal { values, scale }
        }
        sys::DUCKDB_TYPE_DUCKDB_TYPE_VARCHAR => {
            let strings = v.strings().ok_or_else(|| read("VARCHAR"))?;
            let mut out = Vec::with_capacity(v.len());
            for r in 0..v.len() {
                if !is_valid(mask, r) {
                    out.push("");
                    continue;
                }
                out.push(strings.str(r).ok_or_else(|| Error::LossyValue {
                    column: format!("row {r}"),
                    value: "a VARCHAR".into(),
                    target: "UTF-8 text".into(),
                })?);
            }
            ColumnData::Str(out)
        }
        sys::DUCKDB_TYPE_DUCKDB_TYPE_SQLNULL => ColumnData::Null,
        other => ColumnData::Unsupported { type_name: type_name(other) },
    })
}
