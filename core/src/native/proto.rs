//! The ONNX protobuf messages the native evaluator reads, declared by hand with `prost` (field
//! numbers from onnx.proto3) so the build needs no `protoc`. What a tabular graph needs is
//! declared with its type; every other field that carries meaning (sparse and type-proto
//! attributes, function overloads, optional/sparse/opaque types) is declared as opaque bytes, so
//! the ZipMap rewrite re-encodes a model without dropping it. Doc strings are dropped. [`crate::graph_check`] has already refused
//! external data before any of this is decoded.

#![allow(missing_docs)]

use prost::Message;

#[derive(Clone, PartialEq, Message)]
pub struct ModelProto {
    #[prost(int64, tag = "1")]
    pub ir_version: i64,
    #[prost(string, tag = "2")]
    pub producer_name: String,
    #[prost(string, tag = "3")]
    pub producer_version: String,
    #[prost(string, tag = "4")]
    pub domain: String,
    #[prost(int64, tag = "5")]
    pub model_version: i64,
    #[prost(message, optional, tag = "7")]
    pub graph: Option<GraphProto>,
    #[prost(message, repeated, tag = "8")]
    pub opset_import: Vec<OperatorSetIdProto>,
    #[prost(message, repeated, tag = "14")]
    pub metadata_props: Vec<StringStringEntryProto>,
    /// Only counted: a model with local functions is never rewritten (prost would drop them).
    #[prost(bytes = "vec", repeated, tag = "25")]
    pub functions: Vec<Vec<u8>>,
    #[prost(bytes = "vec", repeated, tag = "20")]
    pub training_info: Vec<Vec<u8>>,
}

#[derive(Clone, PartialEq, Message)]
pub struct OperatorSetIdProto {
    #[prost(string, tag = "1")]
    pub domain: String,
    #[prost(int64, tag = "2")]
    pub version: i64,
}

#[derive(Clone, PartialEq, Message)]
pub struct StringStringEntryProto {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct GraphProto {
    #[prost(message, repeated, tag = "1")]
    pub node: Vec<NodeProto>,
    #[prost(string, tag = "2")]
    pub name: String,
    #[prost(message, repeated, tag = "5")]
    pub initializer: Vec<TensorProto>,
    #[prost(message, repeated, tag = "11")]
    pub input: Vec<ValueInfoProto>,
    #[prost(message, repeated, tag = "12")]
    pub output: Vec<ValueInfoProto>,
    #[prost(message, repeated, tag = "13")]
    pub value_info: Vec<ValueInfoProto>,
    /// Only counted: sparse initializers make a graph unsupported natively and never rewritten.
    #[prost(bytes = "vec", repeated, tag = "15")]
    pub sparse_initializer: Vec<Vec<u8>>,
}

#[derive(Clone, PartialEq, Message)]
pub struct NodeProto {
    #[prost(string, repeated, tag = "1")]
    pub input: Vec<String>,
    #[prost(string, repeated, tag = "2")]
    pub output: Vec<String>,
    #[prost(string, tag = "3")]
    pub name: String,
    #[prost(string, tag = "4")]
    pub op_type: String,
    #[prost(message, repeated, tag = "5")]
    pub attribute: Vec<AttributeProto>,
    #[prost(string, tag = "7")]
    pub domain: String,
    #[prost(string, tag = "8")]
    pub overload: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct AttributeProto {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(float, tag = "2")]
    pub f: f32,
    #[prost(int64, tag = "3")]
    pub i: i64,
    #[prost(bytes = "vec", tag = "4")]
    pub s: Vec<u8>,
    #[prost(message, optional, tag = "5")]
    pub t: Option<TensorProto>,
    /// Subgraphs (If/Loop/Scan) are not evaluated natively; kept opaque so a rewrite keeps them.
    #[prost(bytes = "vec", optional, tag = "6")]
    pub g: Option<Vec<u8>>,
    #[prost(float, repeated, tag = "7")]
    pub floats: Vec<f32>,
    #[prost(int64, repeated, tag = "8")]
    pub ints: Vec<i64>,
    #[prost(bytes = "vec", repeated, tag = "9")]
    pub strings: Vec<Vec<u8>>,
    #[prost(message, repeated, tag = "10")]
    pub tensors: Vec<TensorProto>,
    #[prost(bytes = "vec", repeated, tag = "11")]
    pub graphs: Vec<Vec<u8>>,
    #[prost(int32, tag = "20")]
    pub r#type: i32,
    #[prost(string, tag = "21")]
    pub ref_attr_name: String,
    #[prost(bytes = "vec", optional, tag = "14")]
    pub tp: Option<Vec<u8>>,
    #[prost(bytes = "vec", repeated, tag = "15")]
    pub type_protos: Vec<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "22")]
    pub sparse_tensor: Option<Vec<u8>>,
    #[prost(bytes = "vec", repeated, tag = "23")]
    pub sparse_tensors: Vec<Vec<u8>>,
}

/// ONNX `TensorProto.DataType` values used here.
pub mod dtype {
    pub const FLOAT: i32 = 1;
    pub const UINT8: i32 = 2;
    pub const INT8: i32 = 3;
    pub const INT32: i32 = 6;
    pub const INT64: i32 = 7;
    pub const STRING: i32 = 8;
    pub const BOOL: i32 = 9;
    pub const DOUBLE: i32 = 11;
}

#[derive(Clone, PartialEq, Message)]
pub struct TensorProto {
    #[prost(int64, repeated, tag = "1")]
    pub dims: Vec<i64>,
    #[prost(int32, tag = "2")]
    pub data_type: i32,
    #[prost(float, repeated, tag = "4")]
    pub float_data: Vec<f32>,
    #[prost(int32, repeated, tag = "5")]
    pub int32_data: Vec<i32>,
    #[prost(bytes = "vec", repeated, tag = "6")]
    pub string_data: Vec<Vec<u8>>,
    #[prost(int64, repeated, tag = "7")]
    pub int64_data: Vec<i64>,
    #[prost(string, tag = "8")]
    pub name: String,
    #[prost(bytes = "vec", tag = "9")]
    pub raw_data: Vec<u8>,
    #[prost(double, repeated, tag = "10")]
    pub double_data: Vec<f64>,
    #[prost(uint64, repeated, tag = "11")]
    pub uint64_data: Vec<u64>,
    /// Refused by the graph check before decoding; declared so a rewrite could never drop it silently.
    #[prost(int32, tag = "14")]
    pub data_location: i32,
}

#[derive(Clone, PartialEq, Message)]
pub struct ValueInfoProto {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, optional, tag = "2")]
    pub r#type: Option<TypeProto>,
}

#[derive(Clone, PartialEq, Message)]
pub struct TypeProto {
    #[prost(oneof = "type_proto::Value", tags = "1, 4, 5, 7, 8, 9")]
    pub value: Option<type_proto::Value>,
    #[prost(string, tag = "6")]
    pub denotation: String,
}

pub mod type_proto {
    use super::{TensorShapeProto, TypeProto};

    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Value {
        #[prost(message, tag = "1")]
        TensorType(Tensor),
        #[prost(message, tag = "4")]
        SequenceType(Box<Sequence>),
        #[prost(message, tag = "5")]
        MapType(Box<Map>),
        /// Kept as bytes: never read, only carried through a rewrite.
        #[prost(bytes, tag = "7")]
        OpaqueType(Vec<u8>),
        #[prost(bytes, tag = "8")]
        SparseTensorType(Vec<u8>),
        #[prost(bytes, tag = "9")]
        OptionalType(Vec<u8>),
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Tensor {
        #[prost(int32, tag = "1")]
        pub elem_type: i32,
        #[prost(message, optional, tag = "2")]
        pub shape: Option<TensorShapeProto>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Sequence {
        #[prost(message, optional, boxed, tag = "1")]
        pub elem_type: Option<Box<TypeProto>>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Map {
        #[prost(int32, tag = "1")]
        pub key_type: i32,
        #[prost(message, optional, boxed, tag = "2")]
        pub value_type: Option<Box<TypeProto>>,
    }
}

#[derive(Clone, PartialEq, Message)]
pub struct TensorShapeProto {
    #[prost(message, repeated, tag = "1")]
    pub dim: Vec<tensor_shape_proto::Dimension>,
}

pub mod tensor_shape_proto {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Dimension {
        #[prost(oneof = "dimension::Value", tags = "1, 2")]
        pub value: Option<dimension::Value>,
    }

    pub mod dimension {
        #[derive(Clone, PartialEq, prost::Oneof)]
        pub enum Value {
            #[prost(int64, tag = "1")]
            DimValue(i64),
            #[prost(string, tag = "2")]
            DimParam(String),
        }
    }
}

pub fn decode_model(bytes: &[u8]) -> Result<ModelProto, prost::DecodeError> {
    ModelProto::decode(bytes)
}

impl TypeProto {
    /// `tensor(elem)` of shape `dims`, a negative dimension standing for the symbolic batch size
    /// `N`: what a rewrite (ZipMap) declares, and what hand-built models in tests and benchmarks do.
    pub fn tensor(elem: i32, dims: &[i64]) -> TypeProto {
        use tensor_shape_proto::{dimension::Value, Dimension};
        let dim = dims
            .iter()
            .map(|&d| Dimension { value: Some(if d < 0 { Value::DimParam("N".into()) } else { Value::DimValue(d) }) })
            .collect();
        TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: elem,
                shape: Some(TensorShapeProto { dim }),
            })),
            denotation: String::new(),
        }
    }
}

impl ValueInfoProto {
    /// A graph input or output of type [`TypeProto::tensor`].
    pub fn tensor(name: &str, elem: i32, dims: &[i64]) -> ValueInfoProto {
        ValueInfoProto { name: name.into(), r#type: Some(TypeProto::tensor(elem, dims)) }
    }
}

impl NodeProto {
    pub fn attr(&self, name: &str) -> Option<&AttributeProto> {
        self.attribute.iter().find(|a| a.name == name)
    }

    pub fn ints(&self, name: &str) -> &[i64] {
        self.attr(name).map_or(&[], |a| a.ints.as_slice())
    }

    pub fn floats(&self, name: &str) -> &[f32] {
        self.attr(name).map_or(&[], |a| a.floats.as_slice())
    }

    pub fn int(&self, name: &str, default: i64) -> i64 {
        self.attr(name).map_or(default, |a| a.i)
    }

    pub fn float(&self, name: &str, default: f32) -> f32 {
        self.attr(name).map_or(default, |a| a.f)
    }

    pub fn string(&self, name: &str) -> Option<String> {
        self.attr(name).map(|a| String::from_utf8_lossy(&a.s).into_owned())
    }

    pub fn strings(&self, name: &str) -> Vec<String> {
        self.attr(name)
            .map_or_else(Vec::new, |a| a.strings.iter().map(|s| String::from_utf8_lossy(s).into_owned()).collect())
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorProto> {
        self.attr(name).and_then(|a| a.t.as_ref())
    }
}

impl TensorProto {
    /// Values the dims declare (saturating: a huge product is refused where it is used).
    pub fn len(&self) -> usize {
        self.dims.iter().try_fold(1usize, |a, d| a.checked_mul((*d).max(0) as usize)).unwrap_or(usize::MAX)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Values as f64 whatever the stored type (raw_data is little-endian, per the ONNX spec).
    pub fn to_f64(&self) -> Option<Vec<f64>> {
        let raw = &self.raw_data;
        Some(match self.data_type {
            dtype::FLOAT if !raw.is_empty() => {
                raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64).collect()
            }
            dtype::FLOAT => self.float_data.iter().map(|x| *x as f64).collect(),
            dtype::DOUBLE if !raw.is_empty() => {
                raw.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8]))).collect()
            }
            dtype::DOUBLE => self.double_data.clone(),
            _ => self.to_i64()?.into_iter().map(|x| x as f64).collect(),
        })
    }

    /// Values as f32 (exactly as stored for float tensors).
    pub fn to_f32(&self) -> Option<Vec<f32>> {
        match self.data_type {
            dtype::FLOAT if !self.raw_data.is_empty() => {
                Some(self.raw_data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
            }
            dtype::FLOAT => Some(self.float_data.clone()),
            _ => Some(self.to_f64()?.into_iter().map(|x| x as f32).collect()),
        }
    }

    pub fn to_i64(&self) -> Option<Vec<i64>> {
        let raw = &self.raw_data;
        Some(match self.data_type {
            dtype::INT64 if !raw.is_empty() => {
                raw.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8]))).collect()
            }
            dtype::INT64 => self.int64_data.clone(),
            dtype::INT32 if !raw.is_empty() => {
                raw.chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64).collect()
            }
            dtype::INT32 | dtype::INT8 | dtype::UINT8 | dtype::BOOL if raw.is_empty() => {
                self.int32_data.iter().map(|x| *x as i64).collect()
            }
            dtype::INT8 => raw.iter().map(|b| *b as i8 as i64).collect(),
            dtype::UINT8 | dtype::BOOL => raw.iter().map(|b| *b as i64).collect(),
            _ => return None,
        })
    }

    pub fn to_strings(&self) -> Option<Vec<String>> {
        (self.data_type == dtype::STRING)
            .then(|| self.string_data.iter().map(|s| String::from_utf8_lossy(s).into_owned()).collect())
    }
}
