//! sqlscore's engine: load ONNX models, describe them, bind SQL columns to their inputs and run
//! them in batches through ONNX Runtime. It knows nothing of PostgreSQL or DuckDB; the front ends
//! translate their vectors into [`Batch`] and [`Error`] into SQL errors.

pub mod batch;
pub mod binding;
pub mod cancel;
pub mod engine;
pub mod error;
pub mod execute;
pub mod graph_check;
pub mod job;
pub mod lake;
pub mod model;
pub mod native;
pub mod runtime;

pub use batch::{Batch, Column, ColumnData, DecimalValues};
pub use cancel::InterruptCheck;
pub use engine::{max_intra_threads, read_model_file, sha256_hex, Engine, EngineConfig, Evaluator, Model, NullPolicy};
pub use error::{Dialect, Error, ErrorKind, QueryProblem, Result};
pub use execute::{Predictions, RunOptions, Want};
pub use job::{OnError, Outputs, RowOutcome, ScoreStats};
pub use lake::{FileFormat, FilePlan, FileStat, Source, Target};
pub use model::{parse_ref, validate_name, ElemType, InputInfo, ModelInfo, OutputInfo, MAX_FEATURES};
