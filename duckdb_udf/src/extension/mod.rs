//! The loadable extension: entry point, registration, and the SQL layer created at LOAD.

mod entry;
mod ffi;
mod read_model;
mod scalar;
mod setup;
mod vectors;
