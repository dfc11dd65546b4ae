//! Classifiers whose probabilities come out of a ZipMap (a sequence of maps) are rewritten at
//! load so they come out as a plain [N, classes] float tensor under the same output name. CatBoost
//! always exports a ZipMap and skl2onnx/onnxmltools do unless told not to; after this rewrite
//! `score`, `predict_proba` and `score_batch` treat them like any classifier, on both evaluators.

use prost::Message;

use super::proto::{dtype, ModelProto, NodeProto, OperatorSetIdProto, TypeProto};

/// The model with every ZipMap replaced by an Identity of its input, and its bytes for ONNX
/// Runtime; `None` when the model has no ZipMap. A ZipMap whose maps feed another node (not a
/// converter's layout) is left alone.
pub fn strip(model: &ModelProto) -> Option<(ModelProto, Vec<u8>)> {
    let graph = model.graph.as_ref()?;
    // Local functions may call overloads and training graphs are not ours to rewrite.
    if !model.functions.is_empty() || !model.training_info.is_empty() {
        return None;
    }
    let outputs: Vec<&str> = graph.output.iter().map(|o| o.name.as_str()).collect();
    let read: std::collections::HashSet<&str> =
        graph.node.iter().flat_map(|n| n.input.iter().map(String::as_str)).collect();
    let zipmaps: Vec<usize> = graph
        .node
        .iter()
        .enumerate()
        .filter(|(_, n)| n.op_type == "ZipMap" && n.domain == "ai.onnx.ml")
        .filter(|(_, n)| n.output.len() == 1 && n.input.len() == 1)
        .filter(|(_, n)| outputs.contains(&n.output[0].as_str()) && !read.contains(n.output[0].as_str()))
        .map(|(i, _)| i)
        .collect();
    if zipmaps.is_empty() {
        return None;
    }
    let mut model = model.clone();
    let graph = model.graph.as_mut()?;
    for i in zipmaps {
        let zipmap = &graph.node[i];
        let classes = zipmap.ints("classlabels_int64s").len().max(zipmap.strings("classlabels_strings").len());
        let name = zipmap.output[0].clone();
        graph.node[i] = NodeProto {
            input: zipmap.input.clone(),
            output: vec![name.clone()],
            name: format!("{}__sqlscore_unzipped", zipmap.name),
            op_type: "Identity".into(),
            ..Default::default()
        };
        for o in graph.output.iter_mut().filter(|o| o.name == name) {
            o.r#type = Some(float_matrix(classes));
        }
    }
    if !model.opset_import.iter().any(|o| o.domain.is_empty() || o.domain == "ai.onnx") {
        model.opset_import.push(OperatorSetIdProto { domain: String::new(), version: 1 });
    }
    let bytes = model.encode_to_vec();
    Some((model, bytes))
}

/// `tensor(float)` of shape [N, classes].
fn float_matrix(classes: usize) -> TypeProto {
    TypeProto::tensor(dtype::FLOAT, &[-1, classes as i64])
}
