"""sqs_fleet.aws.autoscaling_step_policy on the emulator: create, rerun, check mode, update, delete; bounds
equal to 0 kept (community.aws.autoscaling_policy drops them) and the Auto Scaling API's step rules checked
before any call (the emulator checks none)."""

from __future__ import annotations

from typing import Any

import pytest

from support.ansible_runs import ok

GROUP = "modules-policy-group"
NAME = "modules-scale-out"
OUT_STEPS = [
    {"lower_bound": 0, "upper_bound": 10, "adjustment": 1},
    {"lower_bound": 10, "adjustment": 2},
]


@pytest.fixture
def group(aws) -> str:
    """An Auto Scaling group of 0 to 4 for the policies to belong to."""
    ec2, autoscaling = aws("ec2"), aws("autoscaling")
    if not autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[GROUP])["AutoScalingGroups"]:
        if not ec2.describe_launch_templates(
                Filters=[{"Name": "launch-template-name", "Values": [GROUP]}])["LaunchTemplates"]:
            ec2.create_launch_template(LaunchTemplateName=GROUP, LaunchTemplateData={
                "ImageId": ec2.describe_images()["Images"][0]["ImageId"], "InstanceType": "t3.micro"})
        subnets = ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"]
        autoscaling.create_auto_scaling_group(
            AutoScalingGroupName=GROUP, LaunchTemplate={"LaunchTemplateName": GROUP}, MinSize=0, MaxSize=4,
            DesiredCapacity=0, VPCZoneIdentifier=subnets[0]["SubnetId"])
    return GROUP


def policy_on_emulator(aws, name: str = NAME) -> dict[str, Any] | None:
    policies = aws("autoscaling").describe_policies(AutoScalingGroupName=GROUP, PolicyNames=[name])["ScalingPolicies"]
    return policies[0] if policies else None


def bounds(policy: dict[str, Any]) -> list[tuple[float | None, float | None, int]]:
    return [(s.get("MetricIntervalLowerBound"), s.get("MetricIntervalUpperBound"), s["ScalingAdjustment"])
            for s in policy["StepAdjustments"]]


def test_policy_lifecycle(run_module, aws, group):
    aws("autoscaling").delete_policy(AutoScalingGroupName=group, PolicyName=NAME)
    present = {"name": NAME, "group_name": group, "adjustment_type": "ExactCapacity",
               "estimated_instance_warmup": 60, "step_adjustments": OUT_STEPS}

    planned = ok(run_module("autoscaling_step_policy", present, "--check"))
    assert planned["changed"] and planned["diff"]["before"] == {} and planned["arn"] is None
    assert policy_on_emulator(aws) is None, "check mode created the policy"

    created = ok(run_module("autoscaling_step_policy", present))
    policy = policy_on_emulator(aws)
    assert created["changed"] and policy and created["arn"] == policy["PolicyARN"]
    assert bounds(policy) == [(0.0, 10.0, 1), (10.0, None, 2)]
    assert (policy["PolicyType"], policy["AdjustmentType"], policy["EstimatedInstanceWarmup"]) == (
        "StepScaling", "ExactCapacity", 60)

    assert not ok(run_module("autoscaling_step_policy", present))["changed"], "a rerun changed the policy"
    assert not ok(run_module("autoscaling_step_policy", present, "--check"))["changed"]

    steps = [{"lower_bound": 0, "upper_bound": 10, "adjustment": 1},
             {"lower_bound": 10, "upper_bound": 20, "adjustment": 2},
             {"lower_bound": 20, "adjustment": 3}]
    update = dict(present, step_adjustments=steps)
    planned = ok(run_module("autoscaling_step_policy", update, "--check"))
    assert planned["changed"] and len(planned["diff"]["after"]["StepAdjustments"]) == 3
    assert bounds(policy_on_emulator(aws)) == [(0.0, 10.0, 1), (10.0, None, 2)], "check mode changed the policy"
    assert ok(run_module("autoscaling_step_policy", update))["changed"]
    assert bounds(policy_on_emulator(aws)) == [(0.0, 10.0, 1), (10.0, 20.0, 2), (20.0, None, 3)]
    assert not ok(run_module("autoscaling_step_policy", update))["changed"]

    absent = {"name": NAME, "group_name": group, "state": "absent"}
    planned = ok(run_module("autoscaling_step_policy", absent, "--check"))
    assert planned["changed"] and planned["diff"]["after"] == {}
    assert policy_on_emulator(aws), "check mode deleted the policy"
    assert ok(run_module("autoscaling_step_policy", absent))["changed"]
    assert policy_on_emulator(aws) is None
    assert not ok(run_module("autoscaling_step_policy", absent))["changed"], "deleting a missing policy changed it"


def test_upper_bound_zero_is_kept(run_module, aws, group):
    name = "modules-scale-in"
    args = {"name": name, "group_name": group, "adjustment_type": "ExactCapacity",
            "step_adjustments": [{"upper_bound": 0, "adjustment": 0}]}
    assert ok(run_module("autoscaling_step_policy", args))["changed"]
    assert bounds(policy_on_emulator(aws, name)) == [(None, 0.0, 0)]
    assert not ok(run_module("autoscaling_step_policy", args))["changed"]


def test_steps_breaking_the_rules_fail_before_any_call(run_module, aws, group):
    name = "modules-gap"
    args = {"name": name, "group_name": group, "step_adjustments": [
        {"lower_bound": 0, "upper_bound": 10, "adjustment": 1}, {"lower_bound": 20, "adjustment": 2}]}
    result = run_module("autoscaling_step_policy", args)
    assert result.get("failed") and "steps leave a gap between 10.0 and 20.0" in result["msg"]
    assert policy_on_emulator(aws, name) is None


def test_absent_policy_of_a_missing_group_is_no_change(run_module):
    args = {"name": NAME, "group_name": "modules-no-group", "state": "absent"}
    result = ok(run_module("autoscaling_step_policy", args))
    assert not result["changed"]
