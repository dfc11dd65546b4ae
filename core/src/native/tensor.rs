//! The values flowing between native kernels: whole-batch tensors, row-major, first dimension
//! the batch. Kernels take and return these; nothing here knows about ONNX Runtime.

/// Element storage. Booleans are kept apart from integers because ONNX keeps them apart
/// (`Where`, `Not`, `Cast` from bool).
#[derive(Debug, Clone, PartialEq)]
pub enum Data {
    F32(Vec<f32>),
    F64(Vec<f64>),
    I64(Vec<i64>),
    Bool(Vec<bool>),
    Str(Vec<String>),
}

/// Most values one kernel may produce in one run (1 GiB of f32). Shapes come from the model
/// (attributes, constants): a crafted one must get an error, never an allocation that aborts
/// the database process.
pub const MAX_ELEMENTS: usize = 1 << 28;

/// `Err` unless `n` values fit the budget.
pub fn check_elements(n: Option<usize>, what: &str) -> Result<usize, String> {
    match n {
        Some(n) if n <= MAX_ELEMENTS => Ok(n),
        _ => Err(format!("{what} would hold more than {MAX_ELEMENTS} values")),
    }
}

/// The product of `dims`, or None on overflow.
pub fn checked_product(dims: &[usize]) -> Option<usize> {
    dims.iter().try_fold(1usize, |a, d| a.checked_mul(*d))
}

#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Data,
}

impl Data {
    pub fn len(&self) -> usize {
        match self {
            Data::F32(v) => v.len(),
            Data::F64(v) => v.len(),
            Data::I64(v) => v.len(),
            Data::Bool(v) => v.len(),
            Data::Str(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            Data::F32(_) => "float",
            Data::F64(_) => "double",
            Data::I64(_) => "int64",
            Data::Bool(_) => "bool",
            Data::Str(_) => "string",
        }
    }
}

impl Tensor {
    pub fn new(shape: Vec<usize>, data: Data) -> Self {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len(), "shape {shape:?}");
        Tensor { shape, data }
    }

    pub fn f32(shape: Vec<usize>, v: Vec<f32>) -> Self {
        Tensor::new(shape, Data::F32(v))
    }

    pub fn f64(shape: Vec<usize>, v: Vec<f64>) -> Self {
        Tensor::new(shape, Data::F64(v))
    }

    pub fn i64(shape: Vec<usize>, v: Vec<i64>) -> Self {
        Tensor::new(shape, Data::I64(v))
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Rows = first dimension (1 for a scalar).
    pub fn rows(&self) -> usize {
        self.shape.first().copied().unwrap_or(1)
    }

    /// Values per row: the product of the dimensions after the first.
    pub fn row_width(&self) -> usize {
        self.shape.iter().skip(1).product()
    }
}
