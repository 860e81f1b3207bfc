"""Wall time of site.yml (cold and rerun) and teardown.yml on a private emulator, with task counts.

    python -m bench.playbooks [--runs 2] [--smoke]
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


def play(playbook: str, home: Path) -> tuple[float, int, int]:
    """(seconds, tasks run, tasks changed)."""
    env = {**os.environ, "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json", "ANSIBLE_HOME": str(home),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    started = time.perf_counter()
    # The stack is recorded beside the run, not over the user's own record in .run/stacks.
    result = subprocess.run(["ansible-playbook", playbook, "-e", f"stack_output_file={home / 'stack.json'}"],
                            cwd=REPO, env=env, capture_output=True, text=True, check=True)
    seconds = time.perf_counter() - started
    stats = json.loads(result.stdout[result.stdout.index("{"):])["stats"]["localhost"]
    return seconds, stats["ok"] + stats["failures"], stats["changed"]  # ok counts the changed ones too


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=2)
    smoke_option(parser)
    args = parser.parse_args(argv)
    if args.smoke:
        args.runs = 1
    results: dict[str, list[tuple[float, int, int]]] = {"site.yml cold": [], "site.yml rerun": [],
                                                         "teardown.yml": [], "teardown.yml rerun": []}
    with TemporaryDirectory() as tmp:
        server = private_emulator(Path(tmp))
        try:
            for _ in range(args.runs):
                for name in results:
                    results[name].append(play(name.split()[0], Path(tmp)))
        finally:
            server.stop()
    print(f"machine: {machine()}")
    print(f"AWS side: moto server on 127.0.0.1; median of {args.runs} runs")
    table("Playbooks", ["playbook", "seconds (median)", "tasks", "changed"],
          [[name, f"{statistics.median(r[0] for r in runs):.1f}", runs[0][1], runs[0][2]]
           for name, runs in results.items()])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
