#!/usr/bin/python
# Why a project module: amazon.aws.cloudwatch_metric_alarm drops Metrics from the current alarm before
# comparing, so a metric-math alarm reports "changed" on every run, and it has no check of the rules
# AWS enforces but the emulator does not (periods, one ReturnData query, Period x EvaluationPeriods).
from __future__ import annotations

DOCUMENTATION = r"""
module: cloudwatch_alarm
short_description: Create, update or delete a CloudWatch metric alarm, metric math included
version_added: 1.0.0
author: The sqs-fleet authors
description:
  - Idempotent PutMetricAlarm. I(alarm) is the request in the API's own names (C(Metrics), C(Threshold),
    C(ComparisonOperator), C(AlarmActions)...), so any alarm CloudWatch accepts can be declared.
  - Checks the rules CloudWatch enforces on periods and metric math before any call.
  - Refuses, before any call, a period of 10, 20 or 30 s on a metric of a namespace AWS publishes to
    (C(AWS/*)); AWS stores those at one-minute resolution, so such an alarm reads no data for most periods and
    lapses into C(INSUFFICIENT_DATA). Sub-minute periods suit metrics put with C(StorageResolution) 1 only.
  - Compares only the keys given in I(alarm) with the alarm in place, so values AWS adds do not count as
    a change.
options:
  name:
    description: Alarm name.
    type: str
    required: true
  state:
    description: Whether the alarm should exist.
    type: str
    default: present
    choices: [present, absent]
  alarm:
    description: PutMetricAlarm parameters other than C(AlarmName) and C(Tags).
    type: dict
    default: {}
  tags:
    description: Tags set when the alarm is created.
    type: dict
    default: {}
notes:
  - Supports check mode and diff mode.
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: Alarm on any backlog (visible + in flight) of a queue, metric math
  sqs_fleet.aws.cloudwatch_alarm:
    name: workers-scale-out
    tags: {Project: sqs-fleet}
    alarm:
      Metrics:
        - Id: visible
          ReturnData: false
          MetricStat:
            Metric:
              Namespace: AWS/SQS
              MetricName: ApproximateNumberOfMessagesVisible
              Dimensions: [{Name: QueueName, Value: jobs}]
            Period: 60
            Stat: Maximum
        - Id: inflight
          ReturnData: false
          MetricStat:
            Metric:
              Namespace: AWS/SQS
              MetricName: ApproximateNumberOfMessagesNotVisible
              Dimensions: [{Name: QueueName, Value: jobs}]
            Period: 60
            Stat: Maximum
        - Id: backlog
          Expression: visible + inflight
          ReturnData: true
      ComparisonOperator: GreaterThanOrEqualToThreshold
      Threshold: 1
      EvaluationPeriods: 1
      TreatMissingData: notBreaching
      AlarmActions: ["{{ scale_out.arn }}"]

- name: Remove an alarm
  sqs_fleet.aws.cloudwatch_alarm:
    name: workers-scale-out
    state: absent
"""

RETURN = r"""
arn:
  description: The alarm ARN.
  returned: when I(state=present), null in check mode before the alarm exists
  type: str
  sample: arn:aws:cloudwatch:eu-west-1:123456789012:alarm:workers-scale-out
"""

try:
    from botocore.exceptions import BotoCoreError, ClientError
except ImportError:
    pass  # AnsibleAWSModule reports a missing botocore

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
from ansible_collections.amazon.aws.plugins.module_utils.retries import AWSRetry
from ansible_collections.sqs_fleet.aws.plugins.module_utils.aws_rules import matches, sub_minute_errors


def period_errors(alarm):
    """AWS's rules for alarm periods and metric math (CloudWatch PutMetricAlarm reference)."""
    errors = []
    queries = alarm.get("Metrics") or []
    periods = [q["MetricStat"]["Period"] for q in queries if "MetricStat" in q]
    if "Period" in alarm:
        periods.append(alarm["Period"])
    for period in periods:
        if period not in (10, 20, 30) and period % 60:
            errors.append(f"period {period} is not 10, 20, 30 or a multiple of 60")
        elif period < 3600 and period * alarm.get("EvaluationPeriods", 1) > 86400:
            errors.append(f"period {period} x EvaluationPeriods exceeds one day")
        elif period * alarm.get("EvaluationPeriods", 1) > 604800:
            errors.append(f"period {period} x EvaluationPeriods exceeds seven days")
    errors += sub_minute_errors(alarm)
    if queries and sum(1 for q in queries if q.get("ReturnData", True)) != 1:
        errors.append("exactly one metric query must have ReturnData true")
    if alarm.get("DatapointsToAlarm", 1) > alarm.get("EvaluationPeriods", 1):
        errors.append("DatapointsToAlarm exceeds EvaluationPeriods")
    return errors


def describe(module, client, name):
    try:
        found = client.describe_alarms(AlarmNames=[name], AlarmTypes=["MetricAlarm"], aws_retry=True)["MetricAlarms"]
    except (ClientError, BotoCoreError) as error:
        module.fail_json_aws(error, msg=f"Could not read alarm {name}")
    return found[0] if found else None


def main():
    module = AnsibleAWSModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            state=dict(type="str", default="present", choices=["present", "absent"]),
            alarm=dict(type="dict", default={}),
            tags=dict(type="dict", default={}),
        ),
        supports_check_mode=True,
    )
    name, alarm = module.params["name"], module.params["alarm"]
    errors = period_errors(alarm) if module.params["state"] == "present" else []
    if errors:
        module.fail_json(msg=f"alarm {name} breaks CloudWatch's rules: " + "; ".join(errors))
    client = module.client("cloudwatch", retry_decorator=AWSRetry.jittered_backoff())
    current = describe(module, client, name)

    if module.params["state"] == "absent":
        if current and not module.check_mode:
            try:
                # DeleteAlarms succeeds for names that do not exist: nothing to tolerate here.
                client.delete_alarms(AlarmNames=[name], aws_retry=True)
            except (ClientError, BotoCoreError) as error:
                module.fail_json_aws(error, msg=f"Could not delete alarm {name}")
        module.exit_json(changed=current is not None, diff={"before": current or {}, "after": {}})

    request = dict(alarm, AlarmName=name)
    changed = current is None or not matches(request, current)
    diff = {"before": current or {}, "after": request}
    if changed and not module.check_mode:
        tags = [{"Key": k, "Value": str(v)} for k, v in module.params["tags"].items()]
        try:
            client.put_metric_alarm(**request, **({"Tags": tags} if tags and current is None else {}), aws_retry=True)
        except (ClientError, BotoCoreError) as error:
            module.fail_json_aws(error, msg=f"Could not put alarm {name}")
        current = describe(module, client, name)
    module.exit_json(
        changed=changed,
        arn=(current or {}).get("AlarmArn"),
        diff=diff,
    )


if __name__ == "__main__":
    main()
