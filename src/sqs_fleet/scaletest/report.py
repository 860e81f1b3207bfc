"""REPORT.md of one run of the scale-out / scale-in test plan (sqs_fleet.scaletest.plan): everything is drawn
from the run's result (its figures and plots, sqs_fleet.scaletest.figures, its timeline and the evidence
collected).

A period of the timeline is one tick of the run: `tick_seconds` of AWS time (60 s on AWS; on the emulator 10 s
when an alarm reads 10-second periods). Figures are in AWS time, never in ticks."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqs_fleet.scaletest.figures import PROCESSED_PLOT, QUEUE_PLOT

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


def observations(numbers: dict[str, Any], timeline: list[dict[str, Any]], tick_seconds: int) -> str:
    """What this run shows, in words drawn from its own timeline (periods: ticks of tick_seconds of AWS time)."""
    out = next((p for p in timeline if p["desired"] > 0), None)
    sizes = " -> ".join(str(d) for i, d in enumerate(p["desired"] for p in timeline)
                        if i == 0 or d != timeline[i - 1]["desired"])
    lines = []
    if out is None:
        lines.append("The group never scaled out: check the scale-out alarm and its policy.")
    else:
        in_service = numbers["minutes to first instance in service"]
        decided = numbers["seconds from first message to scale-out decision"]
        lines.append(f"The first scale-out was decided in tick {out['minute']} (ticks of {tick_seconds} s), "
                     f"{decided} s after the burst, for a backlog of {out['visible'] + out['in_flight']} messages, "
                     f"to {out['desired']} instance(s) at once; the first message was processed at minute "
                     f"{numbers['minutes to first message processed']}"
                     + (f", and the instances were seen in service at minute {in_service}: booting and configuring "
                        "a worker takes that long." if in_service is not None and in_service * 60 > out["seconds"]
                        else "."))
    idle = numbers["instance-minutes after the drain"]
    lines.append(f"The desired capacity went {sizes}. Once the backlog is 0 the scale-out alarm returns to OK and "
                 "the group keeps its last size until the scale-in alarm has seen the whole idle window of empty "
                 f"periods: {idle if idle is not None else 'none'} of the {numbers['instance-minutes']} "
                 "instance-minutes came after the queue was drained, the price of not scaling in on SQS's delayed "
                 "or missing metrics"
                 + (f"; the last instance went {numbers['seconds from last message to last termination']} s after "
                    "the last message was processed (seen at the start of the first tick without one)."
                    if numbers["seconds from last message to last termination"] is not None else "."))
    if numbers["spot interruptions"]:
        lines.append(f"{numbers['spot interruptions']} Spot interruption(s): each instance had its two-minute "
                     "notice, was terminated without lowering the desired capacity, and the group replaced it.")
    waiting = round(sum(p.get("terminating", 0) for p in timeline) * tick_seconds / 60, 1)
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


def nodes_note(result: dict[str, Any]) -> str:
    """Where the run's workers were local processes: why no node was booted."""
    why = result.get("nodes not booted")
    if not why:
        return ""
    return f"""
Booted nodes: none in this run ({why}); every worker is a local process, in service the moment it starts, so the
times to the first instance in service and the first message processed include no boot. Where nodes can boot
(root, systemd-nspawn), `make report` boots one per instance.
"""


def side_by_side(comparison: list[dict[str, Any]], note: str | None = None) -> str:
    """The figures of the designs played on the same burst, one column each, with the share of the instance-minutes
    spent after the drain and what differed in each run's conditions."""
    if not comparison:
        return ""
    names = [run["design"] for run in comparison]

    def share(numbers: dict[str, Any]) -> str:
        total, after = numbers["instance-minutes"], numbers["instance-minutes after the drain"]
        return "-" if not total or after is None else f"{round(100 * after / total)}%"

    rows = [f"| {name} | " + " | ".join("-" if run["figures"][name] is None else str(run["figures"][name])
                                        for run in comparison) + " |" for name in comparison[0]["figures"]]
    rows.append("| share of instance-minutes after the drain | "
                + " | ".join(share(run["figures"]) for run in comparison) + " |")
    rows += [f"| {key} | " + " | ".join(str(run["conditions"][key]) for run in comparison) + " |"
             for key in ("design", "tick seconds", "stack")]
    return f"""
## The current design and the previous one, side by side
The same burst ({comparison[0]["conditions"]["messages"]} messages, {comparison[0]["conditions"]["spot interruptions"]}
Spot interruption(s) emulated mid-burst) played with each design on the emulator, one after the other, by
`--compare`; each design's stack was made by site.yml with its settings. {
    f"Workers: local processes for both designs: {note}." if note else
    f"The rest of this report is the {names[-1]} design's run."}

| figure | {" | ".join(names)} |
| --- | {" | ".join("---" for _ in names)} |
{chr(10).join(rows)}
"""


def booted_runs(runs: list[dict[str, Any]]) -> str:
    """The runs with booted nodes (each image, each broker), one column each, with each run's boots."""
    if not runs:
        return ""
    labels = [run["label"] for run in runs]
    rows = [f"| {name} | " + " | ".join("-" if run["figures"].get(name) is None else str(run["figures"][name])
                                        for run in runs) + " |" for name in runs[0]["figures"]]

    def boots(run: dict[str, Any], kind: str) -> str:
        seconds = sorted(run["prediction"]["inputs"].get(kind, []))
        return ", ".join(f"{b:g}" for b in seconds) or "-"

    rows.append("| seconds each node took from its boot to its consumer's first line | "
                + " | ".join(boots(run, "boots") for run in runs) + " |")
    rows.append("| seconds each node took from its boot to its launch action completed | "
                + " | ".join(boots(run, "in_service") for run in runs) + " |")
    rows += [f"| {key} | " + " | ".join(str(run["conditions"][key]) for run in runs) + " |"
             for key in ("tick seconds", "real seconds per tick", "stack")]
    return f"""
## Booted nodes: each broker, each image
The same burst with the current design, each instance a booted node running the launch template's
user-data; one run per broker and image, each on a lab of its own (emulator, git daemon, metadata service and
Auto Scaling front on the nodes' bridge; site.yml, and for the baked image image.yml, run on it). A tick lasted
the AWS time it stands for, so a boot counts as it took. The rest of this report is the first column's run.

| figure | {" | ".join(labels)} |
| --- | {" | ".join("---" for _ in labels)} |
{chr(10).join(rows)}
"""


def number(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:g}" if isinstance(value, float) else str(value)


def predictions(runs: list[dict[str, Any]]) -> str:
    """Each run's planner prediction beside its measurement (sqs_fleet.scaletest.prediction)."""
    runs = [run for run in runs if run.get("prediction")]
    if not runs:
        return ""
    tables = []
    for run in runs:
        inputs, rows = run["prediction"]["inputs"], run["prediction"]["rows"]
        lines = "\n".join(
            f"| {r['figure']} | {number(r['predicted'] if r['predicted'] is None else round(r['predicted'], 1))} | "
            f"{number(r['measured'])} | {number(round(r['tolerance'], 1))} | {'yes' if r['agrees'] else 'no'} | "
            f"{r['why'] or '-'} |" for r in rows)
        boot = (f"the run's median time from a worker's start (a node's boot, a process's launch) to its consumer "
                f"started, {inputs['boot seconds']:g} s, as the whole launch (no EC2 part: the lab boots the node "
                "the tick its instance appears)" if inputs["boots"] else "no start time (none was measured)")
        tables.append(f"""### {run["label"]}
Planner inputs: the run's stack record; {inputs["messages"]} messages at second 0; {boot}; a poll every
{inputs["poll_seconds"]:g} s; {inputs["work_seconds"]:g} s of work per message; the watcher every
{inputs["watcher_seconds"]:g} s; launch heartbeat {inputs["launch_timeout"]} s. One tick:
{inputs["tick_seconds"]} s, played at {inputs.get("clock_factor", 1):g} AWS seconds per real second. Desired
capacity: run
{" -> ".join(map(str, run["prediction"].get("desired", {}).get("measured", [])))}, replay
{" -> ".join(map(str, run["prediction"].get("desired", {}).get("predicted", [])))}.

| figure | predicted | measured | agree within | agree | why they differ |
| --- | --- | --- | --- | --- | --- |
{lines}
""")
    return """
## The planner's prediction beside the measurement
For each run, `sqs-fleet-plan`'s replay (sqs_fleet.planner: the stack's own alarms and steps decided by the
loop's code, in virtual time) of the same burst on the run's own settings, beside what the run measured, in
AWS seconds from the burst. The run sees a moment at the start of the tick after it (its times are tick
starts, the first message processed floored to 6 s); the replay gives it to the second: they agree within
one tick for times, one tick of every instance (peak x tick) for instance-minutes, exactly for scale events
(changes of the desired capacity). Where they do not, the last column says why.

""" + "\n".join(tables)


def redis_section(run: dict[str, Any] | None) -> str:
    """The same plan on the environment's Redis broker (`broker: redis`): its conditions, figures, plots and
    evidence."""
    if not run:
        return ""
    conditions, numbers = run["conditions"], run["figures"]
    rows = "\n".join(f"| {name} | {'-' if value is None else value} |" for name, value in numbers.items())
    metrics = "\n".join(f"| {name} | {m['points']} | {m['peak']} | {m['last']} |"
                        for name, m in run["metric evidence"].items())

    def scaling(decisions: list[str]) -> str:
        return "; ".join(d for d in decisions if "scale" in d or "desired" in d)

    decisions = "\n".join(f"| {p['minute']} | {p['seconds']} | {p['visible']} | {p['in_flight']} | {p['processed']} | "
                          f"{p['desired']} | {p['instances']} | {scaling(p['decisions'])} |" for p in run["timeline"])
    excerpt = "\n".join(json.dumps(e) for e in run["worker log excerpt"])
    queue_plot, processed_plot = run["plots"]
    return f"""
## The same plan on the Redis broker (`broker: redis`)
Produced by `{conditions["command"]}`: **{run["produced by"]}**. Conditions: {conditions["messages"]} jobs in
one burst through `producer.py --broker redis`; one tick ({conditions["tick seconds"]} s of AWS time) lasted
{conditions["real seconds per tick"]} s; workers: {conditions["workers"]}; stack: {conditions["stack"]}.
The emulator holds the ElastiCache replication group but serves no Redis: the data plane is the lab's Redis
server (Valkey, AUTH with the token site.yml keeps in SSM, no TLS), labelled as emulation. The backlog is
PendingJobs (waiting + unacked, one MULTI/EXEC) from the same publisher function, played by the loop; the
alarms are the design's: PendingJobs > 4 over 60 s to scale out, <= 0 over 120 s to scale in, and the
first job starts one instance from zero. "visible" is the Celery queue's list, "in flight" the jobs workers
hold (unacked), dead letters the dead-letter list.

| figure | value |
| --- | --- |
{rows}

![Queue depth and instances, Redis]({queue_plot})

![Jobs processed per minute, Redis]({processed_plot})

| tick | AWS seconds | waiting | held (unacked) | processed | desired | instances | scaling decisions |
| --- | --- | --- | --- | --- | --- | --- | --- |
{decisions}

Metric data in CloudWatch (one-minute maxima):

| metric | points | peak | last |
| --- | --- | --- | --- |
{metrics}

Celery worker log excerpt (the SQS consumer's line, event and keys):

```json
{excerpt}
```
"""


def report(result: dict[str, Any], final_alarms: dict[str, str]) -> str:
    """REPORT.md: the test process, what was observed, the figures and the evidence, from one run."""
    conditions, numbers, timeline = result["conditions"], result["figures"], result["timeline"]
    tick = conditions["tick seconds"]
    rows = "\n".join(f"| {name} | {value} |" for name, value in numbers.items())
    periods = "\n".join(
        f"| {p['minute']} | {p['seconds']} | {p['visible']} | {p['in_flight']} | {p['processed']} | {p['desired']} | "
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
    busy = round(numbers["instance-minutes"] - (numbers["instance-minutes after the drain"] or 0), 1)
    spot = conditions.get("spot interruptions", 0)
    sections = (nodes_note(result) + booted_runs(result.get("booted runs", []))
                + side_by_side(result.get("comparison", []), result.get("comparison note"))
                + redis_section(result.get("redis")) + predictions(result.get("predictions", [])))
    interruptions = (f"{spot} Spot interruption(s) emulated mid-burst (a two-minute notice, then EC2 terminates "
                     "the instance and the group replaces it)" if spot else "no Spot interruption")
    return f"""# Scale-out / scale-in test report

Produced by `{conditions["command"]}` on {result["date"]}: **{result["produced by"]}**.
Conditions: {conditions["messages"]} messages in one burst; one tick of the run ({tick} s of AWS time) lasted
{conditions["real seconds per tick"]} s; {interruptions}; workers: {conditions["workers"]}; machine:
{conditions["machine"]}.
The stack is the one `site.yml` made ({conditions["stack"]}); alarms, policies and group bounds were read
back from it, not from the project's variables.

## Test process
{PROCESS[result["target"]]}

## Figures

| figure | value |
| --- | --- |
{rows}

Minutes and seconds are AWS time, counted from the first tick, which began as soon as the burst was sent;
a tick's figure is taken at its start (its decision at its end), and a message processed between two ticks'
records counts in the earlier one.
Alarm states at the end: {", ".join(f"{k} {v}" for k, v in final_alarms.items())}.

![Queue depth and instances]({QUEUE_PLOT})

![Messages processed per minute]({PROCESSED_PLOT})

## Observations
{observations(numbers, timeline, tick)}
{sections}
## Timeline (one row per tick of {tick} s) and the decisions

| tick | AWS seconds | visible | in flight | processed | desired | instances | in service | terminating | decisions |
| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |
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
data; share them as docs/aws.md says.

{boards}
{dashboard_images(result.get("dashboard images", []))}
## Reproducing on AWS
`ansible-playbook site.yml -i inventory/prod`, then `ansible-playbook scale_test.yml -i inventory/prod`:
the same plan with real CloudWatch and Auto Scaling (one minute per period), its evidence taken from the
scaling activities, CloudWatch metric data and CloudWatch Logs; it rewrites this report and labels it
as an AWS run. {result["aws note"]}

## Compared with the reference designs
Common public designs of such a fleet scale with simple +4/-4 policies on the visible count, with no
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
