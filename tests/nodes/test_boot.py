"""A worker boots as on EC2: the user-data site.yml rendered into the launch template (read back from the
emulator) runs under cloud-init on a fresh systemd node, ansible-pull fetches this repository at the
pinned commit from a git daemon, and the node ends consuming. Needs root and systemd-nspawn."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import assert_ok, wait_until

from sqs_fleet import REPO
from sqs_fleet.lab.fleet import Lab
from sqs_fleet.lab.node import HOST_ADDRESS, exec_in, missing_requirements
from sqs_fleet.stack import Stack

NAMES = Stack.from_inventory("local")

pytestmark = pytest.mark.skipif(missing_requirements() is not None, reason=f"{missing_requirements()}")



@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(tmp_path_factory.mktemp("lab")) as running:
        yield running


def cloud_init_status(name: str) -> dict:
    return json.loads(exec_in(name, ["cloud-init", "status", "--wait", "--format", "json"]).stdout or "{}")


@pytest.fixture(scope="module")
def stack_user_data(lab, run_playbook) -> str:
    """site.yml on the lab's emulator, pinned to this commit; the user-data it put in the launch template."""
    site = run_playbook("site.yml", env=lab.environment(),
                        extra_vars=lab.site_variables(fleet_poll_interval=2))
    assert_ok(site, ["site.yml"])
    return lab.launch_template_user_data(NAMES.launch_template)


def test_a_node_booted_with_the_launch_template_user_data_becomes_a_working_consumer(lab, stack_user_data):
    assert f"readonly REPO_VERSION={lab.commit}" in stack_user_data
    name = "boot-ok"
    try:
        lab.boot_worker(name, stack_user_data)
        status = cloud_init_status(name)
        log = exec_in(name, ["cat", "/var/log/sqs-fleet-bootstrap.log"]).stdout
        assert status.get("status") == "done" and not status.get("errors"), log[-3000:]
        assert "bootstrap: done" in log
        head = exec_in(name, ["git", "-C", "/opt/sqs-fleet", "rev-parse", "HEAD"]).stdout.strip()
        assert head == lab.commit
        assert exec_in(name, ["systemctl", "is-active", "sqs-consumer"]).stdout.strip() == "active"

        produce = subprocess.run(
            [sys.executable, str(REPO / "files" / "producer.py"), "--queue", NAMES.queue_name, "--file", "-"],
            input='{"vehicleId":"VH-BOOT","make":"Honda","model":"Civic","year":2020,"color":"Blue","mileage":15000}',
            env={**lab.environment(), "PATH": "/usr/bin:/bin"},
            capture_output=True, text=True, check=False)
        assert produce.returncode == 0, produce.stderr
        wait_until(lambda: '"vehicleId": "VH-BOOT"' in exec_in(
            name, ["cat", "/var/log/sqs-consumer/consumer.log"]).stdout, 60, "the vehicle in the consumer log")
    finally:
        lab.remove_worker(name)


def test_a_broken_repository_url_fails_the_boot_visibly(lab, stack_user_data):
    broken = (stack_user_data.replace(lab.repo_url, f"git://{HOST_ADDRESS}:1/missing.git")
              .replace("readonly MAX_ATTEMPTS=5", "readonly MAX_ATTEMPTS=2")
              .replace("readonly BACKOFF=10", "readonly BACKOFF=1"))
    assert "MAX_ATTEMPTS=2" in broken and "missing.git" in broken
    name = "boot-broken"
    try:
        lab.boot_worker(name, broken)
        status = cloud_init_status(name)  # --wait returns once cloud-init has finished: no hang
        log = exec_in(name, ["cat", "/var/log/sqs-fleet-bootstrap.log"]).stdout
        assert status.get("status") == "error", status
        assert "bootstrap: FAILED: ansible-pull failed 2 times" in log
        assert exec_in(name, ["systemctl", "is-active", "sqs-consumer"]).stdout.strip() != "active"
    finally:
        lab.remove_worker(name)
