#!/usr/bin/env python3
"""Lays out a DuckDB extension repository: the folders `INSTALL name FROM '<path or URL>'` reads.

    scripts/extension_repository.py dist/sqlscore.duckdb_extension dist/repository v1.5.6 v2.0.1

DuckDB looks for `<repository>/<its version>/<platform>/<name>.duckdb_extension` in a local folder
and for the same path plus `.gz` over HTTP(S). The file is the same for every version listed: it
uses DuckDB's C extension API (v1.5.6), which the 2.0 line also loads (tests/duckdb/
test_duckdb_versions.py). Files are written under a temporary name and renamed into place, so a
server handing them out never serves half a file.
"""
import gzip
import os
import shutil
import sys
import tempfile


def publish(data: bytes, dst: str) -> None:
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(dst), suffix=".tmp")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, 0o644)
    os.replace(tmp, dst)


def main() -> None:
    src, repo, versions = sys.argv[1], sys.argv[2], sys.argv[3:]
    platform = os.environ.get("DUCKDB_PLATFORM", "linux_amd64")
    name = os.path.basename(src)
    with open(src, "rb") as f:
        body = f.read()
    # mtime=0: the same extension gives the same .gz (caches and checksums stay valid).
    packed = gzip.compress(body, compresslevel=9, mtime=0)
    for version in versions:
        folder = os.path.join(repo, version, platform)
        publish(body, os.path.join(folder, name))
        publish(packed, os.path.join(folder, name + ".gz"))
    # Versions no longer listed would be installed by a stale DuckDB from an old build: removed.
    for old in os.listdir(repo):
        if old not in versions and old.startswith("v") and os.path.isdir(os.path.join(repo, old)):
            shutil.rmtree(os.path.join(repo, old))
    print(f"{repo}: {name} for DuckDB {', '.join(versions)} on {platform}")


if __name__ == "__main__":
    main()
