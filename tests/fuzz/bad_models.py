"""Bad, odd and good tiny ONNX models for the fuzz tier, built with `onnx.helper` in memory.

`bad_models()` returns {name: onnx bytes}. Every model is built from scratch here (nothing is
read from disk); `write_models(dir)` writes them as `<dir>/<name>.onnx` plus the decoy files the
external-data models point at (`secret.bin` next to them).

The names carry what the fuzzers must check (see `KIND`):

- `good_*`       valid models the call fuzzer scores (X[N,3] -> Y[N,1] and friends);
- `ext_*`        a tensor whose bytes live in EXTERNAL DATA (an initializer, a Constant node's
                 attribute, a tensor inside an If-node subgraph), pointing at `secret.bin`,
                 `../../etc/passwd`, `/etc/passwd`, a symlink to it, or `postgresql.conf` (in a
                 PostgreSQL backend's working directory): registering or scoring them must be
                 refused;
- `misaligned_*` outputs whose row count is not the input's N (1 row, 2N rows, 0 rows, a
                 scalar, a transposed [3, N]): scoring N >= 2 rows must be an error, never values;
- `corrupt_*`    truncated good models, random bytes, empty bytes: a clean "not a valid ONNX
                 model" error;
- `odd_*`        everything else that is legal ONNX but unusual (string/int/float16 outputs,
                 no inputs, dynamic feature dimension, uint8/float16 inputs, 2,000 outputs,
                 sequence outputs, a batch dimension fixed to 1, a runtime failure, ...): any clean
                 outcome is fine, a crash or internal error is not.

Opset 13 in the default domain, IR version 8: ONNX Runtime 1.32 loads them all (except the ones
meant not to load).
"""
from __future__ import annotations

import os
import pathlib
import random

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 13
IR_VERSION = 8
FLOAT = TensorProto.FLOAT

# What a model is for: the fuzzers' oracles key off this.
GOOD, EXTERNAL, MISALIGNED, CORRUPT, ODD = "good", "external", "misaligned", "corrupt", "odd"

# Number of float features of the models that take X[N, k] (every good/misaligned model uses 3).
FEATURES = 3


def _model(nodes, inputs, outputs, initializers=(), name="fuzz", opset=OPSET, domains=()) -> onnx.ModelProto:
    graph = helper.make_graph(list(nodes), name, list(inputs), list(outputs), initializer=list(initializers))
    opsets = [helper.make_opsetid("", opset)] + [helper.make_opsetid(d, v) for d, v in domains]
    m = helper.make_model(graph, opset_imports=opsets, producer_name="sqlscore-fuzz")
    m.ir_version = IR_VERSION
    return m


def _x(k=FEATURES, elem=FLOAT, batch="N", name="X"):
    return helper.make_tensor_value_info(name, elem, [batch, k])


def _y(shape, elem=FLOAT, name="Y"):
    return helper.make_tensor_value_info(name, elem, shape)


def _w(name="W", k=FEATURES):
    return numpy_helper.from_array(np.arange(1, k + 1, dtype=np.float32).reshape(k, 1) / 10, name)


def _bytes(m: onnx.ModelProto) -> bytes:
    return m.SerializeToString()


def _external(tensor: TensorProto, location: str, length: int) -> TensorProto:
    """Turns `tensor` into one whose bytes are EXTERNAL DATA at `location` (offset 0)."""
    tensor.ClearField("float_data")
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    del tensor.external_data[:]
    for k, v in (("location", location), ("offset", "0"), ("length", str(length))):
        entry = tensor.external_data.add()
        entry.key, entry.value = k, v
    return tensor


# ----------------------------------------------------------------------------- good models

def good_linear() -> onnx.ModelProto:
    """X float[N,3] -> Y = X @ W, float[N,1]."""
    return _model([helper.make_node("MatMul", ["X", "W"], ["Y"])], [_x()], [_y(["N", 1])], [_w()])


def good_vector() -> onnx.ModelProto:
    """X float[N,3] -> Y = sum(X, axis 1), float[N]."""
    return _model([helper.make_node("ReduceSum", ["X", "axes"], ["Y"], keepdims=0)], [_x()], [_y(["N"])],
                  [numpy_helper.from_array(np.array([1], dtype=np.int64), "axes")])


def good_two_inputs() -> onnx.ModelProto:
    """a float[N,1], b double[N,2] -> Y = a + sum(b), float[N,1]."""
    nodes = [
        helper.make_node("Cast", ["b"], ["bf"], to=FLOAT),
        helper.make_node("ReduceSum", ["bf", "axes"], ["bs"], keepdims=1),
        helper.make_node("Add", ["a", "bs"], ["Y"]),
    ]
    return _model(nodes, [_x(1, name="a"), _x(2, TensorProto.DOUBLE, name="b")], [_y(["N", 1])],
                  [numpy_helper.from_array(np.array([1], dtype=np.int64), "axes")])


def good_string_label() -> onnx.ModelProto:
    """X float[N,3] -> label string[N] ('0'/'1' by X0 > 0) and a score float[N,1]."""
    nodes = [
        helper.make_node("Slice", ["X", "s0", "s1", "ax1"], ["x0"]),
        helper.make_node("Greater", ["x0", "zero"], ["pos"]),
        helper.make_node("Cast", ["pos"], ["posi"], to=TensorProto.INT64),
        helper.make_node("Cast", ["posi"], ["lab2"], to=TensorProto.STRING),
        helper.make_node("Squeeze", ["lab2", "ax1"], ["label"]),
        helper.make_node("Identity", ["x0"], ["score"]),
    ]
    inits = [numpy_helper.from_array(np.array(v, dtype=t), n) for n, v, t in
             (("s0", [0], np.int64), ("s1", [1], np.int64), ("ax1", [1], np.int64), ("zero", 0.0, np.float32))]
    return _model(nodes, [_x()], [_y(["N"], TensorProto.STRING, "label"), _y(["N", 1], name="score")], inits)


# ----------------------------------------------------------------------------- external data

def ext_initializer(location: str) -> onnx.ModelProto:
    """good_linear, but W's 12 bytes live in the file `location`."""
    m = good_linear()
    _external(m.graph.initializer[0], location, 12)
    return m


def ext_constant(location: str) -> onnx.ModelProto:
    """Y = X @ W where W is a Constant node whose attribute tensor is external data."""
    w = _external(_w(), location, 12)
    nodes = [helper.make_node("Constant", [], ["W"], value=w), helper.make_node("MatMul", ["X", "W"], ["Y"])]
    return _model(nodes, [_x()], [_y(["N", 1])])


def ext_if_subgraph(location: str) -> onnx.ModelProto:
    """An If node whose then-branch holds an external-data initializer (the else branch does not)."""
    then_g = helper.make_graph([helper.make_node("MatMul", ["X", "Wt"], ["Yt"])], "then", [],
                               [_y(["N", 1], name="Yt")], initializer=[_external(_w("Wt"), location, 12)])
    else_g = helper.make_graph([helper.make_node("MatMul", ["X", "We"], ["Ye"])], "else", [],
                               [_y(["N", 1], name="Ye")], initializer=[_w("We")])
    nodes = [helper.make_node("If", ["cond"], ["Y"], then_branch=then_g, else_branch=else_g)]
    return _model(nodes, [_x()], [_y(["N", 1])], [numpy_helper.from_array(np.array(True), "cond")])


# ----------------------------------------------------------------------------- misaligned outputs

def misaligned_one_row() -> onnx.ModelProto:
    """Y = mean over the batch: [1, 3] whatever N is."""
    return _model([helper.make_node("ReduceMean", ["X"], ["Y"], axes=[0], keepdims=1)], [_x()], [_y([1, 3])])


def misaligned_one_row_scalar_col() -> onnx.ModelProto:
    """Y = mean over everything, keepdims: [1, 1] whatever N is."""
    return _model([helper.make_node("ReduceMean", ["X"], ["Y"], axes=[0, 1], keepdims=1)], [_x()], [_y([1, 1])])


def misaligned_double_rows() -> onnx.ModelProto:
    """Y = concat(X, X) @ W: [2N, 1]."""
    nodes = [helper.make_node("Concat", ["X", "X"], ["XX"], axis=0), helper.make_node("MatMul", ["XX", "W"], ["Y"])]
    return _model(nodes, [_x()], [_y(["M", 1])], [_w()])


def misaligned_zero_rows() -> onnx.ModelProto:
    """Y = X[0:0, :] @ W: [0, 1]."""
    nodes = [helper.make_node("Slice", ["X", "z", "z", "ax0"], ["E"]), helper.make_node("MatMul", ["E", "W"], ["Y"])]
    inits = [_w(), numpy_helper.from_array(np.array([0], dtype=np.int64), "z"),
             numpy_helper.from_array(np.array([0], dtype=np.int64), "ax0")]
    return _model(nodes, [_x()], [_y([0, 1])], inits)


def misaligned_zero_cols() -> onnx.ModelProto:
    """Y = X[:, 0:0]: [N, 0] (a row per input row, but no value in it)."""
    nodes = [helper.make_node("Slice", ["X", "z", "z", "ax1"], ["Y"])]
    inits = [numpy_helper.from_array(np.array([0], dtype=np.int64), "z"),
             numpy_helper.from_array(np.array([1], dtype=np.int64), "ax1")]
    return _model(nodes, [_x()], [_y(["N", 0])], inits)


def misaligned_scalar() -> onnx.ModelProto:
    """Y = sum of everything: a rank-0 scalar."""
    return _model([helper.make_node("ReduceSum", ["X"], ["Y"], keepdims=0)], [_x()], [_y([])])


def misaligned_transposed() -> onnx.ModelProto:
    """Y = X^T: [3, N] (aligned by accident only when N = 3)."""
    return _model([helper.make_node("Transpose", ["X"], ["Y"], perm=[1, 0])], [_x()], [_y([FEATURES, "N"])])


def misaligned_second_output() -> onnx.ModelProto:
    """Y[N,1] is fine, but the second output Z is [1, 3]: score_all must not pair Z's row 0 with every row."""
    nodes = [helper.make_node("MatMul", ["X", "W"], ["Y"]),
             helper.make_node("ReduceMean", ["X"], ["Z"], axes=[0], keepdims=1)]
    return _model(nodes, [_x()], [_y(["N", 1]), _y([1, 3], name="Z")], [_w()])


def misaligned_declared_n() -> onnx.ModelProto:
    """Declares Y as [N, 1] but really returns [1, 1]: the declared shape lies."""
    return _model([helper.make_node("ReduceMean", ["X"], ["Y"], axes=[0, 1], keepdims=1)], [_x()], [_y(["N", 1])])


# ----------------------------------------------------------------------------- odd but legal

def odd_string_only() -> onnx.ModelProto:
    """The only output is a string tensor [N, 1] (Cast float -> string)."""
    nodes = [helper.make_node("Slice", ["X", "s0", "s1", "ax1"], ["x0"]),
             helper.make_node("Cast", ["x0"], ["Y"], to=TensorProto.STRING)]
    inits = [numpy_helper.from_array(np.array(v, dtype=np.int64), n) for n, v in (("s0", [0]), ("s1", [1]), ("ax1", [1]))]
    return _model(nodes, [_x()], [_y(["N", 1], TensorProto.STRING)], inits)


def odd_int_only() -> onnx.ModelProto:
    """The only output is int64 [N, 3]."""
    return _model([helper.make_node("Cast", ["X"], ["Y"], to=TensorProto.INT64)], [_x()], [_y(["N", 3], TensorProto.INT64)])


def odd_float16_output() -> onnx.ModelProto:
    """The only output is float16 [N, 1] (an output type sqlscore does not read)."""
    nodes = [helper.make_node("MatMul", ["X", "W"], ["Yf"]), helper.make_node("Cast", ["Yf"], ["Y"], to=TensorProto.FLOAT16)]
    return _model(nodes, [_x()], [_y(["N", 1], TensorProto.FLOAT16)], [_w()])


def odd_bool_output() -> onnx.ModelProto:
    """The only output is bool [N, 3]."""
    return _model([helper.make_node("Cast", ["X"], ["Y"], to=TensorProto.BOOL)], [_x()], [_y(["N", 3], TensorProto.BOOL)])


def odd_no_inputs() -> onnx.ModelProto:
    """No inputs at all: a constant [1, 1] output."""
    c = numpy_helper.from_array(np.array([[4.2]], dtype=np.float32), "c")
    return _model([helper.make_node("Constant", [], ["Y"], value=c)], [], [_y([1, 1])])


def odd_dynamic_feature_dim() -> onnx.ModelProto:
    """X float[N, k] with k symbolic: any number of features is shape-legal."""
    return _model([helper.make_node("ReduceSum", ["X", "axes"], ["Y"], keepdims=1)], [_x("k")], [_y(["N", 1])],
                  [numpy_helper.from_array(np.array([1], dtype=np.int64), "axes")])


def odd_unknown_rank_input() -> onnx.ModelProto:
    """X float with no shape at all."""
    x = helper.make_tensor_value_info("X", FLOAT, None)
    return _model([helper.make_node("Identity", ["X"], ["Y"])], [x], [helper.make_tensor_value_info("Y", FLOAT, None)])


def odd_input(elem) -> onnx.ModelProto:
    """X of element type `elem` [N, 3], cast to float, @ W."""
    nodes = [helper.make_node("Cast", ["X"], ["Xf"], to=FLOAT), helper.make_node("MatMul", ["Xf", "W"], ["Y"])]
    return _model(nodes, [_x(elem=elem)], [_y(["N", 1])], [_w()])


def odd_many_outputs(n=2000) -> onnx.ModelProto:
    """n outputs, each an Identity of X @ W."""
    nodes = [helper.make_node("MatMul", ["X", "W"], ["Y"])]
    outs = []
    for i in range(n):
        nodes.append(helper.make_node("Identity", ["Y"], [f"out_{i}"]))
        outs.append(_y(["N", 1], name=f"out_{i}"))
    return _model(nodes, [_x()], outs, [_w()])


def odd_many_inputs(n=300) -> onnx.ModelProto:
    """n inputs x_i float[N, 1], summed."""
    ins = [_x(1, name=f"x_{i}") for i in range(n)]
    nodes = [helper.make_node("Sum", [f"x_{i}" for i in range(n)], ["Y"])]
    return _model(nodes, ins, [_y(["N", 1])])


def odd_wide_input(k=5000) -> onnx.ModelProto:
    """X float[N, 5000]."""
    return _model([helper.make_node("ReduceSum", ["X", "axes"], ["Y"], keepdims=1)], [_x(k)], [_y(["N", 1])],
                  [numpy_helper.from_array(np.array([1], dtype=np.int64), "axes")])


def odd_rank1_input() -> onnx.ModelProto:
    """X float[N] (no feature dimension)."""
    x = helper.make_tensor_value_info("X", FLOAT, ["N"])
    return _model([helper.make_node("Identity", ["X"], ["Y"])], [x], [_y(["N"])])


def odd_rank3_input() -> onnx.ModelProto:
    """X float[N, 2, 2]."""
    x = helper.make_tensor_value_info("X", FLOAT, ["N", 2, 2])
    return _model([helper.make_node("ReduceSum", ["X", "axes"], ["Y"], keepdims=0)], [x], [_y(["N"])],
                  [numpy_helper.from_array(np.array([1, 2], dtype=np.int64), "axes")])


def odd_batch_fixed_1() -> onnx.ModelProto:
    """X float[1, 3]: ONNX Runtime refuses any batch of 2+ rows."""
    return _model([helper.make_node("MatMul", ["X", "W"], ["Y"])], [_x(batch=1)], [_y([1, 1])], [_w()])


def odd_runtime_failure() -> onnx.ModelProto:
    """Loads fine, fails in every run: Reshape [N,3] to [7, 5]."""
    nodes = [helper.make_node("Reshape", ["X", "shape"], ["Y"])]
    return _model(nodes, [_x()], [_y([7, 5])], [numpy_helper.from_array(np.array([7, 5], dtype=np.int64), "shape")])


def odd_nan_output() -> onnx.ModelProto:
    """Y = log(X - 10) @ W: NaN (and -inf) for ordinary inputs."""
    nodes = [helper.make_node("Sub", ["X", "ten"], ["d"]), helper.make_node("Log", ["d"], ["l"]),
             helper.make_node("MatMul", ["l", "W"], ["Y"])]
    return _model(nodes, [_x()], [_y(["N", 1])], [_w(), numpy_helper.from_array(np.array(10, dtype=np.float32), "ten")])


def odd_sequence_output() -> onnx.ModelProto:
    """The output is a sequence of tensors (not a tensor)."""
    nodes = [helper.make_node("SequenceConstruct", ["X", "X"], ["Y"])]
    out = helper.make_tensor_sequence_value_info("Y", FLOAT, ["N", FEATURES])
    return _model(nodes, [_x()], [out])


def odd_passthrough() -> onnx.ModelProto:
    """The graph output is the input itself (no node at all)."""
    return _model([], [_x()], [_y(["N", FEATURES], name="X")])


def odd_unknown_op() -> onnx.ModelProto:
    """A node of an op type that does not exist."""
    return _model([helper.make_node("NoSuchOp", ["X"], ["Y"])], [_x()], [_y(["N", 1])])


def odd_unknown_domain() -> onnx.ModelProto:
    """A node in a custom domain nobody implements."""
    return _model([helper.make_node("Foo", ["X"], ["Y"], domain="com.example.fuzz")], [_x()], [_y(["N", 1])],
                  domains=[("com.example.fuzz", 1)])


def odd_future_opset() -> onnx.ModelProto:
    m = good_linear()
    m.opset_import[0].version = 999
    return m


def odd_future_ir() -> onnx.ModelProto:
    m = good_linear()
    m.ir_version = 999
    return m


def odd_duplicate_input_names() -> onnx.ModelProto:
    return _model([helper.make_node("MatMul", ["X", "W"], ["Y"])], [_x(), _x()], [_y(["N", 1])], [_w()])


def odd_weird_names() -> onnx.ModelProto:
    """Input and output names with quotes, spaces, unicode, an empty-looking name."""
    xin, yout = "x'\"; DROP TABLE t; --\u00e9\u2603", "y\u0000z"
    return _model([helper.make_node("MatMul", [xin, "W"], [yout])], [_x(name=xin)], [_y(["N", 1], name=yout)], [_w()])


def odd_huge_declared_dims() -> onnx.ModelProto:
    """Input declared [N, 2^62]: the feature count does not fit anything sensible."""
    return _model([helper.make_node("ReduceSum", ["X", "axes"], ["Y"], keepdims=1)], [_x(2 ** 62)], [_y(["N", 1])],
                  [numpy_helper.from_array(np.array([1], dtype=np.int64), "axes")])


def odd_negative_declared_dim() -> onnx.ModelProto:
    """Input declared [N, -3] (a negative dim_value)."""
    m = good_linear()
    m.graph.input[0].type.tensor_type.shape.dim[1].dim_value = -3
    return m


# ----------------------------------------------------------------------------- the catalogue

# Where the external-data models point. Relative paths resolve against the model's directory
# (file loads) or the process's working directory (loads from bytes): the DuckDB fuzzer runs its
# child in the models directory, where `secret.bin` and the symlink `passwd_link` exist; a
# PostgreSQL backend runs in its data directory, where `postgresql.conf` exists.
EXTERNAL_LOCATIONS = {
    "secret": "secret.bin",
    "traversal": "../../../../../../etc/passwd",
    "absolute": "/etc/passwd",
    "symlink": "passwd_link",
    "pgconf": "postgresql.conf",
}

def _corrupt(good: bytes, seed: int) -> dict[str, bytes]:
    rng = random.Random(seed)
    out = {"corrupt_empty": b""}
    for cut in (1, 2, 7, len(good) // 3, len(good) // 2, len(good) - 5, len(good) - 1):
        out[f"corrupt_truncated_{cut}"] = good[:cut]
    for i, size in enumerate((1, 16, 512, 4096)):
        out[f"corrupt_random_{i}"] = bytes(rng.getrandbits(8) for _ in range(size))
    flipped = bytearray(good)
    for _ in range(8):
        flipped[rng.randrange(len(flipped))] ^= 0xFF
    out["corrupt_bitflips"] = bytes(flipped)
    out["corrupt_text"] = b"this is not an onnx model\n"
    out["corrupt_zeros"] = bytes(1024)
    return out


def bad_models(seed: int = 1) -> dict[str, bytes]:
    """name -> ONNX bytes of every model the fuzzers use (good ones included, prefixed good_)."""
    out: dict[str, bytes] = {
        "good_linear": _bytes(good_linear()),
        "good_vector": _bytes(good_vector()),
        "good_two_inputs": _bytes(good_two_inputs()),
        "good_string_label": _bytes(good_string_label()),
    }
    for tag, loc in EXTERNAL_LOCATIONS.items():
        out[f"ext_initializer_{tag}"] = _bytes(ext_initializer(loc))
        out[f"ext_constant_{tag}"] = _bytes(ext_constant(loc))
        out[f"ext_if_subgraph_{tag}"] = _bytes(ext_if_subgraph(loc))
    for f in (misaligned_one_row, misaligned_one_row_scalar_col, misaligned_double_rows, misaligned_zero_rows,
              misaligned_zero_cols, misaligned_scalar, misaligned_transposed, misaligned_second_output,
              misaligned_declared_n):
        out[f.__name__] = _bytes(f())
    out.update(_corrupt(out["good_linear"], seed))
    for f in (odd_string_only, odd_int_only, odd_float16_output, odd_bool_output, odd_no_inputs,
              odd_dynamic_feature_dim, odd_unknown_rank_input, odd_many_outputs, odd_many_inputs, odd_wide_input,
              odd_rank1_input, odd_rank3_input, odd_batch_fixed_1, odd_runtime_failure, odd_nan_output,
              odd_sequence_output, odd_passthrough, odd_unknown_op, odd_unknown_domain, odd_future_opset,
              odd_future_ir, odd_duplicate_input_names, odd_weird_names, odd_huge_declared_dims,
              odd_negative_declared_dim):
        out[f.__name__] = _bytes(f())
    for elem, tag in ((TensorProto.UINT8, "uint8"), (TensorProto.FLOAT16, "float16"), (TensorProto.INT8, "int8"),
                      (TensorProto.UINT64, "uint64"), (TensorProto.BOOL, "bool"), (TensorProto.INT32, "int32")):
        out[f"odd_input_{tag}"] = _bytes(odd_input(elem))
    return out


def kind(name: str) -> str:
    """GOOD / EXTERNAL / MISALIGNED / CORRUPT / ODD, from the name's prefix."""
    return {"good": GOOD, "ext": EXTERNAL, "misaligned": MISALIGNED, "corrupt": CORRUPT}.get(name.split("_")[0], ODD)


# Decoy contents of `secret.bin`: three float32s. If a score ever reflects these weights, the
# external data was read.
SECRET = np.array([1000.0, 2000.0, 3000.0], dtype=np.float32).tobytes()


def write_models(directory, seed: int = 1) -> dict[str, str]:
    """Writes every model as `<directory>/models/<name>.onnx` and the decoy `secret.bin` next to
    them (and one level up) and a symlink `passwd_link` -> /etc/passwd; returns name -> path."""
    d = pathlib.Path(directory) / "models"
    d.mkdir(parents=True, exist_ok=True)
    for where in (d, d.parent):
        (where / "secret.bin").write_bytes(SECRET)
    link = d / "passwd_link"
    if not link.is_symlink():
        link.symlink_to("/etc/passwd")
    paths = {}
    for name, blob in bad_models(seed).items():
        p = d / f"{name}.onnx"
        p.write_bytes(blob)
        paths[name] = str(p)
    os.chmod(d, 0o755)
    return paths


if __name__ == "__main__":  # a quick look: which models ONNX Runtime itself loads
    import onnxruntime as ort

    for name, blob in bad_models().items():
        try:
            s = ort.InferenceSession(blob, providers=["CPUExecutionProvider"])
            status = "loads: " + ", ".join(f"{i.name}:{i.type}{i.shape}" for i in s.get_inputs()[:3])
        except Exception as e:  # noqa: BLE001
            status = "refused: " + str(e).splitlines()[0][:100]
        print(f"{name:40s} {kind(name):10s} {len(blob):8d}  {status}")


# ----------------------------------------------------------------------------- the oracle's view

SCORING_FUNCTIONS = ("score", "predict", "predict_proba", "score_all")

# For each misaligned model: whether scoring `n` rows with function `fn` reads an output whose row
# count is not n (then the call must be an error, never values).
_MISALIGNED_WHEN = {
    "misaligned_one_row": lambda n, fn: n != 1,
    "misaligned_one_row_scalar_col": lambda n, fn: n != 1,
    "misaligned_double_rows": lambda n, fn: True,
    "misaligned_zero_rows": lambda n, fn: True,
    "misaligned_zero_cols": lambda n, fn: True,      # a row per input row, but not one value in it
    "misaligned_scalar": lambda n, fn: n != 1,
    "misaligned_transposed": lambda n, fn: n != FEATURES,
    "misaligned_second_output": lambda n, fn: n != 1 and fn == "score_all",
    "misaligned_declared_n": lambda n, fn: n != 1,
}


def misaligned(name: str, n: int, fn: str) -> bool:
    """Whether `fn` over `n` rows of model `name` must fail rather than return values."""
    when = _MISALIGNED_WHEN.get(name)
    return bool(when and when(n, fn))


def expectation(name: str, n: int, fn: str) -> str | None:
    """What a scoring call with bad model `name` over `n` rows must do: be refused (external
    data), return no values (misaligned), or anything but a crash (None)."""
    if kind(name) == EXTERNAL:
        return "refused"
    return "no_values" if misaligned(name, n, fn) else None
