#!/usr/bin/python
# Why a project module: no collection manages EventBridge Scheduler schedules.
from __future__ import annotations

DOCUMENTATION = r"""
module: scheduler_schedule
short_description: Create, update or delete an EventBridge Scheduler schedule
version_added: 1.1.0
author: The sqs-fleet authors
description:
  - Idempotent CreateSchedule / UpdateSchedule; the settings given are compared with GetSchedule's, so a rerun
    changes nothing.
  - UpdateSchedule replaces the whole schedule, so an update sends every setting this module manages.
options:
  name:
    description: Schedule name.
    type: str
    required: true
  group_name:
    description: Schedule group.
    type: str
    default: default
  state:
    description: Whether the schedule should exist.
    type: str
    default: present
    choices: [present, absent]
  schedule_expression:
    description:
      - C(rate(...)), C(cron(...)) or C(at(...)); a schedule fires at most once a minute. Required when
        I(state=present).
    type: str
  schedule_expression_timezone:
    description: Time zone of a cron or at expression.
    type: str
    default: UTC
  description:
    description: What the schedule is for.
    type: str
    default: ""
  enabled:
    description: C(ENABLED) or C(DISABLED) state.
    type: bool
    default: true
  flexible_time_window_minutes:
    description: Window in minutes the invocation may be spread over; 0 fires on time (mode OFF).
    type: int
    default: 0
  target_arn:
    description: ARN of what the schedule invokes (a Lambda function...). Required when I(state=present).
    type: str
  role_arn:
    description: Role the scheduler assumes to invoke the target. Required when I(state=present).
    type: str
  input:
    description: The event the target receives, as a dict (sent as JSON).
    type: dict
    default: {}
  maximum_retry_attempts:
    description: Retries of a failed invocation (0-185).
    type: int
    default: 0
  maximum_event_age:
    description: Seconds an invocation may wait to be delivered (60-86400).
    type: int
    default: 86400
notes:
  - Supports check mode and diff mode.
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: Invoke a function once a minute, no retries (the next minute's invocation is the retry)
  sqs_fleet.aws.scheduler_schedule:
    name: backlog-publisher
    schedule_expression: rate(1 minute)
    target_arn: arn:aws:lambda:eu-west-1:123456789012:function:backlog-publisher
    role_arn: arn:aws:iam::123456789012:role/backlog-publisher-schedule
    maximum_retry_attempts: 0
    maximum_event_age: 60

- name: Remove it
  sqs_fleet.aws.scheduler_schedule:
    name: backlog-publisher
    state: absent
"""

RETURN = r"""
arn:
  description: The schedule's ARN.
  returned: when I(state=present), null in check mode before the schedule exists
  type: str
  sample: arn:aws:scheduler:eu-west-1:123456789012:schedule/default/backlog-publisher
schedule:
  description: What this module manages of the schedule, as it is now (empty when absent).
  returned: always
  type: dict
  sample:
    ScheduleExpression: rate(1 minute)
    State: ENABLED
    Target: {Arn: "arn:aws:lambda:eu-west-1:123456789012:function:backlog-publisher"}
"""

import json

try:
    from botocore.exceptions import BotoCoreError, ClientError
except ImportError:
    pass  # AnsibleAWSModule reports a missing botocore

from ansible_collections.amazon.aws.plugins.module_utils.botocore import is_boto3_error_code
from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
from ansible_collections.amazon.aws.plugins.module_utils.retries import AWSRetry


def describe(module, client, name, group):
    try:
        return client.get_schedule(Name=name, GroupName=group, aws_retry=True)
    except is_boto3_error_code("ResourceNotFoundException"):
        return None
    except (ClientError, BotoCoreError) as error:  # pylint: disable=duplicate-except
        module.fail_json_aws(error, msg=f"Could not read schedule {group}/{name}")


def wanted(params):
    window = params["flexible_time_window_minutes"]
    return {
        "ScheduleExpression": params["schedule_expression"],
        "ScheduleExpressionTimezone": params["schedule_expression_timezone"],
        "Description": params["description"],
        "State": "ENABLED" if params["enabled"] else "DISABLED",
        "FlexibleTimeWindow": {"Mode": "FLEXIBLE", "MaximumWindowInMinutes": window} if window else {"Mode": "OFF"},
        "Target": {
            "Arn": params["target_arn"],
            "RoleArn": params["role_arn"],
            "Input": json.dumps(params["input"], sort_keys=True),
            "RetryPolicy": {
                "MaximumRetryAttempts": params["maximum_retry_attempts"],
                "MaximumEventAgeInSeconds": params["maximum_event_age"],
            },
        },
    }


def view(schedule):
    """What this module manages of a schedule, with AWS's defaults filled in, for the comparison and the diff."""
    if not schedule:
        return {}
    target = schedule.get("Target", {})
    retry = target.get("RetryPolicy", {})
    window = schedule.get("FlexibleTimeWindow", {"Mode": "OFF"})
    return {
        "ScheduleExpression": schedule.get("ScheduleExpression"),
        "ScheduleExpressionTimezone": schedule.get("ScheduleExpressionTimezone") or "UTC",
        "Description": schedule.get("Description") or "",
        "State": schedule.get("State") or "ENABLED",
        "FlexibleTimeWindow": ({"Mode": "OFF"} if window.get("Mode", "OFF") == "OFF" else
                               {"Mode": "FLEXIBLE", "MaximumWindowInMinutes": window.get("MaximumWindowInMinutes")}),
        "Target": {
            "Arn": target.get("Arn"),
            "RoleArn": target.get("RoleArn"),
            "Input": json.dumps(json.loads(target.get("Input") or "{}"), sort_keys=True),
            "RetryPolicy": {
                "MaximumRetryAttempts": retry.get("MaximumRetryAttempts", 185),
                "MaximumEventAgeInSeconds": retry.get("MaximumEventAgeInSeconds", 86400),
            },
        },
    }


def errors_of(params):
    """What CreateSchedule would reject, said before any call (the emulator checks none of it)."""
    errors = []
    expression = params["schedule_expression"] or ""
    if not expression.startswith(("rate(", "cron(", "at(")) or not expression.endswith(")"):
        errors.append(f"schedule_expression {expression!r}: rate(...), cron(...) or at(...)")
    if not 0 <= params["maximum_retry_attempts"] <= 185:
        errors.append("maximum_retry_attempts: 0 to 185")
    if not 60 <= params["maximum_event_age"] <= 86400:
        errors.append("maximum_event_age: 60 to 86400 seconds")
    if not 0 <= params["flexible_time_window_minutes"] <= 1440:
        errors.append("flexible_time_window_minutes: 0 to 1440")
    return errors


def main():
    module = AnsibleAWSModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            group_name=dict(type="str", default="default"),
            state=dict(type="str", default="present", choices=["present", "absent"]),
            schedule_expression=dict(type="str"),
            schedule_expression_timezone=dict(type="str", default="UTC"),
            description=dict(type="str", default=""),
            enabled=dict(type="bool", default=True),
            flexible_time_window_minutes=dict(type="int", default=0),
            target_arn=dict(type="str"),
            role_arn=dict(type="str"),
            input=dict(type="dict", default={}),
            maximum_retry_attempts=dict(type="int", default=0),
            maximum_event_age=dict(type="int", default=86400),
        ),
        required_if=[("state", "present", ["schedule_expression", "target_arn", "role_arn"])],
        supports_check_mode=True,
    )
    params = module.params
    name, group = params["name"], params["group_name"]
    client = module.client("scheduler", retry_decorator=AWSRetry.jittered_backoff())
    current = describe(module, client, name, group)
    before = view(current)

    if params["state"] == "absent":
        if current and not module.check_mode:
            try:
                client.delete_schedule(Name=name, GroupName=group, aws_retry=True)
            except is_boto3_error_code("ResourceNotFoundException"):
                pass  # removed meanwhile: the end state is the one asked for
            except (ClientError, BotoCoreError) as error:  # pylint: disable=duplicate-except
                module.fail_json_aws(error, msg=f"Could not delete schedule {group}/{name}")
        module.exit_json(changed=current is not None, schedule={}, diff={"before": before, "after": {}})

    errors = errors_of(params)
    if errors:
        module.fail_json(msg=f"schedule {group}/{name} is not valid: " + "; ".join(errors))
    after = wanted(params)
    changed = before != after
    if changed and not module.check_mode:
        try:
            if current is None:
                client.create_schedule(Name=name, GroupName=group, aws_retry=True, **after)
            else:
                client.update_schedule(Name=name, GroupName=group, aws_retry=True, **after)
        except (ClientError, BotoCoreError) as error:
            module.fail_json_aws(error, msg=f"Could not {'update' if current else 'create'} schedule {group}/{name}")
        current = describe(module, client, name, group)
    module.exit_json(changed=changed, arn=(current or {}).get("Arn"), schedule=view(current) if current else {},
                     diff={"before": before, "after": after})


if __name__ == "__main__":
    main()
