//! A fetched batch as the engine reads it: DuckDB hands query results over as Arrow arrays, and
//! the engine takes typed slices plus a validity bitmask, so numeric columns are borrowed as they
//! are. Only what Arrow lays out differently is copied: booleans (bit-packed in Arrow), validity
//! (re-based to 64-bit words) and string views.

use duckdb::arrow::array::{Array, ArrayRef, AsArray};
use duckdb::arrow::datatypes::{
    DataType, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type, UInt16Type, UInt32Type, UInt64Type,
    UInt8Type,
};
use sqlscore_core::{Column, ColumnData, DecimalValues};

/// Owned pieces a [`Column`] borrows from when Arrow's layout is not the engine's.
#[derive(Default)]
pub struct Owned {
    validity: Vec<Option<Vec<u64>>>,
    bools: Vec<Option<Vec<bool>>>,
}

/// Validity of `array` as 64-bit words, bit `i` = row `i` valid; None when it has no NULLs.
fn validity_words(array: &dyn Array) -> Option<Vec<u64>> {
    let nulls = array.logical_nulls()?;
    if nulls.null_count() == 0 {
        return None;
    }
    let mut words = vec![0u64; array.len().div_ceil(64)];
    for i in nulls.valid_indices() {
        words[i / 64] |= 1 << (i % 64);
    }
    Some(words)
}

impl Owned {
    /// Prepares the owned parts of `arrays` (call once, then [`columns`](Self::columns)).
    pub fn new(arrays: &[(String, ArrayRef)]) -> Owned {
        let validity = arrays.iter().map(|(_, a)| validity_words(a.as_ref())).collect();
        let bools = arrays
            .iter()
            .map(|(_, a)| match a.data_type() {
                DataType::Boolean => Some(a.as_boolean().values().iter().collect()),
                _ => None,
            })
            .collect();
        Owned { validity, bools }
    }

    /// The engine's view of `arrays` (named columns, in order).
    pub fn columns<'a>(&'a self, arrays: &'a [(String, ArrayRef)]) -> Vec<Column<'a>> {
        arrays
            .iter()
            .enumerate()
            .map(|(i, (name, a))| {
                let data = match &self.bools[i] {
                    Some(b) => ColumnData::Bool(b),
                    None => data_of(a.as_ref()),
                };
                Column::new(Some(name.clone()), data, self.validity[i].as_deref())
                    .with_sql_type(duckdb_type_name(a.data_type()))
            })
            .collect()
    }
}

fn data_of(a: &dyn Array) -> ColumnData<'_> {
    match a.data_type() {
        DataType::Float64 => ColumnData::F64(a.as_primitive::<Float64Type>().values()),
        DataType::Float32 => ColumnData::F32(a.as_primitive::<Float32Type>().values()),
        DataType::Int8 => ColumnData::I8(a.as_primitive::<Int8Type>().values()),
        DataType::Int16 => ColumnData::I16(a.as_primitive::<Int16Type>().values()),
        DataType::Int32 => ColumnData::I32(a.as_primitive::<Int32Type>().values()),
        DataType::Int64 => ColumnData::I64(a.as_primitive::<Int64Type>().values()),
        DataType::UInt8 => ColumnData::U8(a.as_primitive::<UInt8Type>().values()),
        DataType::UInt16 => ColumnData::U16(a.as_primitive::<UInt16Type>().values()),
        DataType::UInt32 => ColumnData::U32(a.as_primitive::<UInt32Type>().values()),
        DataType::UInt64 => ColumnData::U64(a.as_primitive::<UInt64Type>().values()),
        DataType::Utf8 => ColumnData::Str(a.as_string::<i32>().iter().map(|s| s.unwrap_or("")).collect()),
        DataType::LargeUtf8 => ColumnData::Str(a.as_string::<i64>().iter().map(|s| s.unwrap_or("")).collect()),
        DataType::Utf8View => ColumnData::Str(a.as_string_view().iter().map(|s| s.unwrap_or("")).collect()),
        DataType::Decimal128(_, scale) if *scale >= 0 => {
            let values: &[i128] = a.as_primitive::<duckdb::arrow::datatypes::Decimal128Type>().values();
            // SAFETY: i128 and [u64; 2] have the same size; [u64; 2]'s alignment (8) divides
            // i128's, and on little-endian targets (the only ones DuckDB extensions ship for)
            // an i128's first word is its low word: the layout DecimalValues::Wide expects.
            let wide: &[[u64; 2]] = unsafe { std::slice::from_raw_parts(values.as_ptr().cast(), values.len()) };
            ColumnData::Decimal { values: DecimalValues::Wide(wide), scale: *scale as u8 }
        }
        other => ColumnData::Unsupported { type_name: duckdb_type_name(other) },
    }
}

/// The DuckDB name of the type a column had before it became Arrow, for messages.
fn duckdb_type_name(t: &DataType) -> String {
    match t {
        DataType::Float64 => "DOUBLE".into(),
        DataType::Float32 => "FLOAT".into(),
        DataType::Int8 => "TINYINT".into(),
        DataType::Int16 => "SMALLINT".into(),
        DataType::Int32 => "INTEGER".into(),
        DataType::Int64 => "BIGINT".into(),
        DataType::UInt8 => "UTINYINT".into(),
        DataType::UInt16 => "USMALLINT".into(),
        DataType::UInt32 => "UINTEGER".into(),
        DataType::UInt64 => "UBIGINT".into(),
        DataType::Boolean => "BOOLEAN".into(),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "VARCHAR".into(),
        DataType::Decimal128(p, s) => format!("DECIMAL({p},{s})"),
        DataType::Timestamp(_, None) => "TIMESTAMP".into(),
        DataType::Timestamp(_, Some(_)) => "TIMESTAMP WITH TIME ZONE".into(),
        DataType::Date32 => "DATE".into(),
        DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(..) => "LIST".into(),
        other => format!("{other}"),
    }
}

/// The model names column (the job's model expression, cast to VARCHAR).
pub fn model_names(a: &dyn Array) -> Vec<Option<&str>> {
    match a.data_type() {
        DataType::Utf8 => a.as_string::<i32>().iter().collect(),
        DataType::LargeUtf8 => a.as_string::<i64>().iter().collect(),
        DataType::Utf8View => a.as_string_view().iter().collect(),
        _ => vec![None; a.len()],
    }
}

/// Integer key values (NULL keys read as None).
pub fn keys(a: &dyn Array) -> Vec<Option<i64>> {
    let col = Column::new(None, data_of(a), None);
    (0..a.len()).map(|r| (!a.is_null(r) && col.data.is_integer()).then(|| col.data.i64_at(r))).collect()
}
