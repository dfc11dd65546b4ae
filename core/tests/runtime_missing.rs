//! Its own test binary (= its own process), so ONNX Runtime is not loaded yet when it runs.

#[test]
fn missing_runtime_library_says_where_it_looked() {
    std::env::set_var("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so.1.32.0");
    let engine = sqlscore_core::Engine::default();
    let bytes = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../models/logistic_binary.onnx")).unwrap();
    let err = engine.load_bytes("lr", &bytes).unwrap_err();
    assert_eq!(err.kind(), sqlscore_core::ErrorKind::Config);
    assert!(err.to_string().contains("/nonexistent/libonnxruntime.so.1.32.0"), "{err}");
    assert!(err.hint(&sqlscore_core::Dialect::NEUTRAL).unwrap().contains("ORT_DYLIB_PATH"));
    // Not cached as failed: fixing the setting makes the next call work.
    std::env::remove_var("ORT_DYLIB_PATH");
    engine.load_bytes("lr", &bytes).unwrap();
}
