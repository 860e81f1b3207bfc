#!/usr/bin/python
# Why a project module: amazon.aws.autoscaling_group calls UpdateAutoScalingGroup on every run, compares
# its tags with fields AWS adds (ResourceId, ResourceType), so every rerun reports "changed", and in check
# mode it reports "changed" for any existing group. This module changes only what differs, and leaves
# the desired capacity to the scaling policies once the group exists.
from __future__ import annotations

DOCUMENTATION = r"""
module: scaling_group
short_description: Create, update or delete an EC2 Auto Scaling group built from a launch template
options:
  name: {description: Group name., type: str, required: true}
  state: {description: Present or absent., type: str, default: present, choices: [present, absent]}
  launch_template_name: {description: Launch template the group launches from., type: str}
  launch_template_version: {description: Template version., type: str, default: $Latest}
  min_size: {description: Smallest size., type: int}
  max_size: {description: Largest size., type: int}
  subnet_ids: {description: Subnets (several availability zones)., type: list, elements: str}
  health_check_type: {description: EC2 or ELB., type: str, default: EC2}
  metrics_granularity: {description: Group metrics collection granularity., type: str, default: 1Minute}
  metrics:
    description: Group metrics to collect (the size metrics the dashboards and capacity figures use).
    type: list
    elements: str
    default: [GroupMinSize, GroupMaxSize, GroupDesiredCapacity, GroupInServiceInstances, GroupPendingInstances,
              GroupTerminatingInstances, GroupTotalInstances]
  tags: {description: Tags, propagated to instances., type: dict, default: {}}
  wait_timeout: {description: Seconds to wait for a deleted group to disappear., type: int, default: 600}
extends_documentation_fragment: [amazon.aws.common.modules, amazon.aws.region.modules, amazon.aws.boto3]
"""

RETURN = r"""
group: {description: The group as AWS describes it., returned: when present, type: dict}
"""

import time

try:
    import botocore
except ImportError:
    pass  # AnsibleAWSModule reports a missing botocore

from ansible.module_utils.fleet import matches
from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule


def describe(client, name):
    groups = client.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"]
    return groups[0] if groups else None


def wanted_settings(params):
    return {
        "AutoScalingGroupName": params["name"],
        "LaunchTemplate": {
            "LaunchTemplateName": params["launch_template_name"],
            "Version": params["launch_template_version"],
        },
        "MinSize": params["min_size"],
        "MaxSize": params["max_size"],
        "VPCZoneIdentifier": ",".join(sorted(params["subnet_ids"])),
        "HealthCheckType": params["health_check_type"],
    }


def settings_match(wanted, group):
    current = dict(group, VPCZoneIdentifier=",".join(sorted(group.get("VPCZoneIdentifier", "").split(","))))
    return matches(wanted, current)


def delete(module, client, group):
    if module.check_mode:
        return
    client.delete_auto_scaling_group(AutoScalingGroupName=group["AutoScalingGroupName"], ForceDelete=True)
    deadline = time.monotonic() + module.params["wait_timeout"]
    while describe(client, group["AutoScalingGroupName"]) and time.monotonic() < deadline:
        time.sleep(5)


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
            tags=dict(type="dict", default={}),
            wait_timeout=dict(type="int", default=600),
        ),
        required_if=[("state", "present", ["launch_template_name", "min_size", "max_size", "subnet_ids"])],
        supports_check_mode=True,
    )
    params = module.params
    client = module.client("autoscaling")
    try:
        group = describe(client, params["name"])
        if params["state"] == "absent":
            if group:
                delete(module, client, group)
            module.exit_json(changed=group is not None)

        wanted = wanted_settings(params)
        wanted_tags = {str(k): str(v) for k, v in params["tags"].items()}
        changed = False
        if group is None:
            changed = True
            if not module.check_mode:
                # Created at its minimum; from then on the scaling policies own the desired capacity.
                client.create_auto_scaling_group(
                    DesiredCapacity=params["min_size"],
                    Tags=[
                        {"Key": k, "Value": v, "PropagateAtLaunch": True, "ResourceType": "auto-scaling-group",
                         "ResourceId": params["name"]}
                        for k, v in wanted_tags.items()
                    ],
                    **wanted,
                )
                group = describe(client, params["name"])
        elif not settings_match(wanted, group):
            changed = True
            if not module.check_mode:
                client.update_auto_scaling_group(**wanted)
        if group is not None:
            have_tags = {t["Key"]: (t["Value"], t.get("PropagateAtLaunch")) for t in group.get("Tags", [])}
            stale = {k: v for k, v in wanted_tags.items() if have_tags.get(k) != (v, True)}
            if stale:
                changed = True
                if not module.check_mode:
                    client.create_or_update_tags(Tags=[
                        {"Key": k, "Value": v, "PropagateAtLaunch": True, "ResourceType": "auto-scaling-group",
                         "ResourceId": params["name"]}
                        for k, v in stale.items()
                    ])
            enabled = {m["Metric"] for m in group.get("EnabledMetrics", [])}
            missing = sorted(set(params["metrics"]) - enabled)
            if missing:
                changed = True
                if not module.check_mode:
                    client.enable_metrics_collection(
                        AutoScalingGroupName=params["name"], Granularity=params["metrics_granularity"], Metrics=missing
                    )
        if changed and not module.check_mode:
            group = describe(client, params["name"])
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as error:
        module.fail_json_aws(error, msg=f"Could not manage Auto Scaling group {params['name']}")
    module.exit_json(changed=changed, group=group or {})


if __name__ == "__main__":
    main()
