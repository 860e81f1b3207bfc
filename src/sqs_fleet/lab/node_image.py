"""The lab's node image: Amazon Linux 2023's twin on Debian 12, built once and cached, and a layer of it with
the node playbook baked in at a commit (as image.yml bakes a worker image). Needs root, debootstrap and
systemd-nspawn; sqs_fleet.lab.node boots nodes on it."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess  # nosec B404 - runs fixed system tools
import sys
from collections.abc import Sequence
from pathlib import Path

from sqs_fleet.platform import RUNTIME_REQUIREMENTS, platform_facts, runtime_wheelhouse

# debootstrap, ip and systemd-nspawn live in sbin, which a non-login root shell may not have on its PATH.
os.environ["PATH"] = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
STATE = Path(os.environ.get("NODE_STATE_DIR", "/var/lib/sqs-fleet-nodes"))
CACHE = Path(os.environ.get("NODE_CACHE_DIR", "/var/cache/sqs-fleet"))
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
