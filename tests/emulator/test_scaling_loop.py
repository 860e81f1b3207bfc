"""The scale-out / scale-in cycle end to end on the emulator, with the local loop playing CloudWatch and
Auto Scaling and local consumer processes as the workers; one period is one second here. These runs scale on
the AWS/SQS metrics (stack_scaling_metric_source=sqs: one-minute periods, the 15-minute design); the backlog
publisher's 10-second scaling is tested in test_publisher.py."""

from __future__ import annotations

import datetime
import json
import os

from sqs_fleet.lab.lifecycle import LifecycleActions
from sqs_fleet.lab.workers import ProcessWorkers
from sqs_fleet.scaletest import plan
from sqs_fleet.scaletest.figures import DATA_FILE, PROCESSED_PLOT, QUEUE_PLOT, processed_minutes, processed_per_period
from sqs_fleet.sim.fleet import Fleet
from sqs_fleet.sim.loop import FleetWatch, Period
from sqs_fleet.sim.scaling import EmulatedScaling
from sqs_fleet.stack import Stack
from support.ansible_runs import assert_ok

IDLE_PERIODS = 5
SQS = {"stack_scaling_metric_source": "sqs"}  # scaling on AWS/SQS's one-minute metrics


def emulated(stack, aws, workers) -> FleetWatch:
    fleet = Fleet(stack, aws)
    return FleetWatch(fleet, EmulatedScaling(fleet, workers, LifecycleActions()))


class SilentWorkers:
    """Workers that run but never complete a lifecycle action, like nodes whose bootstrap hangs and whose
    watcher is gone: only the hooks' heartbeats decide."""

    completes_lifecycle = True

    def __init__(self) -> None:
        self.running: set[str] = set()

    def follow(self, instances):
        self.running = set(instances)
        return []

    def in_service(self):
        return set(self.running)

    def stop(self) -> None:
        self.running = set()


def test_burst_scales_out_to_the_max_drains_and_scales_in_to_zero_after_the_idle_window(
        emulator, run_playbook, aws, stack_file, tmp_path):
    emulator.reset()
    assert_ok(run_playbook("site.yml", extra_vars={**SQS, "scaling_idle_window": IDLE_PERIODS * 60}), ["site.yml"])
    sent = run_playbook("produce.yml", extra_vars={"count": 60, "seed": 11})
    assert_ok(sent, ["produce.yml"])

    stack = Stack.load(stack_file)
    workers = ProcessWorkers(stack.queue_name, poll_interval=1, env={**os.environ, **emulator.environment()},
                             logs=tmp_path / "workers")
    timeline = emulated(stack, aws, workers).run(
        until=lambda t: len(t) > 3 and t[-1].desired == 0 and t[-1].instances == 0, max_periods=60, period_seconds=1.0)

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
    timeline = [Period(minute=m, seconds=60 * m, at=1000.0 + 10 * m, visible=0, in_flight=0, dead_letters=0,
                       desired=0, instances=0, in_service=0, terminating=0, alarms={}) for m in range(3)]

    def processed(at: float) -> dict[str, str]:
        return {"event": "message_processed", "ts": datetime.datetime.fromtimestamp(at, datetime.timezone.utc)
                .isoformat()}

    events = [processed(999.5), processed(1000.0), processed(1009.9), processed(1010.0), processed(1030.0),
              {"event": "consumer_stopped", "ts": processed(1015.0)["ts"]}]
    # Before the first record counts in tick 0; after the last record, in the last tick.
    assert processed_per_period(processed_minutes(timeline, events, 10), len(timeline)) == [3, 1, 1]
    assert processed_minutes(timeline, [processed(at) for at in (999.5, 1015.0, 1024.0)], 10) == [0.0, 1.5, 2.4]


def test_report_generator_runs_a_short_plan(emulator, run_playbook, stack_file, monkeypatch, capsys, tmp_path):
    emulator.reset()
    assert_ok(run_playbook("site.yml", extra_vars={**SQS, "scaling_idle_window": 120}), ["site.yml"])
    for name, value in emulator.environment().items():
        monkeypatch.setenv(name, value)
    assert plan.main(["--messages", "25", "--period-seconds", "1", "--stack", str(stack_file),
                      "--out", str(tmp_path)]) == 0
    report = (tmp_path / "REPORT.md").read_text()
    assert "| messages lost | 0 |" in report and "| messages processed | 25 |" in report
    assert "not measured on AWS" in report
    assert "- Backlog: visible and in flight (metric: " in report  # the dashboards, read back from CloudWatch
    # ... and drawn over the run: the backlog graph shows the queue's depth the loop published.
    images = json.loads((tmp_path / DATA_FILE).read_text())["dashboard images"]
    backlog = next(path for _, title, path, _ in images if title == "Backlog: visible and in flight")
    board = Stack.load(stack_file).dashboards["sqs"]
    assert f"]({backlog})\n*`{board}`: Backlog: visible and in flight; rendered locally" in report
    drawn = json.loads((tmp_path / backlog).with_suffix(".json").read_text())
    visible, in_flight = (dict(drawn[label]["points"]) for label in ("visible", "in flight"))
    # The sum of each minute's maxima, as CloudWatch graphs it; at least the burst before any worker took one.
    assert drawn["backlog"]["points"] == [[t, visible.get(t, 0) + in_flight.get(t, 0)]
                                          for t in sorted({*visible, *in_flight})]
    assert max(v for _, v in drawn["backlog"]["points"]) >= 25
    for plot in (QUEUE_PLOT, PROCESSED_PLOT):
        assert (tmp_path / plot).read_bytes().startswith(b"\x89PNG")
        assert f"]({plot})" in report
    assert json.loads((tmp_path / DATA_FILE).read_text())["figures"]["messages processed"] == 25
    # What a user sees as it runs: a header, one line per period, then the figures as a table; no JSON.
    shown = capsys.readouterr().out.splitlines()
    header = next(i for i, line in enumerate(shown) if line.split()[:3] == ["tick", "seconds", "visible"])
    assert shown[header + 1].split()[0] == "0" and "{" not in "".join(shown)
    assert any(line.startswith("messages lost") and line.split()[-1] == "0" for line in shown)


def test_the_comparison_plays_both_designs_on_one_burst_with_spot_interruptions(
        emulator, stack_file, monkeypatch, tmp_path):
    """--compare makes each design's stack itself (site.yml with its settings), previous first."""
    emulator.reset()
    for name, value in emulator.environment().items():
        monkeypatch.setenv(name, value)
    assert plan.main(["--compare", "--messages", "120", "--period-seconds", "0.5", "--spot-interruptions", "2",
                      "--stack", str(stack_file), "--out", str(tmp_path)]) == 0
    previous, current = json.loads((tmp_path / DATA_FILE).read_text())["comparison"]
    assert (previous["design"], current["design"]) == ("previous", "current")
    assert (previous["conditions"]["tick seconds"], current["conditions"]["tick seconds"]) == (60, 10)
    for run in (previous, current):
        assert run["figures"]["messages processed"] == 120, run["design"]
        assert (run["figures"]["messages lost"], run["figures"]["dead letters"]) == (0, 0), run["design"]
        assert run["figures"]["spot interruptions"] == 2, run["design"]
    # Idle capacity: the previous design keeps its instances for 15 idle minutes, then 300 s of heartbeat.
    assert (previous["figures"]["instance-minutes after the drain"]
            > current["figures"]["instance-minutes after the drain"])
    report = (tmp_path / "REPORT.md").read_text()
    assert "| figure | previous | current |" in report
    assert "| spot interruptions | 2 | 2 |" in report
    # The stack is left in the current design.
    assert Stack.load(stack_file).data["scaling"]["metric_source"] == "publisher"


def test_scale_in_keeps_an_instance_protected_from_scale_in_and_publishes_the_sqs_metrics(
        emulator, run_playbook, aws, stack_file, tmp_path):
    emulator.reset()
    assert_ok(run_playbook("site.yml", extra_vars={**SQS, "scaling_idle_window": 120}), ["site.yml"])
    assert_ok(run_playbook("produce.yml", extra_vars={"count": 15, "seed": 7}), ["produce.yml"])
    stack = Stack.load(stack_file)
    workers = ProcessWorkers(stack.queue_name, poll_interval=1, env={**os.environ, **emulator.environment()},
                             logs=tmp_path / "workers")
    loop = emulated(stack, aws, workers)
    try:
        first = loop.step()
        assert first.desired == 2 and first.instances == 2 and first.in_service == 2  # ceil(15 / 10)
        # Each launch waited in Pending:Wait until the loop completed it for its started process.
        assert sum("launch action CONTINUE: InService" in d for d in first.decisions) == 2
        protected = loop.fleet.group()["Instances"][0]["InstanceId"]
        aws("autoscaling").set_instance_protection(AutoScalingGroupName=stack.group_name,
                                                   InstanceIds=[protected], ProtectedFromScaleIn=True)
        timeline = loop.run(until=lambda t: t[-1].desired == 0 and t[-1].terminating == 0, max_periods=30,
                            period_seconds=1.0)
    finally:
        workers.stop()

    assert timeline[-1].desired == 0 and timeline[-1].instances == 1  # the desired capacity drops regardless
    assert [i["InstanceId"] for i in loop.fleet.group()["Instances"]] == [protected]
    scale_in = next(p for p in timeline if p.desired == 0)
    assert "1 instance(s) protected from scale-in kept running" in scale_in.decisions
    # The other one drained and its termination action was completed as soon as its worker exited: gone within
    # the period, not after the drain hook's 300 s heartbeat.
    assert (scale_in.instances, scale_in.terminating) == (1, 0)
    assert any("termination action was completed with CONTINUE" in d for d in scale_in.decisions)
    assert not [d for p in timeline for d in p.decisions if "heartbeat timed out" in d]

    published = aws("cloudwatch").get_metric_data(
        MetricDataQueries=[{"Id": "visible", "MetricStat": {"Metric": {
            "Namespace": "AWS/SQS", "MetricName": "ApproximateNumberOfMessagesVisible",
            "Dimensions": [{"Name": "QueueName", "Value": stack.queue_name}]}, "Period": 60, "Stat": "Maximum"}}],
        StartTime=loop.scaling.stamp(0), EndTime=loop.scaling.stamp(len(timeline)))["MetricDataResults"][0]
    assert len(published["Values"]) == len(timeline)  # one data point per period, one minute apart
    assert max(published["Values"]) == 15


def test_an_alarm_period_of_two_minutes_is_evaluated_every_second_minute_on_its_maximum(
        emulator, run_playbook, aws, stack_file, tmp_path):
    emulator.reset()
    site = run_playbook("site.yml", extra_vars={**SQS, "scaling_period": 120, "scaling_idle_window": 240})
    assert_ok(site, ["site.yml"])
    assert_ok(run_playbook("produce.yml", extra_vars={"count": 25, "seed": 5}), ["produce.yml"])
    stack = Stack.load(stack_file)
    workers = ProcessWorkers(stack.queue_name, poll_interval=60, env={**os.environ, **emulator.environment()},
                             logs=tmp_path / "workers")
    loop = emulated(stack, aws, workers)
    try:
        first, second = loop.step(), loop.step()
    finally:
        workers.stop()
    assert first.desired == 0 and first.alarms["scale_out"] == "INSUFFICIENT_DATA"  # its period has not ended
    assert second.desired == 3 and second.alarms["scale_out"] == "ALARM"  # max of the two minutes: 25 -> 3


def test_actions_nobody_completes_time_out_launch_abandoned_and_drain_after_its_heartbeat(
        emulator, run_playbook, aws, stack_file):
    emulator.reset()
    assert_ok(run_playbook("site.yml", extra_vars={"scaling_idle_window": 120, "fleet_launch_timeout": 120}),
              ["site.yml"])
    assert_ok(run_playbook("produce.yml", extra_vars={"count": 5, "seed": 3}), ["produce.yml"])
    stack = Stack.load(stack_file)
    loop = emulated(stack, aws, SilentWorkers())
    first = loop.step()
    launched = {i["InstanceId"] for i in loop.fleet.group()["Instances"]}
    # Launched, running, but not in service: nothing said it works.
    assert (first.desired, first.instances, first.in_service) == (1, 1, 0)
    tick = loop.scaling.tick_seconds
    launch_ticks, drain_ticks = 120 // tick, 300 // tick
    timeline = loop.run(until=lambda t: any("launch abandoned" in d for d in t[-1].decisions),
                        max_periods=launch_ticks + 4, period_seconds=1.0)
    abandoned = timeline[-1]
    # The 120 s launch heartbeat spans 120 s of ticks; its default result ABANDON terminates the instance, and
    # Auto Scaling launches a replacement to keep the desired capacity.
    assert launch_ticks <= abandoned.minute <= launch_ticks + 1 and all(p.in_service == 0 for p in timeline)
    assert any("launch abandoned (heartbeat timed out)" in d for d in abandoned.decisions)
    replacement = {i["InstanceId"] for i in loop.fleet.group()["Instances"]}
    assert len(replacement) == 1 and not replacement & launched

    # A terminating instance whose action nobody completes waits out the drain hook's 300 s heartbeat, still
    # running and billed, then goes.
    victim = replacement.pop()
    loop.scaling.resize(abandoned.minute, loop.fleet.group(), 0, [])
    timeline = loop.run(until=lambda t: t[-1].terminating == 0, max_periods=drain_ticks + 4, period_seconds=1.0)
    waited = [p.terminating for p in timeline[abandoned.minute + 1:]]
    assert waited[-1] == 0 and set(waited[:-1]) == {1} and drain_ticks - 1 <= len(waited) - 1 <= drain_ticks + 1
    assert f"{victim}: terminated, its heartbeat timed out" in timeline[-1].decisions
