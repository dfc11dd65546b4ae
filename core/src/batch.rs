//! Columnar input as the databases hand it over: typed slices plus a validity bitmask, borrowed,
//! never copied row by row. A batch may feed several models (rows grouped by model), so work is
//! always expressed over a selection of row indices.

/// Values of one column. Slices borrow the host database's vectors.
#[derive(Debug, Clone)]
pub enum ColumnData<'a> {
    F32(&'a [f32]),
    F64(&'a [f64]),
    I8(&'a [i8]),
    I16(&'a [i16]),
    I32(&'a [i32]),
    I64(&'a [i64]),
    U8(&'a [u8]),
    U16(&'a [u16]),
    U32(&'a [u32]),
    U64(&'a [u64]),
    Bool(&'a [bool]),
    /// Fixed-point with `scale` decimal digits (DuckDB/Postgres DECIMAL).
    Decimal { values: DecimalValues<'a>, scale: u8 },
    Str(Vec<&'a str>),
    /// A fixed-width list per row (a feature vector in one column): `width` values per row.
    F64List { values: Vec<f64>, width: usize },
    /// An untyped NULL argument (SQL `NULL` literal): every row is NULL, any input accepts it.
    Null,
    /// A column of a type the engine cannot use; `type_name` is reported in the error.
    Unsupported { type_name: String },
}

#[derive(Debug, Clone)]
pub enum DecimalValues<'a> {
    I16(&'a [i16]),
    I32(&'a [i32]),
    I64(&'a [i64]),
    I128(&'a [i128]),
}

impl ColumnData<'_> {
    /// The SQL-ish type name used in messages.
    pub fn type_name(&self) -> String {
        match self {
            ColumnData::F32(_) => "FLOAT".into(),
            ColumnData::F64(_) => "DOUBLE".into(),
            ColumnData::I8(_) => "TINYINT".into(),
            ColumnData::I16(_) => "SMALLINT".into(),
            ColumnData::I32(_) => "INTEGER".into(),
            ColumnData::I64(_) => "BIGINT".into(),
            ColumnData::U8(_) => "UTINYINT".into(),
            ColumnData::U16(_) => "USMALLINT".into(),
            ColumnData::U32(_) => "UINTEGER".into(),
            ColumnData::U64(_) => "UBIGINT".into(),
            ColumnData::Bool(_) => "BOOLEAN".into(),
            ColumnData::Decimal { .. } => "DECIMAL".into(),
            ColumnData::Str(_) => "VARCHAR".into(),
            ColumnData::F64List { width, .. } => format!("DOUBLE[{width}]"),
            ColumnData::Null => "NULL".into(),
            ColumnData::Unsupported { type_name } => type_name.clone(),
        }
    }

    /// Feature values per row this column provides.
    pub fn width(&self) -> usize {
        match self {
            ColumnData::F64List { width, .. } => *width,
            _ => 1,
        }
    }

    pub fn is_text(&self) -> bool {
        matches!(self, ColumnData::Str(_))
    }

    pub fn is_integer(&self) -> bool {
        matches!(
            self,
            ColumnData::I8(_)
                | ColumnData::I16(_)
                | ColumnData::I32(_)
                | ColumnData::I64(_)
                | ColumnData::U8(_)
                | ColumnData::U16(_)
                | ColumnData::U32(_)
                | ColumnData::U64(_)
                | ColumnData::Bool(_)
        )
    }

    pub fn is_numeric(&self) -> bool {
        !matches!(self, ColumnData::Str(_) | ColumnData::Unsupported { .. })
    }

    /// Value `k` (0..width) of row `row` as f64. Callers have checked `is_numeric`.
    #[inline]
    pub fn f64_at(&self, row: usize, k: usize) -> f64 {
        match self {
            ColumnData::F32(v) => v[row] as f64,
            ColumnData::F64(v) => v[row],
            ColumnData::I8(v) => v[row] as f64,
            ColumnData::I16(v) => v[row] as f64,
            ColumnData::I32(v) => v[row] as f64,
            ColumnData::I64(v) => v[row] as f64,
            ColumnData::U8(v) => v[row] as f64,
            ColumnData::U16(v) => v[row] as f64,
            ColumnData::U32(v) => v[row] as f64,
            ColumnData::U64(v) => v[row] as f64,
            ColumnData::Bool(v) => v[row] as u8 as f64,
            ColumnData::Decimal { values, scale } => {
                let raw = match values {
                    DecimalValues::I16(v) => v[row] as f64,
                    DecimalValues::I32(v) => v[row] as f64,
                    DecimalValues::I64(v) => v[row] as f64,
                    DecimalValues::I128(v) => v[row] as f64,
                };
                raw / 10f64.powi(*scale as i32)
            }
            ColumnData::F64List { values, width } => values[row * width + k],
            ColumnData::Str(_) | ColumnData::Null | ColumnData::Unsupported { .. } => f64::NAN,
        }
    }

    /// Value of row `row` as i64, exact for integer columns.
    #[inline]
    pub fn i64_at(&self, row: usize) -> i64 {
        match self {
            ColumnData::I8(v) => v[row] as i64,
            ColumnData::I16(v) => v[row] as i64,
            ColumnData::I32(v) => v[row] as i64,
            ColumnData::I64(v) => v[row],
            ColumnData::U8(v) => v[row] as i64,
            ColumnData::U16(v) => v[row] as i64,
            ColumnData::U32(v) => v[row] as i64,
            ColumnData::U64(v) => v[row] as i64,
            ColumnData::Bool(v) => v[row] as i64,
            other => other.f64_at(row, 0) as i64,
        }
    }
}

/// One argument column. `name` is the field name when the caller passed a whole row (struct), so
/// it can bind by name; positional arguments have none.
#[derive(Debug, Clone)]
pub struct Column<'a> {
    pub name: Option<String>,
    pub data: ColumnData<'a>,
    /// Bit `i % 64` of word `i / 64` set = row `i` is valid. None = no NULLs.
    pub validity: Option<&'a [u64]>,
}

impl<'a> Column<'a> {
    pub fn new(name: Option<String>, data: ColumnData<'a>, validity: Option<&'a [u64]>) -> Self {
        Column { name, data, validity }
    }

    #[inline]
    pub fn is_valid(&self, row: usize) -> bool {
        if matches!(self.data, ColumnData::Null) {
            return false;
        }
        match self.validity {
            None => true,
            Some(mask) => mask[row / 64] >> (row % 64) & 1 == 1,
        }
    }

    /// How the column is called in messages: `column "age"` or `feature 3` (the third value
    /// after the model argument).
    pub fn describe(&self, position: usize) -> String {
        match &self.name {
            Some(n) => format!("column \"{n}\""),
            None => format!("feature {}", position + 1),
        }
    }
}

/// The argument columns of one call, all of `len` rows.
#[derive(Debug, Clone)]
pub struct Batch<'a> {
    pub columns: Vec<Column<'a>>,
    pub len: usize,
}

impl<'a> Batch<'a> {
    pub fn new(columns: Vec<Column<'a>>, len: usize) -> Self {
        Batch { columns, len }
    }
}
