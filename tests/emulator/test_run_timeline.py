"""Two runs of the local loop on one stack, one after the other, as `--compare` plays its designs: a played tick
stamps more AWS time than it lasts, so the first run's points lie ahead of the clock when the second starts. The
second run's clock starts after them, and its widgets, its evidence and its alarms read its own points only."""

from __future__ import annotations

import datetime
import json
from collections.abc import Sequence

from sqs_fleet.lab.lifecycle import LifecycleActions
from sqs_fleet.scaletest.consistency import published_points, widget_problems
from sqs_fleet.scaletest.evidence import metric_evidence
from sqs_fleet.scaletest.widgets import render_dashboards
from sqs_fleet.sim.clock import clock_after
from sqs_fleet.sim.fleet import Fleet
from sqs_fleet.sim.loop import FleetWatch, Period
from sqs_fleet.sim.scaling import EmulatedScaling
from sqs_fleet.stack import Stack

TICKS = 13  # two AWS minutes and a tick at 10 s a tick: points at minutes 0, 1 and 2


class IdleWorkers:
    """Workers that start and stop with their instances but take no message: the backlog stays, and so does the
    group's size. The loop completes their lifecycle actions, as for local processes."""

    completes_lifecycle = False

    def __init__(self) -> None:
        self.running: set[str] = set()

    def follow(self, instances: Sequence[str]) -> list[str]:
        self.running = set(instances)
        return []

    def in_service(self) -> set[str]:
        return set(self.running)

    def stop(self) -> None:
        self.running = set()


# `stack`: the module's site.yml (conftest's `deployed`) of the current design, with 10-second ticks.
def play(stack: Stack, aws) -> tuple[FleetWatch, list[Period]]:
    fleet = Fleet(stack, aws)
    watch = FleetWatch(fleet, EmulatedScaling(fleet, IdleWorkers(), LifecycleActions()))
    return watch, watch.run(until=lambda timeline: False, max_periods=TICKS, period_seconds=0.0)


def test_a_second_run_reads_none_of_the_first_runs_points(stack: Stack, aws, tmp_path):
    queue = aws("sqs").get_queue_url(QueueName=stack.queue_name)["QueueUrl"]
    for batch in range(4):
        aws("sqs").send_message_batch(QueueUrl=queue, Entries=[
            {"Id": str(n), "MessageBody": json.dumps({"n": batch * 10 + n})} for n in range(10)])
    first, first_timeline = play(stack, aws)
    assert [p.desired for p in first_timeline if p.seconds % 60 == 0] == [4, 4, 4]  # 40 messages, 10 each

    # The burst gone and the group back to zero, the same stack plays again at once.
    aws("sqs").purge_queue(QueueUrl=queue)
    aws("autoscaling").set_desired_capacity(AutoScalingGroupName=stack.group_name, DesiredCapacity=0)
    second, second_timeline = play(stack, aws)
    assert isinstance(first.scaling, EmulatedScaling) and isinstance(second.scaling, EmulatedScaling)
    assert [p.desired for p in second_timeline] == [0] * TICKS
    # Its alarms read its own points: an empty queue, never in ALARM.
    assert all(p.alarms["scale_out"] != "ALARM" for p in second_timeline)

    start, end = second.scaling.stamp(0), second.scaling.stamp(TICKS)
    images = render_dashboards(aws("cloudwatch"), list(stack.dashboards.values()), start, end, tmp_path,
                               on_aws=False)
    points = published_points(second_timeline, start, stack.queue_name, stack.dead_letter_queue_name,
                              stack.group_name)
    assert widget_problems(tmp_path, images, points, start) == []
    instances = next(image for image in images if image.title == "Instances: desired and in service")
    drawn = json.loads((tmp_path / instances.path).with_suffix(".json").read_text())
    assert [value for _, value in drawn["desired"]["points"]] == [0.0, 0.0, 0.0]
    # The evidence table reads the same span: nothing of the first run's 40 messages nor its 4 instances.
    evidence = metric_evidence(aws("cloudwatch"), stack.queue_name, stack.dead_letter_queue_name,
                               stack.group_name, start, end)
    assert {name: m["peak"] for name, m in evidence.items()} == {name: 0.0 for name in evidence}
    assert second.scaling.stamp(0) > first.scaling.stamp(TICKS - 1)  # after the first run's last point


def test_the_clock_starts_the_minute_after_the_last_point_ahead(stack: Stack, aws):
    """Found hour by hour then minute by minute: a point five hours ahead, 20 s into its minute."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ahead = now.replace(second=20, microsecond=0) + datetime.timedelta(hours=5, minutes=7)
    fleet = Fleet(stack, aws)
    dimensions = [("QueueName", fleet.dlq_name)]
    aws("cloudwatch").put_metric_data(Namespace="AWS/SQS", MetricData=[{
        "MetricName": "ApproximateNumberOfMessagesVisible", "Value": 0.0, "Timestamp": ahead,
        "Dimensions": [{"Name": "QueueName", "Value": fleet.dlq_name}]}])
    assert clock_after(fleet.cloudwatch, dimensions, now) == ahead.replace(second=0) + datetime.timedelta(minutes=1)
