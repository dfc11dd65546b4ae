"""The same extension file loads into DuckDB 1.5.6 (the pinned venv) and 2.0.1."""
import pathlib
import subprocess
import sys

from conftest import EXTENSION, ROOT

DUCKDB_2 = ROOT / ".venv" / "duckdb-2.0.1"

SCRIPT = f"""
import duckdb
c = duckdb.connect(config={{'allow_unsigned_extensions': 'true'}})
c.execute("LOAD '{EXTENSION}'")
c.execute("INSERT INTO sqlscore_models FROM sqlscore_register('lr', '{ROOT / 'models' / 'logistic_binary.onnx'}')")
print(duckdb.__version__, repr(c.execute("SELECT score('lr', 1, 2, 3, 4, 5, 6, 7, 8)").fetchone()[0]))
"""


def run(pythonpath=None):
    env = {"PYTHONPATH": str(pythonpath)} if pythonpath else {}
    import os
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env={**os.environ, **env}, check=True)
    version, score = out.stdout.split()
    return version, float(score)


def test_loads_into_duckdb_1_5_and_2_0():
    v1, s1 = run()
    v2, s2 = run(DUCKDB_2)
    assert (v1, v2) == ("1.5.6", "2.0.1")
    assert s1 == s2
