"""Seconds from a worker's boot to its consumer being active, and ansible-pull's share, on booted test
nodes (systemd-nspawn, cached image) running the launch template's user-data. Needs root.

    python -m bench.node_boot [--nodes 3] [--smoke]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from tempfile import TemporaryDirectory

from bench.common import machine, smoke_option, table
from sqs_fleet import REPO
from sqs_fleet.lab.fleet import Lab
from sqs_fleet.lab.node import exec_in, image, missing_requirements
from sqs_fleet.stack import Stack


def stamp(log: str, label: str) -> float:
    found = re.search(rf"bootstrap: {label} (\S+Z)", log)
    if not found:
        raise RuntimeError(f"no '{label}' line in the bootstrap log:\n{log[-2000:]}")
    return datetime.datetime.strptime(found.group(1), "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc).timestamp()


def measure(lab: Lab, name: str, user_data: str) -> dict[str, float]:
    started = time.time()
    lab.boot_worker(name, user_data)
    booted = time.time()
    while exec_in(name, ["systemctl", "is-active", "sqs-consumer"]).stdout.strip() != "active":
        if time.time() - started > 300:
            raise RuntimeError(exec_in(name, ["cat", "/var/log/sqs-fleet-bootstrap.log"]).stdout[-2000:])
        time.sleep(0.1)
    active = time.time()
    log = exec_in(name, ["cat", "/var/log/sqs-fleet-bootstrap.log"]).stdout
    lab.remove_worker(name)
    return {"boot finished (cloud-init included)": booted - started, "user-data start": stamp(log, "start") - started,
            "ansible-pull": stamp(log, "done") - stamp(log, "ansible-pull"), "consumer active": active - started}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=3, help="boots to measure, one after another")
    smoke_option(parser)
    args = parser.parse_args(argv)
    if args.smoke:
        args.nodes = 1
    problem = missing_requirements()
    if problem:
        print(f"skipped: {problem}")
        return 0
    image()  # build or unpack the cached image outside the measurement
    with TemporaryDirectory() as tmp, Lab(Path(tmp)) as lab:
        env = {**os.environ, **lab.environment(), "ANSIBLE_HOME": str(Path(tmp) / "ansible"),
               "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
        record = Path(tmp) / "stack.json"
        variables = lab.site_variables(stack_output_file=str(record))
        subprocess.run(["ansible-playbook", "site.yml", "-e", json.dumps(variables)], cwd=REPO, env=env, check=True,
                       capture_output=True)
        user_data = lab.launch_template_user_data(Stack.load(record).launch_template)
        runs = [measure(lab, f"bench-{n}", user_data) for n in range(args.nodes)]
    print(f"machine: {machine()}")
    print("node: Debian 12 in systemd-nspawn, cached image, no package installs; repository from a local git daemon")
    rows = [[phase, f"{statistics.median(r[phase] for r in runs):.1f}", f"{min(r[phase] for r in runs):.1f}",
             f"{max(r[phase] for r in runs):.1f}"] for phase in runs[0]]
    table(f"Boot to consumer active, {args.nodes} boots (seconds from the start of the boot)",
          ["phase", "median", "min", "max"], rows)
    share = statistics.median(r["ansible-pull"] / r["consumer active"] for r in runs)
    print(f"\nansible-pull's share of boot-to-active: {share:.0%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
