"""`INSTALL sqlscore FROM '<repository>'; LOAD sqlscore;` in DuckDB 1.5.6 and 2.0.1, from the
repository `make extension` lays out in dist/repository: as a local folder, and served over HTTP
as a team would (DuckDB then fetches the .gz)."""
import functools
import http.server
import os
import subprocess
import sys
import threading

import pytest

from conftest import ROOT

DUCKDB_2 = ROOT / ".venv" / "duckdb-2.0.1"
REPOSITORY = ROOT / "dist" / "repository"

SCRIPT = """
import sys, duckdb
repo, home, model = sys.argv[1:]
c = duckdb.connect(config={'allow_unsigned_extensions': 'true', 'extension_directory': home})
c.execute(f"INSTALL sqlscore FROM '{repo}'")
c.execute("LOAD sqlscore")
source, version = c.execute(
    "SELECT installed_from, extension_version FROM duckdb_extensions() WHERE extension_name = 'sqlscore' AND loaded"
).fetchone()
c.execute(f"INSERT INTO sqlscore_models FROM sqlscore_register('lr', '{model}')")
print(duckdb.__version__, source, version, repr(c.execute("SELECT score('lr', 1, 2, 3, 4, 5, 6, 7, 8)").fetchone()[0]))
"""


def install(repo: str, home, pythonpath=None):
    env = {**os.environ, **({"PYTHONPATH": str(pythonpath)} if pythonpath else {})}
    out = subprocess.run([sys.executable, "-c", SCRIPT, repo, str(home), str(ROOT / "models" / "logistic_binary.onnx")],
                         capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    version, source, ext_version, score = out.stdout.split()
    return version, source, ext_version, float(score)


@pytest.fixture(scope="module")
def served():
    """dist/repository over HTTP on a free port, with the requests it answered."""
    seen = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, fmt, *args):
            seen.append(self.path)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                             functools.partial(Handler, directory=str(REPOSITORY)))
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()


@pytest.mark.parametrize("duckdb_version,pythonpath", [("1.5.6", None), ("2.0.1", DUCKDB_2)])
def test_install_by_name_from_the_repository(tmp_path, served, duckdb_version, pythonpath):
    url, seen = served
    scores = set()
    for repo in ["dist/repository", str(REPOSITORY), url]:
        home = tmp_path / f"ext-{len(scores)}-{abs(hash(repo))}"
        version, source, ext_version, score = install(repo, home, pythonpath)
        assert (version, source) == (duckdb_version, repo)
        assert ext_version.startswith("v0.")
        # Installed into this extension directory, under DuckDB's own version folder.
        assert (home / f"v{duckdb_version}" / "linux_amd64" / "sqlscore.duckdb_extension").is_file()
        scores.add(score)
    assert len(scores) == 1
    assert f"/v{duckdb_version}/linux_amd64/sqlscore.duckdb_extension.gz" in seen
