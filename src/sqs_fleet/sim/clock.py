"""The run's clock on CloudWatch: tick t of a run is stamped the clock's start + t ticks on the metrics the loop
publishes, so CloudWatch holds one data point per period, as AWS would, at any time scale.

A played tick is shorter than the AWS time it stamps, so an earlier run may have stamped points past now under
the same names: the clock starts after them, and nothing read over this run's span is another run's.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from typing import Any

# How far past now the clock looks for an earlier run's points: each run played on one emulator moves the
# stamps further ahead by the AWS time it plays less the real time it takes (a few hours at most per run).
CLOCK_HORIZON = datetime.timedelta(days=14)


def latest_point(cloudwatch: Any, metrics: Sequence[dict[str, Any]], start: datetime.datetime,
                 end: datetime.datetime, period: int) -> datetime.datetime | None:
    """The start of the last `period`-second bucket from `start` holding a data point of any of `metrics`
    (ListMetrics' entries) before `end`, or None."""
    stamps: list[datetime.datetime] = []
    for first in range(0, len(metrics), 500):  # GetMetricData takes 500 queries at most
        queries = [{"Id": f"m{n}", "ReturnData": True, "MetricStat": {"Metric": metric, "Period": period,
                                                                      "Stat": "SampleCount"}}
                   for n, metric in enumerate(metrics[first:first + 500])]
        for page in cloudwatch.get_paginator("get_metric_data").paginate(
                MetricDataQueries=queries, StartTime=start, EndTime=end, ScanBy="TimestampDescending"):
            stamps += [moment for result in page["MetricDataResults"] for moment in result["Timestamps"]]
    return max(stamps, default=None)


def clock_after(cloudwatch: Any, dimensions: Sequence[tuple[str, str]], now: datetime.datetime,
                horizon: datetime.timedelta = CLOCK_HORIZON) -> datetime.datetime:
    """Where a run's clock starts: the current minute, or the minute after the last data point CloudWatch holds
    past it for any metric of these dimensions (an earlier run's, stamped ahead of real time), whichever is later.
    Found hour by hour, then minute by minute within the last hour that holds one."""
    start = now.astimezone(datetime.timezone.utc).replace(second=0, microsecond=0)
    metrics: list[dict[str, Any]] = []
    for name, value in dimensions:
        for page in cloudwatch.get_paginator("list_metrics").paginate(Dimensions=[{"Name": name, "Value": value}]):
            for listed in page["Metrics"]:
                metric = {key: listed[key] for key in ("Namespace", "MetricName", "Dimensions")}
                if metric not in metrics:
                    metrics.append(metric)
    if not metrics:
        return start
    hour = latest_point(cloudwatch, metrics, start, start + horizon, 3600)
    if hour is None:
        return start
    minute = latest_point(cloudwatch, metrics, hour, hour + datetime.timedelta(hours=1), 60)
    return max(start, (minute or hour) + datetime.timedelta(minutes=1))


class RunClock:
    """A run's ticks as CloudWatch timestamps, and the AWS metrics published on them."""

    def __init__(self, cloudwatch: Any, dimensions: Sequence[tuple[str, str]], tick_seconds: int) -> None:
        self.cloudwatch, self.tick_seconds = cloudwatch, tick_seconds
        self.start = clock_after(cloudwatch, dimensions, datetime.datetime.now(datetime.timezone.utc))

    def stamp(self, tick: int) -> datetime.datetime:
        return self.start + datetime.timedelta(seconds=tick * self.tick_seconds)

    def put_queue_metrics(self, tick: int, counts: Mapping[tuple[str, str], float]) -> None:
        """This minute's AWS/SQS data points, as SQS publishes them once a minute: what the SQS alarms read."""
        self.cloudwatch.put_metric_data(Namespace="AWS/SQS", MetricData=[
            {"MetricName": metric, "Dimensions": [{"Name": "QueueName", "Value": queue}], "Value": value,
             "Timestamp": self.stamp(tick)} for (queue, metric), value in counts.items()])

    def put_group_metrics(self, tick: int, group_name: str, values: Sequence[tuple[str, float]]) -> None:
        """The group's size at the end of this period (AWS/AutoScaling group metrics, one-minute granularity)."""
        self.cloudwatch.put_metric_data(Namespace="AWS/AutoScaling", MetricData=[
            {"MetricName": metric, "Dimensions": [{"Name": "AutoScalingGroupName", "Value": group_name}],
             "Value": value, "Timestamp": self.stamp(tick)} for metric, value in values])
