//! The one error type of the engine. Front ends map it to SQL once (SQLSTATE + message + hint),
//! so every variant carries what a user needs to act: the model, the column, what was expected.

use std::fmt;

/// Who has to act on an error. Front ends choose the SQL error class from this alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The query's input: arity, types, NULLs, an unknown model name.
    UserInput,
    /// The model itself: corrupt file, unsupported outputs, a failing ONNX Runtime run.
    Model,
    /// Setup: ONNX Runtime library not found, bad settings.
    Config,
    /// Limits: model too large, out of memory.
    Resource,
    /// A bug in sqlscore.
    Internal,
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

    #[error("model '{model}': {column} is NULL")]
    NullFeature { model: String, column: String },

    #[error("model '{model}' is not a valid ONNX model: {reason}")]
    InvalidModel { model: String, reason: String },

    #[error("model '{model}' cannot be used for {wanted}: {reason}")]
    Unsupported { model: String, wanted: String, reason: String },

    #[error("model '{model}' failed in ONNX Runtime: {message}")]
    Execution { model: String, message: String },

    #[error("cannot read model file '{path}': {reason}")]
    ModelFile { path: String, reason: String },

    #[error("ONNX Runtime library not found or not loadable: {reason}")]
    RuntimeNotFound { reason: String, searched: Vec<String> },

    #[error("invalid setting {name} = '{value}': {reason}")]
    InvalidSetting { name: String, value: String, reason: String },

    #[error("model '{model}' is {size} bytes, over the limit of {limit} bytes")]
    ModelTooLarge { model: String, size: usize, limit: usize },

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
            | Error::NullFeature { .. }
            | Error::InvalidName { .. }
            | Error::ModelFile { .. } => ErrorKind::UserInput,
            Error::InvalidModel { .. } | Error::Unsupported { .. } | Error::Execution { .. } => {
                ErrorKind::Model
            }
            Error::RuntimeNotFound { .. } | Error::InvalidSetting { .. } => ErrorKind::Config,
            Error::ModelTooLarge { .. } => ErrorKind::Resource,
            Error::Internal(_) => ErrorKind::Internal,
        }
    }

    /// What the user can do about it; shown as the SQL error's hint.
    pub fn hint(&self) -> Option<String> {
        match self {
            Error::UnknownModel { known, .. } if known.is_empty() => Some(
                "no models are registered yet; register one first, or pass a path to an .onnx file"
                    .into(),
            ),
            Error::UnknownModel { known, .. } => Some(format!(
                "registered models: {} (use name or name@version)",
                known.join(", ")
            )),
            Error::Arity { .. } => Some(
                "pass one value per model feature in input order, or the whole row (score('m', t)) to bind columns by name"
                    .into(),
            ),
            Error::TypeMismatch { .. } => Some("cast the column to the expected type".into()),
            Error::MissingInput { .. } => {
                Some("rename or add a column with the input's name (SELECT ... AS name)".into())
            }
            Error::NullFeature { .. } => {
                Some("filter or COALESCE NULL features, or let NULL rows score as NULL".into())
            }
            Error::InvalidModel { .. } => {
                Some("export the model with skl2onnx/onnxmltools/torch.onnx and check it loads in Python onnxruntime".into())
            }
            Error::Unsupported { reason, .. } if reason.contains("ZipMap") => {
                Some("re-export the classifier without ZipMap (skl2onnx options={'zipmap': False})".into())
            }
            Error::RuntimeNotFound { searched, .. } => Some(format!(
                "set ORT_DYLIB_PATH to libonnxruntime.so (pip install onnxruntime==1.32.0 ships it in onnxruntime/capi/); looked in: {}",
                searched.join(", ")
            )),
            Error::ModelTooLarge { .. } => Some("raise the max model size setting".into()),
            Error::Internal(_) => Some("please report this with the query and model".into()),
            _ => None,
        }
    }
}

/// Lets `?` work on ONNX Runtime calls inside a closure that knows the model name.
pub(crate) fn exec_err(model: &str) -> impl Fn(ort::Error) -> Error + '_ {
    move |e| Error::Execution { model: model.to_string(), message: e.to_string() }
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
