"""A worker boots as on EC2: the user-data site.yml rendered into the launch template (read back from the
emulator) runs under cloud-init on a fresh systemd node, ansible-pull fetches this repository at the
pinned commit from a git daemon, and the node ends consuming. Needs root and systemd-nspawn."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time

import pytest
from conftest import REPO, assert_ok

sys.path.insert(0, str(REPO / "tools"))
from emulator import free_port, start_emulator  # noqa: E402
from node import HOST_ADDRESS, boot, destroy, exec_in, missing_requirements, network_up  # noqa: E402

pytestmark = pytest.mark.skipif(missing_requirements() is not None, reason=f"{missing_requirements()}")

GROUP = "sqs-fleet-local-workers"


@pytest.fixture(scope="module")
def node_world(tmp_path_factory):
    """An emulator and a git daemon on the host end of the nodes' network, serving HEAD of this repo."""
    tmp = tmp_path_factory.mktemp("boot")
    network_up()
    emulator = start_emulator(free_port(), tmp / "moto.log", host=HOST_ADDRESS)
    subprocess.run(["git", "clone", "-q", "--bare", str(REPO), str(tmp / "git" / "sqs-fleet.git")], check=True)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True,
                            check=True).stdout.strip()
    port = free_port()
    daemon = subprocess.Popen(["git", "daemon", "--reuseaddr", "--export-all", f"--base-path={tmp / 'git'}",
                               f"--listen={HOST_ADDRESS}", f"--port={port}", str(tmp / "git")])
    aws_env = tmp / "aws.env"  # what an instance role gives an EC2 node: here, the emulator and placeholders
    aws_env.write_text(f"AWS_ENDPOINT_URL={emulator.url}\nAWS_ACCESS_KEY_ID=testing\nAWS_SECRET_ACCESS_KEY=testing\n")
    yield {"emulator": emulator, "repo_url": f"git://{HOST_ADDRESS}:{port}/sqs-fleet.git", "commit": commit,
           "aws_env": aws_env}
    daemon.terminate()
    emulator.stop()


def wait_until(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def cloud_init_status(name: str) -> dict:
    return json.loads(exec_in(name, ["cloud-init", "status", "--wait", "--format", "json"]).stdout or "{}")


@pytest.fixture(scope="module")
def stack_user_data(node_world, run_playbook) -> str:
    """site.yml on the nodes' emulator, pinned to this commit; the user-data it put in the launch template."""
    import boto3

    emulator = node_world["emulator"]
    site = run_playbook("site.yml", env=emulator.environment(), extra_vars={
        "fleet_repo_url": node_world["repo_url"], "fleet_repo_version": node_world["commit"],
        "fleet_poll_interval": 2})
    assert_ok(site, ["site.yml"])
    ec2 = boto3.client("ec2", endpoint_url=emulator.url, region_name="us-east-1",
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    data = ec2.describe_launch_template_versions(LaunchTemplateName=GROUP, Versions=["$Latest"])
    return base64.b64decode(data["LaunchTemplateVersions"][0]["LaunchTemplateData"]["UserData"]).decode()


def test_a_node_booted_with_the_launch_template_user_data_becomes_a_working_consumer(node_world, stack_user_data):
    assert f"readonly REPO_VERSION={node_world['commit']}" in stack_user_data
    name = "boot-ok"
    try:
        boot(name, stack_user_data, [(str(node_world["aws_env"]), "/etc/sqs-fleet/aws.env")])
        status = cloud_init_status(name)
        log = exec_in(name, ["cat", "/var/log/sqs-fleet-bootstrap.log"]).stdout
        assert status.get("status") == "done" and not status.get("errors"), log[-3000:]
        assert "bootstrap: done" in log
        head = exec_in(name, ["git", "-C", "/opt/sqs-fleet", "rev-parse", "HEAD"]).stdout.strip()
        assert head == node_world["commit"]
        assert exec_in(name, ["systemctl", "is-active", "sqs-consumer"]).stdout.strip() == "active"

        produce = subprocess.run(
            [sys.executable, str(REPO / "files" / "producer.py"), "--queue", "sqs-fleet-local-vehicles", "--file", "-"],
            input='{"vehicleId":"VH-BOOT","make":"Honda","model":"Civic","year":2020,"color":"Blue","mileage":15000}',
            env={**node_world["emulator"].environment(), "PATH": "/usr/bin:/bin"},
            capture_output=True, text=True, check=False)
        assert produce.returncode == 0, produce.stderr
        wait_until(lambda: '"vehicleId": "VH-BOOT"' in exec_in(
            name, ["cat", "/var/log/sqs-consumer/consumer.log"]).stdout, 60, "the vehicle in the consumer log")
    finally:
        destroy(name)


def test_a_broken_repository_url_fails_the_boot_visibly(node_world, stack_user_data):
    broken = (stack_user_data.replace(node_world["repo_url"], f"git://{HOST_ADDRESS}:1/missing.git")
              .replace("readonly MAX_ATTEMPTS=5", "readonly MAX_ATTEMPTS=2")
              .replace("readonly BACKOFF=10", "readonly BACKOFF=1"))
    assert "MAX_ATTEMPTS=2" in broken and "missing.git" in broken
    name = "boot-broken"
    try:
        boot(name, broken)
        status = cloud_init_status(name)  # --wait returns once cloud-init has finished: no hang
        log = exec_in(name, ["cat", "/var/log/sqs-fleet-bootstrap.log"]).stdout
        assert status.get("status") == "error", status
        assert "bootstrap: FAILED: ansible-pull failed 2 times" in log
        assert exec_in(name, ["systemctl", "is-active", "sqs-consumer"]).stdout.strip() != "active"
    finally:
        destroy(name)
