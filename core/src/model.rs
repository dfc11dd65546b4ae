//! What a model expects and returns, read from the ONNX graph through ONNX Runtime. This is what the
//! registries store as JSON, what binding checks columns against, and how outputs get their roles.

use serde::Serialize;

use crate::error::{Error, Plural, Result};

/// Feature values per row a model may take over all its inputs. Declared shapes size the input
/// buffers, so a model declaring `[N, 2^62]` must be refused before anything is allocated.
pub const MAX_FEATURES: usize = 1 << 20;

/// Longest model name (names are repeated in messages and hints).
pub const MAX_NAME_CHARS: usize = 200;

/// Registry names are plain: `name@version` selects a version, and the DuckDB front end reads a
/// model argument with `/` or an `.onnx` suffix as a file path.
pub fn validate_name(name: &str) -> Result<()> {
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(Error::InvalidName {
            what: "name",
            value: name.chars().take(40).chain("...".chars()).collect(),
            reason: format!("names are at most {MAX_NAME_CHARS} characters"),
        });
    }
    if name.trim().is_empty() || name.contains('@') || name.contains('/') || name.ends_with(".onnx") {
        return Err(Error::InvalidName {
            what: "name",
            value: name.into(),
            reason:
                "use a non-empty name without '@' or '/' that does not end in .onnx (name@version selects a version)"
                    .into(),
        });
    }
    Ok(())
}

/// `churn` -> (churn, None); `churn@3` -> (churn, Some(3)); `churn@x` is an error.
pub fn parse_ref(model: &str) -> Result<(&str, Option<i32>)> {
    match model.rsplit_once('@') {
        None => Ok((model, None)),
        Some((name, v)) => v.parse::<i32>().map(|v| (name, Some(v))).map_err(|_| Error::InvalidName {
            what: "reference",
            value: model.into(),
            reason: "expected name or name@version, e.g. churn@3".into(),
        }),
    }
}

/// Element types sqlscore can feed or read. Others make a model unsupported, with a clear error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ElemType {
    Float,
    Double,
    Int64,
    Int32,
    Bool,
    String,
}

impl ElemType {
    pub fn from_ort(t: ort::value::TensorElementType) -> Option<Self> {
        use ort::value::TensorElementType as T;
        Some(match t {
            T::Float32 => ElemType::Float,
            T::Float64 => ElemType::Double,
            T::Int64 => ElemType::Int64,
            T::Int32 => ElemType::Int32,
            T::Bool => ElemType::Bool,
            T::String => ElemType::String,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            ElemType::Float => "float",
            ElemType::Double => "double",
            ElemType::Int64 => "int64",
            ElemType::Int32 => "int32",
            ElemType::Bool => "bool",
            ElemType::String => "string",
        }
    }

    pub fn is_numeric(self) -> bool {
        !matches!(self, ElemType::String)
    }
}

/// One graph input. `width` is the number of feature values per row: the product of all
/// dimensions after the batch dimension (`[None, 8]` -> 8, `[None]` -> 1).
#[derive(Debug, Clone, Serialize)]
pub struct InputInfo {
    pub name: String,
    #[serde(rename = "type")]
    pub elem: ElemType,
    /// -1 for dynamic dimensions, as ONNX Runtime reports them.
    pub shape: Vec<i64>,
    pub width: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct OutputInfo {
    pub name: String,
    /// None for non-tensor outputs (ZipMap's sequence of maps), which are not read.
    #[serde(rename = "type")]
    pub elem: Option<ElemType>,
    pub shape: Vec<i64>,
}

/// Which outputs carry the label, the class probabilities and the score.
#[derive(Debug, Clone, Default, Serialize)]
pub struct OutputRoles {
    pub label: Option<usize>,
    pub probabilities: Option<usize>,
    /// A float output other than probabilities: regression value, anomaly score.
    pub score: Option<usize>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    pub inputs: Vec<InputInfo>,
    pub outputs: Vec<OutputInfo>,
    #[serde(skip)]
    pub roles: OutputRoles,
}

impl ModelInfo {
    pub(crate) fn from_session(model: &str, session: &ort::session::Session) -> Result<Self> {
        let mut inputs = Vec::new();
        for outlet in session.inputs() {
            let dtype = outlet.dtype();
            let (Some(ty), Some(shape)) = (dtype.tensor_type(), dtype.tensor_shape()) else {
                return Err(Error::Unsupported {
                    model: model.into(),
                    wanted: "scoring".into(),
                    reason: format!("input '{}' is not a tensor ({dtype:?})", outlet.name()),
                });
            };
            let elem = ElemType::from_ort(ty).ok_or_else(|| Error::Unsupported {
                model: model.into(),
                wanted: "scoring".into(),
                reason: format!("input '{}' has element type {ty:?}", outlet.name()),
            })?;
            let shape: Vec<i64> = shape.iter().copied().collect();
            let width = match shape.len() {
                0 | 1 => Some(1),
                _ => shape[1..].iter().try_fold(1usize, |acc, d| acc.checked_mul(usize::try_from(*d).unwrap_or(1))),
            };
            // The declared shape sizes every buffer sqlscore allocates: bound it before anything is.
            let Some(width) = width.filter(|w| *w <= MAX_FEATURES) else {
                return Err(Error::Unsupported {
                    model: model.into(),
                    wanted: "scoring".into(),
                    reason: format!(
                        "input '{}' declares {shape:?}: more than {MAX_FEATURES} values per row",
                        outlet.name()
                    ),
                });
            };
            if shape.len() > 1 && shape[1..].iter().any(|d| *d < 0) {
                return Err(Error::Unsupported {
                    model: model.into(),
                    wanted: "scoring".into(),
                    reason: format!(
                        "input '{}' has a dynamic feature dimension {shape:?}; export it with a fixed number of features",
                        outlet.name()
                    ),
                });
            }
            inputs.push(InputInfo { name: outlet.name().to_string(), elem, shape, width });
        }
        let outputs: Vec<OutputInfo> = session
            .outputs()
            .iter()
            .map(|o| OutputInfo {
                name: o.name().to_string(),
                elem: o.dtype().tensor_type().and_then(ElemType::from_ort),
                shape: o.dtype().tensor_shape().map(|s| s.iter().copied().collect()).unwrap_or_default(),
            })
            .collect();
        let roles = OutputRoles::infer(&outputs);
        let info = ModelInfo { inputs, outputs, roles };
        if info.feature_count() > MAX_FEATURES {
            return Err(Error::Unsupported {
                model: model.into(),
                wanted: "scoring".into(),
                reason: format!("its inputs take {} values per row, more than {MAX_FEATURES}", info.feature_count()),
            });
        }
        Ok(info)
    }

    /// Total feature values per row over all inputs.
    pub fn feature_count(&self) -> usize {
        self.inputs.iter().map(|i| i.width).sum()
    }

    /// `X: float[8]` or `city: string, age: float`: used in arity errors.
    pub fn signature(&self) -> String {
        self.inputs
            .iter()
            .map(|i| format!("{}: {}", i.name, Plural(i.elem.name(), i.width)))
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub fn inputs_json(&self) -> String {
        serde_json::to_string(&self.inputs).unwrap_or_default()
    }

    pub fn outputs_json(&self) -> String {
        serde_json::to_string(&self.outputs).unwrap_or_default()
    }

    /// What registries store about a model: hash, size, inputs and outputs.
    pub fn describe(&self, sha256: &str, size: usize) -> serde_json::Value {
        serde_json::json!({ "sha256": sha256, "size": size, "inputs": self.inputs, "outputs": self.outputs })
    }
}

impl OutputRoles {
    /// Converters name outputs by convention (skl2onnx: `label`, `probabilities`, `variable`,
    /// `scores`; onnxmltools: `output_label`, `output_probability`); fall back on types.
    fn infer(outputs: &[OutputInfo]) -> Self {
        let tensor = |i: &usize| outputs[*i].elem.is_some();
        let named =
            |names: &[&str]| (0..outputs.len()).find(|i| tensor(i) && names.contains(&outputs[*i].name.as_str()));
        let label = named(&["label", "output_label", "predicted_label"]);
        let probabilities = named(&["probabilities", "output_probability", "probability"])
            .filter(|i| matches!(outputs[*i].elem, Some(ElemType::Float | ElemType::Double)));
        let score = (0..outputs.len()).find(|i| {
            Some(*i) != probabilities
                && Some(*i) != label
                && matches!(outputs[*i].elem, Some(ElemType::Float | ElemType::Double))
        });
        OutputRoles { label, probabilities, score }
    }
}
