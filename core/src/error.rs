//! The one error type of the engine. Front ends map it to SQL once (SQLSTATE + message + hint),
//! so every variant carries what a user needs to act: the model, the column, what was expected.
//! Messages and hints speak the user's engine through a [`Dialect`] the front end supplies:
//! PostgreSQL users read `double precision` and `sqlscore.max_model_size_mb`, DuckDB users read
//! `DOUBLE` and `SQLSCORE_MAX_MODEL_BYTES`.

use std::fmt;

/// Who has to act on an error. Front ends choose the SQL error class from this alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The query's input: arity, types, NULLs, an unknown model name, a lossy value.
    UserInput,
    /// The model itself: corrupt file, unsupported outputs, a failing ONNX Runtime run.
    Model,
    /// Setup: ONNX Runtime library not found, bad settings.
    Config,
    /// Limits: model too large, out of memory.
    Resource,
    /// The user (or a timeout) cancelled the statement.
    Cancelled,
    /// A bug in sqlscore.
    Internal,
}

/// The words of the engine the user is in: type names and the settings a hint may mention.
/// Core never names a type or a setting itself.
#[derive(Debug, Clone, Copy)]
pub struct Dialect {
    /// "PostgreSQL" or "DuckDB".
    pub engine: &'static str,
    pub text: &'static str,
    pub real: &'static str,
    pub double: &'static str,
    pub integer: &'static str,
    pub bigint: &'static str,
    pub boolean: &'static str,
    /// How to cast, e.g. `x::double precision` or `CAST(x AS DOUBLE)`.
    pub cast_example: &'static str,
    /// Whether a model argument may be a file path (DuckDB: yes; PostgreSQL: no, only registered models).
    pub file_models: bool,
    /// How to register a model, for "unknown model" hints.
    pub register_hint: &'static str,
    /// The setting that bounds model size.
    pub max_model_size_setting: &'static str,
    /// The setting that bounds ONNX Runtime threads.
    pub intra_threads_setting: &'static str,
    /// The setting for NULL features.
    pub null_policy_setting: &'static str,
    /// The setting that picks the evaluator (native, ONNX Runtime, or auto).
    pub engine_setting: &'static str,
}

impl Dialect {
    /// Neutral words, for the CLI and tests.
    pub const NEUTRAL: Dialect = Dialect {
        engine: "sqlscore",
        text: "text",
        real: "real",
        double: "double",
        integer: "integer",
        bigint: "bigint",
        boolean: "boolean",
        cast_example: "CAST(x AS DOUBLE)",
        file_models: true,
        register_hint: "register the model first",
        max_model_size_setting: "SQLSCORE_MAX_MODEL_BYTES",
        intra_threads_setting: "SQLSCORE_INTRA_THREADS",
        null_policy_setting: "SQLSCORE_NULL_POLICY",
        engine_setting: "SQLSCORE_ENGINE",
    };
}

/// What is wrong with a query handed to a batch function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryProblem {
    /// It has too few columns.
    Shape,
    /// Its first column (the row key) is not an integer.
    KeyType,
    /// It failed to run.
    Failed,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("unknown model '{model}'")]
    UnknownModel { model: String, known: Vec<String> },

    #[error("model '{model}' expects {expected} feature value(s) ({signature}), got {got}")]
    Arity { model: String, expected: usize, got: usize, signature: String },

    #[error("model '{model}': input '{input}' expects {expected}, but {column} is {got}")]
    TypeMismatch { model: String, input: String, column: String, expected: String, got: String },

    #[error("model '{model}': the row has no field '{input}' ({expected}); its fields are: {available}")]
    MissingInput { model: String, input: String, expected: String, available: String },

    #[error("invalid model {what} '{value}': {reason}")]
    InvalidName { what: &'static str, value: String, reason: String },

    #[error("{function}: {argument} must not be NULL")]
    NullArgument { function: String, argument: String },

    #[error("model '{model}': {column} is NULL")]
    NullFeature { model: String, column: String },

    #[error("{column}: {value} cannot be represented as {target}")]
    LossyValue { column: String, value: String, target: String },

    #[error("{function}: {reason}")]
    BadQuery { function: String, problem: QueryProblem, reason: String, hint: Option<String> },

    #[error("model '{model}' is not a valid ONNX model: {reason}")]
    InvalidModel { model: String, reason: String },

    #[error("model '{model}' reads {what} from an external file '{location}'; models must be self-contained")]
    ExternalData { model: String, what: String, location: String },

    #[error("model '{model}' cannot be used for {wanted}: {reason}")]
    Unsupported { model: String, wanted: String, reason: String },

    #[error("model '{model}': output '{output}' {reason}")]
    OutputShape { model: String, output: String, reason: String },

    /// `evaluator`: "ONNX Runtime" or "the native evaluator".
    #[error("model '{model}' failed in {evaluator}: {message}")]
    Execution { model: String, evaluator: &'static str, message: String },

    #[error("cannot read model file '{path}': {reason}")]
    ModelFile { path: String, reason: String },

    #[error("ONNX Runtime library not found or not loadable: {reason}")]
    RuntimeNotFound { reason: String, searched: Vec<String> },

    #[error("invalid setting {name} = {value}: {reason}")]
    InvalidSetting { name: String, value: String, reason: String },

    #[error("model '{model}' is {size} bytes, over the limit of {limit} bytes")]
    ModelTooLarge { model: String, size: usize, limit: usize },

    #[error("permission denied: {action} requires {needed}")]
    PermissionDenied { action: String, needed: String },

    #[error("model '{model}': scoring was cancelled")]
    Cancelled { model: String },

    #[error("internal error (this is a bug in sqlscore, please report it): {0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::UnknownModel { .. }
            | Error::Arity { .. }
            | Error::TypeMismatch { .. }
            | Error::MissingInput { .. }
            | Error::NullArgument { .. }
            | Error::NullFeature { .. }
            | Error::LossyValue { .. }
            | Error::BadQuery { .. }
            | Error::InvalidName { .. }
            | Error::PermissionDenied { .. }
            | Error::ModelFile { .. } => ErrorKind::UserInput,
            Error::InvalidModel { .. }
            | Error::ExternalData { .. }
            | Error::Unsupported { .. }
            | Error::OutputShape { .. }
            | Error::Execution { .. } => ErrorKind::Model,
            Error::RuntimeNotFound { .. } | Error::InvalidSetting { .. } => ErrorKind::Config,
            Error::ModelTooLarge { .. } => ErrorKind::Resource,
            Error::Cancelled { .. } => ErrorKind::Cancelled,
            Error::Internal(_) => ErrorKind::Internal,
        }
    }

    /// What the user can do about it, in the words of the user's engine; shown as the SQL
    /// error's hint.
    pub fn hint(&self, d: &Dialect) -> Option<String> {
        match self {
            Error::UnknownModel { known, .. } if known.is_empty() => Some(if d.file_models {
                format!("no models are registered yet; {}, or pass a path to an .onnx file", d.register_hint)
            } else {
                format!("no models are registered yet; {}", d.register_hint)
            }),
            Error::UnknownModel { known, .. } => {
                Some(format!("registered models: {} (use name or name@version)", known.join(", ")))
            }
            Error::Arity { .. } => Some(
                "pass one value per model feature in input order, or the whole row (score('m', t)) to bind columns by name"
                    .into(),
            ),
            Error::TypeMismatch { .. } => Some(format!("cast the column to the expected type, e.g. {}", d.cast_example)),
            Error::MissingInput { .. } => {
                Some("rename or add a column with the input's name (SELECT ... AS name)".into())
            }
            Error::NullFeature { .. } => Some(format!(
                "filter or COALESCE NULL features, or set {} to 'null' so NULL rows score as NULL",
                d.null_policy_setting
            )),
            Error::LossyValue { .. } => Some("filter or convert such values before scoring".into()),
            Error::BadQuery { hint, .. } => hint.clone(),
            Error::InvalidModel { .. } => Some(
                "export the model with skl2onnx/onnxmltools/torch.onnx and check it loads in Python onnxruntime".into(),
            ),
            Error::ExternalData { .. } => Some(
                "save the model with its weights inside the file (onnx.save_model(m, path, save_as_external_data=False))"
                    .into(),
            ),
            Error::Unsupported { reason, .. } if reason.contains("ZipMap") => {
                Some("re-export the classifier without ZipMap (skl2onnx options={'zipmap': False})".into())
            }
            Error::OutputShape { .. } => {
                Some("sqlscore reads one row of each output per input row; re-export the model with a batch dimension".into())
            }
            Error::RuntimeNotFound { searched, .. } => Some(format!(
                "set ORT_DYLIB_PATH to libonnxruntime.so (pip install onnxruntime==1.32.0 ships it in onnxruntime/capi/); looked in: {}",
                searched.join(", ")
            )),
            Error::ModelTooLarge { .. } => Some(format!("raise {}", d.max_model_size_setting)),
            Error::Internal(_) => Some("please report this with the query and model".into()),
            _ => None,
        }
    }

    /// The message and hint as one text, for engines whose errors have no hint field (DuckDB).
    pub fn with_hint(&self, d: &Dialect) -> String {
        match self.hint(d) {
            Some(h) => format!("{self}\nHINT: {h}"),
            None => self.to_string(),
        }
    }
}

/// Lets `?` work on ONNX Runtime calls inside a closure that knows the model name.
pub(crate) fn exec_err(model: &str) -> impl Fn(ort::Error) -> Error + '_ {
    move |e| Error::Execution { model: model.to_string(), evaluator: "ONNX Runtime", message: e.to_string() }
}

/// Display for an element type as users see it in messages and JSON.
pub(crate) struct Plural<'a>(pub &'a str, pub usize);
impl fmt::Display for Plural<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.1 == 1 {
            write!(f, "{}", self.0)
        } else {
            write!(f, "{}[{}]", self.0, self.1)
        }
    }
}
