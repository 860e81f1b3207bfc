#!/usr/bin/python
# Why a project module: amazon.aws.autoscaling_group calls UpdateAutoScalingGroup on every run, compares
# its tags with fields AWS adds (ResourceId, ResourceType), so every rerun reports "changed", and in check
# mode it reports "changed" for any existing group. This module changes only what differs, and leaves
# the desired capacity to the scaling policies once the group exists.
from __future__ import annotations

DOCUMENTATION = r"""
module: scaling_group
short_description: Create, update or delete an EC2 Auto Scaling group built from a launch template
version_added: 1.0.0
author: The sqs-fleet authors
description:
  - Creates the group at its minimum size; from then on its desired capacity belongs to the scaling
    policies, so a rerun never resets it.
  - Updates only the settings, tags and group metrics that differ; tags and metrics are added, never
    removed.
  - With I(mixed_instances), the group launches from a mixed-instances policy (Spot over several instance types)
    instead of the launch template alone.
  - Deleting a group also terminates its instances and removes its policies and lifecycle hooks.
options:
  name:
    description: Group name.
    type: str
    required: true
  state:
    description: Whether the group should exist.
    type: str
    default: present
    choices: [present, absent]
  launch_template_name:
    description: Launch template the group launches from, required when I(state=present).
    type: str
  launch_template_version:
    description: Template version.
    type: str
    default: $Latest
  min_size:
    description: Smallest size, required when I(state=present).
    type: int
  max_size:
    description: Largest size, required when I(state=present).
    type: int
  subnet_ids:
    description: Subnets the instances launch in (several availability zones), required when I(state=present).
    type: list
    elements: str
  health_check_type:
    description: Health check the group replaces instances on.
    type: str
    default: EC2
    choices: [EC2, ELB]
  metrics_granularity:
    description: Group metrics collection granularity.
    type: str
    default: 1Minute
  metrics:
    description: Group metrics to collect (the size metrics the dashboards and capacity figures use).
    type: list
    elements: str
    default: [GroupMinSize, GroupMaxSize, GroupDesiredCapacity, GroupInServiceInstances, GroupPendingInstances,
              GroupTerminatingInstances, GroupTotalInstances]
  mixed_instances:
    description:
      - A mixed-instances policy instead of the launch template alone, for Spot capacity over several instance
        types of similar size (the launch template's instance type is overridden by these).
      - Omit for On-Demand instances of the launch template's type.
    type: dict
    suboptions:
      instance_types:
        description: Instance types to launch from, in order of preference (at least two for Spot).
        type: list
        elements: str
        required: true
      on_demand_base_capacity:
        description: Instances kept On-Demand before any Spot capacity.
        type: int
        default: 0
      on_demand_percentage_above_base:
        description: Percentage of the capacity above the base that is On-Demand (0 is all Spot).
        type: int
        default: 0
      spot_allocation_strategy:
        description: How Spot capacity is chosen among the pools.
        type: str
        default: price-capacity-optimized
        choices: [price-capacity-optimized, capacity-optimized, capacity-optimized-prioritized, lowest-price]
  capacity_rebalance:
    description: Replace Spot instances at an elevated risk of interruption before they are interrupted.
    type: bool
    default: false
  tags:
    description: Tags of the group, propagated to its instances at launch.
    type: dict
    default: {}
  wait_timeout:
    description:
      - Seconds to wait for a deleted group to disappear. When it is still there (instances still terminating, a
        lifecycle hook holding one), the module fails, naming the group's status and the instances left.
    type: int
    default: 600
notes:
  - Supports check mode and diff mode; the diff shows the settings, tags and metrics this module manages.
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: A group of 0 to 4 workers, its size left to the scaling policies
  sqs_fleet.aws.scaling_group:
    name: workers
    launch_template_name: workers
    min_size: 0
    max_size: 4
    subnet_ids: [subnet-0a1b2c3d, subnet-4e5f6a7b]
    tags: {Project: sqs-fleet, Environment: prod}

- name: Spot over three instance types of one size, one On-Demand instance as a base, rebalanced before interruptions
  sqs_fleet.aws.scaling_group:
    name: workers
    launch_template_name: workers
    min_size: 0
    max_size: 4
    subnet_ids: [subnet-0a1b2c3d, subnet-4e5f6a7b]
    mixed_instances:
      instance_types: [t3.small, t3a.small, t2.small]
      on_demand_base_capacity: 1
    capacity_rebalance: true

- name: Remove the group, its instances, policies and hooks
  sqs_fleet.aws.scaling_group:
    name: workers
    state: absent
"""

RETURN = r"""
group:
  description: The group as DescribeAutoScalingGroups returns it (empty when absent or not yet made in check mode).
  returned: always
  type: dict
  sample:
    AutoScalingGroupName: workers
    MinSize: 0
    MaxSize: 4
    DesiredCapacity: 0
    LaunchTemplate: {LaunchTemplateName: workers, Version: $Latest}
"""

import time

try:
    from botocore.exceptions import BotoCoreError, ClientError
except ImportError:
    pass  # AnsibleAWSModule reports a missing botocore

from ansible_collections.amazon.aws.plugins.module_utils.botocore import is_boto3_error_code
from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
from ansible_collections.amazon.aws.plugins.module_utils.retries import AWSRetry
from ansible_collections.sqs_fleet.aws.plugins.module_utils.aws_rules import matches


def describe(client, name):
    groups = client.describe_auto_scaling_groups(AutoScalingGroupNames=[name], aws_retry=True)["AutoScalingGroups"]
    return groups[0] if groups else None


def wanted_settings(params):
    template = {"LaunchTemplateName": params["launch_template_name"], "Version": params["launch_template_version"]}
    settings = {
        "AutoScalingGroupName": params["name"],
        "MinSize": params["min_size"],
        "MaxSize": params["max_size"],
        "VPCZoneIdentifier": ",".join(sorted(params["subnet_ids"])),
        "HealthCheckType": params["health_check_type"],
        "CapacityRebalance": params["capacity_rebalance"],
    }
    mixed = params["mixed_instances"]
    if not mixed:
        return dict(settings, LaunchTemplate=template)
    return dict(settings, MixedInstancesPolicy={
        "LaunchTemplate": {
            "LaunchTemplateSpecification": template,
            "Overrides": [{"InstanceType": kind} for kind in mixed["instance_types"]],
        },
        "InstancesDistribution": {
            "OnDemandBaseCapacity": mixed["on_demand_base_capacity"],
            "OnDemandPercentageAboveBaseCapacity": mixed["on_demand_percentage_above_base"],
            "SpotAllocationStrategy": mixed["spot_allocation_strategy"],
        },
    })


def sorted_subnets(group):
    return ",".join(sorted(group.get("VPCZoneIdentifier", "").split(",")))


def settings_match(wanted, group):
    return matches(wanted, dict(group, VPCZoneIdentifier=sorted_subnets(group)))


def view(group):
    """What this module manages of a group, for the diff (no timestamps, no instances)."""
    if group is None:
        return {}
    mixed = group.get("MixedInstancesPolicy") or {}
    template = mixed.get("LaunchTemplate", {}).get("LaunchTemplateSpecification") or group.get("LaunchTemplate") or {}
    distribution = mixed.get("InstancesDistribution", {})
    return {
        "AutoScalingGroupName": group["AutoScalingGroupName"],
        "LaunchTemplate": {
            "LaunchTemplateName": template.get("LaunchTemplateName"), "Version": template.get("Version"),
        },
        "MinSize": group["MinSize"],
        "MaxSize": group["MaxSize"],
        "VPCZoneIdentifier": sorted_subnets(group),
        "HealthCheckType": group.get("HealthCheckType"),
        "Tags": {t["Key"]: t["Value"] for t in group.get("Tags", [])},
        "EnabledMetrics": sorted({m["Metric"] for m in group.get("EnabledMetrics", [])}),
        "CapacityRebalance": bool(group.get("CapacityRebalance")),
        "MixedInstancesPolicy": {
            "InstanceTypes": [o.get("InstanceType") for o in mixed.get("LaunchTemplate", {}).get("Overrides", [])],
            "OnDemandBaseCapacity": distribution.get("OnDemandBaseCapacity"),
            "OnDemandPercentageAboveBaseCapacity": distribution.get("OnDemandPercentageAboveBaseCapacity"),
            "SpotAllocationStrategy": distribution.get("SpotAllocationStrategy"),
        } if mixed else None,
    }


def tag_list(name, tags):
    return [
        {"Key": k, "Value": v, "PropagateAtLaunch": True, "ResourceType": "auto-scaling-group", "ResourceId": name}
        for k, v in tags.items()
    ]


def delete(module, client, group):
    """Delete the group and wait for it to go; the group as it still is when the wait runs out, else None."""
    name = group["AutoScalingGroupName"]
    left = None
    try:
        client.delete_auto_scaling_group(AutoScalingGroupName=name, ForceDelete=True, aws_retry=True)
        deadline = time.monotonic() + module.params["wait_timeout"]
        left = describe(client, name)
        while left and time.monotonic() < deadline:
            time.sleep(min(5, max(0.0, deadline - time.monotonic())))
            left = describe(client, name)
    except is_boto3_error_code("ValidationError"):
        pass  # AWS's answer for a group that is already gone
    except (ClientError, BotoCoreError) as error:  # pylint: disable=duplicate-except
        module.fail_json_aws(error, msg=f"Could not delete Auto Scaling group {name}")
    return left


def still_there(group, waited):
    """What a teardown must say when the group outlived the wait: its status and each instance left."""
    instances = ", ".join(f"{i['InstanceId']} {i['LifecycleState']}" for i in group.get("Instances", []))
    return (f"Auto Scaling group {group['AutoScalingGroupName']} is still there after {waited} s "
            f"({group.get('Status') or 'no status'}; instances: {instances or 'none'})")


def main():
    module = AnsibleAWSModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            state=dict(type="str", default="present", choices=["present", "absent"]),
            launch_template_name=dict(type="str"),
            launch_template_version=dict(type="str", default="$Latest"),
            min_size=dict(type="int"),
            max_size=dict(type="int"),
            subnet_ids=dict(type="list", elements="str"),
            health_check_type=dict(type="str", default="EC2", choices=["EC2", "ELB"]),
            metrics_granularity=dict(type="str", default="1Minute"),
            metrics=dict(type="list", elements="str", default=[
                "GroupMinSize", "GroupMaxSize", "GroupDesiredCapacity", "GroupInServiceInstances",
                "GroupPendingInstances", "GroupTerminatingInstances", "GroupTotalInstances",
            ]),
            mixed_instances=dict(type="dict", options=dict(
                instance_types=dict(type="list", elements="str", required=True),
                on_demand_base_capacity=dict(type="int", default=0),
                on_demand_percentage_above_base=dict(type="int", default=0),
                spot_allocation_strategy=dict(type="str", default="price-capacity-optimized", choices=[
                    "price-capacity-optimized", "capacity-optimized", "capacity-optimized-prioritized",
                    "lowest-price"]),
            )),
            capacity_rebalance=dict(type="bool", default=False),
            tags=dict(type="dict", default={}),
            wait_timeout=dict(type="int", default=600),
        ),
        required_if=[("state", "present", ["launch_template_name", "min_size", "max_size", "subnet_ids"])],
        supports_check_mode=True,
    )
    params = module.params
    client = module.client("autoscaling", retry_decorator=AWSRetry.jittered_backoff())
    try:
        group = describe(client, params["name"])
    except (ClientError, BotoCoreError) as error:
        module.fail_json_aws(error, msg=f"Could not read Auto Scaling group {params['name']}")
    before = view(group)

    if params["state"] == "absent":
        if group and not module.check_mode:
            left = delete(module, client, group)
            if left:
                module.fail_json(msg=f"{still_there(left, params['wait_timeout'])}: run the teardown again once "
                                 "it has gone, or wait longer", changed=True, group=left)
        module.exit_json(changed=group is not None, group={}, diff={"before": before, "after": {}})

    mixed = params["mixed_instances"]
    if mixed and (len(mixed["instance_types"]) < 1 or not 0 <= mixed["on_demand_percentage_above_base"] <= 100
                  or mixed["on_demand_base_capacity"] < 0):
        module.fail_json(msg="mixed_instances: at least one instance type, a base of 0 or more and a percentage "
                             "of 0 to 100")
    wanted = wanted_settings(params)
    wanted_tags = {str(k): str(v) for k, v in params["tags"].items()}
    enabled = set(before.get("EnabledMetrics", []))
    missing = sorted(set(params["metrics"]) - enabled)
    have_tags = {t["Key"]: (t["Value"], t.get("PropagateAtLaunch")) for t in (group or {}).get("Tags", [])}
    stale = {k: v for k, v in wanted_tags.items() if have_tags.get(k) != (v, True)}
    after = dict(
        view(wanted),
        Tags=dict(before.get("Tags", {}), **wanted_tags),
        EnabledMetrics=sorted(enabled | set(params["metrics"])),
    )
    changed = group is None or not settings_match(wanted, group) or bool(stale) or bool(missing)

    if changed and not module.check_mode:
        try:
            if group is None:
                # Created at its minimum; from then on the scaling policies own the desired capacity.
                client.create_auto_scaling_group(
                    DesiredCapacity=params["min_size"], Tags=tag_list(params["name"], wanted_tags), aws_retry=True,
                    **wanted,
                )
            else:
                if not settings_match(wanted, group):
                    client.update_auto_scaling_group(**wanted, aws_retry=True)
                if stale:
                    client.create_or_update_tags(Tags=tag_list(params["name"], stale), aws_retry=True)
            if missing:
                client.enable_metrics_collection(
                    AutoScalingGroupName=params["name"], Granularity=params["metrics_granularity"], Metrics=missing,
                    aws_retry=True,
                )
            group = describe(client, params["name"])
        except (ClientError, BotoCoreError) as error:
            action = "update" if before else "create"
            module.fail_json_aws(error, msg=f"Could not {action} Auto Scaling group {params['name']}")
    module.exit_json(changed=changed, group=group or {}, diff={"before": before, "after": after})


if __name__ == "__main__":
    main()
