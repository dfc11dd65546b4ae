#!/usr/bin/env python3
"""Turns the built cdylib into a DuckDB loadable extension file.

DuckDB reads a 512-byte footer at the end of an extension: eight 32-byte NUL-padded fields
stored in reverse order (logically: magic "4", platform, C API version (v1.5.6), extension
version, ABI type "C_STRUCT", three empty), then a 256-byte signature (zeros: unsigned).
The file is written next to its destination and renamed into place, because rewriting an
extension a process has loaded crashes that process.
"""
import os
import sys
import tempfile

FIELD = 32


def field(text: str) -> bytes:
    raw = text.encode()
    assert len(raw) <= FIELD, text
    return raw + b"\0" * (FIELD - len(raw))


def main() -> None:
    src, dst, ext_version = sys.argv[1], sys.argv[2], sys.argv[3]
    platform = os.environ.get("DUCKDB_PLATFORM", "linux_amd64")
    logical = ["4", platform, "v1.5.6", ext_version, "C_STRUCT", "", "", ""]
    footer = b"".join(field(f) for f in reversed(logical)) + b"\0" * 256
    with open(src, "rb") as f:
        body = f.read()
    os.makedirs(os.path.dirname(os.path.abspath(dst)), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(dst)), suffix=".tmp")
    with os.fdopen(fd, "wb") as f:
        f.write(body + footer)
    os.chmod(tmp, 0o755)
    os.replace(tmp, dst)
    print(f"wrote {dst} ({len(body) + len(footer)} bytes)")


if __name__ == "__main__":
    main()
