#!/usr/bin/python
# Why a project module: amazon.aws.cloudwatch_metric_alarm drops Metrics from the current alarm before
# comparing, so a metric-math alarm reports "changed" on every run, and it has no check of the rules
# AWS enforces but the emulator does not (periods, one ReturnData query, Period x EvaluationPeriods).
from __future__ import annotations

DOCUMENTATION = r"""
module: cloudwatch_alarm
short_description: Create, update or delete a CloudWatch metric alarm, metric math included
description:
  - Idempotent PutMetricAlarm. C(alarm) is the request in the API's own names (Metrics, Threshold,
    ComparisonOperator, AlarmActions...), so any alarm CloudWatch accepts can be declared.
options:
  name: {description: Alarm name., type: str, required: true}
  state: {description: Present or absent., type: str, default: present, choices: [present, absent]}
  alarm: {description: PutMetricAlarm parameters other than AlarmName and Tags., type: dict, default: {}}
  tags: {description: Tags set when the alarm is created., type: dict, default: {}}
extends_documentation_fragment: [amazon.aws.common.modules, amazon.aws.region.modules, amazon.aws.boto3]
"""

RETURN = r"""
arn: {description: The alarm ARN., returned: when present, type: str}
"""

try:
    import botocore
except ImportError:
    pass  # AnsibleAWSModule reports a missing botocore

from ansible.module_utils.fleet import matches
from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule


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
    if queries and sum(1 for q in queries if q.get("ReturnData", True)) != 1:
        errors.append("exactly one metric query must have ReturnData true")
    if alarm.get("DatapointsToAlarm", 1) > alarm.get("EvaluationPeriods", 1):
        errors.append("DatapointsToAlarm exceeds EvaluationPeriods")
    return errors


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
    client = module.client("cloudwatch")
    try:
        found = client.describe_alarms(AlarmNames=[name], AlarmTypes=["MetricAlarm"])["MetricAlarms"]
    except botocore.exceptions.ClientError as error:
        module.fail_json_aws(error, msg=f"Could not read alarm {name}")
    current = found[0] if found else None

    if module.params["state"] == "absent":
        if current and not module.check_mode:
            client.delete_alarms(AlarmNames=[name])
        module.exit_json(changed=current is not None)

    errors = period_errors(alarm)
    if errors:
        module.fail_json(msg=f"alarm {name} breaks CloudWatch's rules: " + "; ".join(errors))
    request = dict(alarm, AlarmName=name)
    changed = current is None or not matches(request, current)
    if changed and not module.check_mode:
        tags = [{"Key": k, "Value": str(v)} for k, v in module.params["tags"].items()]
        try:
            client.put_metric_alarm(**request, **({"Tags": tags} if tags and current is None else {}))
            current = client.describe_alarms(AlarmNames=[name])["MetricAlarms"][0]
        except botocore.exceptions.ClientError as error:
            module.fail_json_aws(error, msg=f"Could not put alarm {name}")
    module.exit_json(
        changed=changed,
        arn=(current or {}).get("AlarmArn"),
        diff={"before": current or {}, "after": request},
    )


if __name__ == "__main__":
    main()
