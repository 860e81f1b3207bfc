"""site.yml records the stack it made in one JSON file; every name in it is what AWS holds, and teardown.yml
removes it."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sqs_fleet import REPO
from support.ansible_runs import ansible_env, assert_ok

KEYS = {"environment", "project", "prefix", "region", "endpoint_url", "account_id", "tags", "queue",
        "dead_letter_queue", "group", "launch_template", "security_group", "instance_profile", "lifecycle_hooks",
        "roles", "log_group", "metric_namespace", "policies", "alarms", "dashboards", "publisher", "scaling", "broker"}


@pytest.fixture(scope="module")
def output_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("stack-output") / "local.json"


@pytest.fixture(scope="module")
def output(emulator, run_playbook, output_file) -> dict[str, Any]:
    emulator.reset()
    assert_ok(run_playbook("site.yml", extra_vars={"stack_output_file": str(output_file)}), ["site.yml"])
    return json.loads(output_file.read_text())


def test_output_has_every_key_and_the_environment(output, emulator):
    assert set(output) == KEYS
    assert (output["environment"], output["prefix"], output["region"]) == ("local", "sqs-fleet-local", "us-east-1")
    assert output["endpoint_url"] == emulator.url
    assert output["tags"] == {"Project": "sqs-fleet", "Environment": "local"}
    assert output["metric_namespace"] == "CWAgent"
    assert output["scaling"] == {"metric_source": "publisher", "period": 60, "idle_window": 180,
                                 "backlog_per_instance": 10}
    assert output["publisher"]["metric"] == {"namespace": "SqsFleet", "name": "Backlog",
                                             "dimensions": [{"Name": "QueueName", "Value": output["queue"]["name"]}]}


def test_queues_resolve_to_the_recorded_url_and_arn(output, aws):
    sqs = aws("sqs")
    for key in ("queue", "dead_letter_queue"):
        queue = output[key]
        assert sqs.get_queue_url(QueueName=queue["name"])["QueueUrl"] == queue["url"]
        attributes = sqs.get_queue_attributes(QueueUrl=queue["url"], AttributeNames=["QueueArn"])["Attributes"]
        assert attributes["QueueArn"] == queue["arn"]
        assert queue["arn"].split(":")[4] == output["account_id"]
    redrive = json.loads(sqs.get_queue_attributes(QueueUrl=output["queue"]["url"], AttributeNames=["RedrivePolicy"])[
        "Attributes"]["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"] == output["dead_letter_queue"]["arn"]


def test_group_template_hook_and_policies_exist_under_the_recorded_names(output, aws):
    autoscaling = aws("autoscaling")
    group = output["group"]
    found = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[group["name"]])["AutoScalingGroups"]
    assert [(g["MinSize"], g["MaxSize"]) for g in found] == [(group["min_size"], group["max_size"])]
    assert found[0]["LaunchTemplate"]["LaunchTemplateName"] == output["launch_template"]
    hooks = autoscaling.describe_lifecycle_hooks(AutoScalingGroupName=group["name"])["LifecycleHooks"]
    assert sorted(h["LifecycleHookName"] for h in hooks) == sorted(output["lifecycle_hooks"].values())
    policies = autoscaling.describe_policies(AutoScalingGroupName=group["name"])["ScalingPolicies"]
    assert {p["PolicyName"] for p in policies} == set(output["policies"].values())
    groups = aws("ec2").describe_security_groups(Filters=[{"Name": "group-name", "Values": [output["security_group"]]}])
    assert len(groups["SecurityGroups"]) == 1


def test_roles_and_instance_profile_exist_with_the_recorded_arns(output, aws):
    iam = aws("iam")
    for role in output["roles"].values():
        assert iam.get_role(RoleName=role["name"])["Role"]["Arn"] == role["arn"]
    profile = iam.get_instance_profile(InstanceProfileName=output["instance_profile"])["InstanceProfile"]
    assert [r["RoleName"] for r in profile["Roles"]] == [output["roles"]["consumer"]["name"]]


def test_alarms_dashboards_and_log_group_exist_under_the_recorded_names(output, aws):
    cloudwatch = aws("cloudwatch")
    alarms = cloudwatch.describe_alarms(AlarmNames=list(output["alarms"].values()))["MetricAlarms"]
    assert sorted(a["AlarmName"] for a in alarms) == sorted(output["alarms"].values())
    assert set(output["alarms"]) == {"scale_out", "scale_in", "dead_letters", "oldest_message", "publisher_stale"}
    every_alarm = cloudwatch.describe_alarms(AlarmNamePrefix=output["prefix"])["MetricAlarms"]
    assert {a["AlarmName"] for a in every_alarm} == set(output["alarms"].values())
    dashboards = cloudwatch.list_dashboards(DashboardNamePrefix=output["prefix"])["DashboardEntries"]
    assert {d["DashboardName"] for d in dashboards} == set(output["dashboards"].values())
    groups = aws("logs").describe_log_groups(logGroupNamePrefix=output["log_group"])["logGroups"]
    assert [g["logGroupName"] for g in groups] == [output["log_group"]]


def test_rerun_and_check_mode_leave_the_output_unchanged(output, run_playbook, output_file):
    before = output_file.read_text()
    for args in ((), ("--check",)):
        run = run_playbook("site.yml", *args, extra_vars={"stack_output_file": str(output_file)})
        assert_ok(run, ["site.yml", *args])
        assert run.stats["changed"] == 0
        assert output_file.read_text() == before


def test_output_is_rendered_from_the_inventory_alone(output, emulator, tmp_path):
    """group_vars hold every name: the same dict without AWS, only what AWS knows left null."""
    result = subprocess.run(  # noqa: S603 - the project's own inventory
        [str(Path(sys.executable).parent / "ansible"), "localhost", "-m", "ansible.builtin.debug",
         "-a", "var=stack_output"],
        cwd=REPO, capture_output=True, text=True, check=True, timeout=120,
        env={**ansible_env(emulator, tmp_path), "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1"},
    )
    rendered = json.loads(result.stdout)["plays"][0]["tasks"][0]["hosts"]["localhost"]["stack_output"]
    expected = copy.deepcopy(output)
    expected["account_id"] = None
    for queue in (expected["queue"], expected["dead_letter_queue"]):
        queue.update(url=None, arn=None)
    for role in expected["roles"].values():
        role["arn"] = None
    assert rendered == expected


def test_teardown_removes_the_output(run_playbook, output_file, output):
    assert output_file.exists()
    assert_ok(run_playbook("teardown.yml", extra_vars={"stack_output_file": str(output_file)}), ["teardown.yml"])
    assert not output_file.exists()
