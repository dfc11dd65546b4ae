//! The loadable extension: entry point, registration, and the SQL layer created at LOAD.

mod engine_info;
mod entry;
mod ffi;
mod read_model;
mod scalar;
mod settings;
mod setup;
mod vectors;
