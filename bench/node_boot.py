"""Seconds from a worker's boot to its consumer being active, and ansible-pull's share, on booted test
nodes (systemd-nspawn, cached image) running the launch template's user-data; then where ansible-pull's time
goes, from the per-task report the bootstrap keeps (ansible-core's junit callback). Needs root.

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
import xml.etree.ElementTree as ElementTree
from collections import defaultdict
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


# What the bootstrap keeps of each ansible-pull run: one junit XML, a test case a task.
TASK_REPORTS = "/var/log/sqs-fleet-bootstrap"
START_UP = "before the first task (clone, Ansible's start-up, parsing)"


def task_seconds(name: str) -> dict[str, float]:
    """Seconds of each task of the node's ansible-pull runs, by task name ("role : task"), read on the node."""
    report = exec_in(name, ["sh", "-c", f"cat {TASK_REPORTS}/*.xml"]).stdout
    seconds: dict[str, float] = defaultdict(float)
    for case in ElementTree.fromstring(report).iter("testcase"):  # noqa: S314 - our own node's report
        # "[localhost] <play>: <role> : <task>" (the play's name has no colon, and is the same for every task)
        seconds[case.get("name", "").split(": ", 1)[-1]] += float(case.get("time", 0))
    return seconds


def profile_rows(runs: list[dict[str, float]], profiles: list[dict[str, float]]) -> list[list[object]]:
    """ansible-pull's seconds by part, median over the boots: before the first task, each role, each task of no role."""
    parts: list[dict[str, float]] = []
    for run, tasks in zip(runs, profiles):
        by_role: dict[str, float] = defaultdict(float)
        for task, seconds in tasks.items():
            by_role[f"role {task.split(' : ')[0]}" if " : " in task else task] += seconds
        parts.append({START_UP: run["ansible-pull"] - sum(tasks.values()), **by_role})
    medians = {part: statistics.median(p.get(part, 0.0) for p in parts) for part in parts[0]}
    total = statistics.median(r["ansible-pull"] for r in runs)
    return [[part, f"{seconds:.2f}", f"{seconds / total:.0%}"]
            for part, seconds in sorted(medians.items(), key=lambda item: -item[1])]


def slowest_task_rows(profiles: list[dict[str, float]], count: int) -> list[list[object]]:
    medians = {task: statistics.median(p.get(task, 0.0) for p in profiles) for task in profiles[0]}
    return [[task, f"{seconds:.2f}"] for task, seconds in sorted(medians.items(), key=lambda t: -t[1])[:count]]


def measure(lab: Lab, name: str, user_data: str) -> tuple[dict[str, float], dict[str, float]]:
    started = time.time()
    lab.boot_worker(name, user_data)
    booted = time.time()
    while exec_in(name, ["systemctl", "is-active", "sqs-consumer"]).stdout.strip() != "active":
        if time.time() - started > 300:
            raise RuntimeError(exec_in(name, ["cat", "/var/log/sqs-fleet-bootstrap.log"]).stdout[-2000:])
        time.sleep(0.1)
    active = time.time()
    log = exec_in(name, ["cat", "/var/log/sqs-fleet-bootstrap.log"]).stdout
    tasks = task_seconds(name)
    lab.remove_worker(name)
    return ({"boot finished (cloud-init included)": booted - started, "user-data start": stamp(log, "start") - started,
             "ansible-pull": stamp(log, "done") - stamp(log, "ansible-pull"), "consumer active": active - started},
            tasks)


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
        runs, profiles = zip(*(measure(lab, f"bench-{n}", user_data) for n in range(args.nodes)))
    print(f"machine: {machine()}")
    print("node: Debian 12 in systemd-nspawn, cached image, no package installs; repository from a local git daemon")
    rows = [[phase, f"{statistics.median(r[phase] for r in runs):.1f}", f"{min(r[phase] for r in runs):.1f}",
             f"{max(r[phase] for r in runs):.1f}"] for phase in runs[0]]
    table(f"Boot to consumer active, {args.nodes} boots (seconds from the start of the boot)",
          ["phase", "median", "min", "max"], rows)
    share = statistics.median(r["ansible-pull"] / r["consumer active"] for r in runs)
    print(f"\nansible-pull's share of boot-to-active: {share:.0%}")
    table(f"Where ansible-pull's time goes, median of {args.nodes} boots (seconds; share of ansible-pull)",
          ["part", "seconds", "share"], profile_rows(list(runs), list(profiles)))
    table(f"Slowest tasks, median of {args.nodes} boots", ["task", "seconds"], slowest_task_rows(list(profiles), 8))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
