//! The only place that touches DuckDB memory directly. Vectors are read through small typed
//! views whose lifetime `'a` is that of the callback that received them (DuckDB owns the memory
//! for exactly that long) and whose lengths are checked once, when the view is made: the scoring
//! code above reads plain slices and never sees a raw pointer. Every callback body runs in
//! [`guarded`], which turns a Rust panic into an SQL error instead of unwinding into DuckDB's C++.

use std::ffi::{CStr, CString};
use std::marker::PhantomData;
use std::ops::Range;
use std::panic::{catch_unwind, AssertUnwindSafe};

use libduckdb_sys as sys;
use sqlscore_core::Error;

/// DuckDB's words for messages and hints.
pub use crate::dialect::DUCKDB;

/// Runs a callback body; a panic becomes a message instead of unwinding into DuckDB's C++
/// (undefined behaviour that would take the host process down).
pub fn guarded(body: impl FnOnce() -> Result<(), String>) -> Result<(), String> {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(r) => r,
        Err(payload) => {
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(Error::Internal(format!("panic: {msg}")).with_hint(&DUCKDB))
        }
    }
}

/// The text DuckDB shows for an engine error: message plus hint.
pub fn user_message(e: &Error) -> String {
    e.with_hint(&DUCKDB)
}

pub fn cstring(s: &str) -> CString {
    CString::new(s.replace('\0', " ")).unwrap_or_default()
}

/// Owns a logical type and destroys it on drop.
pub struct LogicalType(pub sys::duckdb_logical_type);

impl LogicalType {
    pub fn new(id: sys::DUCKDB_TYPE) -> Self {
        // SAFETY: creating a logical type from a type id has no preconditions.
        LogicalType(unsafe { sys::duckdb_create_logical_type(id) })
    }

    pub fn list(child: &LogicalType) -> Self {
        // SAFETY: `child` is a live logical type; DuckDB copies it.
        LogicalType(unsafe { sys::duckdb_create_list_type(child.0) })
    }

    pub fn structure(fields: &[(&str, LogicalType)]) -> Self {
        let names: Vec<CString> = fields.iter().map(|(n, _)| cstring(n)).collect();
        let mut name_ptrs: Vec<*const std::os::raw::c_char> = names.iter().map(|n| n.as_ptr()).collect();
        let mut types: Vec<sys::duckdb_logical_type> = fields.iter().map(|(_, t)| t.0).collect();
        // SAFETY: both arrays hold `fields.len()` live entries (the CStrings and types outlive
        // the call); DuckDB copies names and types.
        LogicalType(unsafe {
            sys::duckdb_create_struct_type(types.as_mut_ptr(), name_ptrs.as_mut_ptr(), fields.len() as u64)
        })
    }

    pub fn id(&self) -> sys::DUCKDB_TYPE {
        // SAFETY: self.0 is a live logical type owned by self.
        unsafe { sys::duckdb_get_type_id(self.0) }
    }

    /// (internal storage type id, scale) of a DECIMAL type.
    pub fn decimal(&self) -> Option<(sys::DUCKDB_TYPE, u8)> {
        // SAFETY: self.0 is a live logical type, checked to be DECIMAL before the decimal getters.
        (self.id() == sys::DUCKDB_TYPE_DUCKDB_TYPE_DECIMAL)
            .then(|| unsafe { (sys::duckdb_decimal_internal_type(self.0), sys::duckdb_decimal_scale(self.0)) })
    }
}

impl Drop for LogicalType {
    fn drop(&mut self) {
        // SAFETY: self.0 was created by DuckDB and is destroyed exactly once, here.
        unsafe { sys::duckdb_destroy_logical_type(&mut self.0) }
    }
}

/// Reads a C string DuckDB allocated and frees it.
///
/// # Safety
/// `p` is null or a NUL-terminated string allocated by DuckDB that the caller owns.
pub unsafe fn take_duckdb_string(p: *mut std::os::raw::c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: per the contract, p is a NUL-terminated string we own; freed once after copying.
    unsafe {
        let s = CStr::from_ptr(p).to_string_lossy().into_owned();
        sys::duckdb_free(p.cast());
        s
    }
}

/// An owned `duckdb_value`, destroyed on drop. Reading one that is SQL NULL with the typed getters
/// throws a C++ exception inside DuckDB (which would abort the host), so the getters here check
/// for NULL first.
pub struct Value(sys::duckdb_value);

impl Value {
    /// # Safety
    /// `v` is null or a value the caller owns (it is destroyed when the `Value` drops).
    pub unsafe fn from_raw(v: sys::duckdb_value) -> Option<Value> {
        (!v.is_null()).then_some(Value(v))
    }

    pub fn is_null(&self) -> bool {
        // SAFETY: self.0 is a live value.
        unsafe { sys::duckdb_is_null_value(self.0) }
    }

    /// The value as text; None when it is SQL NULL.
    pub fn text(&self) -> Option<String> {
        if self.is_null() {
            return None;
        }
        // SAFETY: self.0 is a live, non-NULL value; the returned string is ours to free.
        Some(unsafe { take_duckdb_string(sys::duckdb_get_varchar(self.0)) })
    }

    /// The value as an integer; None when it is SQL NULL.
    pub fn int64(&self) -> Option<i64> {
        // SAFETY: self.0 is a live, non-NULL value.
        (!self.is_null()).then(|| unsafe { sys::duckdb_get_int64(self.0) })
    }

    /// The value as a boolean; None when it is SQL NULL.
    pub fn boolean(&self) -> Option<bool> {
        // SAFETY: self.0 is a live, non-NULL value.
        (!self.is_null()).then(|| unsafe { sys::duckdb_get_bool(self.0) })
    }
}

impl Drop for Value {
    fn drop(&mut self) {
        // SAFETY: self.0 is owned by self and destroyed exactly once.
        unsafe { sys::duckdb_destroy_value(&mut self.0) }
    }
}

/// Plain types a vector's data can be read as, with the DuckDB type ids stored that way.
pub trait Physical: Copy {
    fn stored_as(id: sys::DUCKDB_TYPE) -> bool;
}

macro_rules! physical {
    ($t:ty, $($id:ident),+) => {
        impl Physical for $t {
            fn stored_as(id: sys::DUCKDB_TYPE) -> bool {
                $(id == sys::$id)||+
            }
        }
    };
}
physical!(f64, DUCKDB_TYPE_DUCKDB_TYPE_DOUBLE);
physical!(f32, DUCKDB_TYPE_DUCKDB_TYPE_FLOAT);
physical!(i8, DUCKDB_TYPE_DUCKDB_TYPE_TINYINT);
physical!(i16, DUCKDB_TYPE_DUCKDB_TYPE_SMALLINT);
physical!(i32, DUCKDB_TYPE_DUCKDB_TYPE_INTEGER);
physical!(i64, DUCKDB_TYPE_DUCKDB_TYPE_BIGINT);
// BOOLEAN is one byte, 0 or 1; read as u8 (a garbage byte under a NULL row is not a valid bool).
physical!(u8, DUCKDB_TYPE_DUCKDB_TYPE_UTINYINT, DUCKDB_TYPE_DUCKDB_TYPE_BOOLEAN);
physical!(u16, DUCKDB_TYPE_DUCKDB_TYPE_USMALLINT);
physical!(u32, DUCKDB_TYPE_DUCKDB_TYPE_UINTEGER);
physical!(u64, DUCKDB_TYPE_DUCKDB_TYPE_UBIGINT);
// hugeint_t {lower: u64, upper: i64}: two 8-byte words, 8-byte aligned.
physical!([u64; 2], DUCKDB_TYPE_DUCKDB_TYPE_HUGEINT, DUCKDB_TYPE_DUCKDB_TYPE_UHUGEINT);

/// A DuckDB vector of `len` rows that DuckDB keeps alive for `'a` (one callback).
#[derive(Clone, Copy)]
pub struct VectorRef<'a> {
    raw: sys::duckdb_vector,
    len: usize,
    _callback: PhantomData<&'a ()>,
}

impl<'a> VectorRef<'a> {
    /// # Safety
    /// `raw` is a flat vector DuckDB passed to the current callback, holding at least `len` rows,
    /// and stays valid for `'a`.
    pub unsafe fn new(raw: sys::duckdb_vector, len: usize) -> Self {
        VectorRef { raw, len, _callback: PhantomData }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn logical_type(&self) -> LogicalType {
        // SAFETY: the vector is live for 'a; the returned type is ours to destroy (LogicalType).
        LogicalType(unsafe { sys::duckdb_vector_get_column_type(self.raw) })
    }

    pub fn type_id(&self) -> sys::DUCKDB_TYPE {
        self.logical_type().id()
    }

    /// The validity mask (`len` bits), or None when every row is valid.
    pub fn validity(&self) -> Option<&'a [u64]> {
        // SAFETY: the vector is live for 'a; a non-null mask covers at least `len` rows.
        unsafe {
            let p = sys::duckdb_vector_get_validity(self.raw);
            (!p.is_null()).then(|| std::slice::from_raw_parts(p, self.len.div_ceil(64)))
        }
    }

    pub fn is_valid(&self, row: usize) -> bool {
        row < self.len && is_valid(self.validity(), row)
    }

    /// How the vector's values are stored: its type id, or a DECIMAL's internal integer type.
    fn storage(&self) -> sys::DUCKDB_TYPE {
        let ty = self.logical_type();
        match ty.decimal() {
            Some((internal, _)) => internal,
            None => ty.id(),
        }
    }

    /// The data as `len` values of `T`, when the vector's own type is stored as `T`; None otherwise.
    pub fn values<T: Physical>(&self) -> Option<&'a [T]> {
        if !T::stored_as(self.storage()) {
            return None;
        }
        if self.len == 0 {
            return Some(&[]);
        }
        // SAFETY: the vector is live for 'a and, being of a type stored as T, holds `len` values
        // of T; the pointer is checked for null and alignment before the slice is made.
        unsafe {
            let p = sys::duckdb_vector_get_data(self.raw) as *const T;
            if p.is_null() || p.align_offset(std::mem::align_of::<T>()) != 0 {
                return None;
            }
            Some(std::slice::from_raw_parts(p, self.len))
        }
    }

    /// A VARCHAR or BLOB vector's rows; invalid rows read as None, never as the garbage under them.
    pub fn strings(&self) -> Option<Strings<'a>> {
        let id = self.type_id();
        if id != sys::DUCKDB_TYPE_DUCKDB_TYPE_VARCHAR && id != sys::DUCKDB_TYPE_DUCKDB_TYPE_BLOB {
            return None;
        }
        // SAFETY: a live VARCHAR/BLOB vector's data is `len` duckdb_string_t.
        let data = unsafe { sys::duckdb_vector_get_data(self.raw) as *const sys::duckdb_string_t };
        (!data.is_null()).then_some(Strings { vector: *self, data, text: id == sys::DUCKDB_TYPE_DUCKDB_TYPE_VARCHAR })
    }

    /// Child `i` of a STRUCT vector.
    pub fn struct_child(&self, i: usize) -> Option<VectorRef<'a>> {
        let ty = self.logical_type();
        if ty.id() != sys::DUCKDB_TYPE_DUCKDB_TYPE_STRUCT {
            return None;
        }
        // SAFETY: ty is a live struct type.
        let count = unsafe { sys::duckdb_struct_type_child_count(ty.0) } as usize;
        if i >= count {
            return None;
        }
        // SAFETY: i < child count; a struct's children have the struct's row count and live as long.
        Some(unsafe { VectorRef::new(sys::duckdb_struct_vector_get_child(self.raw, i as u64), self.len) })
    }

    /// Field names of a STRUCT vector.
    pub fn struct_names(&self) -> Vec<String> {
        let ty = self.logical_type();
        if ty.id() != sys::DUCKDB_TYPE_DUCKDB_TYPE_STRUCT {
            return Vec::new();
        }
        // SAFETY: ty is a live struct type; names are DuckDB strings we own (freed by take).
        unsafe {
            let count = sys::duckdb_struct_type_child_count(ty.0);
            (0..count).map(|i| take_duckdb_string(sys::duckdb_struct_type_child_name(ty.0, i))).collect()
        }
    }

    /// A LIST vector: its entries and its child (all elements of all rows).
    pub fn list(&self) -> Option<List<'a>> {
        if self.type_id() != sys::DUCKDB_TYPE_DUCKDB_TYPE_LIST {
            return None;
        }
        // SAFETY: a live LIST vector's data is `len` list entries; its child holds `size` rows.
        unsafe {
            let entries = sys::duckdb_vector_get_data(self.raw) as *const sys::duckdb_list_entry;
            if entries.is_null() && self.len > 0 {
                return None;
            }
            let entries = if self.len == 0 { &[][..] } else { std::slice::from_raw_parts(entries, self.len) };
            let size = sys::duckdb_list_vector_get_size(self.raw) as usize;
            let child = VectorRef::new(sys::duckdb_list_vector_get_child(self.raw), size);
            Some(List { parent: *self, entries, child })
        }
    }

    /// An ARRAY vector: its fixed width and its child (`len * width` rows).
    pub fn array(&self) -> Option<(usize, VectorRef<'a>)> {
        let ty = self.logical_type();
        if ty.id() != sys::DUCKDB_TYPE_DUCKDB_TYPE_ARRAY {
            return None;
        }
        // SAFETY: ty is a live array type; the child of a live ARRAY vector holds len * width rows.
        unsafe {
            let width = sys::duckdb_array_type_array_size(ty.0) as usize;
            let child = VectorRef::new(sys::duckdb_array_vector_get_child(self.raw), self.len.checked_mul(width)?);
            Some((width, child))
        }
    }
}

/// The rows of a VARCHAR/BLOB vector.
#[derive(Clone, Copy)]
pub struct Strings<'a> {
    vector: VectorRef<'a>,
    data: *const sys::duckdb_string_t,
    text: bool,
}

impl<'a> Strings<'a> {
    /// Row `row`'s bytes; None for a NULL row or a row past the end.
    pub fn bytes(&self, row: usize) -> Option<&'a [u8]> {
        if !self.vector.is_valid(row) {
            return None;
        }
        // SAFETY: row < len and the row is valid, so data[row] is an initialised duckdb_string_t
        // whose bytes (inlined, or behind its pointer) DuckDB keeps alive for 'a.
        unsafe {
            let s = &*self.data.add(row);
            let len = s.value.inlined.length as usize;
            let p = if len <= 12 {
                s.value.inlined.inlined.as_ptr().cast::<u8>()
            } else {
                s.value.pointer.ptr.cast::<u8>()
            };
            Some(std::slice::from_raw_parts(p, len))
        }
    }

    /// Row `row` as text; VARCHAR is valid UTF-8 in DuckDB, checked anyway.
    pub fn str(&self, row: usize) -> Option<&'a str> {
        let b = self.bytes(row)?;
        if self.text {
            std::str::from_utf8(b).ok()
        } else {
            None
        }
    }
}

/// A LIST vector's rows.
pub struct List<'a> {
    parent: VectorRef<'a>,
    entries: &'a [sys::duckdb_list_entry],
    pub child: VectorRef<'a>,
}

impl List<'_> {
    /// Element range of row `row` in the child; None for a NULL row (whose entry is garbage) or an
    /// entry that does not lie inside the child.
    pub fn range(&self, row: usize) -> Option<Range<usize>> {
        if !self.parent.is_valid(row) {
            return None;
        }
        let e = self.entries.get(row)?;
        let start = usize::try_from(e.offset).ok()?;
        let end = start.checked_add(usize::try_from(e.length).ok()?)?;
        (end <= self.child.len()).then_some(start..end)
    }
}

#[inline]
pub fn is_valid(mask: Option<&[u64]>, row: usize) -> bool {
    mask.is_none_or(|m| m.get(row / 64).is_some_and(|w| (w >> (row % 64)) & 1 == 1))
}

/// The output vector of a scalar function, `len` rows, of the function's declared return type.
pub struct OutputVector<'a> {
    raw: sys::duckdb_vector,
    len: usize,
    validity: *mut u64,
    _callback: PhantomData<&'a ()>,
}

impl OutputVector<'_> {
    /// # Safety
    /// `raw` is the output vector DuckDB passed to the current callback, with room for `len` rows.
    pub unsafe fn new(raw: sys::duckdb_vector, len: usize) -> Self {
        OutputVector { raw, len, validity: std::ptr::null_mut(), _callback: PhantomData }
    }

    fn check(&self, row: usize) -> Result<(), Error> {
        if row < self.len {
            Ok(())
        } else {
            Err(Error::Internal(format!("output row {row} of {}", self.len)))
        }
    }

    pub fn set_null(&mut self, row: usize) -> Result<(), Error> {
        self.check(row)?;
        // SAFETY: row < len; the validity mask is made writable (len bits) before it is written.
        unsafe {
            if self.validity.is_null() {
                sys::duckdb_vector_ensure_validity_writable(self.raw);
                self.validity = sys::duckdb_vector_get_validity(self.raw);
            }
            sys::duckdb_validity_set_row_invalid(self.validity, row as u64);
        }
        Ok(())
    }

    /// For DOUBLE outputs.
    pub fn set_f64(&mut self, row: usize, value: f64) -> Result<(), Error> {
        self.check(row)?;
        // SAFETY: a DOUBLE output vector's data has room for `len` f64 and row < len.
        unsafe { *(sys::duckdb_vector_get_data(self.raw) as *mut f64).add(row) = value };
        Ok(())
    }

    /// For BIGINT outputs.
    pub fn set_i64(&mut self, row: usize, value: i64) -> Result<(), Error> {
        self.check(row)?;
        // SAFETY: a BIGINT output vector's data has room for `len` i64 and row < len.
        unsafe { *(sys::duckdb_vector_get_data(self.raw) as *mut i64).add(row) = value };
        Ok(())
    }

    /// For VARCHAR/BLOB outputs: DuckDB copies the bytes.
    pub fn set_bytes(&mut self, row: usize, value: &[u8]) -> Result<(), Error> {
        self.check(row)?;
        // SAFETY: row < len; value points to value.len() readable bytes for the call.
        unsafe {
            sys::duckdb_vector_assign_string_element_len(
                self.raw,
                row as u64,
                value.as_ptr().cast(),
                value.len() as u64,
            )
        };
        Ok(())
    }

    /// For LIST(DOUBLE) outputs: appends the row's list to the child; rows may come in any order.
    pub fn set_f64_list(&mut self, row: usize, values: &[f64]) -> Result<(), Error> {
        self.check(row)?;
        // SAFETY: row < len; the child is reserved to offset + values.len() (checked) before the
        // copy, and the entry written is inside the parent's `len` entries.
        unsafe {
            let offset = sys::duckdb_list_vector_get_size(self.raw);
            let size = offset + values.len() as u64;
            if sys::duckdb_list_vector_reserve(self.raw, size) != sys::duckdb_state_DuckDBSuccess {
                return Err(Error::Internal(format!("could not reserve {size} list values")));
            }
            let child = sys::duckdb_list_vector_get_child(self.raw);
            let data = sys::duckdb_vector_get_data(child) as *mut f64;
            std::ptr::copy_nonoverlapping(values.as_ptr(), data.add(offset as usize), values.len());
            sys::duckdb_list_vector_set_size(self.raw, size);
            let entries = sys::duckdb_vector_get_data(self.raw) as *mut sys::duckdb_list_entry;
            *entries.add(row) = sys::duckdb_list_entry { offset, length: values.len() as u64 };
        }
        Ok(())
    }
}

/// Runs one SQL statement on a connection; the error text if it fails.
///
/// # Safety
/// `con` is a live connection.
pub unsafe fn query(con: sys::duckdb_connection, sql: &str) -> Result<(), String> {
    let c = cstring(sql);
    // SAFETY: duckdb_result is plain data that duckdb_query initialises; con is live (contract);
    // the result is destroyed once after reading its error.
    unsafe {
        let mut result: sys::duckdb_result = std::mem::zeroed();
        let state = sys::duckdb_query(con, c.as_ptr(), &mut result);
        let out = if state == sys::duckdb_state_DuckDBSuccess {
            Ok(())
        } else {
            let err = sys::duckdb_result_error(&mut result);
            Err(if err.is_null() { "unknown error".into() } else { CStr::from_ptr(err).to_string_lossy().into_owned() })
        };
        sys::duckdb_destroy_result(&mut result);
        out
    }
}
