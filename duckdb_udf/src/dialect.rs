//! DuckDB's words in engine messages (type names, settings, how to register a model), shared by
//! the loadable extension and the jobs a host runs.

use sqlscore_core::Dialect;

pub const DUCKDB: Dialect = Dialect {
    engine: "DuckDB",
    text: "VARCHAR",
    real: "FLOAT",
    double: "DOUBLE",
    integer: "INTEGER",
    bigint: "BIGINT",
    boolean: "BOOLEAN",
    cast_example: "CAST(x AS DOUBLE)",
    file_models: true,
    register_hint: "register one with INSERT INTO sqlscore_models FROM sqlscore_register('name', 'model.onnx')",
    max_model_size_setting: "the SQLSCORE_MAX_MODEL_BYTES environment variable of the process",
    intra_threads_setting: "sqlscore_intra_threads",
    null_policy_setting: "sqlscore_null_policy",
    engine_setting: "sqlscore_engine",
};
