//! Checks an ONNX model's bytes before ONNX Runtime sees them. A model is untrusted input: a
//! tensor may keep its values in an *external file* named by a path, which ONNX Runtime would read
//! relative to where the model is loaded (a server's data directory, a user's working directory).
//! We refuse every such tensor ourselves, wherever it sits (initializers, Constant attributes,
//! subgraphs of If/Loop/Scan, functions, training graphs), instead of relying on ONNX Runtime's
//! path rules. ORT-format (flatbuffer) models are refused too: they are not what our converters
//! write and this check cannot read them.
//!
//! This is a reader of the protobuf wire format that follows only the fields that can hold a
//! tensor or a graph (onnx.proto3 field numbers); everything else is skipped unread.

use crate::error::{Error, Result};

/// Subgraph nesting accepted; ONNX Runtime's own protobuf parser stops at 100 levels.
const MAX_DEPTH: usize = 64;

/// Refuses models that read external files or that are not ONNX protobufs.
pub fn check_model_bytes(model: &str, bytes: &[u8]) -> Result<()> {
    if bytes.is_empty() {
        return Err(invalid(model, "the file is empty"));
    }
    if bytes.len() >= 8 && &bytes[4..8] == b"ORTM" {
        return Err(invalid(model, "ORT-format models are not accepted; register the .onnx file"));
    }
    let mut checker = Checker { model, has_graph: false };
    checker.message(bytes, Msg::Model, 0)?;
    if !checker.has_graph {
        return Err(invalid(model, "it has no graph"));
    }
    Ok(())
}

fn invalid(model: &str, reason: &str) -> Error {
    Error::InvalidModel { model: model.into(), reason: reason.into() }
}

/// The message types we descend into.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Msg {
    Model,
    Graph,
    Node,
    Attribute,
    Function,
    TrainingInfo,
    Tensor,
    SparseTensor,
    StringEntry,
    /// `ModelProto.metadata_props`: ONNX Runtime reads session options from the key
    /// `ort_config` when the process has ORT_LOAD_CONFIG_FROM_MODEL=1.
    Metadata,
}

impl Msg {
    /// Which field of this message holds which sub-message (only those that can reach a tensor).
    fn child(self, field: u32) -> Option<Msg> {
        use Msg::*;
        Some(match (self, field) {
            (Model, 7) => Graph,
            (Model, 14) => Metadata,
            (Model, 20) => TrainingInfo,
            (Model, 25) => Function,
            (TrainingInfo, 1 | 2) => Graph,
            (Graph, 1) => Node,
            (Graph, 5) => Tensor,
            (Graph, 15) => SparseTensor,
            (Node, 5) => Attribute,
            (Function, 7) => Node,
            (Function, 11) => Attribute,
            (Attribute, 5 | 10) => Tensor,
            (Attribute, 6 | 11) => Graph,
            (Attribute, 22 | 23) => SparseTensor,
            (SparseTensor, 1 | 2) => Tensor,
            (Tensor, 13) => StringEntry,
            _ => return None,
        })
    }
}

struct Checker<'m> {
    model: &'m str,
    has_graph: bool,
}

enum Wire<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Option<u64> {
        let mut out = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self.buf.get(self.pos)?;
            self.pos += 1;
            out |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(out);
            }
        }
        None
    }

    fn skip(&mut self, n: usize) -> Option<()> {
        let end = self.pos.checked_add(n).filter(|e| *e <= self.buf.len())?;
        self.pos = end;
        Some(())
    }

    /// The next field, or None at the end; Err on malformed input.
    fn field(&mut self) -> Option<Result<(u32, Wire<'a>), ()>> {
        if self.pos >= self.buf.len() {
            return None;
        }
        let parsed = (|| {
            let key = self.varint()?;
            let number = u32::try_from(key >> 3).ok()?;
            let wire = match key & 7 {
                0 => Wire::Varint(self.varint()?),
                1 => {
                    self.skip(8)?;
                    Wire::Fixed
                }
                2 => {
                    let len = usize::try_from(self.varint()?).ok()?;
                    let start = self.pos;
                    self.skip(len)?;
                    Wire::Bytes(&self.buf[start..self.pos])
                }
                5 => {
                    self.skip(4)?;
                    Wire::Fixed
                }
                _ => return None,
            };
            Some((number, wire))
        })();
        Some(parsed.ok_or(()))
    }
}

impl Checker<'_> {
    fn message(&mut self, bytes: &[u8], msg: Msg, depth: usize) -> Result<Option<String>> {
        if depth > MAX_DEPTH {
            return Err(invalid(self.model, "its graphs are nested too deeply"));
        }
        let mut reader = Reader { buf: bytes, pos: 0 };
        let mut tensor_name = String::new();
        let mut location: Option<String> = None;
        let mut external = false;
        let (mut key, mut value) = (None, None);
        while let Some(field) = reader.field() {
            let (number, wire) = field.map_err(|()| invalid(self.model, "the bytes are not an ONNX protobuf"))?;
            match (msg, number, wire) {
                // DEFAULT is 0; anything else (EXTERNAL = 1, or a value ONNX Runtime truncates to
                // it) counts as external.
                (Msg::Tensor, 14, Wire::Varint(v)) => external |= v != 0,
                (Msg::Metadata, 1, Wire::Bytes(b)) if b == b"ort_config" => {
                    return Err(invalid(
                        self.model,
                        "it carries ONNX Runtime session options (metadata 'ort_config'), which could change threads or write profiles",
                    ));
                }
                (Msg::Tensor, 8, Wire::Bytes(b)) => tensor_name = String::from_utf8_lossy(b).into_owned(),
                (Msg::StringEntry, 1, Wire::Bytes(b)) => key = Some(b),
                (Msg::StringEntry, 2, Wire::Bytes(b)) => value = Some(b),
                (_, n, Wire::Bytes(b)) => {
                    if let Some(child) = msg.child(n) {
                        if msg == Msg::Model && child == Msg::Graph {
                            self.has_graph = true;
                        }
                        let found = self.message(b, child, depth + 1)?;
                        if child == Msg::StringEntry {
                            // Any external_data entry makes the tensor external; keep the location.
                            external = true;
                            location = found.or(location);
                        }
                    }
                }
                _ => {}
            }
        }
        if msg == Msg::StringEntry && key == Some(b"location".as_slice()) {
            return Ok(value.map(|v| String::from_utf8_lossy(v).into_owned()));
        }
        if msg == Msg::Tensor && external {
            let what = if tensor_name.is_empty() { "a tensor".to_string() } else { format!("tensor '{tensor_name}'") };
            return Err(Error::ExternalData { model: self.model.into(), what, location: location.unwrap_or_default() });
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint(mut v: u64, out: &mut Vec<u8>) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }

    fn bytes_field(n: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        varint(u64::from(n) << 3 | 2, &mut out);
        varint(payload.len() as u64, &mut out);
        out.extend_from_slice(payload);
        out
    }

    fn varint_field(n: u32, v: u64) -> Vec<u8> {
        let mut out = Vec::new();
        varint(u64::from(n) << 3, &mut out);
        varint(v, &mut out);
        out
    }

    fn external_tensor() -> Vec<u8> {
        let entry = [bytes_field(1, b"location"), bytes_field(2, b"secret.bin")].concat();
        [bytes_field(8, b"W"), bytes_field(13, &entry), varint_field(14, 1)].concat()
    }

    #[test]
    fn external_initializer_is_refused() {
        let graph = bytes_field(5, &external_tensor());
        let model = [varint_field(1, 8), bytes_field(7, &graph)].concat();
        let err = check_model_bytes("m", &model).unwrap_err();
        assert!(matches!(&err, Error::ExternalData { location, .. } if location == "secret.bin"), "{err}");
    }

    #[test]
    fn external_tensor_in_a_subgraph_attribute_is_refused() {
        let inner_graph = bytes_field(5, &external_tensor());
        let attribute = bytes_field(6, &inner_graph);
        let node = bytes_field(5, &attribute);
        let graph = bytes_field(1, &node);
        let model = bytes_field(7, &graph);
        assert!(matches!(check_model_bytes("m", &model), Err(Error::ExternalData { .. })));
    }

    #[test]
    fn data_location_alone_is_refused() {
        let tensor = [bytes_field(8, b"W"), varint_field(14, 1)].concat();
        let model = bytes_field(7, &bytes_field(5, &tensor));
        assert!(matches!(check_model_bytes("m", &model), Err(Error::ExternalData { .. })));
    }

    #[test]
    fn session_options_carried_in_metadata_are_refused() {
        let entry = [bytes_field(1, b"ort_config"), bytes_field(2, b"{\"session_options\": {}}")].concat();
        let graph = bytes_field(5, &bytes_field(8, b"W"));
        let model = [bytes_field(7, &graph), bytes_field(14, &entry)].concat();
        let err = check_model_bytes("m", &model).unwrap_err();
        assert!(err.to_string().contains("ort_config"), "{err}");
        let other = [bytes_field(1, b"author"), bytes_field(2, b"me")].concat();
        assert!(check_model_bytes("m", &[bytes_field(7, &graph), bytes_field(14, &other)].concat()).is_ok());
    }

    #[test]
    fn garbage_truncation_and_nesting_are_refused() {
        assert!(check_model_bytes("m", b"").is_err());
        assert!(check_model_bytes("m", &[0xff; 16]).is_err());
        let model = bytes_field(7, &bytes_field(5, &bytes_field(8, b"W")));
        assert!(check_model_bytes("m", &model).is_ok());
        assert!(check_model_bytes("m", &model[..model.len() - 1]).is_err());
        let mut graph = bytes_field(5, &bytes_field(8, b"W"));
        for _ in 0..100 {
            graph = bytes_field(1, &bytes_field(5, &bytes_field(6, &graph)));
        }
        let err = check_model_bytes("m", &bytes_field(7, &graph)).unwrap_err();
        assert!(err.to_string().contains("nested too deeply"), "{err}");
    }
}
