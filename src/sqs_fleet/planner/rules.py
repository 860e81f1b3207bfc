"""The stack's scaling rules from its settings, in the shapes DescribeAlarms and DescribePolicies return them:
what roles/scaling makes (tasks/main.yml, vars/main.yml) and roles/fleet's hooks. The planner evaluates these
with the local loop's own decision code; tests/emulator/test_planner_agreement.py checks them, decision by
decision, against what site.yml deploys and the loop reads back."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from sqs_fleet.planner.settings import Settings

SCALE_OUT, SCALE_IN, FROM_ZERO = "scale_out", "scale_in", "scale_out_from_zero"


@dataclass(frozen=True)
class Rules:
    alarms: list[dict[str, Any]]  # DescribeAlarms' MetricAlarms, named by their short key
    policies: dict[str, dict[str, Any]]  # by the ARN the alarms' actions name (here: the policy's key)
    hooks: dict[str, int]  # heartbeat seconds by transition: launch, drain


def out_steps(settings: Settings) -> list[dict[str, Any]]:
    """roles/scaling/vars: scaling__out_steps, as StepAdjustments: a backlog b gets ceil(b / B) instances."""
    per_instance, size, threshold = settings.backlog_per_instance, settings.max_size, settings.out_threshold
    first = threshold + (0 if settings.out_comparison == "GreaterThanOrEqualToThreshold" else 1)
    steps: list[dict[str, Any]] = []
    for k in range(1, size + 1):
        if not (k * per_instance >= first or k == size):
            continue
        step: dict[str, Any] = {"MetricIntervalLowerBound": 0.0 if not steps
                                else float((k - 1) * per_instance + 1 - threshold), "ScalingAdjustment": k}
        if k < size:
            step["MetricIntervalUpperBound"] = float(k * per_instance + 1 - threshold)
        steps.append(step)
    return steps


def metric(namespace: str, name: str, dimension: tuple[str, str]) -> dict[str, Any]:
    return {"Namespace": namespace, "MetricName": name, "Dimensions": [{"Name": dimension[0], "Value": dimension[1]}]}


def publisher_metric(settings: Settings) -> dict[str, Any]:
    spec = settings.names["publisher_metric"]
    dimension = spec["dimensions"][0]
    return metric(spec["namespace"], spec["name"], (dimension["Name"], dimension["Value"]))


def backlog_metrics(settings: Settings) -> list[dict[str, Any]]:
    """roles/scaling/vars: scaling__backlog_metrics (visible + in flight, AWS/SQS)."""
    queue = ("QueueName", settings.names["queue"])
    return [
        {"Id": "visible", "ReturnData": False, "MetricStat": {"Metric": metric(
            "AWS/SQS", "ApproximateNumberOfMessagesVisible", queue), "Period": settings.period, "Stat": "Maximum"}},
        {"Id": "inflight", "ReturnData": False, "MetricStat": {"Metric": metric(
            "AWS/SQS", "ApproximateNumberOfMessagesNotVisible", queue), "Period": settings.period, "Stat": "Maximum"}},
        {"Id": "backlog", "Expression": "visible + inflight", "ReturnData": True},
    ]


def rules(settings: Settings) -> Rules:
    out: dict[str, Any] = {"AlarmName": SCALE_OUT, "ComparisonOperator": settings.out_comparison,
                           "Threshold": float(settings.out_threshold), "EvaluationPeriods": 1, "DatapointsToAlarm": 1,
                           "AlarmActions": [SCALE_OUT]}
    idle_periods = settings.idle_window // settings.period
    scale_in: dict[str, Any] = {"AlarmName": SCALE_IN, "ComparisonOperator": "LessThanThreshold", "Threshold": 1.0,
                                "EvaluationPeriods": idle_periods, "DatapointsToAlarm": idle_periods,
                                "AlarmActions": [SCALE_IN]}
    if settings.metric_source == "publisher":
        # The publisher's points never go missing while it runs: no data is never read as a backlog or as empty.
        out.update(publisher_metric(settings), Statistic="Maximum", Period=settings.out_period,
                   TreatMissingData="missing")
        scale_in.update(publisher_metric(settings), Statistic="Maximum", Period=settings.period,
                        TreatMissingData="missing")
    else:
        # An asleep queue publishes nothing: missing is not a backlog, and it is empty.
        out.update(Metrics=backlog_metrics(settings), TreatMissingData="notBreaching")
        scale_in.update(Metrics=backlog_metrics(settings), TreatMissingData="breaching")
    alarms = [out, scale_in]
    policies = {
        SCALE_OUT: {"PolicyName": SCALE_OUT, "PolicyARN": SCALE_OUT, "AdjustmentType": "ExactCapacity",
                    "StepAdjustments": out_steps(settings)},
        SCALE_IN: {"PolicyName": SCALE_IN, "PolicyARN": SCALE_IN, "AdjustmentType": "ExactCapacity",
                   "StepAdjustments": [{"MetricIntervalUpperBound": 0.0, "ScalingAdjustment": 0}]},
    }
    if settings.from_zero:
        below = settings.out_threshold + (0 if settings.out_comparison == "GreaterThanOrEqualToThreshold" else 1) - 1
        group = ("AutoScalingGroupName", settings.names["group"])
        alarms.append({
            "AlarmName": FROM_ZERO, "ComparisonOperator": "GreaterThanOrEqualToThreshold", "Threshold": 1.0,
            "EvaluationPeriods": 1, "DatapointsToAlarm": 1, "TreatMissingData": "missing",
            "AlarmActions": [FROM_ZERO],
            "Metrics": [
                {"Id": "backlog", "ReturnData": False, "MetricStat": {
                    "Metric": publisher_metric(settings), "Period": settings.out_period, "Stat": "Maximum"}},
                {"Id": "desired", "ReturnData": False, "MetricStat": {
                    "Metric": metric("AWS/AutoScaling", "GroupDesiredCapacity", group), "Period": settings.out_period,
                    "Stat": "Maximum"}},
                {"Id": "waiting_at_zero", "ReturnData": True,
                 "Expression": f"IF(desired == 0, IF(backlog <= {below}, backlog, 0), 0)"},
            ]})
        policies[FROM_ZERO] = {"PolicyName": FROM_ZERO, "PolicyARN": FROM_ZERO, "AdjustmentType": "ExactCapacity",
                               "StepAdjustments": [{"MetricIntervalLowerBound": 0.0, "ScalingAdjustment": 1}]}
    return Rules(alarms=alarms, policies=policies,
                 hooks={"launch": settings.launch_timeout, "drain": settings.drain_timeout})


def high_resolution(alarm: dict[str, Any]) -> bool:
    periods = [int(q["MetricStat"]["Period"]) for q in alarm.get("Metrics", []) if "MetricStat" in q]
    return min(periods or [int(alarm.get("Period", 60))]) < 60


def alarm_metrics(alarm: dict[str, Any]) -> int:
    """How many metrics CloudWatch bills an alarm for: each metric a metric-math alarm reads."""
    return max(1, sum(1 for q in alarm.get("Metrics", []) if "MetricStat" in q))


def instances_for(settings: Settings, backlog: float) -> int:
    """What the scale-out steps give for a backlog: ceil(backlog / B), within the group's bounds."""
    return max(settings.min_size, min(settings.max_size, math.ceil(backlog / settings.backlog_per_instance)))
