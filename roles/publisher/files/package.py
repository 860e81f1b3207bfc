#!/usr/bin/env python3
"""Zip Python files, and the installed packages named with --package, as a Lambda deployment package, byte for
byte the same on every run (fixed timestamps and modes, sorted entries, no bytecode), so the function's code
hash changes only when a file does. Prints "changed" when it wrote the zip.

    package.py DEST.zip SOURCE.py [SOURCE.py ...] [--package NAME ...]

A package is taken from this interpreter's installation (the controller's pinned one), pure Python only.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import os
import sys
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path

STAMP = (1980, 1, 1, 0, 0, 0)  # the earliest a zip can hold


def package_files(name: str) -> Iterator[tuple[str, Path]]:
    """(name in the zip, path) of every source file of an installed package."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"package.py: no installed package {name!r}")
    root = Path(next(iter(spec.submodule_search_locations)))
    for path in sorted(root.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            if path.suffix in (".so", ".pyd"):
                raise SystemExit(f"package.py: {name} is not pure Python ({path.name})")
            yield f"{name}/{path.relative_to(root).as_posix()}", path


def package(sources: Sequence[Path], packages: Sequence[str] = ()) -> bytes:
    entries = [(source.name, source) for source in sources]
    for name in packages:
        entries += list(package_files(name))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, path in sorted(entries):
            entry = zipfile.ZipInfo(name, date_time=STAMP)
            entry.external_attr = 0o644 << 16
            entry.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(entry, path.read_bytes())
    return buffer.getvalue()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="package.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("dest", type=Path)
    parser.add_argument("sources", type=Path, nargs="+")
    parser.add_argument("--package", action="append", default=[], dest="packages")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    content = package(args.sources, args.packages)
    if args.dest.exists() and args.dest.read_bytes() == content:
        print("unchanged")
        return 0
    args.dest.parent.mkdir(parents=True, exist_ok=True)
    # Written beside and renamed: a run reading the zip at the same moment sees the old one or the new one whole.
    partial = args.dest.with_name(f".{args.dest.name}.{os.getpid()}")
    partial.write_bytes(content)
    partial.replace(args.dest)
    print("changed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
