//! DuckDB vectors -> core columns (borrowed, no per-row copies for numbers), and core results ->
//! the output vector. DuckDB flattens a scalar function's input chunk before the call, so every
//! vector here is a flat array of `n` values plus a validity mask.

use libduckdb_sys as sys;
use sqlscore_core::{Column, ColumnData, DecimalValues};

use super::ffi::{is_valid, string_at, validity, LogicalType};

/// Feature columns of one call. A single STRUCT argument (a whole row: `score('m', t)`) expands to
/// one named column per field, so the engine binds by name.
pub struct Features {
    specs: Vec<Spec>,
    /// Struct children's masks combined with the struct's own: a NULL row is NULL in every field.
    owned_masks: Vec<Vec<u64>>,
    n: usize,
}

struct Spec {
    vector: sys::duckdb_vector,
    name: Option<String>,
    mask: Mask,
}

enum Mask {
    Borrowed(Option<*const u64>),
    Owned(usize),
}

impl Features {
    /// `vectors`: the feature arguments (after the model arguments).
    pub unsafe fn new(vectors: &[sys::duckdb_vector], n: usize) -> Self {
        let mut f = Features { specs: Vec::new(), owned_masks: Vec::new(), n };
        if let [single] = vectors {
            let ty = LogicalType::of_vector(*single);
            if ty.id() == sys::DUCKDB_TYPE_DUCKDB_TYPE_STRUCT {
                let parent = unsafe { validity(*single, n) };
                let count = unsafe { sys::duckdb_struct_type_child_count(ty.0) };
                for i in 0..count {
                    let name = unsafe { super::ffi::take_duckdb_string(sys::duckdb_struct_type_child_name(ty.0, i)) };
                    let child = unsafe { sys::duckdb_struct_vector_get_child(*single, i) };
                    let mask = unsafe { f.mask(child, parent) };
                    f.specs.push(Spec { vector: child, name: Some(name), mask });
                }
                return f;
            }
        }
        for &v in vectors {
            let mask = unsafe { f.mask(v, None) };
            f.specs.push(Spec { vector: v, name: None, mask });
        }
        f
    }

    /// A row is valid when its parent row (struct) is, the vector's own row is, and, for a
    /// list/array feature, every element is.
    unsafe fn mask(&mut self, v: sys::duckdb_vector, parent: Option<&[u64]>) -> Mask {
        let own = unsafe { validity(v, self.n) };
        let elements = unsafe { element_mask(v, self.n) };
        if parent.is_none() && elements.is_none() {
            return Mask::Borrowed(own.map(|m| m.as_ptr()));
        }
        let mut combined = vec![u64::MAX; self.n.div_ceil(64)];
        for m in [parent, own, elements.as_deref()].into_iter().flatten() {
            for (c, w) in combined.iter_mut().zip(m) {
                *c &= w;
            }
        }
        self.owned_masks.push(combined);
        Mask::Owned(self.owned_masks.len() - 1)
    }

    pub unsafe fn columns(&self) -> Vec<Column<'_>> {
        let words = self.n.div_ceil(64);
        self.specs
            .iter()
            .map(|s| {
                let mask: Option<&[u64]> = match s.mask {
                    Mask::Borrowed(None) => None,
                    Mask::Borrowed(Some(p)) => Some(unsafe { std::slice::from_raw_parts(p, words) }),
                    Mask::Owned(i) => Some(&self.owned_masks[i]),
                };
                let data = unsafe { column_data(s.vector, self.n, mask) };
                Column::new(s.name.clone(), data, mask)
            })
            .collect()
    }
}

/// For LIST/ARRAY vectors with NULL elements: rows whose elements are all valid.
unsafe fn element_mask(v: sys::duckdb_vector, n: usize) -> Option<Vec<u64>> {
    let ty = LogicalType::of_vector(v);
    let ranges: Vec<(usize, usize)> = unsafe {
        match ty.id() {
            sys::DUCKDB_TYPE_DUCKDB_TYPE_ARRAY => {
                let w = sys::duckdb_array_type_array_size(ty.0) as usize;
                (0..n).map(|r| (r * w, w)).collect()
            }
            sys::DUCKDB_TYPE_DUCKDB_TYPE_LIST => {
                let entries: &[sys::duckdb_list_entry] = slice(v, n);
                entries.iter().map(|e| (e.offset as usize, e.length as usize)).collect()
            }
            _ => return None,
        }
    };
    let child = unsafe {
        if ty.id() == sys::DUCKDB_TYPE_DUCKDB_TYPE_ARRAY {
            sys::duckdb_array_vector_get_child(v)
        } else {
            sys::duckdb_list_vector_get_child(v)
        }
    };
    let total = ranges.iter().map(|(o, l)| o + l).max().unwrap_or(0);
    let child_valid = unsafe { validity(child, total) }?;
    let mut mask = vec![u64::MAX; n.div_ceil(64)];
    for (r, (offset, len)) in ranges.into_iter().enumerate() {
        if !(offset..offset + len).all(|i| is_valid(Some(child_valid), i)) {
            mask[r / 64] &= !(1u64 << (r % 64));
        }
    }
    Some(mask)
}

/// Element types a list/array feature may have; read only after this check (VARCHAR children
/// under NULL rows hold garbage).
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

unsafe fn slice<'a, T>(v: sys::duckdb_vector, n: usize) -> &'a [T] {
    let p = unsafe { sys::duckdb_vector_get_data(v) } as *const T;
    if n == 0 || p.is_null() {
        &[]
    } else {
        unsafe { std::slice::from_raw_parts(p, n) }
    }
}

fn type_name(id: sys::DUCKDB_TYPE) -> String {
    match id {
        sys::DUCKDB_TYPE_DUCKDB_TYPE_HUGEINT => "HUGEINT (cast it to BIGINT or DOUBLE)",
        sys::DUCKDB_TYPE_DUCKDB_TYPE_LIST => "LIST",
        sys::DUCKDB_TYPE_DUCKDB_TYPE_ARRAY => "ARRAY",
        sys::DUCKDB_TYPE_DUCKDB_TYPE_VARCHAR => "VARCHAR",
        sys::DUCKDB_TYPE_DUCKDB_TYPE_UHUGEINT => "UHUGEINT",
        sys::DUCKDB_TYPE_DUCKDB_TYPE_DATE => "DATE",
        sys::DUCKDB_TYPE_DUCKDB_TYPE_TIMESTAMP | sys::DUCKDB_TYPE_DUCKDB_TYPE_TIMESTAMP_TZ => "TIMESTAMP",
        sys::DUCKDB_TYPE_DUCKDB_TYPE_INTERVAL => "INTERVAL",
        sys::DUCKDB_TYPE_DUCKDB_TYPE_BLOB => "BLOB",
        sys::DUCKDB_TYPE_DUCKDB_TYPE_STRUCT => "STRUCT (pass a whole row as the only feature argument)",
        sys::DUCKDB_TYPE_DUCKDB_TYPE_MAP => "MAP",
        sys::DUCKDB_TYPE_DUCKDB_TYPE_ENUM => "ENUM (cast it to VARCHAR)",
        sys::DUCKDB_TYPE_DUCKDB_TYPE_UUID => "UUID",
        _ => return format!("unsupported type #{id}"),
    }
    .to_string()
}

/// One vector's values as a core column. `mask` guards string reads: NULL rows hold garbage.
unsafe fn column_data<'a>(v: sys::duckdb_vector, n: usize, mask: Option<&[u64]>) -> ColumnData<'a> {
    let ty = LogicalType::of_vector(v);
    let id = ty.id();
    unsafe {
        match id {
            sys::DUCKDB_TYPE_DUCKDB_TYPE_DOUBLE => ColumnData::F64(slice(v, n)),
            sys::DUCKDB_TYPE_DUCKDB_TYPE_FLOAT => ColumnData::F32(slice(v, n)),
            sys::DUCKDB_TYPE_DUCKDB_TYPE_TINYINT => ColumnData::I8(slice(v, n)),
            sys::DUCKDB_TYPE_DUCKDB_TYPE_SMALLINT => ColumnData::I16(slice(v, n)),
            sys::DUCKDB_TYPE_DUCKDB_TYPE_INTEGER => ColumnData::I32(slice(v, n)),
            sys::DUCKDB_TYPE_DUCKDB_TYPE_BIGINT => ColumnData::I64(slice(v, n)),
            sys::DUCKDB_TYPE_DUCKDB_TYPE_UTINYINT => ColumnData::U8(slice(v, n)),
            sys::DUCKDB_TYPE_DUCKDB_TYPE_USMALLINT => ColumnData::U16(slice(v, n)),
            sys::DUCKDB_TYPE_DUCKDB_TYPE_UINTEGER => ColumnData::U32(slice(v, n)),
            sys::DUCKDB_TYPE_DUCKDB_TYPE_UBIGINT => ColumnData::U64(slice(v, n)),
            // DuckDB stores BOOLEAN as one byte, 0 or 1; read it as such rather than as Rust bool
            // (garbage bytes under NULL rows would be invalid bools).
            sys::DUCKDB_TYPE_DUCKDB_TYPE_BOOLEAN => ColumnData::U8(slice(v, n)),
            sys::DUCKDB_TYPE_DUCKDB_TYPE_DECIMAL => {
                let scale = sys::duckdb_decimal_scale(ty.0);
                let values = match sys::duckdb_decimal_internal_type(ty.0) {
                    sys::DUCKDB_TYPE_DUCKDB_TYPE_SMALLINT => DecimalValues::I16(slice(v, n)),
                    sys::DUCKDB_TYPE_DUCKDB_TYPE_INTEGER => DecimalValues::I32(slice(v, n)),
                    sys::DUCKDB_TYPE_DUCKDB_TYPE_BIGINT => DecimalValues::I64(slice(v, n)),
                    // hugeint_t is {lower: u64, upper: i64}: an i128 on little-endian targets.
                    _ => DecimalValues::I128(slice(v, n)),
                };
                ColumnData::Decimal { values, scale }
            }
            sys::DUCKDB_TYPE_DUCKDB_TYPE_VARCHAR => {
                let data = sys::duckdb_vector_get_data(v) as *const sys::duckdb_string_t;
                let strs = (0..n)
                    .map(|r| {
                        if is_valid(mask, r) {
                            // DuckDB guarantees VARCHAR is valid UTF-8.
                            std::str::from_utf8_unchecked(string_at(data, r))
                        } else {
                            ""
                        }
                    })
                    .collect();
                ColumnData::Str(strs)
            }
            sys::DUCKDB_TYPE_DUCKDB_TYPE_ARRAY => {
                let width = sys::duckdb_array_type_array_size(ty.0) as usize;
                let child = sys::duckdb_array_vector_get_child(v);
                let child_id = LogicalType::of_vector(child).id();
                if !is_numeric_type(child_id) {
                    return ColumnData::Unsupported { type_name: format!("an array of {}", type_name(child_id)) };
                }
                let inner = column_data(child, n * width, None);
                let values = (0..n * width).map(|i| inner.f64_at(i, 0)).collect();
                ColumnData::F64List { values, width }
            }
            sys::DUCKDB_TYPE_DUCKDB_TYPE_LIST => list_data(v, n, mask),
            sys::DUCKDB_TYPE_DUCKDB_TYPE_SQLNULL => ColumnData::Null,
            other => ColumnData::Unsupported { type_name: type_name(other) },
        }
    }
}

/// A LIST column feeding a wide input must have the same length in every row.
unsafe fn list_data<'a>(v: sys::duckdb_vector, n: usize, _mask: Option<&[u64]>) -> ColumnData<'a> {
    unsafe {
        // The list's own validity: a row NULL only because of a NULL element still has a width.
        let mask = validity(v, n);
        let entries: &[sys::duckdb_list_entry] = slice(v, n);
        let child = sys::duckdb_list_vector_get_child(v);
        let child_id = LogicalType::of_vector(child).id();
        if !is_numeric_type(child_id) {
            return ColumnData::Unsupported { type_name: format!("a list of {}", type_name(child_id)) };
        }
        let total = sys::duckdb_list_vector_get_size(v) as usize;
        let inner = column_data(child, total, None);
        let mut width = None;
        for (r, e) in entries.iter().enumerate() {
            if !is_valid(mask, r) {
                continue;
            }
            match width {
                None => width = Some(e.length as usize),
                Some(w) if w != e.length as usize => {
                    return ColumnData::Unsupported {
                        type_name: format!("a list whose length varies by row ({w} and {})", e.length),
                    }
                }
                _ => {}
            }
        }
        let width = width.unwrap_or(1);
        let mut values = vec![0f64; n * width];
        for (r, e) in entries.iter().enumerate() {
            if is_valid(mask, r) {
                for k in 0..width {
                    values[r * width + k] = inner.f64_at(e.offset as usize + k, 0);
                }
            }
        }
        ColumnData::F64List { values, width }
    }
}

/// Writes results for chosen rows of the output vector.
pub struct Output {
    vector: sys::duckdb_vector,
    validity: *mut u64,
}

impl Output {
    pub fn new(vector: sys::duckdb_vector) -> Self {
        Output { vector, validity: std::ptr::null_mut() }
    }

    pub fn set_null(&mut self, row: usize) {
        unsafe {
            if self.validity.is_null() {
                sys::duckdb_vector_ensure_validity_writable(self.vector);
                self.validity = sys::duckdb_vector_get_validity(self.vector);
            }
            sys::duckdb_validity_set_row_invalid(self.validity, row as u64);
        }
    }

    pub fn set_f64(&mut self, row: usize, value: f64) {
        unsafe { *(sys::duckdb_vector_get_data(self.vector) as *mut f64).add(row) = value };
    }

    pub fn set_str(&mut self, row: usize, value: &str) {
        unsafe {
            sys::duckdb_vector_assign_string_element_len(self.vector, row as u64, value.as_ptr().cast(), value.len() as u64)
        };
    }

    /// Appends a row's list to the child vector; rows may come in any order (groups per model).
    pub fn set_f64_list(&mut self, row: usize, values: &[f64]) {
        unsafe {
            let child = sys::duckdb_list_vector_get_child(self.vector);
            let offset = sys::duckdb_list_vector_get_size(self.vector);
            sys::duckdb_list_vector_reserve(self.vector, offset + values.len() as u64);
            let data = sys::duckdb_vector_get_data(child) as *mut f64;
            std::ptr::copy_nonoverlapping(values.as_ptr(), data.add(offset as usize), values.len());
            sys::duckdb_list_vector_set_size(self.vector, offset + values.len() as u64);
            let entries = sys::duckdb_vector_get_data(self.vector) as *mut sys::duckdb_list_entry;
            *entries.add(row) = sys::duckdb_list_entry { offset, length: values.len() as u64 };
        }
    }
}
