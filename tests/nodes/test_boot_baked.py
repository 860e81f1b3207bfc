"""A worker boots from a baked image as on EC2: image.yml bakes the worker image on the lab's emulator (its
builder's run emulated: the emulator runs no user-data), the lab bakes the test-node image with the same node
playbook at the same commit, and site.yml in baked mode puts that image and its user-data in the launch template.
The node then only writes its configuration and starts the services: nothing installed, nothing fetched. An
image older than the pinned commit says so and falls back to ansible-pull of the pinned commit. Needs root and
systemd-nspawn."""

from __future__ import annotations

import pytest

from sqs_fleet.lab.fleet import Lab
from sqs_fleet.lab.node import HOST_ADDRESS, exec_in, missing_requirements, node_dir
from sqs_fleet.stack import Stack
from support.ansible_runs import assert_ok
from support.polling import wait_until

pytestmark = pytest.mark.skipif(missing_requirements() is not None, reason=f"{missing_requirements()}")


def site_variables(lab: Lab, **extra: object) -> dict:
    return lab.site_variables(fleet_poll_interval=2, **extra)


@pytest.fixture(scope="module")
def baked_user_data(lab, run_playbook, names) -> str:
    """The stack (stock), the worker image of this commit (image.yml), then the stack in baked mode."""
    for playbook, extra in (("site.yml", {}), ("image.yml", {}), ("site.yml", {"fleet_image": "baked"})):
        run = run_playbook(playbook, env=lab.environment(), extra_vars=site_variables(lab, **extra))
        assert_ok(run, [playbook])
    return lab.launch_template_user_data(names.launch_template)


def launch_template_image(lab: Lab, names: Stack) -> dict:
    ec2 = lab.client("ec2")
    data = ec2.describe_launch_template_versions(LaunchTemplateName=names.launch_template, Versions=["$Latest"])
    image_id = data["LaunchTemplateVersions"][0]["LaunchTemplateData"]["ImageId"]
    image: dict = ec2.describe_images(ImageIds=[image_id])["Images"][0]
    return image


def begin_launch(lab: Lab, group: str, name: str) -> None:
    hooks = lab.client("autoscaling").describe_lifecycle_hooks(AutoScalingGroupName=group)["LifecycleHooks"]
    launching = next(h for h in hooks if h["LifecycleTransition"] == "autoscaling:EC2_INSTANCE_LAUNCHING")
    lab.actions.begin(name, group, launching)


def boot_from_the_baked_image(lab: Lab, names: Stack, name: str, user_data: str) -> str:
    """Boot the instance `name` from the image baked at the lab's commit; once the node has completed its launch
    action with CONTINUE and cloud-init has finished (the action may come first), its bootstrap log."""
    begin_launch(lab, names.group_name, name)
    lab.boot_worker(name, user_data, wait_for_system=False, image_commit=lab.commit)
    launch = wait_until(lambda: lab.actions.settled(name), 180, "the launch action completed by the node")
    exec_in(name, ["cloud-init", "status", "--wait"])
    log = exec_in(name, ["cat", "/var/log/sqs-fleet-bootstrap.log"]).stdout
    assert (launch.hook, launch.result) == ("launch", "CONTINUE"), log[-3000:]
    return log


def test_a_baked_node_consumes_with_nothing_installed_or_fetched(lab, names, baked_user_data):
    image = launch_template_image(lab, names)
    assert image["Name"] == f"sqs-fleet-worker-{lab.commit}"
    assert {"Key": "sqs-fleet:commit", "Value": lab.commit} in image["Tags"]
    # No git server at all: a baked boot of the pinned commit never needs one.
    unreachable = baked_user_data.replace(lab.repo_url, f"git://{HOST_ADDRESS}:1/missing.git")
    assert "readonly IMAGE=baked" in unreachable and "missing.git" in unreachable
    name = "i-0ba4ed00000000001"
    try:
        log = boot_from_the_baked_image(lab, names, name, unreachable)
        assert "bootstrap: configure " in log and f"baked image of {lab.commit}" in log, log[-3000:]
        assert "ansible-pull" not in log and "bootstrap: done" in log, log[-3000:]
        produced = lab.produce(names.queue_name, "VH-BAKED")
        assert produced.returncode == 0, produced.stderr
        wait_until(lambda: '"vehicleId": "VH-BAKED"' in exec_in(
            name, ["cat", "/var/log/sqs-consumer/consumer.log"]).stdout, 60, "the vehicle in the consumer log")
        assert exec_in(name, ["systemctl", "is-active", "sqs-lifecycle-watcher"]).stdout.strip() == "active"
        # What the node wrote over its image: no package manager ran, nothing was fetched into the checkout.
        upper = node_dir(name) / "upper"
        for untouched in ("var/log/apt/history.log", "var/lib/apt/lists", "var/cache/apt/archives",
                          "opt/sqs-fleet/.git/FETCH_HEAD", "opt/sqs-consumer/consumer.py"):
            assert not (upper / untouched).exists(), f"the baked boot wrote {untouched}"
        assert (upper / "etc/sqs-consumer/consumer.env").exists()
    finally:
        lab.remove_worker(name)


def test_a_stale_baked_image_falls_back_to_ansible_pull_of_the_pinned_commit(lab, names, baked_user_data,
                                                                             run_playbook):
    newer = lab.commit_ahead()
    site = run_playbook("site.yml", env=lab.environment(),
                        extra_vars=site_variables(lab, fleet_image="baked", fleet_repo_version=newer))
    assert_ok(site, ["site.yml"])
    assert f"no sqs-fleet-worker image of commit {newer}" in site.output
    assert launch_template_image(lab, names)["Name"] == f"sqs-fleet-worker-{lab.commit}"  # the newest there is
    user_data = lab.launch_template_user_data(names.launch_template)
    name = "i-0ba4ed00000000002"
    try:
        log = boot_from_the_baked_image(lab, names, name, user_data)
        assert (f"bootstrap: STALE IMAGE: built from {lab.commit}, the stack pins {newer}: falling back to "
                f"ansible-pull of {newer}") in log, log[-3000:]
        assert "bootstrap: configure" not in log and "bootstrap: ansible-pull" in log, log[-3000:]
        assert exec_in(name, ["git", "-C", "/opt/sqs-fleet", "rev-parse", "HEAD"]).stdout.strip() == newer
        assert exec_in(name, ["systemctl", "is-active", "sqs-consumer"]).stdout.strip() == "active"
    finally:
        lab.remove_worker(name)
