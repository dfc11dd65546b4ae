//! The SQL surface: one file per function family.

mod batch;
mod models;
mod score;
