"""The report's check of the data it draws against the run's own timeline: the group of a run of 10-second ticks
goes 4 -> 3 -> 2 -> 1 from minute 3.5 and holds 1 from minute 4.5, so its desired capacity's one-minute maxima
read 4, 4, 4, 4, 3, 1, 1, 1, 1; a widget that reads 4 throughout (another run's points under the same names)
fails the report with the minutes, the values and the widget named."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import pytest

from sqs_fleet.scaletest.consistency import (
    Inconsistent,
    check,
    evidence_problems,
    expected_series,
    metric_id,
    mismatches,
    published_points,
    widget_problems,
)
from sqs_fleet.scaletest.widgets import RENDERED, timestamp
from sqs_fleet.sim.loop import Period

QUEUE, DLQ, GROUP = "fleet-queue", "fleet-dlq", "fleet-workers"
START = datetime.datetime(2026, 12, 2, 4, 9, tzinfo=datetime.timezone.utc)
TICK = 10
# Desired capacity per 10-second tick: 4 until minute 3.5, then 3, 2 at 4.33, 1 from 4.5 to 8.8, then 0.
DESIRED = [4] * 21 + [3] * 5 + [2] + [1] * 26 + [0]
DESIRED_ID = metric_id("AWS/AutoScaling", "GroupDesiredCapacity", {"AutoScalingGroupName": GROUP})


def timeline() -> list[Period]:
    return [Period(minute=i, seconds=i * TICK, at=1000.0 + i, visible=max(0, 200 - 10 * i), in_flight=0,
                   dead_letters=0, desired=d, instances=d, in_service=d, terminating=0, alarms={})
            for i, d in enumerate(DESIRED)]


def minutes(values: list[float]) -> dict[datetime.datetime, float]:
    return {START + datetime.timedelta(minutes=m): v for m, v in enumerate(values)}


def test_the_run_published_one_point_a_minute_and_its_maxima_are_the_timelines():
    points = published_points(timeline(), START, QUEUE, DLQ, GROUP)
    assert expected_series(points[DESIRED_ID], START, 60, "Maximum") == minutes([4, 4, 4, 4, 3, 1, 1, 1, 1])
    # Over five-minute periods: the maximum of the points in each, or their average.
    later = START + datetime.timedelta(minutes=5)
    assert expected_series(points[DESIRED_ID], START, 300, "Maximum") == {START: 4, later: 1}
    assert expected_series(points[DESIRED_ID], START, 300, "Average") == {START: 3.8, later: 1}
    assert mismatches(minutes([4, 4, 4, 4, 3, 1, 1, 1, 1]), points[DESIRED_ID], START, 60, "Maximum") == []


def test_a_series_of_another_runs_points_is_named_minute_by_minute():
    points = published_points(timeline(), START, QUEUE, DLQ, GROUP)[DESIRED_ID]
    found = mismatches(minutes([4] * 9 + [4]), points, START, 60, "Maximum")
    assert found == ["minute 4 (04:13 UTC) reads 4 where the timeline gives 3",
                     "minute 5 (04:14 UTC) reads 4 where the timeline gives 1",
                     "minute 6 (04:15 UTC) reads 4 where the timeline gives 1",
                     "minute 7 (04:16 UTC) reads 4 where the timeline gives 1",
                     "minute 8 (04:17 UTC) reads 4 where the timeline gives 1",
                     "minute 9 (04:18 UTC) reads 4 where the run published nothing"]
    missing = mismatches(minutes([4, 4, 4]), points, START, 60, "Maximum")
    assert missing[0] == "minute 3 (04:12 UTC) has no point where the timeline gives 4"


def widget(out: Path, desired: list[float]) -> list[tuple[str, str, str, str]]:
    """A widget drawn locally as the report holds it: the image's data beside it, one series of the desired
    capacity and an expression (not checked: computed from the series)."""
    path = "report/widgets/fleet-ec2-1.png"
    (out / path).parent.mkdir(parents=True)
    (out / path).with_suffix(".json").write_text(json.dumps({
        "desired": {"id": "m1", "expression": None, "problem": None, "stat": "Maximum", "period": 60,
                    "metric": {"namespace": "AWS/AutoScaling", "name": "GroupDesiredCapacity",
                               "dimensions": {"AutoScalingGroupName": GROUP}},
                    "points": [[timestamp(t), v] for t, v in sorted(minutes(desired).items())]},
        "twice": {"id": "e1", "expression": "2 * m1", "problem": None, "stat": "Average", "period": 60,
                  "metric": None, "points": [[timestamp(START), 99.0]]}}))
    return [("fleet-ec2", "Instances: desired and in service", path, RENDERED)]


def test_a_widget_drawing_another_runs_points_fails_the_report_with_a_clear_message(tmp_path):
    points = published_points(timeline(), START, QUEUE, DLQ, GROUP)
    right, wrong = tmp_path / "right", tmp_path / "wrong"
    assert widget_problems(right, widget(right, [4, 4, 4, 4, 3, 1, 1, 1, 1]), points, START) == []

    problems = widget_problems(wrong, widget(wrong, [4] * 9), points, START)
    with pytest.raises(Inconsistent) as failed:
        check(problems, "current")
    message = str(failed.value)
    assert "current design's run disagrees with its own timeline, so REPORT.md is not written" in message
    assert ("widget 'Instances: desired and in service' of fleet-ec2 (report/widgets/fleet-ec2-1.png), series "
            "'desired': AWS/AutoScaling GroupDesiredCapacity (fleet-workers), Maximum per 60 s: minute 4 (04:13 UTC) "
            "reads 4 where the timeline gives 3; minute 5 (04:14 UTC) reads 4 where the timeline gives 1") in message
    assert message.count("\n- ") == 1  # one series wrong; the expression is not checked


def test_the_evidence_tables_maxima_are_checked_too():
    points = published_points(timeline(), START, QUEUE, DLQ, GROUP)
    visible = metric_id("AWS/SQS", "ApproximateNumberOfMessagesVisible", {"QueueName": QUEUE})
    backlog = metric_id("BMAT", "Backlog", {"QueueName": QUEUE})  # not in the timeline: not checked
    right = [minutes([4, 4, 4, 4, 3, 1, 1, 1, 1]), minutes([200, 140, 80, 20, 0, 0, 0, 0, 0]), minutes([7])]
    assert evidence_problems([DESIRED_ID, visible, backlog], right, points, START) == []
    wrong = [right[0], minutes([200, 140, 80, 20, 0, 0, 0, 0, 5]), right[2]]
    assert evidence_problems([DESIRED_ID, visible, backlog], wrong, points, START) == [
        "metric evidence: AWS/SQS ApproximateNumberOfMessagesVisible (fleet-queue), Maximum per 60 s: minute 8 "
        "(04:17 UTC) reads 5 where the timeline gives 0"]
