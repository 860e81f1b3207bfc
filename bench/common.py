"""Shared by the benchmarks: a private emulator, the machine's description, and table printing."""

from __future__ import annotations

import argparse
import os
import platform
from pathlib import Path

from sqs_fleet.lab.emulator import Emulator, free_port, start_emulator


def machine() -> str:
    cpu = "unknown CPU"
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        cpu = next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    system = f"{platform.system()} {platform.release()}"
    return f"{system}, {os.cpu_count()} cores, {cpu}, Python {platform.python_version()}"


def private_emulator(tmp: Path) -> Emulator:
    server = start_emulator(free_port(), tmp / "moto.log")
    os.environ.update(server.environment())
    return server


def smoke_option(parser: argparse.ArgumentParser) -> None:
    """--smoke: run once, small, to prove the benchmark works (the test command does); its figures mean nothing."""
    parser.add_argument("--smoke", action="store_true", help="one short run to check the benchmark works")


def table(title: str, header: list[str], rows: list[list[object]]) -> None:
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows)]
    print(f"\n{title}")
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(str(x).ljust(w) for x, w in zip(row, widths)))
