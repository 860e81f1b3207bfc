"""image.yml bakes the workers' image on a builder in the stack's network, read back from the emulator: the
image of a commit with its tags, the builder as it was launched (IMDSv2, encrypted root volume, no instance
profile, the workers' security group and subnets, user-data that runs ansible-pull of that commit in the bake
phase), always terminated; a rerun makes nothing; a failed bake leaves neither builder nor image; a version
that resolves to no commit fails before anything is launched.

The emulator runs no user-data: with image_emulated_builder (inventory/local) the playbook stops the builder
itself, as the bake's power-off would on AWS."""

from __future__ import annotations

import base64
import subprocess
from typing import Any

import pytest

from sqs_fleet import REPO
from support.ansible_runs import PlaybookRun, assert_ok

PREFIX = "sqs-fleet-local"
IMAGE = "sqs-fleet-worker"
TAGS = {"Project": "sqs-fleet", "Environment": "local"}
# Commits of no repository: the emulator bakes nothing, and each test has an image of its own.
BUILT = "1" * 40
FAILED = "2" * 40


def images(aws, commit: str) -> list[dict[str, Any]]:
    return aws("ec2").describe_images(Owners=["self"], Filters=[{"Name": "name", "Values": [f"{IMAGE}-{commit}"]}])[
        "Images"]


def builders(aws, commit: str) -> list[dict[str, Any]]:
    found = aws("ec2").describe_instances(Filters=[{"Name": "tag:sqs-fleet:builder", "Values": [commit]}])
    return [i for r in found["Reservations"] for i in r["Instances"]]


def task_results(run: PlaybookRun, name: str) -> list[dict[str, Any]]:
    return [task["hosts"]["localhost"] for play in run.report["plays"] for task in play["tasks"]
            if task["task"]["name"] in (name, f"image : {name}") and "localhost" in task["hosts"]]


def tags(resource: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in resource.get("Tags", [])}


@pytest.fixture(scope="module")
def built(deployed, run_playbook, aws) -> PlaybookRun:
    run = run_playbook("image.yml", extra_vars={"fleet_repo_version": BUILT})
    assert_ok(run, ["image.yml"])
    return run


def test_the_image_of_the_commit_is_made_and_tagged(built, aws):
    [image] = images(aws, BUILT)
    assert image["State"] == "available"
    assert tags(image) == {**TAGS, "Name": f"{IMAGE}-{BUILT}", "sqs-fleet:commit": BUILT, "sqs-fleet:image": IMAGE}
    output = task_results(built, "Show the image")[0]["image_output"]
    assert output == {"name": f"{IMAGE}-{BUILT}", "image_id": image["ImageId"], "commit": BUILT, "made": True}


def test_the_builder_ran_locked_down_in_the_workers_network_and_is_terminated(built, aws):
    ec2 = aws("ec2")
    [builder] = builders(aws, BUILT)
    assert builder["State"]["Name"] == "terminated"
    assert builder["MetadataOptions"]["HttpTokens"] == "required"
    assert builder["MetadataOptions"]["HttpPutResponseHopLimit"] == 1
    assert "IamInstanceProfile" not in builder
    assert not builder.get("PublicIpAddress")
    [group] = ec2.describe_security_groups(
        Filters=[{"Name": "group-name", "Values": [f"{PREFIX}-workers"]},
                 {"Name": "tag:Project", "Values": ["sqs-fleet"]}]
    )["SecurityGroups"]
    assert [g["GroupId"] for g in builder["SecurityGroups"]] == [group["GroupId"]]
    workers = aws("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[f"{PREFIX}-workers"])
    assert builder["SubnetId"] in workers["AutoScalingGroups"][0]["VPCZoneIdentifier"].split(",")
    assert tags(builder)["sqs-fleet:builder"] == BUILT and tags(builder)["Project"] == "sqs-fleet"
    shutdown = ec2.describe_instance_attribute(InstanceId=builder["InstanceId"],
                                               Attribute="instanceInitiatedShutdownBehavior")
    assert shutdown["InstanceInitiatedShutdownBehavior"]["Value"] == "stop"
    # The emulator shows no volume encryption on an instance, and deletes the volume with it: the launch's
    # request, as the module sent it, says what the root volume was.
    [launch] = task_results(built, "Launch the builder")
    [volume] = launch["invocation"]["module_args"]["volumes"]
    assert volume["ebs"]["encrypted"] is True and volume["ebs"]["volume_type"] == "gp3"
    assert volume["device_name"] == builder["RootDeviceName"]


def test_the_builder_bakes_that_commit_with_the_node_playbook(built, aws):
    [builder] = builders(aws, BUILT)
    user_data = aws("ec2").describe_instance_attribute(InstanceId=builder["InstanceId"], Attribute="userData")
    script = base64.b64decode(user_data["UserData"]["Value"]).decode()
    assert f"readonly COMMIT={BUILT}" in script
    assert ('ansible-pull --url "${REPO_URL}" --checkout "${COMMIT}" --directory "${CHECKOUT}" --full' in script)
    assert '-e node_phase=bake -e node_image_commit="${COMMIT}" playbooks/node.yml' in script
    assert "readonly REPO_URL=git://10.77.0.1/sqs-fleet.git" in script
    assert "cloud-init clean --logs" in script and "systemctl poweroff" in script
    assert "sqs-fleet-image: FAILED" in script


def test_a_rerun_makes_nothing(built, run_playbook, aws):
    again = run_playbook("image.yml", extra_vars={"fleet_repo_version": BUILT})
    assert_ok(again, ["image.yml rerun"])
    assert again.stats["changed"] == 0
    assert len(images(aws, BUILT)) == 1
    assert len(builders(aws, BUILT)) == 1


def test_a_failed_bake_leaves_no_builder_and_no_image(deployed, run_playbook, aws):
    # A builder that never powers off (no emulated stop), and a wait of two seconds.
    run = run_playbook("image.yml", extra_vars={"fleet_repo_version": FAILED, "image_emulated_builder": False,
                                                "image_build_timeout": 2, "image_poll_delay": 1})
    assert run.returncode != 0
    [builder] = builders(aws, FAILED)
    message = " ".join(run.failure_messages())
    assert "Wait for the builder to bake and power itself off" in message, message
    assert "image_build_timeout" in message and builder["InstanceId"] in message, message
    assert "get-console-output" in message, message
    assert builder["State"]["Name"] in ("shutting-down", "terminated")
    assert images(aws, FAILED) == []


def test_a_version_that_resolves_to_no_commit_fails_before_any_launch(deployed, run_playbook, aws):
    url = f"file://{REPO}"
    run = run_playbook("image.yml", extra_vars={"fleet_repo_url": url, "fleet_repo_version": "no-such-version"})
    assert run.returncode != 0
    message = " ".join(run.failure_messages())
    assert "'no-such-version' does not resolve to a commit" in message and url in message, message
    assert not task_results(run, "Launch the builder")


def test_a_branch_resolves_to_its_commit_and_check_mode_launches_nothing(deployed, run_playbook, aws):
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True,  # noqa: S603, S607
                          check=True).stdout.strip()
    run = run_playbook("image.yml", "--check", extra_vars={"fleet_repo_url": f"file://{REPO}",
                                                           "fleet_repo_version": "HEAD"})
    assert_ok(run, ["image.yml --check"])
    output = task_results(run, "Show the image")[0]["image_output"]
    assert output == {"name": f"{IMAGE}-{head}", "image_id": None, "commit": head, "made": False}
    assert run.stats["changed"] == 1  # the image it would bake
    assert images(aws, head) == [] and builders(aws, head) == []
