"""sqs_fleet.aws.scaling_group on the emulator: create, rerun without change (the amazon.aws module reports
one on every run), check mode, update that leaves the desired capacity alone, delete."""

from __future__ import annotations

from typing import Any

from support.ansible_runs import ok

NAME = "modules-group"
METRICS = {"GroupMinSize", "GroupMaxSize", "GroupDesiredCapacity", "GroupInServiceInstances",
           "GroupPendingInstances", "GroupTerminatingInstances", "GroupTotalInstances"}


def launch_template(aws, name: str) -> str:
    ec2 = aws("ec2")
    found = ec2.describe_launch_templates(Filters=[{"Name": "launch-template-name", "Values": [name]}])
    if not found["LaunchTemplates"]:
        image = ec2.describe_images()["Images"][0]["ImageId"]
        ec2.create_launch_template(LaunchTemplateName=name,
                                   LaunchTemplateData={"ImageId": image, "InstanceType": "t3.micro"})
    return name


def default_subnets(aws) -> list[str]:
    subnets = aws("ec2").describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"]
    return sorted(s["SubnetId"] for s in subnets)[:2]


def group_on_emulator(aws) -> dict[str, Any] | None:
    groups = aws("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[NAME])["AutoScalingGroups"]
    return groups[0] if groups else None


def test_group_lifecycle(run_module, aws):
    if group_on_emulator(aws):
        aws("autoscaling").delete_auto_scaling_group(AutoScalingGroupName=NAME, ForceDelete=True)
    subnets = default_subnets(aws)
    present = {
        "name": NAME, "launch_template_name": launch_template(aws, f"{NAME}-template"),
        "min_size": 0, "max_size": 2, "subnet_ids": subnets, "tags": {"Project": "sqs-fleet"},
    }

    planned = ok(run_module("scaling_group", present, "--check"))
    assert planned["changed"] and planned["diff"]["before"] == {} and planned["diff"]["after"]["MaxSize"] == 2
    assert group_on_emulator(aws) is None, "check mode created the group"

    created = ok(run_module("scaling_group", present))
    group = group_on_emulator(aws)
    assert created["changed"] and group and created["group"]["AutoScalingGroupName"] == NAME
    assert (group["MinSize"], group["MaxSize"], group["DesiredCapacity"]) == (0, 2, 0)
    assert group["LaunchTemplate"]["LaunchTemplateName"] == f"{NAME}-template"
    assert sorted(group["VPCZoneIdentifier"].split(",")) == subnets
    assert [(t["Key"], t["Value"], t["PropagateAtLaunch"]) for t in group["Tags"]] == [("Project", "sqs-fleet", True)]
    assert {m["Metric"] for m in group["EnabledMetrics"]} == METRICS

    assert not ok(run_module("scaling_group", present))["changed"], "a rerun changed the group"
    assert not ok(run_module("scaling_group", present, "--check"))["changed"]

    # The scaling policies own the desired capacity: an update must leave it where they put it.
    aws("autoscaling").set_desired_capacity(AutoScalingGroupName=NAME, DesiredCapacity=1)
    update = dict(present, max_size=4, tags={"Project": "sqs-fleet", "Environment": "modules"})
    planned = ok(run_module("scaling_group", update, "--check"))
    assert planned["changed"]
    before, after = planned["diff"]["before"], planned["diff"]["after"]
    assert (before["MaxSize"], after["MaxSize"]) == (2, 4)
    assert before["Tags"] == {"Project": "sqs-fleet"}
    assert after["Tags"] == {"Project": "sqs-fleet", "Environment": "modules"}
    assert group_on_emulator(aws)["MaxSize"] == 2, "check mode changed the group"
    assert ok(run_module("scaling_group", update))["changed"]
    group = group_on_emulator(aws)
    assert (group["MaxSize"], group["DesiredCapacity"]) == (4, 1)
    assert {t["Key"]: t["Value"] for t in group["Tags"]} == {"Project": "sqs-fleet", "Environment": "modules"}
    assert not ok(run_module("scaling_group", update))["changed"]

    absent = {"name": NAME, "state": "absent"}
    planned = ok(run_module("scaling_group", absent, "--check"))
    assert planned["changed"] and planned["diff"]["before"]["MaxSize"] == 4 and planned["diff"]["after"] == {}
    assert group_on_emulator(aws), "check mode deleted the group"
    assert ok(run_module("scaling_group", absent))["changed"]
    assert group_on_emulator(aws) is None
    assert not ok(run_module("scaling_group", absent))["changed"], "deleting a missing group changed it"


SPOT = f"{NAME}-spot"


def test_spot_group_with_a_mixed_instances_policy_and_capacity_rebalancing(run_module, aws):
    autoscaling = aws("autoscaling")
    if autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[SPOT])["AutoScalingGroups"]:
        autoscaling.delete_auto_scaling_group(AutoScalingGroupName=SPOT, ForceDelete=True)
    spot = {
        "name": SPOT, "launch_template_name": launch_template(aws, f"{NAME}-template"), "min_size": 0,
        "max_size": 2, "subnet_ids": default_subnets(aws), "capacity_rebalance": True,
        "mixed_instances": {"instance_types": ["t3.micro", "t3a.micro", "t2.micro"]},
    }

    def read() -> dict[str, Any]:
        group: dict[str, Any] = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[SPOT])[
            "AutoScalingGroups"][0]
        return group

    planned = ok(run_module("scaling_group", spot, "--check"))
    assert planned["changed"] and planned["diff"]["after"]["MixedInstancesPolicy"]["InstanceTypes"] == [
        "t3.micro", "t3a.micro", "t2.micro"]
    assert ok(run_module("scaling_group", spot))["changed"]
    # What the emulator stores of it, read back.
    group = read()
    policy = group["MixedInstancesPolicy"]
    assert policy["LaunchTemplate"]["LaunchTemplateSpecification"]["LaunchTemplateName"] == f"{NAME}-template"
    assert [o["InstanceType"] for o in policy["LaunchTemplate"]["Overrides"]] == ["t3.micro", "t3a.micro", "t2.micro"]
    assert policy["InstancesDistribution"] == {"OnDemandBaseCapacity": 0, "OnDemandPercentageAboveBaseCapacity": 0,
                                               "SpotAllocationStrategy": "price-capacity-optimized"}
    assert group["CapacityRebalance"] is True
    assert not ok(run_module("scaling_group", spot))["changed"], "a rerun changed the Spot group"
    assert not ok(run_module("scaling_group", spot, "--check"))["changed"]

    based = dict(spot, mixed_instances=dict(spot["mixed_instances"], on_demand_base_capacity=1))
    planned = ok(run_module("scaling_group", based, "--check"))
    assert planned["changed"] and planned["diff"]["before"]["MixedInstancesPolicy"]["OnDemandBaseCapacity"] == 0
    assert planned["diff"]["after"]["MixedInstancesPolicy"]["OnDemandBaseCapacity"] == 1
    assert ok(run_module("scaling_group", based))["changed"]
    assert read()["MixedInstancesPolicy"]["InstancesDistribution"]["OnDemandBaseCapacity"] == 1
    assert not ok(run_module("scaling_group", based))["changed"]
    assert ok(run_module("scaling_group", {"name": SPOT, "state": "absent"}))["changed"]
