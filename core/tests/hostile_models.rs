//! Models are untrusted input: each committed hostile model (models/bad, made by
//! models/make_bad_models.py) is refused when loaded, for its own reason, before it can read a
//! file, misalign rows or allocate from a declared shape.

mod common;

use common::models_dir;
use sqlscore_core::{Engine, Error};

fn load(name: &str) -> Result<(), Error> {
    let bytes = std::fs::read(models_dir().join(format!("bad/{name}.onnx"))).unwrap();
    Engine::default().load_bytes(name, &bytes).map(|_| ())
}

#[test]
fn models_that_read_external_files_are_refused_wherever_the_tensor_is() {
    for (name, location) in [
        ("ext_initializer_secret", "secret.bin"),
        ("ext_constant_traversal", "../../../../../../etc/passwd"),
        ("ext_if_subgraph_absolute", "/etc/passwd"),
    ] {
        match load(name) {
            Err(Error::ExternalData { location: got, .. }) => assert_eq!(got, location, "{name}"),
            other => panic!("{name}: {other:?}"),
        }
    }
}

#[test]
fn models_whose_outputs_do_not_answer_one_row_per_input_row_are_refused_at_load() {
    for (name, reason) in [
        ("misaligned_one_row", "has 1 row(s) for 2 input row(s)"),
        ("misaligned_double_rows", "has 4 row(s) for 2 input row(s)"),
        ("misaligned_zero_cols", "is empty"),
        ("misaligned_scalar", "is a single value"),
        ("misaligned_declared_n", "has 1 row(s) for 2 input row(s)"),
    ] {
        match load(name) {
            Err(e @ Error::OutputShape { .. }) => assert!(e.to_string().contains(reason), "{name}: {e}"),
            other => panic!("{name}: {other:?}"),
        }
    }
}

#[test]
fn declared_shapes_cannot_size_an_allocation() {
    match load("odd_huge_declared_dims") {
        Err(e @ Error::Unsupported { .. }) => assert!(e.to_string().contains("values per row"), "{e}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_control_model_loads() {
    load("good_linear").unwrap();
}
