"""The lab's node stands for Amazon Linux 2023 in what the roles and worker programs depend on: the worker
Python's minor version, the ansible-core release ansible-pull runs, systemd's major version, and a wheelhouse
holding exactly the worker runtime's pins (platforms/amazon-linux-2023.yml). Needs root and systemd-nspawn."""

from __future__ import annotations

import re

import pytest

from sqs_fleet.lab.node import missing_requirements
from sqs_fleet.lab.node_image import WHEELHOUSE, image, run
from sqs_fleet.platform import pins, platform_facts

pytestmark = pytest.mark.skipif(missing_requirements() is not None, reason=f"{missing_requirements()}")
FACTS = platform_facts()


def in_image(*command: str) -> str:
    """What `command` prints, run in the image (its writes on a throwaway overlay)."""
    result = run("systemd-nspawn", "-q", "-D", str(image()), "--volatile=overlay", "--register=no", "--keep-unit",
                 "--pipe", *command, check=False)
    assert result.returncode == 0, f"{command}: {result.stdout} {result.stderr}"
    return result.stdout


def minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def test_the_worker_python_has_the_platforms_minor_version() -> None:
    printed = in_image("python3.11", "-c", "import platform; print(platform.python_version())").strip()
    assert minor(printed) == minor(FACTS["worker_python"]["version"])


def test_ansible_pull_is_the_platforms_ansible_core() -> None:
    printed = in_image("ansible-pull", "--version")
    assert f"[core {FACTS['ansible_core']['version']}]" in printed.splitlines()[0]


def test_systemd_is_the_platforms_major_version() -> None:
    printed = in_image("systemctl", "--version").splitlines()[0]
    assert re.match(rf"systemd {FACTS['systemd']['version'].split('.')[0]}\b", printed), printed


def test_the_wheelhouse_holds_exactly_the_runtime_pins() -> None:
    listed = in_image("ls", WHEELHOUSE).split()
    held = {re.sub(r"[-_.]+", "-", name.split("-")[0]).lower(): name.split("-")[1] for name in listed}
    assert held == pins()
