"""Whether the metric data a report draws is the run's own: each series read back from CloudWatch over the run's
span, set against what the run's timeline says was published in it.

On the emulator the local loop (sqs_fleet.sim.loop) publishes, at the first tick of each AWS minute, the queue's
counts that tick read and the group's size after its decisions: the very values of that tick's row of the
timeline. So a widget's series of one of those metrics is known in advance, bucket by bucket, for the widget's
statistic and period; a point that differs, or one where the run published nothing, is another run's data (or a
loop that published something else) and fails the report instead of reaching it. Metrics the timeline does not
record (the backlog publisher's, read a moment after the tick's counts; CPU; expressions, computed from the
checked series) are not checked here.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from sqs_fleet.sim.loop import Period
from sqs_fleet.sim.semantics import aggregate

Dimensions = tuple[tuple[str, str], ...]  # (name, value) pairs, sorted
MetricId = tuple[str, str, Dimensions]  # namespace, metric name, dimensions
Series = Mapping[datetime.datetime, float]
SHOWN = 5  # mismatches shown per series: enough to see the pattern


class Inconsistent(RuntimeError):
    """The data drawn disagrees with the run's timeline."""


def metric_id(namespace: str, name: str, dimensions: Mapping[str, str]) -> MetricId:
    return namespace, name, tuple(sorted(dimensions.items()))


def timeline_metrics(queue: str, dead_letter_queue: str, group: str) -> dict[MetricId, Callable[[Period], float]]:
    """The metrics the loop publishes, each with the timeline's column it publishes."""
    def sqs(name: str, queue_name: str) -> MetricId:
        return metric_id("AWS/SQS", name, {"QueueName": queue_name})

    def autoscaling(name: str) -> MetricId:
        return metric_id("AWS/AutoScaling", name, {"AutoScalingGroupName": group})

    return {
        sqs("ApproximateNumberOfMessagesVisible", queue): lambda p: p.visible,
        sqs("ApproximateNumberOfMessagesNotVisible", queue): lambda p: p.in_flight,
        sqs("ApproximateNumberOfMessagesVisible", dead_letter_queue): lambda p: p.dead_letters,
        autoscaling("GroupDesiredCapacity"): lambda p: p.desired,
        autoscaling("GroupInServiceInstances"): lambda p: p.in_service,
        autoscaling("GroupTotalInstances"): lambda p: p.instances,
    }


def published_points(timeline: Sequence[Period], start: datetime.datetime, queue: str, dead_letter_queue: str,
                     group: str) -> dict[MetricId, dict[datetime.datetime, float]]:
    """What the run published, per metric: one point at each minute's first tick, stamped `start` (the run's
    clock) plus the tick's AWS seconds."""
    columns = timeline_metrics(queue, dead_letter_queue, group)
    minutes = [p for p in timeline if p.seconds % 60 == 0]
    return {key: {start + datetime.timedelta(seconds=p.seconds): float(column(p)) for p in minutes}
            for key, column in columns.items()}


def expected_series(points: Series, start: datetime.datetime, period: int, stat: str) -> dict[datetime.datetime, float]:
    """What GetMetricData returns for these points from `start`: one value per `period`-second bucket holding any,
    stamped with the bucket's start."""
    buckets: dict[datetime.datetime, list[float | None]] = {}  # aggregate() takes missing points too
    for moment, value in points.items():
        index = int((moment - start).total_seconds() // period)
        buckets.setdefault(start + datetime.timedelta(seconds=index * period), []).append(value)
    expected = {}
    for moment, values in buckets.items():
        # Any percentile of one value is the value.
        bucket = values[0] if stat.startswith("p") and len(values) == 1 else aggregate(values, stat)
        if bucket is not None:
            expected[moment] = bucket
    return expected


def mismatches(series: Series, points: Series, start: datetime.datetime, period: int, stat: str) -> list[str]:
    """Where a series read over the run differs from the run's own points (minutes: AWS minutes of the run)."""
    expected = expected_series(points, start, period, stat)

    def when(moment: datetime.datetime) -> str:
        minutes = (moment - start).total_seconds() / 60
        return f"minute {minutes:g} ({moment.astimezone(datetime.timezone.utc):%H:%M} UTC)"

    found = []
    for moment in sorted({*expected, *series}):
        if moment not in series:
            found.append(f"{when(moment)} has no point where the timeline gives {expected[moment]:g}")
        elif moment not in expected:
            found.append(f"{when(moment)} reads {series[moment]:g} where the run published nothing")
        elif abs(series[moment] - expected[moment]) > 1e-9:
            found.append(f"{when(moment)} reads {series[moment]:g} where the timeline gives {expected[moment]:g}")
    return found


def describe(what: str, key: MetricId, stat: str, period: int, found: Sequence[str]) -> str:
    namespace, name, dimensions = key
    shown = "; ".join(found[:SHOWN]) + (f"; and {len(found) - SHOWN} more" if len(found) > SHOWN else "")
    return (f"{what}: {namespace} {name} ({', '.join(v for _, v in dimensions)}), {stat} per {period} s: "
            f"{shown}")


def evidence_problems(metrics: Sequence[MetricId], maxima: Sequence[Series], points: Mapping[MetricId, Series],
                      start: datetime.datetime) -> list[str]:
    """The evidence table's one-minute maxima (`maxima`, one series per metric) that the run's points contradict."""
    problems = []
    for key, series in zip(metrics, maxima, strict=True):
        found = mismatches(series, points[key], start, 60, "Maximum") if key in points else []
        if found:
            problems.append(describe("metric evidence", key, "Maximum", 60, found))
    return problems


def widget_problems(out: Path, images: Sequence[Sequence[str]],
                    points: Mapping[MetricId, Series], start: datetime.datetime) -> list[str]:
    """Every metric series of the widgets drawn locally (the data beside each image, as the report holds it) that
    the run's points contradict; images: render_dashboards' (dashboard, title, path, made) entries."""
    problems = []
    for dashboard, title, path, _ in images:
        data_file = (out / path).with_suffix(".json")
        if not data_file.exists():
            continue  # not a metric widget drawn here (CloudWatch's image, an alarm table, a query)
        for label, entry in json.loads(data_file.read_text()).items():
            metric: dict[str, Any] | None = entry.get("metric")
            if not metric:
                continue  # an expression: computed from the series checked here
            key = metric_id(metric["namespace"], metric["name"], metric["dimensions"])
            if key not in points:
                continue  # not a metric the timeline records
            series = {datetime.datetime.fromisoformat(t.replace("Z", "+00:00")): float(v) for t, v in entry["points"]}
            found = mismatches(series, points[key], start, int(entry["period"]), str(entry["stat"]))
            if found:
                problems.append(describe(f"widget {title!r} of {dashboard} ({path}), series {label!r}", key,
                                         str(entry["stat"]), int(entry["period"]), found))
    return problems


def check(problems: Sequence[str], design: str) -> None:
    """Fail the report when any series disagrees with the run's timeline, naming each."""
    if problems:
        raise Inconsistent(
            f"the metric data read over the {design} design's run disagrees with its own timeline, so REPORT.md is "
            "not written (another run's points under the same names, or the loop published something else):\n- "
            + "\n- ".join(problems))
