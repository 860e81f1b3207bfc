#!/usr/bin/env python3
"""Zip one Python file as a Lambda deployment package, byte for byte the same on every run (fixed timestamp and
mode), so the function's code hash changes only when the file does. Prints "changed" when it wrote the zip."""

from __future__ import annotations

import io
import sys
import zipfile
from collections.abc import Sequence
from pathlib import Path

STAMP = (1980, 1, 1, 0, 0, 0)  # the earliest a zip can hold


def package(source: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        entry = zipfile.ZipInfo(source.name, date_time=STAMP)
        entry.external_attr = 0o644 << 16
        entry.compress_type = zipfile.ZIP_DEFLATED
        archive.writestr(entry, source.read_bytes())
    return buffer.getvalue()


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2:
        print("usage: package.py SOURCE.py DEST.zip", file=sys.stderr)
        return 2
    source, dest = Path(args[0]), Path(args[1])
    content = package(source)
    if dest.exists() and dest.read_bytes() == content:
        print("unchanged")
        return 0
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(content)
    print("changed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
