"""Seconds from a worker's boot to its consumer being active and to its first message processed, stock image
(ansible-pull of the pinned commit) against baked image (image.yml; the boot only configures and starts), on
booted test nodes (systemd-nspawn, cached image) running the launch template's user-data; where the bootstrap
playbook's time goes in each; and what baking the image takes. Needs root.

    python -m bench.node_boot [--nodes 3] [--smoke]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from tempfile import TemporaryDirectory

from bench.common import machine, smoke_option, table
from sqs_fleet import REPO
from sqs_fleet.lab.fleet import Lab
from sqs_fleet.lab.node import exec_in, missing_requirements, task_seconds
from sqs_fleet.lab.node_image import image
from sqs_fleet.stack import Stack

START_UP = "before the first task (clone, Ansible's start-up, parsing)"
# The bootstrap log's line that starts the playbook, by image.
PLAYBOOK_START = {"stock": "ansible-pull", "baked": "configure"}
CONSUMER_LOG = "/var/log/sqs-consumer/consumer.log"
LONG_POLL_SECONDS = 20  # the consumer's receive wait (files/consumer.py)


def stamp(log: str, label: str) -> float:
    found = re.search(rf"bootstrap: {label} (\S+Z)", log)
    if not found:
        raise RuntimeError(f"no '{label}' line in the bootstrap log:\n{log[-2000:]}")
    return epoch(found.group(1))


def epoch(iso: str) -> float:
    return datetime.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def first_processed(name: str) -> float | None:
    for line in exec_in(name, ["cat", CONSUMER_LOG]).stdout.splitlines():
        if line.startswith("{") and json.loads(line).get("event") == "message_processed":
            return epoch(json.loads(line)["ts"])
    return None


def profile_rows(runs: list[dict[str, float]], profiles: list[dict[str, float]]) -> list[list[object]]:
    """The bootstrap playbook's seconds by part, median over the boots: before the first task, each role, each
    task of no role."""
    parts: list[dict[str, float]] = []
    for run, tasks in zip(runs, profiles):
        by_role: dict[str, float] = defaultdict(float)
        for task, seconds in tasks.items():
            by_role[f"role {task.split(' : ')[0]}" if " : " in task else task] += seconds
        parts.append({START_UP: run["bootstrap playbook"] - sum(tasks.values()), **by_role})
    medians = {part: statistics.median(p.get(part, 0.0) for p in parts) for part in parts[0]}
    total = statistics.median(r["bootstrap playbook"] for r in runs)
    return [[part, f"{seconds:.2f}", f"{seconds / total:.0%}"]
            for part, seconds in sorted(medians.items(), key=lambda item: -item[1])]


def slowest_task_rows(profiles: list[dict[str, float]], count: int) -> list[list[object]]:
    medians = {task: statistics.median(p.get(task, 0.0) for p in profiles) for task in profiles[0]}
    return [[task, f"{seconds:.2f}"] for task, seconds in sorted(medians.items(), key=lambda t: -t[1])[:count]]


def measure(lab: Lab, name: str, user_data: str, baked: bool) -> tuple[dict[str, float], dict[str, float]]:
    """One boot with one message waiting: seconds from the start of the boot to each phase."""
    started = time.time()
    lab.boot_worker(name, user_data, wait_for_system=False, image_commit=lab.commit if baked else None)
    while exec_in(name, ["systemctl", "is-active", "sqs-consumer"]).stdout.strip() != "active":
        if time.time() - started > 300:
            raise RuntimeError(exec_in(name, ["cat", "/var/log/sqs-fleet-bootstrap.log"]).stdout[-2000:])
        time.sleep(0.05)
    active = time.time()
    processed = None
    while processed is None and time.time() - started < 300:
        processed = first_processed(name)
        time.sleep(0.1)
    exec_in(name, ["systemctl", "is-system-running", "--wait"])  # cloud-init's final stage included
    booted = time.time()
    log = exec_in(name, ["cat", "/var/log/sqs-fleet-bootstrap.log"]).stdout
    tasks = task_seconds(name)
    lab.remove_worker(name)
    playbook_start = stamp(log, PLAYBOOK_START["baked" if baked else "stock"])
    return ({"user-data start": stamp(log, "start") - started,
             "bootstrap playbook": stamp(log, "done") - playbook_start, "consumer active": active - started,
             "first message processed": (processed or float("nan")) - started,
             "system running (cloud-init done; polled last)": booted - started}, tasks)


def playbook(variables: dict[str, object], env: dict[str, str], name: str) -> float:
    started = time.time()
    subprocess.run(["ansible-playbook", name, "-e", json.dumps(variables)], cwd=REPO, env=env, check=True,
                   capture_output=True)
    return time.time() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=3, help="boots to measure of each image, one after another")
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
        variables = lab.site_variables(stack_output_file=str(record), fleet_poll_interval=2)
        playbook(variables, env, "site.yml")
        stack = Stack.load(record)
        user_data = {"stock": lab.launch_template_user_data(stack.launch_template)}
        image_seconds = playbook(variables, env, "image.yml")
        shutil.rmtree(lab.baked_image(), ignore_errors=True)  # a bake from nothing, not the cached layer
        started = time.time()
        lab.baked_image()
        bake_seconds = time.time() - started
        playbook({**variables, "fleet_image": "baked"}, env, "site.yml")
        user_data["baked"] = lab.launch_template_user_data(stack.launch_template)
        results = {}
        for kind in ("stock", "baked"):
            boots = []
            for n in range(args.nodes):
                # A long poll the last node left open at the emulator would take this boot's message and hide
                # it for the visibility timeout: each message waits for the last poll to end.
                time.sleep(LONG_POLL_SECONDS if n or kind == "baked" else 0)
                lab.produce(stack.queue_name, f"VH-{kind}-{n}").check_returncode()
                boots.append(measure(lab, f"bench-{kind}-{n}", user_data[kind], kind == "baked"))
            results[kind] = boots
    print(f"machine: {machine()}")
    print("node: Debian 12 in systemd-nspawn, cached image (ansible-core, boto3 and Celery preinstalled, so the stock "
          "boot installs no package); repository from a local git daemon; one message waiting at each boot; "
          "AWS is the lab's emulator")
    runs = {kind: [run for run, _ in boots] for kind, boots in results.items()}
    rows = []
    for phase in runs["stock"][0]:
        row: list[object] = [phase]
        for kind in ("stock", "baked"):
            values = [r[phase] for r in runs[kind]]
            row.append(f"{statistics.median(values):.1f} ({min(values):.1f}-{max(values):.1f})")
        rows.append(row)
    table(f"Boot to consumer active and to first message, seconds from the start of the boot, median (min-max) of "
          f"{args.nodes} boots each", ["phase", "stock image", "baked image"], rows)
    for kind, title in (("stock", "ansible-pull of the pinned commit"), ("baked", "the configure phase")):
        profiles = [tasks for _, tasks in results[kind]]
        table(f"{kind} image: where the bootstrap playbook's time goes ({title}), median of {args.nodes} boots "
              f"(seconds; share of the playbook)", ["part", "seconds", "share"], profile_rows(runs[kind], profiles))
        table(f"{kind} image: slowest tasks, median of {args.nodes} boots", ["task", "seconds"],
              slowest_task_rows(profiles, 6))
    table("Baking the image (one build each)", ["build", "seconds"],
          [["test-node image: the node playbook's bake phase over the cached image (lab)", f"{bake_seconds:.1f}"],
           ["image.yml on the emulator: its AWS steps, the builder's run emulated", f"{image_seconds:.1f}"]])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
