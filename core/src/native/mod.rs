//! The native evaluator: compiles a registered ONNX graph, at load, into a plan of Rust kernels
//! that runs without ONNX Runtime when every node is supported (tree ensembles, linear models,
//! SVMs, the preprocessing operators and the standard ops converters put around them). Anything
//! else runs on ONNX Runtime, as before; [`Plan::compile`] names the first node that cannot.
//!
//! Answers match ONNX Runtime 1.32 (single-threaded) within 1e-5 with the same labels: kernels
//! compute in the precision ONNX Runtime's kernels use and sum in the same order.

pub mod dense;
pub mod fuse;
pub mod ml;
pub mod ops;
pub mod plan;
pub mod post;
pub mod proto;
pub mod tensor;
pub mod tree;
pub mod zipmap;

pub use plan::{Plan, Unsupported};
pub use tensor::{Data, Tensor};

/// One compiled node. Kernels work on whole batches; errors are plain text that the engine wraps
/// with the model's name.
pub trait Kernel: Send + Sync {
    fn run(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>, String>;
}
