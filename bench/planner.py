"""Seconds sqs-fleet-plan takes to replay a load in virtual time and price it: a day at one-second resolution,
three idle windows compared, the plot written (the target: under 10 s on this machine), and the replay alone
per virtual day (with its quiet steps, and second by second). Arithmetic only: no emulator, no process.

    python -m bench.planner [--runs 3] [--smoke]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import time
from pathlib import Path
from tempfile import TemporaryDirectory

from bench.common import machine, smoke_option, table
from sqs_fleet.planner import cli, load
from sqs_fleet.planner.replay import replay
from sqs_fleet.planner.settings import Settings
from sqs_fleet.stack import Stack


def command(args: list[str]) -> float:
    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert cli.main(args) == 0
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="timed runs of each row")
    smoke_option(parser)
    args = parser.parse_args(argv)
    runs, seconds = (1, 3600) if args.smoke else (args.runs, load.DAY)
    stack = Stack.from_inventory("local")  # rendered once: the rows time the planner, not Ansible
    with TemporaryDirectory() as tmp:
        record = Path(tmp) / "local.json"
        record.write_text(json.dumps(dict(stack.data)))
        rows = []
        for profile, compare in (("diurnal", "idle_window=60,180,900"), ("bursty-day", "idle_window=60,180,900"),
                                 ("diurnal", "broker=sqs,redis")):
            times = [command(["--stack", str(record), "--profile", profile, "--duration", str(seconds),
                              "--compare", compare, "--plot", str(Path(tmp) / "plan.png")]) for _ in range(runs)]
            rows.append([f"sqs-fleet-plan --profile {profile} --compare {compare} (plot written)",
                         f"{statistics.median(times):.2f}", f"{min(times):.2f}-{max(times):.2f}"])
        settings = Settings.from_stack(stack)
        for profile, quiet_steps in (("diurnal", True), ("diurnal", False), ("steady", True)):
            traffic = load.named(profile, seconds=seconds)
            times = []
            for _ in range(runs):
                started = time.perf_counter()
                replay(settings, traffic, load.work("fixed:1")[0], quiet_steps=quiet_steps)
                times.append(time.perf_counter() - started)
            how = "" if quiet_steps else ", every second one by one (quiet_steps=False)"
            rows.append([f"one replay alone, {profile} ({traffic.total:,} messages){how}",
                         f"{statistics.median(times):.2f}", f"{min(times):.2f}-{max(times):.2f}"])
    print(f"machine: {machine()}; load average {os.getloadavg()[0]:.1f} at the end")
    print(f"conditions: the local stack's settings (inventory/local, rendered once, outside the timing); "
          f"{seconds} s of virtual time at one-second resolution; work fixed:1; {runs} run(s) each")
    table("sqs-fleet-plan, wall-clock seconds, median (min-max)", ["what", "median s", "range s"], rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
