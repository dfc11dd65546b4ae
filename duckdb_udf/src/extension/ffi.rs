//! Small safe-ish helpers over the raw C API, and the panic guard every callback runs in.

use std::ffi::{CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

use libduckdb_sys as sys;

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
            Err(format!(
                "internal error (this is a bug in sqlscore, please report it): panic: {msg}"
            ))
        }
    }
}

/// The text DuckDB shows for an engine error: message plus hint.
pub fn user_message(e: &sqlscore_core::Error) -> String {
    match e.hint() {
        Some(h) => format!("{e}\nHINT: {h}"),
        None => e.to_string(),
    }
}

pub fn cstring(s: &str) -> CString {
    CString::new(s.replace('\0', " ")).unwrap_or_default()
}

/// Owns a logical type and destroys it on drop.
pub struct LogicalType(pub sys::duckdb_logical_type);

impl LogicalType {
    pub fn new(id: sys::DUCKDB_TYPE) -> Self {
        LogicalType(unsafe { sys::duckdb_create_logical_type(id) })
    }

    pub fn list(child: &LogicalType) -> Self {
        LogicalType(unsafe { sys::duckdb_create_list_type(child.0) })
    }

    pub fn structure(fields: &[(&str, LogicalType)]) -> Self {
        let names: Vec<CString> = fields.iter().map(|(n, _)| cstring(n)).collect();
        let mut name_ptrs: Vec<*const std::os::raw::c_char> = names.iter().map(|n| n.as_ptr()).collect();
        let mut types: Vec<sys::duckdb_logical_type> = fields.iter().map(|(_, t)| t.0).collect();
        LogicalType(unsafe {
            sys::duckdb_create_struct_type(types.as_mut_ptr(), name_ptrs.as_mut_ptr(), fields.len() as u64)
        })
    }

    /// The type of a vector DuckDB handed us.
    pub fn of_vector(v: sys::duckdb_vector) -> Self {
        LogicalType(unsafe { sys::duckdb_vector_get_column_type(v) })
    }

    pub fn id(&self) -> sys::DUCKDB_TYPE {
        unsafe { sys::duckdb_get_type_id(self.0) }
    }
}

impl Drop for LogicalType {
    fn drop(&mut self) {
        unsafe { sys::duckdb_destroy_logical_type(&mut self.0) }
    }
}

/// Reads a C string DuckDB allocated and frees it.
pub unsafe fn take_duckdb_string(p: *mut std::os::raw::c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    let s = unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned();
    unsafe { sys::duckdb_free(p.cast()) };
    s
}

/// The bytes of row `row` of a VARCHAR/BLOB vector's data.
#[inline]
pub unsafe fn string_at<'a>(data: *const sys::duckdb_string_t, row: usize) -> &'a [u8] {
    let s = unsafe { &*data.add(row) };
    unsafe {
        let len = s.value.inlined.length as usize;
        if len <= 12 {
            std::slice::from_raw_parts(s.value.inlined.inlined.as_ptr().cast::<u8>(), len)
        } else {
            std::slice::from_raw_parts(s.value.pointer.ptr.cast::<u8>(), len)
        }
    }
}

/// Row validity of an input vector: None when every row is valid.
pub unsafe fn validity<'a>(v: sys::duckdb_vector, n: usize) -> Option<&'a [u64]> {
    let p = unsafe { sys::duckdb_vector_get_validity(v) };
    if p.is_null() {
        None
    } else {
        Some(unsafe { std::slice::from_raw_parts(p, n.div_ceil(64)) })
    }
}

#[inline]
pub fn is_valid(mask: Option<&[u64]>, row: usize) -> bool {
    mask.is_none_or(|m| m[row / 64] >> (row % 64) & 1 == 1)
}

/// Runs one SQL statement on a connection; the error text if it fails.
pub unsafe fn query(con: sys::duckdb_connection, sql: &str) -> Result<(), String> {
    let c = cstring(sql);
    let mut result: sys::duckdb_result = unsafe { std::mem::zeroed() };
    let state = unsafe { sys::duckdb_query(con, c.as_ptr(), &mut result) };
    let out = if state == sys::duckdb_state_DuckDBSuccess {
        Ok(())
    } else {
        let err = unsafe { sys::duckdb_result_error(&mut result) };
        Err(if err.is_null() {
            "unknown error".into()
        } else {
            unsafe { CStr::from_ptr(err) }.to_string_lossy().into_owned()
        })
    };
    unsafe { sys::duckdb_destroy_result(&mut result) };
    out
}
