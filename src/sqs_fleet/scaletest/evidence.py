"""The evidence of a run: the metric data CloudWatch holds over it, the dashboards, the consumers' log lines, the
dead-letter queue, the nodes' bootstrap logs. On the emulator the metric data read back must be the run's own
(sqs_fleet.scaletest.consistency): a series that disagrees with the timeline fails the run."""

from __future__ import annotations

import datetime
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqs_fleet.scaletest.config import ScaleTestConfig
from sqs_fleet.scaletest.consistency import (
    MetricId,
    check,
    evidence_problems,
    metric_id,
    published_points,
    widget_problems,
)
from sqs_fleet.scaletest.targets import Target
from sqs_fleet.scaletest.widgets import WidgetImage, render_dashboards
from sqs_fleet.sim.loop import Period
from sqs_fleet.sim.scaling import EmulatedScaling


def evidence_metrics(queue: str, dlq: str, group: str, pending: dict[str, Any] | None = None) -> list[MetricId]:
    """The metrics the evidence table reads: the queue's depth and the dead letters (on Redis, the publisher's
    PendingJobs and DeadJobs instead of the SQS queue's), and the group's size."""
    group_metrics = [metric_id("AWS/AutoScaling", name, {"AutoScalingGroupName": group})
                     for name in ("GroupDesiredCapacity", "GroupInServiceInstances")]
    if pending:
        return [metric_id(pending["namespace"], pending["name"], pending["dimensions"]),
                metric_id(pending["namespace"], "DeadJobs", pending["dimensions"]), *group_metrics]
    return [metric_id("AWS/SQS", "ApproximateNumberOfMessagesVisible", {"QueueName": queue}),
            metric_id("AWS/SQS", "ApproximateNumberOfMessagesNotVisible", {"QueueName": queue}),
            metric_id("AWS/SQS", "ApproximateNumberOfMessagesVisible", {"QueueName": dlq}), *group_metrics]
def one_minute_maxima(cloudwatch: Any, metrics: Sequence[MetricId], start: datetime.datetime,
                      end: datetime.datetime) -> list[dict[datetime.datetime, float]]:
    """Each metric's one-minute maxima over [start, end), as CloudWatch returns them."""
    queries = [{"Id": f"m{n}", "MetricStat": {
        "Metric": {"Namespace": namespace, "MetricName": name,
                   "Dimensions": [{"Name": key, "Value": value} for key, value in dimensions]},
        "Period": 60, "Stat": "Maximum"}} for n, (namespace, name, dimensions) in enumerate(metrics)]
    results = cloudwatch.get_metric_data(MetricDataQueries=queries, StartTime=start, EndTime=end,
                                         ScanBy="TimestampAscending")["MetricDataResults"]
    return [dict(zip(result.get("Timestamps", []), result.get("Values", []))) for result in results]


def summarise(metrics: Sequence[MetricId],
              maxima: Sequence[dict[datetime.datetime, float]]) -> dict[str, dict[str, Any]]:
    """Points, peak and last value per metric, by `<namespace> <metric> (<dimension value>)`."""
    evidence = {}
    for (namespace, name, dimensions), series in zip(metrics, maxima, strict=True):
        values = [series[moment] for moment in sorted(series)]
        evidence[f"{namespace} {name} ({', '.join(v for _, v in dimensions)})"] = {
            "points": len(values), "peak": max(values, default=None), "last": values[-1] if values else None}
    return evidence


def metric_evidence(cloudwatch: Any, queue: str, dlq: str, group: str, start: datetime.datetime,
                    end: datetime.datetime, pending: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """What CloudWatch holds for the run, one-minute maxima: points, peak and last value per metric."""
    metrics = evidence_metrics(queue, dlq, group, pending)
    return summarise(metrics, one_minute_maxima(cloudwatch, metrics, start, end))


def dashboards(cloudwatch: Any, names: Sequence[str]) -> dict[str, list[str]]:
    """The stack's dashboards as CloudWatch holds them: each widget's title and what it shows."""
    described = {}
    for name in names:
        body = json.loads(cloudwatch.get_dashboard(DashboardName=name)["DashboardBody"])
        widgets = []
        for widget in body["widgets"]:
            properties = widget.get("properties", {})
            shows = (", ".join(sorted({m[1] for m in properties.get("metrics", []) if len(m) > 1
                                       and isinstance(m[1], str)})) or properties.get("query", "")[:60]
                     or f"{len(properties.get('alarms', []))} alarms")
            widgets.append(f"{properties.get('title', widget['type'])} ({widget['type']}: {shows})")
        described[name] = widgets
    return described


def dead_letter_sample(sqs: Any, queue_url: str) -> list[str]:
    """Up to three dead letters, read without hiding them from anyone else."""
    messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=3, VisibilityTimeout=0,
                                   WaitTimeSeconds=0).get("Messages", [])
    return [m["Body"] for m in messages]


def machine() -> str:
    cores = os.cpu_count()
    memory = next((int(line.split()[1]) // 1024 // 1024 for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal")), 0) if Path("/proc/meminfo").exists() else 0
    return f"{cores} cores, {memory} GiB, {sys.platform}"


def bootstrap_logs(folder: Path) -> list[Path]:
    """The nodes' bootstrap logs, those whose bootstrap finished first: a node scaled in while it was still
    booting (allowed in Pending:Wait) stops mid-playbook, and the report quotes the first log's end."""
    return sorted(folder.glob("*.bootstrap.txt"), key=lambda log: ("bootstrap: done" not in log.read_text(), log.name))


@dataclass
class Evidence:
    """What a run leaves behind, read once it is over."""

    events: list[dict[str, Any]]  # the consumers' log lines
    span: tuple[datetime.datetime, datetime.datetime]  # the run's metric window
    metrics: dict[str, dict[str, Any]]  # per metric: points, peak and last value
    dashboards: dict[str, list[str]]
    images: list[WidgetImage]  # the dashboards rendered (sqs_fleet.scaletest.widgets)
    dead_letters: list[str]


def gather(config: ScaleTestConfig, target: Target, timeline: list[Period], design: str) -> Evidence:
    """The run's evidence; on the emulator, Inconsistent when what is read back is not what the loop published."""
    watch, stack = target.watch, target.stack
    fleet = watch.fleet
    dead_letters = ([item.decode() for item in target.broker.lrange(fleet.dlq_name, 0, 2)] if target.broker
                    else dead_letter_sample(fleet.sqs, fleet.queues[fleet.dlq_name]))
    boards = dashboards(fleet.cloudwatch, list(stack.dashboards.values()))
    events = target.events(config.messages - timeline[-1].dead_letters)
    span = target.span(len(timeline))
    # On Redis the backlog is the publisher's PendingJobs; an SQS stack's record names it too, unused.
    metrics = evidence_metrics(fleet.queue_name, fleet.dlq_name, fleet.group_name,
                               stack.broker.get("pending_metric") if stack.on_redis else None)
    maxima = one_minute_maxima(fleet.cloudwatch, metrics, *span)
    # What a user would see on the dashboards over the run.
    images = render_dashboards(fleet.cloudwatch, list(stack.dashboards.values()), *span, config.out, config.on_aws)
    if isinstance(watch.scaling, EmulatedScaling):
        # The loop published the timeline's own values: what is read back over the span must be those.
        points = published_points(timeline, span[0], fleet.queue_name, fleet.dlq_name, fleet.group_name)
        check(evidence_problems(metrics, maxima, points, span[0])
              + widget_problems(config.out, images, points, span[0]), design)
    return Evidence(events, span, summarise(metrics, maxima), boards, images, dead_letters)
