"""Writes models/bad/*.onnx: a few hostile or malformed models the engine's own tests (core/tests,
pg_regress) check it refuses, each for its own reason. They come from the fuzz tier's generator
(tests/fuzz/bad_models.py, onnx.helper only), so both tiers test the same models.

    .venv/bin/python models/make_bad_models.py
"""
import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "fuzz"))
import bad_models  # noqa: E402

KEEP = [
    "ext_initializer_secret",   # a weight in ./secret.bin
    "ext_constant_traversal",   # a Constant node's value in ../../../../../../etc/passwd
    "ext_if_subgraph_absolute", # a tensor inside an If branch in /etc/passwd
    "misaligned_one_row",       # [1, 3] whatever the batch
    "misaligned_double_rows",   # [2N, 1]
    "misaligned_zero_cols",     # [N, 0]
    "misaligned_scalar",        # a rank-0 sum
    "misaligned_declared_n",    # declares [N, 1], returns [1, 1]
    "odd_huge_declared_dims",   # input declared [N, 2^62]
    "good_linear",              # the control: X[N, 3] @ W
]


def main() -> None:
    out = HERE / "bad"
    out.mkdir(exist_ok=True)
    models = bad_models.bad_models(1)
    for name in KEEP:
        (out / f"{name}.onnx").write_bytes(models[name])
    print(f"wrote {len(KEEP)} models to {out}")


if __name__ == "__main__":
    main()
