"""sqs_fleet.aws.scheduler_schedule on the emulator (which stores schedules and fires none): create, rerun
without change, check mode, update, invalid input named before any call, delete."""

from __future__ import annotations

from typing import Any

from support.ansible_runs import ok

NAME = "modules-schedule"
TARGET = "arn:aws:lambda:us-east-1:123456789012:function:modules-target"
ROLE = "arn:aws:iam::123456789012:role/modules-scheduler"


def on_emulator(aws) -> dict[str, Any] | None:
    scheduler = aws("scheduler")
    try:
        schedule: dict[str, Any] = scheduler.get_schedule(Name=NAME, GroupName="default")
    except scheduler.exceptions.ResourceNotFoundException:
        return None
    return schedule


def test_schedule_lifecycle(run_module, aws):
    if on_emulator(aws):
        aws("scheduler").delete_schedule(Name=NAME, GroupName="default")
    present = {"name": NAME, "schedule_expression": "rate(1 minute)", "target_arn": TARGET, "role_arn": ROLE,
               "input": {"source": "schedule"}, "maximum_retry_attempts": 0, "maximum_event_age": 60}

    planned = ok(run_module("scheduler_schedule", present, "--check"))
    assert planned["changed"] and planned["diff"]["before"] == {}
    assert planned["diff"]["after"]["ScheduleExpression"] == "rate(1 minute)"
    assert on_emulator(aws) is None, "check mode created the schedule"

    created = ok(run_module("scheduler_schedule", present))
    assert created["changed"] and created["arn"].endswith(f"schedule/default/{NAME}")
    schedule = on_emulator(aws)
    assert schedule and schedule["ScheduleExpression"] == "rate(1 minute)" and schedule["State"] == "ENABLED"
    assert schedule["FlexibleTimeWindow"] == {"Mode": "OFF"}
    assert (schedule["Target"]["Arn"], schedule["Target"]["RoleArn"]) == (TARGET, ROLE)
    assert schedule["Target"]["RetryPolicy"] == {"MaximumRetryAttempts": 0, "MaximumEventAgeInSeconds": 60}
    assert schedule["Target"]["Input"] == '{"source": "schedule"}'

    assert not ok(run_module("scheduler_schedule", present))["changed"], "a rerun changed the schedule"
    assert not ok(run_module("scheduler_schedule", present, "--check"))["changed"]

    update = dict(present, schedule_expression="rate(5 minutes)", enabled=False)
    planned = ok(run_module("scheduler_schedule", update, "--check"))
    assert planned["changed"] and planned["diff"]["before"]["State"] == "ENABLED"
    assert planned["diff"]["after"]["State"] == "DISABLED"
    assert on_emulator(aws)["ScheduleExpression"] == "rate(1 minute)", "check mode changed the schedule"
    assert ok(run_module("scheduler_schedule", update))["changed"]
    schedule = on_emulator(aws)
    assert (schedule["ScheduleExpression"], schedule["State"]) == ("rate(5 minutes)", "DISABLED")
    assert schedule["Target"]["RetryPolicy"]["MaximumRetryAttempts"] == 0  # an update sends every setting
    assert not ok(run_module("scheduler_schedule", update))["changed"]

    bad = run_module("scheduler_schedule", dict(present, schedule_expression="every minute", maximum_event_age=5))
    assert bad.get("failed") and "schedule_expression" in bad["msg"] and "maximum_event_age" in bad["msg"]

    absent = {"name": NAME, "state": "absent"}
    planned = ok(run_module("scheduler_schedule", absent, "--check"))
    assert planned["changed"] and planned["diff"]["after"] == {} and on_emulator(aws)
    assert ok(run_module("scheduler_schedule", absent))["changed"]
    assert on_emulator(aws) is None
    assert not ok(run_module("scheduler_schedule", absent))["changed"]
