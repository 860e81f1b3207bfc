"""sqs_fleet.aws.cloudwatch_alarm on the emulator: a metric-math alarm created, rerun without change (the
amazon.aws module reports one as changed on every run), check mode, update, delete."""

from __future__ import annotations

from typing import Any

from support.ansible_runs import ok

NAME = "modules-alarm"
# No server listens here: a module that called AWS before checking its input would fail with "Could not ...".
UNREACHABLE = "http://127.0.0.1:9"
TAGS = {"Project": "sqs-fleet", "Environment": "modules"}


def query(query_id: str, metric: str, period: int = 60, namespace: str = "AWS/SQS") -> dict[str, Any]:
    return {
        "Id": query_id, "ReturnData": False,
        "MetricStat": {
            "Metric": {"Namespace": namespace, "MetricName": metric,
                       "Dimensions": [{"Name": "QueueName", "Value": "jobs"}]},
            "Period": period, "Stat": "Maximum",
        },
    }


ALARM = {
    "AlarmDescription": "Backlog of jobs",
    "Metrics": [
        query("visible", "ApproximateNumberOfMessagesVisible"),
        query("inflight", "ApproximateNumberOfMessagesNotVisible"),
        {"Id": "backlog", "Expression": "visible + inflight", "ReturnData": True},
    ],
    "ComparisonOperator": "GreaterThanOrEqualToThreshold",
    "Threshold": 1,
    "EvaluationPeriods": 1,
    "DatapointsToAlarm": 1,
    "TreatMissingData": "notBreaching",
    "ActionsEnabled": True,
}


def alarm_on_emulator(aws, name: str = NAME) -> dict[str, Any] | None:
    alarms = aws("cloudwatch").describe_alarms(AlarmNames=[name])["MetricAlarms"]
    return alarms[0] if alarms else None


def test_alarm_lifecycle(run_module, aws):
    aws("cloudwatch").delete_alarms(AlarmNames=[NAME])
    present = {"name": NAME, "alarm": ALARM, "tags": TAGS}

    planned = ok(run_module("cloudwatch_alarm", present, "--check"))
    assert planned["changed"] and planned["diff"]["before"] == {} and planned["diff"]["after"]["Threshold"] == 1
    assert alarm_on_emulator(aws) is None, "check mode created the alarm"

    created = ok(run_module("cloudwatch_alarm", present))
    alarm = alarm_on_emulator(aws)
    assert created["changed"] and alarm and created["arn"] == alarm["AlarmArn"]
    assert [q["Id"] for q in alarm["Metrics"]] == ["visible", "inflight", "backlog"]
    assert (alarm["Threshold"], alarm["TreatMissingData"], alarm["EvaluationPeriods"]) == (1, "notBreaching", 1)
    tags = aws("cloudwatch").list_tags_for_resource(ResourceARN=alarm["AlarmArn"])["Tags"]
    assert {t["Key"]: t["Value"] for t in tags} == TAGS

    assert not ok(run_module("cloudwatch_alarm", present))["changed"], "a rerun of a metric-math alarm changed it"
    assert not ok(run_module("cloudwatch_alarm", present, "--check"))["changed"]

    update = dict(present, alarm=dict(ALARM, Threshold=5, EvaluationPeriods=3, DatapointsToAlarm=2))
    planned = ok(run_module("cloudwatch_alarm", update, "--check"))
    assert planned["changed"]
    assert (planned["diff"]["before"]["Threshold"], planned["diff"]["after"]["Threshold"]) == (1, 5)
    assert alarm_on_emulator(aws)["Threshold"] == 1, "check mode changed the alarm"
    assert ok(run_module("cloudwatch_alarm", update))["changed"]
    alarm = alarm_on_emulator(aws)
    assert (alarm["Threshold"], alarm["EvaluationPeriods"], alarm["DatapointsToAlarm"]) == (5, 3, 2)
    assert not ok(run_module("cloudwatch_alarm", update))["changed"]

    absent = {"name": NAME, "state": "absent"}
    planned = ok(run_module("cloudwatch_alarm", absent, "--check"))
    assert planned["changed"] and planned["diff"]["after"] == {}
    assert alarm_on_emulator(aws), "check mode deleted the alarm"
    assert ok(run_module("cloudwatch_alarm", absent))["changed"]
    assert alarm_on_emulator(aws) is None
    assert not ok(run_module("cloudwatch_alarm", absent))["changed"], "deleting a missing alarm changed something"


def test_period_rules_fail_before_any_call(run_module, aws):
    name = f"{NAME}-broken"
    broken = dict(ALARM, Metrics=[query("visible", "ApproximateNumberOfMessagesVisible")])
    broken["Metrics"][0]["MetricStat"]["Period"] = 45
    result = run_module("cloudwatch_alarm", {"name": name, "alarm": broken})
    assert result.get("failed")
    assert "period 45 is not 10, 20, 30 or a multiple of 60" in result["msg"]
    assert "exactly one metric query must have ReturnData true" in result["msg"]
    assert alarm_on_emulator(aws, name) is None


def test_a_sub_minute_period_on_a_one_minute_metric_fails_before_any_call_naming_the_metric(run_module):
    """AWS stores its own metrics (AWS/*) once a minute: a 10 s period on one would lapse into INSUFFICIENT_DATA.
    The module is pointed at an address where nothing answers: it fails on the rule, not on the call."""
    alarm = dict(ALARM, Metrics=[
        query("backlog", "Backlog", period=10, namespace="BMAT"),  # a custom metric may be high-resolution
        query("visible", "ApproximateNumberOfMessagesVisible", period=10),
        {"Id": "both", "Expression": "backlog + visible", "ReturnData": True},
    ])
    result = run_module("cloudwatch_alarm", {"name": f"{NAME}-sub-minute", "alarm": alarm,
                                             "endpoint_url": UNREACHABLE})
    assert result.get("failed")
    assert result["msg"] == (
        f"alarm {NAME}-sub-minute breaks CloudWatch's rules: period 10 on AWS/SQS ApproximateNumberOfMessagesVisible "
        "(query visible): AWS publishes it once a minute, so a period under 60 s reads no data for most periods "
        "(INSUFFICIENT_DATA); use 60 or a multiple of it")
    single = {"Namespace": "AWS/AutoScaling", "MetricName": "GroupDesiredCapacity", "Period": 30,
              "Statistic": "Maximum", "Dimensions": [{"Name": "AutoScalingGroupName", "Value": "workers"}],
              "ComparisonOperator": "GreaterThanOrEqualToThreshold", "Threshold": 1, "EvaluationPeriods": 1}
    result = run_module("cloudwatch_alarm", {"name": f"{NAME}-sub-minute", "alarm": single,
                                             "endpoint_url": UNREACHABLE})
    assert "period 30 on AWS/AutoScaling GroupDesiredCapacity: AWS publishes it once a minute" in result["msg"]


def test_a_sub_minute_period_on_a_custom_metric_is_accepted(run_module, aws):
    name = f"{NAME}-high-resolution"
    alarm = {"Namespace": "BMAT", "MetricName": "Backlog", "Period": 10, "Statistic": "Maximum",
             "Dimensions": [{"Name": "QueueName", "Value": "jobs"}],
             "ComparisonOperator": "GreaterThanOrEqualToThreshold", "Threshold": 1, "EvaluationPeriods": 1}
    try:
        ok(run_module("cloudwatch_alarm", {"name": name, "alarm": alarm}))
        assert alarm_on_emulator(aws, name)["Period"] == 10
    finally:
        ok(run_module("cloudwatch_alarm", {"name": name, "state": "absent"}))
