//! Columnar input as the databases hand it over: typed slices plus a validity bitmask, borrowed,
//! never copied row by row. A batch may feed several models (rows grouped by model), so work is
//! always expressed over a selection of row indices.

use std::borrow::Cow;

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
    Decimal {
        values: DecimalValues<'a>,
        scale: u8,
    },
    Str(Vec<&'a str>),
    /// A fixed-width list per row (a feature vector in one column), borrowed from the host:
    /// row `r`'s `width` values are `values[starts[r]..starts[r] + width]` (`starts` of NULL rows
    /// is never read).
    List {
        values: Box<ColumnData<'a>>,
        starts: Vec<usize>,
        width: usize,
    },
    /// An untyped NULL argument (SQL `NULL` literal): every row is NULL, any input accepts it.
    Null,
    /// A column of a type the engine cannot use; `type_name` is reported in the error.
    Unsupported {
        type_name: String,
    },
}

#[derive(Debug, Clone)]
pub enum DecimalValues<'a> {
    I16(&'a [i16]),
    I32(&'a [i32]),
    I64(&'a [i64]),
    /// 128-bit values as `[low word, high word (two's complement)]`: the layout of DuckDB's
    /// `hugeint_t`, which is only 8-byte aligned (a `&[i128]` over it would be misaligned).
    Wide(&'a [[u64; 2]]),
}

impl DecimalValues<'_> {
    #[inline]
    fn raw(&self, row: usize) -> f64 {
        match self {
            DecimalValues::I16(v) => v[row] as f64,
            DecimalValues::I32(v) => v[row] as f64,
            DecimalValues::I64(v) => v[row] as f64,
            DecimalValues::Wide(v) => ((i128::from(v[row][1] as i64) << 64) | i128::from(v[row][0])) as f64,
        }
    }
}

impl ColumnData<'_> {
    /// The type's name in the user's engine, for messages (a front end that knows the column's
    /// exact SQL type sets [`Column::sql_type`] instead).
    pub fn type_name(&self, d: &crate::Dialect) -> String {
        match self {
            ColumnData::F32(_) => d.real.into(),
            ColumnData::F64(_) => d.double.into(),
            ColumnData::I8(_) | ColumnData::I16(_) | ColumnData::I32(_) | ColumnData::U8(_) | ColumnData::U16(_) => {
                d.integer.into()
            }
            ColumnData::I64(_) | ColumnData::U32(_) | ColumnData::U64(_) => d.bigint.into(),
            ColumnData::Bool(_) => d.boolean.into(),
            ColumnData::Decimal { .. } => "decimal".into(),
            ColumnData::Str(_) => d.text.into(),
            ColumnData::List { width, .. } => format!("{}[{width}]", d.double),
            ColumnData::Null => "NULL".into(),
            ColumnData::Unsupported { type_name } => type_name.clone(),
        }
    }

    /// Feature values per row this column provides.
    pub fn width(&self) -> usize {
        match self {
            ColumnData::List { width, .. } => *width,
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
            ColumnData::Decimal { values, scale } => values.raw(row) / 10f64.powi(*scale as i32),
            ColumnData::List { values, starts, .. } => values.f64_at(starts[row] + k, 0),
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
    /// The column's SQL type as the front end names it (`numeric`, `VARCHAR`), for messages.
    pub sql_type: Option<Cow<'a, str>>,
}

impl<'a> Column<'a> {
    pub fn new(name: Option<String>, data: ColumnData<'a>, validity: Option<&'a [u64]>) -> Self {
        Column { name, data, validity, sql_type: None }
    }

    pub fn with_sql_type(mut self, sql_type: impl Into<Cow<'a, str>>) -> Self {
        self.sql_type = Some(sql_type.into());
        self
    }

    /// The column's type in the user's words.
    pub fn type_name(&self, d: &crate::Dialect) -> String {
        match (&self.sql_type, &self.data) {
            (_, ColumnData::Unsupported { type_name }) => type_name.clone(),
            (Some(t), _) => t.to_string(),
            (None, data) => data.type_name(d),
        }
    }

    #[inline]
    pub fn is_valid(&self, row: usize) -> bool {
        if matches!(self.data, ColumnData::Null) {
            return false;
        }
        match self.validity {
            None => true,
            Some(mask) => (mask[row / 64] >> (row % 64)) & 1 == 1,
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
    /// Bind columns to inputs in order even though they have names (a job's listed features):
    /// the names still appear in messages.
    pub by_position: bool,
}

impl<'a> Batch<'a> {
    pub fn new(columns: Vec<Column<'a>>, len: usize) -> Self {
        Batch { columns, len, by_position: false }
    }

    pub fn bound_by_position(self) -> Self {
        Batch { by_position: true, ..self }
    }
}
