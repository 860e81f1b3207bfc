#!/usr/bin/python
# Why a project module: community.aws.autoscaling_policy drops step bounds equal to 0 and accepts only
# integer bounds, so a scale-in step {upper: 0} becomes (-inf, +inf), which AWS rejects. This module
# sends the steps exactly as given, checks them against AWS's rules first (the emulator does not), and
# reports a change only when the policy differs.
from __future__ import annotations

DOCUMENTATION = r"""
module: autoscaling_step_policy
short_description: Create, update or delete an EC2 Auto Scaling step scaling policy
description:
  - Idempotent PutScalingPolicy for PolicyType StepScaling; validates the step adjustments against the
    rules of the Auto Scaling API before any call.
options:
  name: {description: Policy name., type: str, required: true}
  group_name: {description: Auto Scaling group name., type: str, required: true}
  state: {description: Present or absent., type: str, default: present, choices: [present, absent]}
  adjustment_type:
    description: How ScalingAdjustment is applied.
    type: str
    default: ChangeInCapacity
    choices: [ChangeInCapacity, ExactCapacity, PercentChangeInCapacity]
  metric_aggregation_type:
    description: Aggregation of the alarm metric.
    type: str
    default: Maximum
    choices: [Minimum, Maximum, Average]
  estimated_instance_warmup: {description: Seconds before a new instance counts in the metric., type: int}
  step_adjustments:
    description:
      - List of dicts with lower_bound, upper_bound (offsets from the alarm threshold; omit or null for
        infinity) and adjustment.
    type: list
    elements: dict
extends_documentation_fragment: [amazon.aws.common.modules, amazon.aws.region.modules, amazon.aws.boto3]
"""

RETURN = r"""
arn: {description: The policy ARN, for alarm actions., returned: when present, type: str}
step_adjustments: {description: The steps as AWS stores them., returned: when present, type: list}
"""

try:
    import botocore
except ImportError:
    pass  # AnsibleAWSModule reports a missing botocore

from ansible.module_utils.fleet import matches, step_adjustment_errors
from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule


def wanted_steps(steps):
    result = []
    for step in steps:
        entry = {"ScalingAdjustment": int(step["adjustment"])}
        if step.get("lower_bound") is not None:
            entry["MetricIntervalLowerBound"] = float(step["lower_bound"])
        if step.get("upper_bound") is not None:
            entry["MetricIntervalUpperBound"] = float(step["upper_bound"])
        result.append(entry)
    return result


def main():
    module = AnsibleAWSModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            group_name=dict(type="str", required=True),
            state=dict(type="str", default="present", choices=["present", "absent"]),
            adjustment_type=dict(
                type="str",
                default="ChangeInCapacity",
                choices=["ChangeInCapacity", "ExactCapacity", "PercentChangeInCapacity"],
            ),
            metric_aggregation_type=dict(type="str", default="Maximum", choices=["Minimum", "Maximum", "Average"]),
            estimated_instance_warmup=dict(type="int"),
            step_adjustments=dict(type="list", elements="dict"),
        ),
        required_if=[("state", "present", ["step_adjustments"])],
        supports_check_mode=True,
    )
    params = module.params
    client = module.client("autoscaling")
    try:
        found = client.describe_policies(AutoScalingGroupName=params["group_name"], PolicyNames=[params["name"]])
    except botocore.exceptions.ClientError as error:
        if "not found" in str(error).lower() and params["state"] == "absent":
            module.exit_json(changed=False)
        module.fail_json_aws(error, msg="Could not read the scaling policy")
    current = found["ScalingPolicies"][0] if found["ScalingPolicies"] else None

    if params["state"] == "absent":
        if current and not module.check_mode:
            client.delete_policy(AutoScalingGroupName=params["group_name"], PolicyName=params["name"])
        module.exit_json(changed=current is not None)

    steps = wanted_steps(params["step_adjustments"])
    errors = step_adjustment_errors(steps)
    if errors:
        module.fail_json(msg=f"step_adjustments of policy {params['name']} break AWS's rules: " + "; ".join(errors))
    request = {
        "AutoScalingGroupName": params["group_name"],
        "PolicyName": params["name"],
        "PolicyType": "StepScaling",
        "AdjustmentType": params["adjustment_type"],
        "MetricAggregationType": params["metric_aggregation_type"],
        "StepAdjustments": steps,
    }
    if params["estimated_instance_warmup"] is not None:
        request["EstimatedInstanceWarmup"] = params["estimated_instance_warmup"]

    changed = current is None or not matches(request, current)
    diff = {"before": current or {}, "after": request}
    if changed and not module.check_mode:
        try:
            client.put_scaling_policy(**request)
            current = client.describe_policies(
                AutoScalingGroupName=params["group_name"], PolicyNames=[params["name"]]
            )["ScalingPolicies"][0]
        except botocore.exceptions.ClientError as error:
            module.fail_json_aws(error, msg=f"Could not put scaling policy {params['name']}")
    module.exit_json(
        changed=changed,
        arn=(current or {}).get("PolicyARN"),
        step_adjustments=(current or request)["StepAdjustments"],
        diff=diff,
    )


if __name__ == "__main__":
    main()
