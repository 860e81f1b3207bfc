"""The scale-out / scale-in cycle end to end on the emulator, with the local loop playing CloudWatch and
Auto Scaling and local consumer processes as the workers; one period is one second here."""

from __future__ import annotations

import datetime
import json
import os

from conftest import assert_ok
from scaling_loop import ProcessWorkers, ScalingLoop

PREFIX = "sqs-fleet-local"
IDLE_PERIODS = 5


def test_burst_scales_out_to_the_max_drains_and_scales_in_to_zero_after_the_idle_window(
        emulator, run_playbook, aws, tmp_path):
    emulator.reset()
    assert_ok(run_playbook("site.yml", extra_vars={"scaling_idle_window": IDLE_PERIODS * 60}), ["site.yml"])
    sent = run_playbook("produce.yml", extra_vars={"count": 60, "seed": 11})
    assert_ok(sent, ["produce.yml"])

    workers = ProcessWorkers(f"{PREFIX}-vehicles", poll_interval=1, env={**os.environ, **emulator.environment()},
                             logs=tmp_path / "workers")
    loop = ScalingLoop(aws, PREFIX, workers)
    timeline = loop.run(until=lambda t: len(t) > 3 and t[-1].desired == 0 and t[-1].instances == 0,
                        max_periods=60, period_seconds=1.0)

    desired = [p.desired for p in timeline]
    assert desired[0] == 4  # 60 messages at 10 per instance: ceil(60 / 10) = 6, capped at the maximum
    assert max(desired) == 4 and max(p.instances for p in timeline) <= 4
    assert desired[-1] == 0
    drained = next(i for i, p in enumerate(timeline) if p.visible + p.in_flight == 0)
    scaled_in = next(i for i, p in enumerate(timeline) if i > drained and p.desired == 0)
    assert scaled_in - drained >= IDLE_PERIODS - 1  # only after the whole idle window of empty periods
    assert all(p.desired >= 1 for p in timeline[:drained])

    processed = []
    for log in (tmp_path / "workers").glob("*.log"):
        processed += [json.loads(line)["vehicle"]["vehicleId"] for line in log.read_text().splitlines()
                      if '"message_processed"' in line]
    assert sorted(set(processed)) == sorted(f"VH{n}" for n in range(2001, 2061))  # lost = 0
    assert timeline[-1].dead_letters == 0


def test_messages_processed_are_counted_in_the_period_they_fell_in():
    from scale_report import processed_minutes, processed_per_period
    from scaling_loop import Period

    timeline = [Period(minute=m, at=1000.0 + 10 * m, visible=0, in_flight=0, dead_letters=0, desired=0,
                       instances=0, in_service=0, terminating=0, alarms={}) for m in range(3)]

    def processed(at: float) -> dict[str, str]:
        return {"event": "message_processed", "ts": datetime.datetime.fromtimestamp(at, datetime.timezone.utc)
                .isoformat()}

    events = [processed(999.5), processed(1000.0), processed(1009.9), processed(1010.0), processed(1030.0),
              {"event": "consumer_stopped", "ts": processed(1015.0)["ts"]}]
    # Before the first record counts in minute 0; after the last record, in the last minute.
    assert processed_per_period(processed_minutes(timeline, events, 10), len(timeline)) == [3, 1, 1]
    assert processed_minutes(timeline, [processed(at) for at in (999.5, 1015.0, 1024.0)], 10) == [0.0, 1.5, 2.4]


def test_report_generator_runs_a_short_plan(emulator, run_playbook, monkeypatch, tmp_path):
    import scale_test

    emulator.reset()
    assert_ok(run_playbook("site.yml", extra_vars={"scaling_idle_window": 120}), ["site.yml"])
    for name, value in emulator.environment().items():
        monkeypatch.setenv(name, value)
    assert scale_test.main(["--messages", "25", "--period-seconds", "1", "--out", str(tmp_path)]) == 0
    report = (tmp_path / "REPORT.md").read_text()
    assert "| messages lost | 0 |" in report and "| messages processed | 25 |" in report
    assert "not measured on AWS" in report
    assert "- Backlog: visible and in flight (metric: " in report  # the dashboards, read back from CloudWatch
    for plot in ("report-queue-and-instances.png", "report-processed-per-minute.png"):
        assert (tmp_path / plot).read_bytes().startswith(b"\x89PNG")


def test_scale_in_keeps_an_instance_protected_from_scale_in_and_publishes_the_sqs_metrics(
        emulator, run_playbook, aws, tmp_path):
    emulator.reset()
    assert_ok(run_playbook("site.yml", extra_vars={"scaling_idle_window": 120}), ["site.yml"])
    assert_ok(run_playbook("produce.yml", extra_vars={"count": 15, "seed": 7}), ["produce.yml"])
    workers = ProcessWorkers(f"{PREFIX}-vehicles", poll_interval=1, env={**os.environ, **emulator.environment()},
                             logs=tmp_path / "workers")
    loop = ScalingLoop(aws, PREFIX, workers)
    try:
        first = loop.step()
        assert first.desired == 2 and first.instances == 2 and first.in_service == 2  # ceil(15 / 10)
        protected = loop.group()["Instances"][0]["InstanceId"]
        aws("autoscaling").set_instance_protection(AutoScalingGroupName=f"{PREFIX}-workers",
                                                   InstanceIds=[protected], ProtectedFromScaleIn=True)
        timeline = loop.run(until=lambda t: t[-1].desired == 0 and t[-1].terminating == 0, max_periods=30,
                            period_seconds=1.0)
    finally:
        workers.stop()

    assert timeline[-1].desired == 0 and timeline[-1].instances == 1  # the desired capacity drops regardless
    assert [i["InstanceId"] for i in loop.group()["Instances"]] == [protected]
    scale_in = next(p for p in timeline if p.desired == 0)
    assert "1 instance(s) protected from scale-in kept running" in scale_in.decisions
    # The other one waits out the drain hook's 300 s heartbeat (5 periods), still running, then goes.
    assert (scale_in.instances, scale_in.terminating) == (2, 1)
    assert [p.terminating for p in timeline[scale_in.minute:]] == [1, 1, 1, 1, 1, 0]
    assert any("lifecycle heartbeat timed out" in d for d in timeline[-1].decisions)

    published = aws("cloudwatch").get_metric_data(
        MetricDataQueries=[{"Id": "visible", "MetricStat": {"Metric": {
            "Namespace": "AWS/SQS", "MetricName": "ApproximateNumberOfMessagesVisible",
            "Dimensions": [{"Name": "QueueName", "Value": f"{PREFIX}-vehicles"}]}, "Period": 60, "Stat": "Maximum"}}],
        StartTime=loop.stamp(0), EndTime=loop.stamp(len(timeline)))["MetricDataResults"][0]
    assert len(published["Values"]) == len(timeline)  # one data point per period, one minute apart
    assert max(published["Values"]) == 15


def test_an_alarm_period_of_two_minutes_is_evaluated_every_second_minute_on_its_maximum(
        emulator, run_playbook, aws, tmp_path):
    emulator.reset()
    assert_ok(run_playbook("site.yml", extra_vars={"scaling_period": 120, "scaling_idle_window": 240}), ["site.yml"])
    assert_ok(run_playbook("produce.yml", extra_vars={"count": 25, "seed": 5}), ["produce.yml"])
    workers = ProcessWorkers(f"{PREFIX}-vehicles", poll_interval=60, env={**os.environ, **emulator.environment()},
                             logs=tmp_path / "workers")
    loop = ScalingLoop(aws, PREFIX, workers)
    try:
        first, second = loop.step(), loop.step()
    finally:
        workers.stop()
    assert first.desired == 0 and first.alarms["scale-out"] == "INSUFFICIENT_DATA"  # its period has not ended
    assert second.desired == 3 and second.alarms["scale-out"] == "ALARM"  # max of the two minutes: 25 -> 3
