//! The one place engine errors become PostgreSQL errors: SQLSTATE by variant (grouped by who must
//! act), the engine's message, and a hint in PostgreSQL's words. Everything SQL-facing returns
//! `Result<_, ErrorReport>` through [`report`]; this crate builds no error text of its own.

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::PgSqlErrorCode as Code;
use sqlscore_core::{Dialect, Error, QueryProblem};

/// PostgreSQL's words for messages and hints.
pub const POSTGRES: Dialect = Dialect {
    engine: "PostgreSQL",
    text: "text",
    real: "real",
    double: "double precision",
    integer: "integer",
    bigint: "bigint",
    boolean: "boolean",
    cast_example: "x::double precision",
    file_models: false,
    register_hint: "register one with SELECT sqlscore.register_model('name', model_bytes)",
    max_model_size_setting: "sqlscore.max_model_size_mb (superuser)",
    intra_threads_setting: "sqlscore.intra_threads",
    null_policy_setting: "sqlscore.null_policy",
    engine_setting: "sqlscore.engine",
};

pub fn report(e: Error) -> ErrorReport {
    let code = match &e {
        Error::UnknownModel { .. } => Code::ERRCODE_UNDEFINED_OBJECT,
        Error::InvalidName { what: "reference", .. } => Code::ERRCODE_INVALID_TEXT_REPRESENTATION,
        Error::InvalidName { .. } => Code::ERRCODE_INVALID_PARAMETER_VALUE,
        Error::Arity { .. } | Error::MissingInput { .. } | Error::InvalidSetting { .. } => {
            Code::ERRCODE_INVALID_PARAMETER_VALUE
        }
        Error::TypeMismatch { .. } => Code::ERRCODE_DATATYPE_MISMATCH,
        Error::NullArgument { .. } | Error::NullFeature { .. } => Code::ERRCODE_NULL_VALUE_NOT_ALLOWED,
        Error::LossyValue { .. } => Code::ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE,
        Error::BadQuery { problem: QueryProblem::KeyType, .. } => Code::ERRCODE_DATATYPE_MISMATCH,
        Error::BadQuery { .. } => Code::ERRCODE_INVALID_PARAMETER_VALUE,
        Error::InvalidModel { .. } | Error::ExternalData { .. } => Code::ERRCODE_INVALID_BINARY_REPRESENTATION,
        Error::Unsupported { .. } | Error::OutputShape { .. } => Code::ERRCODE_FEATURE_NOT_SUPPORTED,
        Error::Execution { .. } => Code::ERRCODE_EXTERNAL_ROUTINE_EXCEPTION,
        Error::ModelFile { .. } | Error::RuntimeNotFound { .. } => Code::ERRCODE_UNDEFINED_FILE,
        Error::ModelTooLarge { .. } => Code::ERRCODE_PROGRAM_LIMIT_EXCEEDED,
        Error::PermissionDenied { .. } => Code::ERRCODE_INSUFFICIENT_PRIVILEGE,
        Error::Cancelled { .. } => {
            // A cancel PostgreSQL asked for is reported as PostgreSQL's own error
            // ("canceling statement due to statement timeout", or FATAL on terminate).
            pgrx::check_for_interrupts!();
            Code::ERRCODE_QUERY_CANCELED
        }
        Error::Internal(_) => Code::ERRCODE_INTERNAL_ERROR,
    };
    let hint = e.hint(&POSTGRES);
    let mut r = ErrorReport::new(code, e.to_string(), "sqlscore");
    if let Some(h) = hint {
        r = r.set_hint(h);
    }
    r
}

pub type PgResult<T> = Result<T, ErrorReport>;
