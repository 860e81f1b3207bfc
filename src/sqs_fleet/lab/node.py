"""Booted test nodes: Amazon Linux 2023's twin on Debian 12 (module PACKAGES below), with real systemd and
cloud-init, in systemd-nspawn, on a private network.

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

from sqs_fleet.platform import RUNTIME_REQUIREMENTS, platform_facts, runtime_wheelhouse

# debootstrap, ip and systemd-nspawn live in sbin, which a non-login root shell may not have on its PATH.
os.environ["PATH"] = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
STATE = Path(os.environ.get("NODE_STATE_DIR", "/var/lib/sqs-fleet-nodes"))
CACHE = Path(os.environ.get("NODE_CACHE_DIR", "/var/cache/sqs-fleet"))
BRIDGE = "sqsfleet0"
HOST_ADDRESS = "10.77.0.1"
PREFIX = 24
ADDRESS_LOCK = threading.Lock()
# The lab's node is Amazon Linux 2023's twin in what the roles and worker programs depend on
# (platforms/amazon-linux-2023.yml): Debian 12's python3.11 is the worker Python's minor version, systemd 252 is
# AL2023's, ansible-pull is AL2023's ansible-core release (from PyPI, on Python 3.11 where AL2023 runs it on
# 3.9), and the worker runtime installs its pinned wheels with pip, from a wheelhouse in the image standing in
# for PyPI (nodes have no network). What differs stays unverified here: docs/platform.md.
# Debian packages: what user-data, cloud-init and the roles need before the worker runtime exists.
PACKAGES = ["python3-apt", "python3-boto3", "python3.11-venv", "cloud-init", "logrotate", "git", "procps",
            "iproute2", "ca-certificates"]
WHEELHOUSE = "/var/cache/sqs-fleet/wheels"
PIP_CONF = f"""\
# The lab's stand-in for PyPI: the worker runtime's pinned wheels, downloaded by the host for Python 3.11.
[global]
no-index = true
find-links = {WHEELHOUSE}
"""
CLOUD_CFG = """\
# EC2-style boot from a local seed: user-data runs exactly as on an instance.
datasource_list: [NoCloud, None]
network: {config: disabled}
locale: C.UTF-8
"""


def run(*command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a system tool (fixed names, from PATH), capturing its output."""
    return subprocess.run(command, check=check, text=True, capture_output=True)  # noqa: S603  # nosec B603 B607


def missing_requirements() -> str | None:
    """Why nodes cannot boot here, or None."""
    if os.geteuid() != 0:
        return "booting test nodes needs root"
    for tool in ("systemd-nspawn", "debootstrap", "ip", "nsenter"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install systemd-container debootstrap iproute2)"
    return None


def apt_mirror() -> str:
    sources = Path("/etc/apt/sources.list.d/debian.sources")
    if sources.exists():
        for line in sources.read_text().splitlines():
            if line.startswith("URIs:") and "security" not in line:
                return line.split()[1]
    return "http://deb.debian.org/debian"


def ansible_core_version() -> str:
    return str(platform_facts()["ansible_core"]["version"])


def image_key() -> str:
    content = [PACKAGES, CLOUD_CFG, PIP_CONF, "bookworm", ansible_core_version(), RUNTIME_REQUIREMENTS.read_text()]
    return hashlib.sha256(json.dumps(content).encode()).hexdigest()[:12]


def install_ansible_core(build: Path) -> None:
    """AL2023's ansible-core release in its own virtual environment, its commands on PATH as the RPM's are."""
    wheels = build / "var/tmp/ansible-wheels"  # nspawn gives the container its own /tmp
    download = [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:", "--python-version",
                "3.11", "--platform", "manylinux2014_x86_64", "--platform", "manylinux_2_17_x86_64",
                "--dest", str(wheels), f"ansible-core=={ansible_core_version()}"]
    run(*download)
    script = ("python3.11 -m venv /opt/ansible-core && /opt/ansible-core/bin/pip install -q --no-index "
              f"--find-links /var/tmp/ansible-wheels ansible-core=={ansible_core_version()} && "
              "ln -sf /opt/ansible-core/bin/ansible /opt/ansible-core/bin/ansible-playbook "
              "/opt/ansible-core/bin/ansible-pull /opt/ansible-core/bin/ansible-galaxy /usr/local/bin/")
    installed = run("systemd-nspawn", "-q", "-D", str(build), "--register=no", "--keep-unit", "--pipe", "sh", "-c",
                    script, check=False)
    shutil.rmtree(wheels)
    if installed.returncode != 0:
        raise RuntimeError(f"installing ansible-core in the node image failed:\n{installed.stdout}{installed.stderr}")


def add_wheelhouse(build: Path) -> None:
    shutil.copytree(runtime_wheelhouse(), build / WHEELHOUSE.lstrip("/"), ignore=shutil.ignore_patterns(".*"))
    (build / "etc/pip.conf").write_text(PIP_CONF)


def provision(build: Path) -> None:
    """Everything the twin holds over a minimal Debian, installed with the host's network (nodes have none)."""
    install = "apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "
    run("systemd-nspawn", "-q", "-D", str(build), "--register=no", "--keep-unit", "--pipe",
        "sh", "-c", install + " ".join(PACKAGES) + " && apt-get clean")
    install_ansible_core(build)
    add_wheelhouse(build)
    (build / "etc/cloud/cloud.cfg.d/99-sqs-fleet-node.cfg").write_text(CLOUD_CFG)
    (build / "etc/machine-id").write_text("")  # empty, not "uninitialized": no first-boot presets


def image() -> Path:
    """The unpacked read-only image (built once, cached as a tarball keyed on its content)."""
    key = image_key()
    lower = STATE / f"image-{key}"
    if (lower / "etc" / "os-release").exists():
        return lower
    tarball = CACHE / f"node-{key}.tar.zst"
    if not tarball.exists():
        build = STATE / f"build-{key}"
        shutil.rmtree(build, ignore_errors=True)
        build.mkdir(parents=True)
        run("debootstrap", "--variant=minbase", "--include=systemd,systemd-sysv,dbus,python3,sudo",
            "bookworm", str(build), apt_mirror())
        provision(build)
        CACHE.mkdir(parents=True, exist_ok=True)
        run("tar", "--zstd", "-C", str(build), "-cf", f"{tarball}.tmp", ".")
        os.replace(f"{tarball}.tmp", tarball)
        shutil.rmtree(build)
    partial = STATE / f"unpack-{key}"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    run("tar", "--zstd", "-C", str(partial), "-xf", str(tarball))
    partial.rename(lower)
    return lower


def mount_overlay(directory: Path, lowers: Sequence[Path]) -> tuple[Path, Path]:
    """A writable overlay of `lowers` (the first on top) mounted at directory/merged; (where its changes go,
    where it is mounted)."""
    upper, work, merged = directory / "upper", directory / "work", directory / "merged"
    for path in (upper, work, merged):
        path.mkdir(parents=True)
    lowerdir = ":".join(str(path) for path in lowers)
    run("mount", "-t", "overlay", "overlay", "-o", f"lowerdir={lowerdir},upperdir={upper},workdir={work}", str(merged))
    return upper, merged


def baked_image(repository: str, commit: str) -> Path:
    """The node image with this repository's node playbook baked in at `commit`, as image.yml bakes a worker
    image on a builder instance: the playbook's bake phase (install what the workers of either broker need,
    record the commit, configure and start nothing) from a checkout at /opt/sqs-fleet, which the image keeps.
    A layer over image(), cached by the stock image's key and the commit; the test nodes' CloudWatch agent is
    not installed (no package source), as everywhere in the lab."""
    lower = image()
    layer = STATE / f"baked-{image_key()}-{commit[:12]}"
    if (layer / "etc/sqs-fleet/image.json").exists():
        return layer
    build = STATE / f"bake-{image_key()}-{commit[:12]}"
    if build.exists():
        if os.path.ismount(build / "merged"):
            run("umount", "-l", str(build / "merged"), check=False)
        shutil.rmtree(build)
    upper, merged = mount_overlay(build, [lower])
    try:
        checkout = merged / "opt/sqs-fleet"
        run("git", "clone", "-q", "--no-checkout", repository, str(checkout))
        run("git", "-C", str(checkout), "checkout", "-q", "--detach", commit)
        baked = run("systemd-nspawn", "-q", "-D", str(merged), "--register=no", "--keep-unit", "--pipe",
                    "--resolv-conf=off", "--chdir=/opt/sqs-fleet", "ansible-playbook", "--inventory", "localhost,",
                    "--extra-vars", json.dumps({"node_phase": "bake", "node_image_commit": commit,
                                                "cloudwatch_agent_install": False}),
                    "playbooks/node.yml", check=False)
        if baked.returncode != 0:
            raise RuntimeError(f"baking the node image at {commit} failed:\n{baked.stdout[-3000:]}"
                               f"{baked.stderr[-2000:]}")
    finally:
        run("umount", str(merged), check=False)
    shutil.rmtree(upper / "root/.ansible", ignore_errors=True)  # the run's own temporary files
    upper.rename(layer)
    shutil.rmtree(build)
    return layer


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
