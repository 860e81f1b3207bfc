#!/usr/bin/python
# Why a project module: community.aws.autoscaling_policy drops step bounds equal to 0 and accepts only
# integer bounds, so a scale-in step {upper: 0} becomes (-inf, +inf), which AWS rejects. This module
# sends the steps exactly as given, checks them against AWS's rules first (the emulator does not), and
# reports a change only when the policy differs.
from __future__ import annotations

DOCUMENTATION = r"""
module: autoscaling_step_policy
short_description: Create, update or delete an EC2 Auto Scaling step scaling policy
version_added: 1.0.0
author: The sqs-fleet authors
description:
  - Idempotent PutScalingPolicy for PolicyType C(StepScaling).
  - Validates the step adjustments against the rules of the Auto Scaling API (no overlap, no gap, null
    bounds) before any call, and sends bounds equal to 0 as given.
  - Reports a change only when the policy differs from the request.
options:
  name:
    description: Policy name.
    type: str
    required: true
  group_name:
    description: Name of the Auto Scaling group the policy belongs to.
    type: str
    required: true
  state:
    description: Whether the policy should exist.
    type: str
    default: present
    choices: [present, absent]
  adjustment_type:
    description: How each step's adjustment is applied to the group's capacity.
    type: str
    default: ChangeInCapacity
    choices: [ChangeInCapacity, ExactCapacity, PercentChangeInCapacity]
  metric_aggregation_type:
    description: Aggregation of the alarm's metric.
    type: str
    default: Maximum
    choices: [Minimum, Maximum, Average]
  estimated_instance_warmup:
    description: Seconds before a new instance counts in the metric.
    type: int
  step_adjustments:
    description:
      - The steps, required when I(state=present).
      - Bounds are offsets from the alarm threshold; omit one or set it to null for infinity.
    type: list
    elements: dict
    suboptions:
      lower_bound:
        description: Lower bound of the step (included above the threshold, excluded below it).
        type: float
      upper_bound:
        description: Upper bound of the step (excluded above the threshold, included below it).
        type: float
      adjustment:
        description: The ScalingAdjustment applied when the metric falls in this step.
        type: int
        required: true
notes:
  - Supports check mode and diff mode.
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: Set the group to ceil(backlog / 10) instances, at most 4
  sqs_fleet.aws.autoscaling_step_policy:
    name: workers-scale-out
    group_name: workers
    adjustment_type: ExactCapacity
    estimated_instance_warmup: 120
    step_adjustments:
      - {lower_bound: 0, upper_bound: 10, adjustment: 1}
      - {lower_bound: 10, upper_bound: 20, adjustment: 2}
      - {lower_bound: 20, upper_bound: 30, adjustment: 3}
      - {lower_bound: 30, adjustment: 4}
  register: scale_out

- name: Scale in to zero (a step whose upper bound is 0, below the threshold)
  sqs_fleet.aws.autoscaling_step_policy:
    name: workers-scale-in
    group_name: workers
    adjustment_type: ExactCapacity
    step_adjustments:
      - {upper_bound: 0, adjustment: 0}

- name: Remove a policy
  sqs_fleet.aws.autoscaling_step_policy:
    name: workers-scale-in
    group_name: workers
    state: absent
"""

RETURN = r"""
arn:
  description: The policy ARN, for an alarm's actions.
  returned: when I(state=present), null in check mode before the policy exists
  type: str
  sample: arn:aws:autoscaling:eu-west-1:123456789012:scalingPolicy:0b2e...:policyName/workers-scale-out
step_adjustments:
  description: The steps as AWS stores them (as requested in check mode).
  returned: when I(state=present)
  type: list
  elements: dict
  sample: [{"MetricIntervalUpperBound": 0.0, "ScalingAdjustment": 0}]
"""

try:
    from botocore.exceptions import BotoCoreError, ClientError
except ImportError:
    pass  # AnsibleAWSModule reports a missing botocore

from ansible_collections.amazon.aws.plugins.module_utils.botocore import is_boto3_error_code
from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
from ansible_collections.amazon.aws.plugins.module_utils.retries import AWSRetry
from ansible_collections.sqs_fleet.aws.plugins.module_utils.aws_rules import matches, step_adjustment_errors


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


def describe(module, client):
    params = module.params
    try:
        found = client.describe_policies(
            AutoScalingGroupName=params["group_name"], PolicyNames=[params["name"]], aws_retry=True
        )["ScalingPolicies"]
    except is_boto3_error_code("ValidationError"):
        # AWS answers ValidationError for a group that does not exist: it holds no policy either.
        return None
    except (ClientError, BotoCoreError) as error:  # pylint: disable=duplicate-except
        module.fail_json_aws(error, msg=f"Could not read scaling policy {params['name']}")
    return found[0] if found else None


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
            step_adjustments=dict(
                type="list",
                elements="dict",
                options=dict(
                    lower_bound=dict(type="float"),
                    upper_bound=dict(type="float"),
                    adjustment=dict(type="int", required=True),
                ),
            ),
        ),
        required_if=[("state", "present", ["step_adjustments"])],
        supports_check_mode=True,
    )
    params = module.params
    client = module.client("autoscaling", retry_decorator=AWSRetry.jittered_backoff())
    current = describe(module, client)

    if params["state"] == "absent":
        if current and not module.check_mode:
            try:
                client.delete_policy(
                    AutoScalingGroupName=params["group_name"], PolicyName=params["name"], aws_retry=True
                )
            except is_boto3_error_code("ValidationError"):
                pass  # the group went away meanwhile, and its policies with it
            except (ClientError, BotoCoreError) as error:  # pylint: disable=duplicate-except
                module.fail_json_aws(error, msg=f"Could not delete scaling policy {params['name']}")
        module.exit_json(changed=current is not None, diff={"before": current or {}, "after": {}})

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
            client.put_scaling_policy(**request, aws_retry=True)
        except (ClientError, BotoCoreError) as error:
            module.fail_json_aws(error, msg=f"Could not put scaling policy {params['name']}")
        current = describe(module, client)
    module.exit_json(
        changed=changed,
        arn=(current or {}).get("PolicyARN"),
        step_adjustments=(current or request)["StepAdjustments"],
        diff=diff,
    )


if __name__ == "__main__":
    main()
