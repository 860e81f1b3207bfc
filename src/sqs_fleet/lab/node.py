"""Booted test nodes: Amazon Linux 2023's twin on Debian 12 (sqs_fleet.lab.node_image), with real systemd
and cloud-init, in systemd-nspawn, on a private network.

    sqs-fleet-node check                  # can nodes boot here? (root, systemd-nspawn, debootstrap)
    sqs-fleet-node image                  # build (or reuse) the cached node image
    sqs-fleet-node bake REPOSITORY COMMIT # the image with the node playbook baked in at COMMIT (a layer over it)
    sqs-fleet-node boot NAME [--user-data FILE] [--file SRC:DEST ...]   # prints the node as JSON
    sqs-fleet-node exec NAME -- CMD ...   # run a command inside the node
    sqs-fleet-node destroy NAME           # power off and remove every trace

Every node is an overlay on one read-only image, in its own network namespace, attached to a host bridge
(10.77.0.1/24) where the emulator and a git daemon can listen; nodes reach nothing else. Needs root,
systemd-nspawn and debootstrap (`apt-get install systemd-container debootstrap`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import subprocess  # nosec B404 - runs fixed system tools
import sys
import threading
import time
import xml.etree.ElementTree as ElementTree  # nosec B405 - parses the nodes' own reports
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sqs_fleet.lab.node_image import STATE, baked_image, image, mount_overlay, run

BRIDGE = "sqsfleet0"
HOST_ADDRESS = "10.77.0.1"
PREFIX = 24
ADDRESS_LOCK = threading.Lock()


def missing_requirements() -> str | None:
    """Why nodes cannot boot here, or None."""
    if os.geteuid() != 0:
        return "booting test nodes needs root"
    for tool in ("systemd-nspawn", "debootstrap", "ip", "nsenter"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install systemd-container debootstrap iproute2)"
    return None


def network_up() -> None:
    if run("ip", "link", "show", BRIDGE, check=False).returncode != 0:
        run("ip", "link", "add", BRIDGE, "type", "bridge")
        run("ip", "addr", "add", f"{HOST_ADDRESS}/{PREFIX}", "dev", BRIDGE)
    run("ip", "link", "set", BRIDGE, "up")


def node_dir(name: str) -> Path:
    return STATE / "nodes" / name


def save(directory: Path, node: dict[str, Any]) -> None:
    """node.json, replaced whole: another thread may be reading the addresses taken."""
    partial = directory / "node.json.partial"
    partial.write_text(json.dumps(node))
    partial.replace(directory / "node.json")


def address_of(name: str) -> str:
    """A stable address on the bridge for this node's name (10.77.0.2 - 10.77.0.250), or the next one free
    when another live node holds it."""
    taken = {json.loads(path.read_text()).get("address") for path in (STATE / "nodes").glob("*/node.json")
             if path.parent.name != name}
    start = int(hashlib.sha256(name.encode()).hexdigest(), 16) % 249
    for offset in range(249):
        address = f"10.77.0.{2 + (start + offset) % 249}"
        if address not in taken:
            return address
    raise RuntimeError("no free address left on the nodes' bridge")


def own_cgroup(name: str) -> list[Path]:
    """nspawn --keep-unit creates its cgroups under the caller's: give each node's launcher its own."""
    groups = []
    for hierarchy in ("systemd", "unified"):
        root = Path("/sys/fs/cgroup") / hierarchy
        if root.is_dir():
            group = root / f"sqs-fleet-{name}"
            group.mkdir(exist_ok=True)
            groups.append(group)
    return groups


def boot(
    name: str, user_data: str | None, files: Sequence[tuple[str, str]] = (), wait_seconds: float = 60,
    on_address: Callable[[str], None] | None = None, wait_for_system: bool = True, layers: Sequence[Path] = (),
) -> dict[str, Any]:
    """Boot a node, on `layers` (e.g. a baked_image()) over the image if any; `on_address` learns its bridge
    address before it starts. Returns once systemd reports the
    system running (or degraded), or with `wait_for_system` false as soon as the node's systemd is there: a
    slow boot (cloud-init's final stage, ansible-pull) is then the node's own business, not a failure."""
    problem = missing_requirements()
    if problem:
        raise RuntimeError(problem)
    lower = image()
    network_up()
    directory = node_dir(name)
    if directory.exists():
        destroy(name)
    _, merged = mount_overlay(directory, [*layers, lower])

    seed = merged / "var/lib/cloud/seed/nocloud"
    seed.mkdir(parents=True, exist_ok=True)
    (seed / "meta-data").write_text(f"instance-id: i-{hashlib.sha256(name.encode()).hexdigest()[:17]}\n"
                                    f"local-hostname: {name}\n")
    (seed / "user-data").write_text(user_data or "#cloud-config\n{}\n")
    for source, destination in files:
        target = merged / destination.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, target)

    namespace = f"sqsfleet-{name}"
    with ADDRESS_LOCK:  # nodes may boot in parallel threads: claim the address before the next one looks
        address = address_of(name)
        save(directory, {"name": name, "address": address})
    if on_address:
        on_address(address)
    host_end = f"vf{hashlib.sha256(name.encode()).hexdigest()[:8]}"
    run("ip", "netns", "add", namespace)
    run("ip", "link", "add", host_end, "type", "veth", "peer", "name", "eth0", "netns", namespace)
    run("ip", "link", "set", host_end, "master", BRIDGE, "up")
    for command in (["addr", "add", f"{address}/{PREFIX}", "dev", "eth0"], ["link", "set", "eth0", "up"],
                    ["link", "set", "lo", "up"]):
        run("ip", "netns", "exec", namespace, "ip", *command)

    groups = own_cgroup(name)
    log = (directory / "console.log").open("w")

    def enter_cgroup() -> None:
        for group in groups:
            (group / "cgroup.procs").write_text(str(os.getpid()))

    nspawn = shutil.which("systemd-nspawn") or "systemd-nspawn"
    process = subprocess.Popen(  # noqa: S603  # nosec B603 - fixed argv
        [nspawn, "--boot", f"--directory={merged}", f"--machine={name}", "--register=no",
         "--keep-unit", "--console=pipe", "--link-journal=no", f"--network-namespace-path=/run/netns/{namespace}"],
        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, preexec_fn=enter_cgroup,
    )
    node: dict[str, Any] = {"name": name, "address": address, "host_address": HOST_ADDRESS, "nspawn_pid": process.pid,
            "namespace": namespace, "host_end": host_end, "merged": str(merged)}
    save(directory, node)
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        leader = run("pgrep", "-P", str(process.pid), "-x", "systemd", check=False).stdout.split()
        if leader:
            if "leader_pid" not in node:
                node["leader_pid"] = int(leader[0])
                save(directory, node)  # commands can enter the node while it is still starting
            if not wait_for_system:
                return node
            state = run("nsenter", "-t", leader[0], "-a", "systemctl", "is-system-running", check=False).stdout.strip()
            if state in ("running", "degraded"):
                node["boot_state"] = state
                save(directory, node)
                return node
        if process.poll() is not None:
            break
        time.sleep(0.2)
    raise RuntimeError(f"node {name} did not boot; see {directory / 'console.log'}")


def load(name: str) -> dict[str, Any]:
    node: dict[str, Any] = json.loads((node_dir(name) / "node.json").read_text())
    return node


def exec_in(name: str, command: Sequence[str], check: bool = False) -> subprocess.CompletedProcess[str]:
    """Run a command inside a booted node, in all its namespaces."""
    return run("nsenter", "-t", str(load(name)["leader_pid"]), "-a", *command, check=check)


# What a node's bootstrap keeps of each playbook run: one junit XML (ansible-core's junit callback), a case a task.
TASK_REPORTS = "/var/log/sqs-fleet-bootstrap"


def task_seconds(name: str) -> dict[str, float]:
    """Seconds of each task of the node's bootstrap runs (summed over runs: a retried ansible-pull writes a report
    each), by task name ("role : task"), read on the node."""
    reports = exec_in(name, ["sh", "-c", f"for report in {TASK_REPORTS}/*.xml; do cat \"$report\"; printf '\\0'; done"])
    seconds: dict[str, float] = {}
    for report in filter(str.strip, reports.stdout.split("\0")):
        for case in ElementTree.fromstring(report).iter("testcase"):  # noqa: S314  # nosec B314 - the node's own report
            # "[localhost] <play>: <role> : <task>" (the play's name has no colon, and is the same for every task)
            task = case.get("name", "").split(": ", 1)[-1]
            seconds[task] = seconds.get(task, 0.0) + float(case.get("time", 0))
    return seconds


def destroy(name: str) -> None:
    directory = node_dir(name)
    node = json.loads((directory / "node.json").read_text()) if (directory / "node.json").exists() else {}
    pid = node.get("nspawn_pid")
    if pid:
        try:
            os.kill(pid, signal.SIGTERM)  # an orderly poweroff
            for _ in range(150):
                os.kill(pid, 0)
                time.sleep(0.1)
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    merged = directory / "merged"
    if merged.is_dir() and os.path.ismount(merged):
        run("umount", "-l", str(merged), check=False)
    if node.get("host_end"):
        run("ip", "link", "del", node["host_end"], check=False)
    run("ip", "netns", "del", f"sqsfleet-{name}", check=False)
    for hierarchy in ("systemd", "unified"):
        group = Path("/sys/fs/cgroup") / hierarchy / f"sqs-fleet-{name}"
        for child in sorted(group.glob("**/"), key=lambda p: len(p.parts), reverse=True) if group.is_dir() else []:
            try:
                child.rmdir()
            except OSError:
                pass
    shutil.rmtree(directory, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("image")
    bake_parser = sub.add_parser("bake", help="the image with the node playbook baked in at a commit")
    bake_parser.add_argument("repository", help="a git URL or path")
    bake_parser.add_argument("commit")
    sub.add_parser("check", help="exit 0 if nodes can boot here, else say why")
    sub.add_parser("network", help=f"create the nodes' bridge with the host address {HOST_ADDRESS}")
    boot_parser = sub.add_parser("boot")
    boot_parser.add_argument("name")
    boot_parser.add_argument("--user-data")
    boot_parser.add_argument("--file", action="append", default=[], help="SRC:DEST copied into the node")
    exec_parser = sub.add_parser("exec")
    exec_parser.add_argument("name")
    exec_parser.add_argument("argv", nargs=argparse.REMAINDER)
    destroy_parser = sub.add_parser("destroy")
    destroy_parser.add_argument("name")
    args = parser.parse_args(argv)
    if args.command == "check":
        problem = missing_requirements()
        print(problem or "nodes can boot here")
        return 1 if problem else 0
    if args.command in ("image", "bake"):
        problem = missing_requirements()
        if problem:
            print(problem, file=sys.stderr)
            return 1
        print(image() if args.command == "image" else baked_image(args.repository, args.commit))
    elif args.command == "network":
        network_up()
        print(HOST_ADDRESS)
    elif args.command == "boot":
        user_data = Path(args.user_data).read_text() if args.user_data else None
        files = [(source, destination) for source, destination in (spec.split(":", 1) for spec in args.file)]
        print(json.dumps(boot(args.name, user_data, files)))
    elif args.command == "exec":
        command = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
        result = exec_in(args.name, command)
        sys.stdout.write(result.stdout)
        sys.stderr.write(result.stderr)
        return result.returncode
    else:
        destroy(args.name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
