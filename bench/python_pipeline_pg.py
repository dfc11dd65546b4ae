#!/usr/bin/env python3
"""The Postgres pipeline a data team writes without sqlscore: COPY rows out with psycopg, score
them with numpy + onnxruntime, COPY the scores back. Timed end to end; prints JSON.

    python bench/python_pipeline_pg.py URL MODEL.onnx THREADS
"""
import io
import json
import sys
import time

import numpy as np
import onnxruntime as ort
import psycopg


def main():
    url, model, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
    t0 = time.perf_counter()
    with psycopg.connect(url) as con:
        buf = io.BytesIO()
        with con.cursor().copy("COPY (SELECT id, x0, x1, x2, x3, x4, x5, x6, x7 FROM bench_pg) TO STDOUT") as copy:
            for chunk in copy:
                buf.write(chunk)
        data = np.loadtxt(io.BytesIO(buf.getvalue()), delimiter="\t", dtype=np.float64)
        ids, x = data[:, 0].astype(np.int64), data[:, 1:].astype(np.float32)
        t1 = time.perf_counter()
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        sess = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
        outs = sess.run(None, {sess.get_inputs()[0].name: x})
        names = [o.name for o in sess.get_outputs()]
        p = outs[names.index("probabilities")] if "probabilities" in names else None
        scores = p[:, 1] if p is not None else outs[0].reshape(len(ids), -1)[:, 0]
        t2 = time.perf_counter()
        con.execute("DROP TABLE IF EXISTS bench_out_python")
        con.execute("CREATE TABLE bench_out_python (id bigint, score float8)")
        with con.cursor().copy("COPY bench_out_python (id, score) FROM STDIN") as copy:
            copy.write("".join(f"{i}\t{s!r}\n" for i, s in zip(ids.tolist(), scores.astype(np.float64).tolist())))
        con.commit()
        t3 = time.perf_counter()
    print(json.dumps({"total_s": t3 - t0, "fetch_s": t1 - t0, "score_s": t2 - t1, "write_s": t3 - t2, "rows": int(len(ids))}))


if __name__ == "__main__":
    main()
