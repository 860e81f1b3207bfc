"""The figures, plots and REPORT.md of one run of the scale-out / scale-in test plan (sqs_fleet.scaletest.plan):
everything is drawn from the run's timeline, its workers' log lines and the evidence collected."""

from __future__ import annotations

import bisect
import datetime
import json
import math
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sqs_fleet.sim.loop import Period


def first(timeline: list[Period], condition: Callable[[Period], bool]) -> int | None:
    return next((p.minute for p in timeline if condition(p)), None)


def minute_of(starts: list[float], at: float, period_seconds: float) -> float:
    """Where a moment falls on the timeline's minutes: period i runs from its record (starts[i]) to the next
    one; before the first record is minute 0, and nothing counts past the last period."""
    i = max(0, bisect.bisect_right(starts, at) - 1)
    length = starts[i + 1] - starts[i] if i + 1 < len(starts) else period_seconds
    return i + min(max(0.0, at - starts[i]) / length, 0.99)


def processed_minutes(timeline: list[Period], events: list[dict[str, Any]], period_seconds: float) -> list[float]:
    """When each message was processed, in the timeline's minutes, earliest first."""
    starts = [p.at for p in timeline]
    return sorted(minute_of(starts, datetime.datetime.fromisoformat(e["ts"]).timestamp(), period_seconds)
                  for e in events if e["event"] == "message_processed")


def processed_per_period(minutes: list[float], periods: int) -> list[int]:
    """Messages processed in each period, from the moments processed_minutes placed on the timeline."""
    counts = Counter(int(minute) for minute in minutes)
    return [counts.get(period, 0) for period in range(periods)]


def figures(timeline: list[Period], events: list[dict[str, Any]], produced: int,
            processed_at: list[float]) -> dict[str, Any]:
    """The run's figures; processed_at: processed_minutes() of the same events."""
    processed = Counter(e["idempotency_key"] for e in events if e["event"] == "message_processed")
    repeats = sum(n - 1 for n in processed.values())
    skipped = sum(1 for e in events if e["event"] == "message_duplicate")
    first_processed = next(iter(processed_at), None)
    drained = first(timeline, lambda p: p.minute > 0 and p.visible + p.in_flight == 0)
    dead_letters = timeline[-1].dead_letters if timeline else 0
    return {
        "messages produced": produced,
        "messages processed": len(processed),
        "messages processed more than once": repeats,
        "redeliveries recognised and skipped": skipped,
        "messages lost": produced - len(processed) - dead_letters,
        "dead letters": dead_letters,
        "minutes to first scale-out": first(timeline, lambda p: p.desired > 0),
        "minutes to first instance in service": first(timeline, lambda p: p.in_service > 0),
        # Rounded down: a message processed in minute 1 is never reported as minute 2.
        "minutes to first message processed": None if first_processed is None
        else math.floor(first_processed * 10) / 10,
        "minutes to queue drained": drained,
        "minutes to zero instances": first(timeline, lambda p: drained is not None and p.minute > drained
                                           and p.desired == 0 and p.instances == 0),
        "peak instances": max((p.instances for p in timeline), default=0),
        "instance-minutes": sum(p.instances for p in timeline),
    }


# Generated files beside REPORT.md: the run's data and plots, in a folder of their own.
OUTPUTS = "report"
DATA_FILE = f"{OUTPUTS}/report-data.json"
QUEUE_PLOT = f"{OUTPUTS}/queue-and-instances.png"
PROCESSED_PLOT = f"{OUTPUTS}/processed-per-minute.png"


def plots(timeline: list[Period], processed: list[int], label: str, out: Path) -> list[str]:
    """The run's two plots, written under `out`; their paths relative to it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    minutes = [p.minute for p in timeline]
    figure, depth = plt.subplots(figsize=(9, 4))
    depth.plot(minutes, [p.visible for p in timeline], label="visible", color="tab:blue")
    depth.plot(minutes, [p.in_flight for p in timeline], label="in flight", color="tab:cyan")
    depth.set_xlabel("minute (one period)")
    depth.set_ylabel("messages")
    instances = depth.twinx()
    instances.step(minutes, [p.desired for p in timeline], where="post", label="desired", color="tab:red")
    instances.step(minutes, [p.instances for p in timeline], where="post", label="instances", color="tab:orange",
                   linestyle="--")
    instances.step(minutes, [p.in_service for p in timeline], where="post", label="in service", color="tab:green",
                   linestyle=":")
    instances.set_ylabel("instances")
    instances.set_ylim(0, max([p.desired for p in timeline] + [p.instances for p in timeline] + [1]) + 1)
    figure.legend(loc="upper center", ncol=5, bbox_to_anchor=(0.5, 0.93))
    depth.set_title(f"Queue depth and instances ({label})")
    figure.tight_layout()
    (out / OUTPUTS).mkdir(parents=True, exist_ok=True)
    figure.savefig(out / QUEUE_PLOT, dpi=100)
    plt.close(figure)

    figure, axis = plt.subplots(figsize=(9, 3))
    axis.bar(minutes, processed, color="tab:green")
    axis.set_xlabel("minute (one period)")
    axis.set_ylabel("messages processed")
    axis.set_title(f"Messages processed per minute ({label})")
    figure.tight_layout()
    figure.savefig(out / PROCESSED_PLOT, dpi=100)
    plt.close(figure)
    return [QUEUE_PLOT, PROCESSED_PLOT]


PROCESS = {
    "emulator": """\
1. `ansible-playbook site.yml` provisions the stack on the emulator.
2. The burst is produced with `files/producer.py` (what `produce.yml` runs).
3. Each period the local loop (`sqs_fleet.sim.loop`) reads the queue's counts and publishes them as the
   AWS/SQS metrics (one data point per minute), evaluates every alarm as CloudWatch does (M of N,
   treat-missing-data, the backlog expression `visible + inflight`), runs the step policy of each alarm in
   ALARM (re-invoked every period, as Auto Scaling does), sets the group's desired capacity on the
   emulator (on scale-in terminating only unprotected instances), and gives every instance of the group a
   worker. It plays the lifecycle hooks (emulation: the emulator has no lifecycle actions): a new instance
   waits in Pending:Wait and counts as in service only once its launch action is completed with CONTINUE
   (booted nodes complete it themselves once their consumer is active, ABANDON when their bootstrap fails;
   for local processes the loop completes it); a terminated instance stays in Terminating:Wait, still
   running, until its termination action is completed (a node's lifecycle watcher reads Terminated from the
   lab's metadata service, stops the consumer, which finishes the message in hand and releases the rest,
   then completes it) or the drain hook's heartbeat times out.
4. The run ends when the queue is drained and the group is back to zero; the figures come from the
   timeline and the workers' JSON logs, the metric evidence from the emulator's CloudWatch.""",
    "aws": """\
1. `ansible-playbook site.yml -i inventory/<env>` provisioned the stack in AWS.
2. The burst is produced with `files/producer.py` (what `produce.yml` runs).
3. CloudWatch evaluates the alarms and Auto Scaling runs the step policies; instances boot from the
   launch template's user-data (ansible-pull). Once a minute the plan records the queue's counts, the
   group's desired capacity, instances and in-service instances, the alarm states and the new scaling
   activities.
4. The run ends when the queue is drained and the group is back to zero; the figures come from the
   timeline and the consumers' log lines in CloudWatch Logs, the metric evidence from CloudWatch.""",
}


def instance_minutes_after_drain(numbers: dict[str, Any], timeline: list[dict[str, Any]]) -> int:
    drained = numbers["minutes to queue drained"]
    return sum(p["instances"] for p in timeline if drained is not None and p["minute"] > drained)


def observations(numbers: dict[str, Any], timeline: list[dict[str, Any]]) -> str:
    """What this run shows, in words drawn from its own timeline."""
    out = next((p for p in timeline if p["desired"] > 0), None)
    sizes = " -> ".join(str(d) for i, d in enumerate(p["desired"] for p in timeline)
                        if i == 0 or d != timeline[i - 1]["desired"])
    idle = instance_minutes_after_drain(numbers, timeline)
    lines = []
    if out is None:
        lines.append("The group never scaled out: check the scale-out alarm and its policy.")
    else:
        in_service = numbers["minutes to first instance in service"]
        lines.append(f"The first scale-out came in minute {out['minute']}, for a backlog of "
                     f"{out['visible'] + out['in_flight']} messages, to {out['desired']} instance(s) at once; "
                     f"the first message was processed at minute {numbers['minutes to first message processed']}"
                     + (f", and the instances were seen in service at the start of minute {in_service}: booting "
                        "and configuring a worker takes that long." if in_service and in_service > out["minute"]
                        else "."))
    lines.append(f"The desired capacity went {sizes}. Once the backlog is 0 the scale-out alarm returns to OK and "
                 "the group keeps its last size until the scale-in alarm has seen the whole idle window of empty "
                 f"periods: {idle} of the {numbers['instance-minutes']} instance-minutes came after the queue was "
                 "drained, the price of not scaling in on SQS's delayed or missing metrics.")
    waiting = sum(p.get("terminating", 0) for p in timeline)
    if waiting:
        lines.append(f"Terminated instances spent {waiting} instance-minutes in Terminating:Wait, held by the drain "
                     "lifecycle hook until their termination action was completed or its heartbeat timed out "
                     "(the decisions say which); their consumers drained before they went.")
    lines.append(f"Messages lost: {numbers['messages lost']}; dead letters: {numbers['dead letters']}.")
    if numbers["messages processed more than once"]:
        lines.append(f"{numbers['messages processed more than once']} message(s) were processed more than once, "
                     "by different workers: SQS standard queues deliver at least once, and a worker recognises "
                     "a redelivery only of what it has seen itself, so processing must be idempotent (the "
                     "idempotency key in each log line lets a downstream store drop the repeat).")
    return "\n".join(f"- {line}" for line in lines)


def dashboard_images(images: list[Sequence[str]]) -> str:
    """The "What the dashboards show" section: each widget's image with its caption and how it was made
    (images: sqs_fleet.scaletest.widgets.render_dashboards' (dashboard, title, path, made) entries)."""
    if not images:
        return ""
    shown = "\n\n".join(f"![{title}]({path})\n*`{dashboard}`: {title}; {made}.*"
                         for dashboard, title, path, made in images)
    return f"""
## What the dashboards show
Each widget of the stack's dashboards over the run's span, as a user opening them would see it. On AWS a
graph is CloudWatch's own image (GetMetricWidgetImage); on the emulator, which has none, it is drawn
from the widget's JSON as CloudWatch holds it and the metric data GetMetricData returns, and says so.

{shown}
"""


def report(result: dict[str, Any], final_alarms: dict[str, str]) -> str:
    """REPORT.md: the test process, what was observed, the figures and the evidence, from one run."""
    conditions, numbers, timeline = result["conditions"], result["figures"], result["timeline"]
    rows = "\n".join(f"| {name} | {value} |" for name, value in numbers.items())
    periods = "\n".join(
        f"| {p['minute']} | {p['visible']} | {p['in_flight']} | {p['processed']} | {p['desired']} | "
        f"{p['instances']} | {p['in_service']} | {p['terminating']} | {'; '.join(p['decisions']) or ''} |"
        for p in timeline)
    excerpt = "\n".join(json.dumps(e) for e in result["worker log excerpt"])
    metrics = "\n".join(f"| {name} | {m['points']} | {m['peak']} | {m['last']} |"
                        for name, m in result["metric evidence"].items())
    boot_lines = result.get("bootstrap log excerpt")
    bootstrap = ("\n## Bootstrap log of one node (user-data, ansible-pull)\n\n```text\n"
                 + "\n".join(boot_lines) + "\n```\n") if boot_lines else ""
    dead = "\n".join(f"- `{body}`" for body in result["dead letters sample"]) or "- none"
    boards = "\n\n".join(f"`{name}`:\n" + "\n".join(f"- {widget}" for widget in widgets)
                           for name, widgets in result["dashboards"].items())
    busy = numbers["instance-minutes"] - instance_minutes_after_drain(numbers, timeline)
    return f"""# Scale-out / scale-in test report

Produced by `{conditions["command"]}` on {result["date"]}: **{result["produced by"]}**.
Conditions: {conditions["messages"]} messages in one burst; one "minute" (an alarm period) lasted
{conditions["seconds per minute"]} s; workers: {conditions["workers"]}; machine: {conditions["machine"]}.
The stack is the one `site.yml` made ({conditions["stack"]}); alarms, policies and group bounds were read
back from it, not from the project's variables.

## Test process
{PROCESS[result["target"]]}

## Figures

| figure | value |
| --- | --- |
{rows}

Minutes are alarm periods, counted from the first period, which began as soon as the burst was sent; a
message processed between two periods' records counts in the earlier one.
Alarm states at the end: {", ".join(f"{k} {v}" for k, v in final_alarms.items())}.

![Queue depth and instances]({QUEUE_PLOT})

![Messages processed per minute]({PROCESSED_PLOT})

## Observations
{observations(numbers, timeline)}

## Timeline (one row per period) and the decisions

| minute | visible | in flight | processed | desired | instances | in service | terminating | decisions |
| --- | --- | --- | --- | --- | --- | --- | --- | --- |
{periods}

## Metric data in CloudWatch (one-minute maxima over the run)

| metric | points | peak | last |
| --- | --- | --- | --- |
{metrics}

## Consumer log excerpt ({result["log source"]})

```json
{excerpt}
```
{bootstrap}
## Dead-letter queue
{dead}

## Dashboards
The dashboards' JSON as CloudWatch holds it, widget by widget (title, type, what it shows). On the
emulator only the metrics the loop publishes (AWS/SQS queue depths, AWS/AutoScaling group sizes) have
data; share them as the README says.

{boards}
{dashboard_images(result.get("dashboard images", []))}
## Reproducing on AWS
`ansible-playbook site.yml -i inventory/prod`, then `ansible-playbook scale_test.yml -i inventory/prod`:
the same plan with real CloudWatch and Auto Scaling (one minute per period), its evidence taken from the
scaling activities, CloudWatch metric data and CloudWatch Logs; it rewrites this report and labels it
as an AWS run. {result["aws note"]}

## Compared with the reference designs
The public solutions of this exercise scale with simple +4/-4 policies on the visible count, with no
dead-letter queue and no protection of in-flight work. Replayed on this run's timeline (a model, not a
run of those solutions): scaling in as soon as the visible count reads 0 would have stopped at minute
{numbers["minutes to queue drained"]} and used about {busy} instance-minutes instead of
{numbers["instance-minutes"]}. That saving comes from terminating workers while the visible count
excludes the messages they hold in flight and while SQS's metrics can lag by minutes, so their
messages return after the visibility timeout, and a poison message without a dead-letter queue keeps
a worker busy until its retention runs out. Here a burst gets the instances its backlog needs (never
more), poison messages end in a dead-letter queue with an alarm, and scale-in waits for an empty
backlog, in flight included, before it stops workers that drain on SIGTERM; `scaling_idle_window`
sets how much idle time that insurance costs.
"""
