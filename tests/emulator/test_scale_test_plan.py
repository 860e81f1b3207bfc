"""The scale test plan's own behaviour: which target it talks to, a missing stack named, and what its AWS
mode reads, exercised through the same APIs on the emulator (the AWS mode acts on nothing itself)."""

from __future__ import annotations

import datetime
import json
import os
import time

import pytest

from sqs_fleet.lab.workers import ProcessWorkers
from sqs_fleet.scaletest import config, figures, plan, targets
from sqs_fleet.sim.fleet import Fleet, live_ids
from sqs_fleet.sim.loop import FleetWatch
from sqs_fleet.sim.scaling import AwsScaling
from sqs_fleet.stack import Stack
from support.ansible_runs import assert_ok
from support.polling import wait_until


@pytest.fixture
def on_emulator(emulator, monkeypatch):
    for name, value in emulator.environment().items():
        monkeypatch.setenv(name, value)
    return emulator


def test_the_aws_plan_refuses_an_emulator_endpoint_and_the_emulator_plan_needs_one(monkeypatch, capsys):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    assert plan.main(["--target", "aws"]) == 2
    assert "--target aws talks to real AWS, but AWS_ENDPOINT_URL is set" in capsys.readouterr().err
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    assert plan.main(["--target", "emulator"]) == 2
    assert "--target emulator needs AWS_ENDPOINT_URL" in capsys.readouterr().err


def test_a_missing_stack_is_named_before_anything_is_sent(on_emulator, names, capsys, tmp_path):
    record = tmp_path / "stack.json"
    assert plan.main(["--messages", "5", "--stack", str(record), "--out", str(tmp_path)]) == 2
    assert f"no stack recorded at {record}: run site.yml" in capsys.readouterr().err
    # A record whose stack is gone (reset emulator) is named too.
    record.write_text(json.dumps(names.data))
    on_emulator.reset()
    assert plan.main(["--messages", "5", "--stack", str(record), "--out", str(tmp_path)]) == 2
    assert f"queue {names.queue_name} does not exist: run site.yml" in capsys.readouterr().err
    assert not (tmp_path / "REPORT.md").exists()


def test_the_aws_mode_reads_the_group_alarms_activities_and_shipped_consumer_lines(
        on_emulator, run_playbook, aws, stack_file, tmp_path):
    on_emulator.reset()
    assert_ok(run_playbook("site.yml"), ["site.yml"])
    assert_ok(run_playbook("produce.yml", extra_vars={"count": 5, "seed": 3}), ["produce.yml"])
    since = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=1)

    stack = Stack.load(stack_file)
    fleet = Fleet(stack, aws)
    watch = FleetWatch(fleet, AwsScaling(fleet))
    before = watch.step()
    assert (before.visible, before.desired, before.instances) == (5, 0, 0)
    assert set(before.alarms) == set(stack.alarms) and len(stack.alarms) >= 4
    aws("autoscaling").set_desired_capacity(AutoScalingGroupName=stack.group_name, DesiredCapacity=1)
    after = watch.step()  # here it is Auto Scaling, not the plan, that set the group's size
    assert (after.desired, after.instances) == (1, 1)

    # A real consumer's lines, shipped to the log group as the agent ships its file: one stream per instance.
    instance = live_ids(fleet.group())[0]
    workers = ProcessWorkers(stack.queue_name, poll_interval=1, env=os.environ, logs=tmp_path)
    workers.follow([instance])
    try:
        wait_until(lambda: (tmp_path / f"{instance}.log").read_text().count('"message_processed"') >= 5, 30,
                   "the consumer to process the 5 messages")
    finally:
        workers.stop()
    lines = (tmp_path / f"{instance}.log").read_text().splitlines()
    logs = aws("logs")
    logs.create_log_stream(logGroupName=stack.log_group, logStreamName=instance)
    now = int(time.time() * 1000)
    logs.put_log_events(logGroupName=stack.log_group, logStreamName=instance,
                        logEvents=[{"timestamp": now, "message": line} for line in lines])

    events = targets.shipped_log_events(stack.log_group, since, expected=5)
    processed = [e for e in events if e["event"] == "message_processed"]
    assert sorted(e["vehicle"]["vehicleId"] for e in processed) == [f"VH{n}" for n in range(2001, 2006)]
    assert {e["worker"] for e in events} == {instance}
    processed_at = figures.processed_minutes(watch.timeline, events, config.AWS_PERIOD_SECONDS)
    numbers = figures.figures(watch.timeline, events, 5, processed_at, watch.scaling.tick_seconds)
    assert numbers["messages lost"] == 0 and numbers["peak instances"] == 1
    # On AWS a tick is the plan's one-minute watch: tick 1 began 60 s in; no interruption among the activities.
    assert [p.seconds for p in watch.timeline] == [0, 60]
    assert numbers["minutes to first scale-out"] == 1.0 and numbers["spot interruptions"] == 0


def test_a_plan_that_does_not_finish_in_time_fails_and_says_so(
        on_emulator, run_playbook, stack_file, capsys, tmp_path):
    on_emulator.reset()
    assert_ok(run_playbook("site.yml"), ["site.yml"])
    assert plan.main(["--messages", "30", "--period-seconds", "1", "--max-minutes", "2", "--stack", str(stack_file),
                      "--out", str(tmp_path)]) == 1
    assert "not back to zero within 2 minutes" in capsys.readouterr().err
    assert "| minutes to zero instances | None |" in (tmp_path / "REPORT.md").read_text()
