"""Wall time of site.yml (cold and rerun) and teardown.yml (and its rerun) on a private emulator, with task
counts, under each strategy: mitogen_linear (the default in ansible.cfg) and Ansible's plain linear.

    python -m bench.playbooks [--runs 3] [--strategy mitogen_linear --strategy linear] [--smoke]

Each run provisions and removes the stack once per strategy, the strategies taking turns so that both see the
same load. --smoke: one cycle under the default strategy, plus one rerun under the plain one.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from tempfile import TemporaryDirectory

from bench.common import machine, private_emulator, smoke_option, table
from sqs_fleet import REPO

DEFAULT_STRATEGY = "mitogen_linear"
PLAIN_STRATEGY = "linear"
CYCLE = ["site.yml cold", "site.yml rerun", "teardown.yml", "teardown.yml rerun"]


def play(playbook: str, strategy: str, home: Path) -> tuple[float, int, int]:
    """(seconds, tasks run, tasks changed)."""
    env = {**os.environ, "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json", "ANSIBLE_HOME": str(home),
           "ANSIBLE_STRATEGY": strategy,
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    started = time.perf_counter()
    # The stack is recorded beside the run, not over the user's own record in .run/stacks.
    result = subprocess.run(["ansible-playbook", playbook, "-e", f"stack_output_file={home / 'stack.json'}"],
                            cwd=REPO, env=env, capture_output=True, text=True, check=True)
    seconds = time.perf_counter() - started
    stats = json.loads(result.stdout[result.stdout.index("{"):])["stats"]["localhost"]
    return seconds, stats["ok"] + stats["failures"], stats["changed"]  # ok counts the changed ones too


def steps(strategies: list[str], runs: int, smoke: bool) -> list[tuple[str, str]]:
    """(strategy, step) in the order they run: whole cycles, the strategies taking turns."""
    if smoke:
        return [(DEFAULT_STRATEGY, CYCLE[0]), (DEFAULT_STRATEGY, CYCLE[1]), (PLAIN_STRATEGY, CYCLE[1]),
                (DEFAULT_STRATEGY, CYCLE[2]), (DEFAULT_STRATEGY, CYCLE[3])]
    return [(strategy, step) for _ in range(runs) for strategy in strategies for step in CYCLE]


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.1f} {five:.1f} {fifteen:.1f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--strategy", action="append", dest="strategies",
                        help=f"strategy to measure, repeatable (default: {DEFAULT_STRATEGY} and {PLAIN_STRATEGY})")
    smoke_option(parser)
    args = parser.parse_args(argv)
    strategies = args.strategies or [DEFAULT_STRATEGY, PLAIN_STRATEGY]
    plan = steps(strategies, args.runs, args.smoke)
    results: dict[tuple[str, str], list[tuple[float, int, int]]] = {}
    load_before = load()
    with TemporaryDirectory() as tmp:
        server = private_emulator(Path(tmp))
        try:
            for strategy, step in plan:
                results.setdefault((step, strategy), []).append(play(step.split()[0], strategy, Path(tmp)))
        finally:
            server.stop()
    print(f"machine: {machine()}; load average (1, 5, 15 min) {load_before} before, {load()} after")
    print("AWS side: one moto server on 127.0.0.1 (loopback), private to the benchmark")
    print(f"runs per row: {max(len(r) for r in results.values())}; seconds: median (min-max)")
    rows = []
    for step in CYCLE:
        for strategy in strategies if not args.smoke else [DEFAULT_STRATEGY, PLAIN_STRATEGY]:
            runs = results.get((step, strategy))
            if runs:
                seconds = [r[0] for r in runs]
                spread = f"{statistics.median(seconds):.1f} ({min(seconds):.1f}-{max(seconds):.1f})"
                rows.append([step, strategy, spread, runs[0][1], max(r[2] for r in runs)])
    table("Playbooks", ["playbook", "strategy", "seconds", "tasks", "changed"], rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
