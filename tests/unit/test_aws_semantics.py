"""Alarm evaluation and step scaling as AWS documents them (scaling-semantics: M of N, the four
treat-missing-data modes, metric math with missing values, step bounds either side of the threshold,
adjustment types and clamping to the group's bounds)."""

from __future__ import annotations

import pytest

from sqs_fleet.sim.semantics import (
    ALARM,
    INSUFFICIENT_DATA,
    OK,
    aggregate,
    alarm_state,
    expression_value,
    instances_to_terminate,
    new_capacity,
    termination_wait_minutes,
)

SCALE_OUT = {"ComparisonOperator": "GreaterThanOrEqualToThreshold", "Threshold": 1, "EvaluationPeriods": 1,
             "DatapointsToAlarm": 1, "TreatMissingData": "notBreaching"}
SCALE_IN = {"ComparisonOperator": "LessThanThreshold", "Threshold": 1, "EvaluationPeriods": 15,
            "DatapointsToAlarm": 15, "TreatMissingData": "breaching"}


def test_metric_math_counts_a_missing_value_as_zero_but_all_missing_as_no_datapoint():
    assert expression_value("visible + inflight", {"visible": 3, "inflight": None}) == 3
    assert expression_value("visible + inflight", {"visible": None, "inflight": None}) is None
    with pytest.raises(ValueError, match="only"):
        expression_value("SUM(METRICS())", {})
    with pytest.raises(ValueError, match="only"):
        expression_value("visible +", {"visible": 1})


def test_metric_math_arithmetic_keeps_precedence_and_drops_a_division_by_zero():
    values = {"sent": 10.0, "deleted": 4.0, "idle": None}
    assert expression_value("(sent - deleted) / 2 * 3", values) == 9
    assert expression_value("sent - deleted / 2", values) == 8
    assert expression_value("-deleted + sent * idle", values) == -4  # idle missing: 0
    assert expression_value("sent / idle", values) is None


def test_metric_math_if_and_comparisons_gate_the_backlog_on_a_group_at_zero():
    from_zero = "IF(desired == 0, backlog, 0)"
    assert expression_value(from_zero, {"desired": 0.0, "backlog": 3.0}) == 3
    assert expression_value(from_zero, {"desired": 2.0, "backlog": 3.0}) == 0
    assert expression_value(from_zero, {"desired": None, "backlog": 3.0}) == 3  # missing counts as 0
    assert expression_value(from_zero, {"desired": None, "backlog": None}) is None
    below = "IF(desired == 0, IF(backlog <= 4, backlog, 0), 0)"  # nested: only what the scale-out alarm misses
    assert [expression_value(below, {"desired": 0.0, "backlog": b}) for b in (3.0, 4.0, 5.0)] == [3, 4, 0]
    assert expression_value("a >= 2 + 1", {"a": 3.0}) == 1  # arithmetic binds tighter than a comparison
    assert expression_value("IF(a != 1, a * 2, -1)", {"a": 1.0}) == -1
    with pytest.raises(ValueError, match="only"):
        expression_value("IF(a, 1)", {"a": 1.0})


def test_the_first_message_raises_the_scale_out_alarm_in_one_period():
    assert alarm_state(SCALE_OUT, [None, None, 1], OK) == ALARM
    assert alarm_state(SCALE_OUT, [5, 0], ALARM) == OK
    assert alarm_state(SCALE_OUT, [None], ALARM) == OK  # no data: an asleep queue is empty


def test_scale_in_needs_the_whole_idle_window_and_reads_missing_data_as_empty():
    assert alarm_state(SCALE_IN, [0] * 14 + [1], OK) == OK
    assert alarm_state(SCALE_IN, [0] * 15, OK) == ALARM
    assert alarm_state(SCALE_IN, [None] * 15, OK) == ALARM
    assert alarm_state(SCALE_IN, [0] * 10, OK) == ALARM  # periods before the first point are missing


@pytest.mark.parametrize(("treat", "window", "previous", "state"), [
    ("missing", [None, None, None], OK, INSUFFICIENT_DATA),
    ("missing", [None, 5, 5], OK, ALARM),
    ("ignore", [None, None, None], ALARM, ALARM),
    ("ignore", [None, None, 0], ALARM, OK),
    ("breaching", [None, None, 0], OK, ALARM),
    ("notBreaching", [None, 5, None], ALARM, OK),
])
def test_treat_missing_data_modes(treat, window, previous, state):
    alarm = {"ComparisonOperator": "GreaterThanThreshold", "Threshold": 1, "EvaluationPeriods": 3,
             "DatapointsToAlarm": 2, "TreatMissingData": treat}
    assert alarm_state(alarm, window, previous) == state


def test_m_of_n():
    alarm = {"ComparisonOperator": "GreaterThanThreshold", "Threshold": 10, "EvaluationPeriods": 5,
             "DatapointsToAlarm": 3, "TreatMissingData": "notBreaching"}
    assert alarm_state(alarm, [11, 0, 11, 0, 11], OK) == ALARM
    assert alarm_state(alarm, [11, 0, 11, 0, 0], OK) == OK


OUT_POLICY = {"AdjustmentType": "ExactCapacity", "StepAdjustments": [
    {"MetricIntervalLowerBound": 0.0, "MetricIntervalUpperBound": 10.0, "ScalingAdjustment": 1},
    {"MetricIntervalLowerBound": 10.0, "MetricIntervalUpperBound": 20.0, "ScalingAdjustment": 2},
    {"MetricIntervalLowerBound": 20.0, "ScalingAdjustment": 3}]}


@pytest.mark.parametrize(("backlog", "capacity"), [(1, 1), (10, 1), (11, 2), (21, 3), (500, 3)])
def test_exact_capacity_steps_size_the_group_to_the_backlog(backlog, capacity):
    assert new_capacity(OUT_POLICY, backlog - 1, current=0, min_size=0, max_size=4) == capacity


def test_results_are_clamped_to_the_group_bounds():
    assert new_capacity(OUT_POLICY, 500, current=0, min_size=0, max_size=2) == 2
    scale_in = {"AdjustmentType": "ExactCapacity",
                "StepAdjustments": [{"MetricIntervalUpperBound": 0.0, "ScalingAdjustment": 0}]}
    assert new_capacity(scale_in, -1, current=3, min_size=1, max_size=4) == 1
    assert new_capacity(scale_in, 0.5, current=3, min_size=0, max_size=4) is None  # no step covers it


def test_change_and_percent_adjustments():
    change = {"AdjustmentType": "ChangeInCapacity", "StepAdjustments": [
        {"MetricIntervalUpperBound": 0.0, "ScalingAdjustment": -1},
        {"MetricIntervalLowerBound": 0.0, "ScalingAdjustment": 2}]}
    assert new_capacity(change, 3, current=1, min_size=0, max_size=4) == 3
    assert new_capacity(change, -3, current=1, min_size=0, max_size=4) == 0
    percent = {"AdjustmentType": "PercentChangeInCapacity", "MinAdjustmentMagnitude": 1,
               "StepAdjustments": [{"MetricIntervalLowerBound": 0.0, "ScalingAdjustment": 50}]}
    assert new_capacity(percent, 1, current=1, min_size=0, max_size=10) == 2  # 0.5 rounds to 0, magnitude 1
    assert new_capacity(percent, 1, current=4, min_size=0, max_size=10) == 6


def instance(name: str, protected: bool = False, version: str = "2") -> dict:
    return {"InstanceId": name, "LifecycleState": "InService", "ProtectedFromScaleIn": protected,
            "LaunchTemplate": {"Version": version}}


def test_scale_in_never_terminates_a_protected_instance():
    group = [instance("i-1", protected=True), instance("i-2"), instance("i-3")]
    assert instances_to_terminate(group, 1) == ["i-2", "i-3"]
    assert instances_to_terminate(group, 0) == ["i-2", "i-3"]  # desired 0, the protected one keeps running
    assert instances_to_terminate([instance("i-1", protected=True)], 0) == []


def test_scale_in_terminates_only_the_excess_older_launch_template_versions_first():
    group = [instance("i-1"), instance("i-2", version="1"), instance("i-3")]
    assert instances_to_terminate(group, 3) == []
    assert instances_to_terminate(group, 2) == ["i-2"]
    assert instances_to_terminate(group, 1) == ["i-2", "i-1"]


def test_a_longer_alarm_period_aggregates_the_one_minute_points_with_the_alarm_statistic():
    minutes = [3, None, 7, 1, None]
    assert aggregate(minutes, "Maximum") == 7 and aggregate(minutes, "Minimum") == 1
    assert aggregate(minutes, "Sum") == 11 and aggregate(minutes, "SampleCount") == 3
    assert aggregate(minutes, "Average") == pytest.approx(11 / 3)
    assert aggregate([None, None], "Maximum") is None  # no point in the whole period: missing data
    with pytest.raises(ValueError, match="p99"):
        aggregate([1], "p99")


def test_a_terminating_instance_waits_the_longest_termination_hook_heartbeat_when_nothing_completes_it():
    drain = {"LifecycleTransition": "autoscaling:EC2_INSTANCE_TERMINATING", "HeartbeatTimeout": 300}
    launch = {"LifecycleTransition": "autoscaling:EC2_INSTANCE_LAUNCHING", "HeartbeatTimeout": 900}
    assert termination_wait_minutes([drain]) == 5
    assert termination_wait_minutes([drain, {**drain, "HeartbeatTimeout": 90}]) == 5
    assert termination_wait_minutes([{**drain, "HeartbeatTimeout": 90}]) == 2  # whole periods
    assert termination_wait_minutes([launch]) == 0 and termination_wait_minutes([]) == 0
    assert termination_wait_minutes([{"LifecycleTransition": drain["LifecycleTransition"]}]) == 60  # default 3600 s
