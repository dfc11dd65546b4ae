//! The one place engine errors become PostgreSQL errors: SQLSTATE by who must act, the engine's
//! message, and its hint. Everything SQL-facing returns `Result<_, ErrorReport>` through this.

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::PgSqlErrorCode as Code;
use sqlscore_core::Error;

pub fn report(e: Error) -> ErrorReport {
    let code = match &e {
        Error::UnknownModel { .. } => Code::ERRCODE_UNDEFINED_OBJECT,
        Error::InvalidName { what: "reference", .. } => Code::ERRCODE_INVALID_TEXT_REPRESENTATION,
        Error::InvalidName { .. } => Code::ERRCODE_INVALID_PARAMETER_VALUE,
        Error::Arity { .. } | Error::MissingInput { .. } | Error::InvalidSetting { .. } => {
            Code::ERRCODE_INVALID_PARAMETER_VALUE
        }
        Error::TypeMismatch { .. } => Code::ERRCODE_DATATYPE_MISMATCH,
        Error::NullFeature { .. } => Code::ERRCODE_NULL_VALUE_NOT_ALLOWED,
        Error::InvalidModel { .. } => Code::ERRCODE_INVALID_BINARY_REPRESENTATION,
        Error::Unsupported { .. } => Code::ERRCODE_FEATURE_NOT_SUPPORTED,
        Error::Execution { .. } => Code::ERRCODE_EXTERNAL_ROUTINE_EXCEPTION,
        Error::ModelFile { .. } | Error::RuntimeNotFound { .. } => Code::ERRCODE_UNDEFINED_FILE,
        Error::ModelTooLarge { .. } => Code::ERRCODE_PROGRAM_LIMIT_EXCEEDED,
        Error::Internal(_) => Code::ERRCODE_INTERNAL_ERROR,
    };
    let hint = e.hint();
    let mut r = ErrorReport::new(code, e.to_string(), "sqlscore");
    if let Some(h) = hint {
        r = r.set_hint(h);
    }
    r
}

/// For checks made in this crate (malformed `name@version`, unsupported argument types).
pub fn invalid(code: Code, message: String, hint: Option<&str>) -> ErrorReport {
    let r = ErrorReport::new(code, message, "sqlscore");
    match hint {
        Some(h) => r.set_hint(h.to_string()),
        None => r,
    }
}

pub type PgResult<T> = Result<T, ErrorReport>;
