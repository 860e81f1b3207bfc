"""The scale-out / scale-in test plan and REPORT.md, on the emulator or on AWS.

    sqs-fleet-scale-test [--workers processes|nodes] [--messages 200] [--period-seconds 10] [--out .]
    sqs-fleet-scale-test --target aws --stack .run/stacks/prod.json

Produces a burst above the scale-out threshold, records a timeline each period (visible, in flight,
processed, desired, instances, in service, what was decided) and prints it as it goes, until the queue is
drained and the group is back to zero; then collects the evidence (scaling decisions, the metric data
CloudWatch holds, consumer log lines, the dead-letter queue) and writes REPORT.md with its data and plots. On the
emulator the metric data read back over the run must be the run's own (sqs_fleet.scaletest.consistency): a
series that disagrees with the timeline fails the run, and REPORT.md is not written.

- `--target emulator` (the default; AWS_ENDPOINT_URL set): the local loop (sqs_fleet.sim.loop) plays
  CloudWatch and Auto Scaling. Workers are local consumer processes on the stack site.yml recorded
  (`make demo` first), or, with `--workers nodes` (root), booted nodes running the launch template's
  user-data: then this tool starts its own lab (emulator and git daemon on the nodes' bridge) and runs
  site.yml on it. A tick of the loop (60 s of AWS time, 10 s when an alarm reads 10-second periods) lasts
  --period-seconds; every figure is given in AWS time. `--spot-interruptions N` interrupts N instances in
  service mid-burst (emulated Spot notices).
  `--design previous` plays the design before the backlog publisher and the nodes' lifecycle watcher (AWS/SQS
  one-minute metrics, a 15-minute idle window, terminations held by the drain hook's heartbeat); `--compare`
  plays the previous design, then the current one, on the same burst, and REPORT.md sets their figures side by
  side. Both run site.yml on the emulator with the design's settings (local processes only) and leave the
  stack in the current design.
- `--target aws`: real CloudWatch alarms and Auto Scaling act on the stack site.yml made in AWS; this tool
  only produces, watches once a minute and collects the evidence (scaling activities, metric data,
  CloudWatch Logs). `ansible-playbook scale_test.yml -i inventory/prod` runs it with the stack's record.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import math
import os
import subprocess  # nosec B404 - runs the project's own site.yml
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sqs_fleet import REPO, aws
from sqs_fleet.lab import redis as lab_redis
from sqs_fleet.lab.emulator import free_port
from sqs_fleet.lab.lifecycle import LAUNCHING, LifecycleActions
from sqs_fleet.lab.node import missing_requirements
from sqs_fleet.lab.workers import CONSUMER, CeleryProcessWorkers, ProcessWorkers
from sqs_fleet.scaletest.consistency import (
    Inconsistent,
    MetricId,
    check,
    evidence_problems,
    metric_id,
    published_points,
    widget_problems,
)
from sqs_fleet.scaletest.prediction import RunSettings, prediction
from sqs_fleet.scaletest.report import DATA_FILE, figures, plots, processed_minutes, processed_per_period, report
from sqs_fleet.scaletest.widgets import render_dashboards
from sqs_fleet.sim.loop import (
    AwsScaling,
    CannotPlay,
    EmulatedScaling,
    Fleet,
    FleetWatch,
    Period,
    alarm_period,
    tick_seconds,
)
from sqs_fleet.stack import Stack, StackNotFound, output_file

AWS_PERIOD_SECONDS = float(AwsScaling.tick_seconds)  # on AWS a tick lasts what it spans: real time
# How long one tick lasts on the emulator, unless --period-seconds says otherwise: the one default.
EMULATOR_PERIOD_SECONDS = 10.0
PRODUCER = CONSUMER.with_name("producer.py")
# Real seconds a booted node may take to complete its launch action (boot, cloud-init, ansible-pull; several
# boots share the machine's cores).
LAB_BOOT_SECONDS = 600
CONSUMER_POLL_SECONDS = 60  # the consumer's wait between polls (fleet_poll_interval), in AWS time
LOG_SHIPPING_CHECKS = 5  # the agent ships every few seconds; half a minute apart, this waits at most 2.5 minutes


@dataclass(frozen=True)
class Design:
    """A scaling design the plan can play on the emulator: the site.yml settings that make it, and whether the
    workers complete their own termination actions."""

    name: str
    summary: str
    site_variables: dict[str, Any]
    completes_terminations: bool


DESIGNS = {
    "current": Design("current", "backlog publisher's 10-second metric, short idle window, workers complete their "
                      "lifecycle actions", {}, completes_terminations=True),
    "previous": Design("previous", "AWS/SQS one-minute metrics, 15-minute idle window, terminations held by the "
                       "drain hook's 300 s heartbeat", {"stack_scaling_metric_source": "sqs",
                                                         "stack_scaling_idle_window": 900},
                       completes_terminations=False),
}


def parse_log_line(line: str, worker: str) -> dict[str, Any] | None:
    if not line.startswith("{"):
        return None
    try:
        return dict(json.loads(line), worker=worker)
    except json.JSONDecodeError:
        return None  # a line cut by a crash: not an event


def worker_events(logs: Path) -> list[dict[str, Any]]:
    """The consumers' JSON log lines, from the workers' log files (processes, or kept from terminated nodes)."""
    events = []
    for log in sorted(logs.glob("*.log")):
        events += [e for e in (parse_log_line(line, log.stem) for line in log.read_text().splitlines()) if e]
    return events


def cloudwatch_log_events(logs: Any, log_group: str, since: datetime.datetime) -> list[dict[str, Any]]:
    """The consumers' JSON log lines as the CloudWatch agent shipped them (one stream per instance)."""
    events: list[dict[str, Any]] = []
    for page in logs.get_paginator("filter_log_events").paginate(
            logGroupName=log_group, startTime=int(since.timestamp() * 1000)):
        events += [e for e in (parse_log_line(item["message"], item["logStreamName"]) for item in page["events"])
                   if e]
    return sorted(events, key=lambda e: str(e.get("ts", "")))


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


def lab_period(args: argparse.Namespace, period: float) -> float:
    """The tick's real length a lab stack's workers are configured for (they poll once a tick of it): with
    --real-time, the default tick's, whatever --period-seconds gives the local processes of the same run."""
    return EMULATOR_PERIOD_SECONDS if args.real_time else period


def lab_launch_timeout(period_seconds: float) -> int:
    """The launch hook's heartbeat on a lab stack: a node boots in real seconds, which a scaled clock does not
    shrink, so it covers LAB_BOOT_SECONDS of real time (within the hook's 7200 s limit): a slow boot is late, not
    abandoned."""
    return max(600, min(7200, math.ceil(LAB_BOOT_SECONDS * 60 / period_seconds)))


def provision_lab_stack(lab: Any, period_seconds: float, idle_minutes: int | None, work: Path, broker: str = "sqs",
                        image: str = "stock", broker_url: str | None = None) -> Stack:
    """site.yml on the lab's emulator (inventory/local, or inventory/local-redis for `broker` redis, its workers
    and publisher on the Redis server at `broker_url`), with workers that pull this commit and wait one tick of
    real time between polls; with `image` baked, image.yml bakes the worker image of this commit and site.yml
    puts it in the launch template. The stack it recorded."""
    record = work / f"lab-stack-{broker}-{image}.json"
    inventory = ["-i", "inventory/local-redis"] if broker == "redis" else []
    variables = lab.site_variables(fleet_poll_interval=max(1, round(period_seconds)),
                                   fleet_launch_timeout=lab_launch_timeout(period_seconds),
                                   stack_output_file=str(record))
    if idle_minutes is not None:  # else the design's own (group_vars/all/stack.yml: stack_scaling_idle_window)
        variables["scaling_idle_window"] = idle_minutes * 60
    if broker == "redis":
        # The lab's Redis on the nodes' bridge at a port of this run's own (the inventory's names one for its
        # tests); the node overrides are the inventory's with that URL.
        variables.update(stack_broker_lab_url=broker_url, fleet_node_overrides={
            "cloudwatch_agent_install": False, "lifecycle_watcher_interval": 1,
            "celery_worker_broker_url": broker_url, "celery_worker_endpoint_parameter": ""})
    env = {**os.environ, **lab.environment(), "ANSIBLE_HOME": str(work / "ansible-home"),
           "ANSIBLE_DEPRECATION_WARNINGS": "false"}
    playbook = Path(sys.executable).with_name("ansible-playbook")
    steps: list[tuple[str, dict[str, Any]]] = [("site.yml", {})]
    if image == "baked":
        steps += [("image.yml", {}), ("site.yml", {"fleet_image": "baked"})]
    for name, extra in steps:
        run = subprocess.run([str(playbook), name, *inventory,  # noqa: S603  # nosec B603
                              "-e", json.dumps({**variables, **extra})],
                             cwd=REPO, env=env, capture_output=True, text=True, check=False)
        if run.returncode != 0:
            raise SystemExit(f"{name} failed on the lab's emulator:\n{run.stdout[-3000:]}{run.stderr[-2000:]}")
    return Stack.load(record)


def configure_stack(design: Design, record: Path, work: Path) -> None:
    """site.yml on the emulator with the design's settings, recording the stack where the plan reads it."""
    env = {**os.environ, "ANSIBLE_HOME": str(work / "ansible-home"), "ANSIBLE_DEPRECATION_WARNINGS": "false"}
    playbook = Path(sys.executable).with_name("ansible-playbook")
    print(f"site.yml with the {design.name} design ({design.summary})", flush=True)
    run = subprocess.run([str(playbook), "site.yml", "-e",  # noqa: S603  # nosec B603
                          json.dumps({**design.site_variables, "stack_output_file": str(record)})],
                         cwd=REPO, env=env, capture_output=True, text=True, check=False)
    if run.returncode != 0:
        raise SystemExit(f"site.yml ({design.name} design) failed on the emulator:\n{run.stdout[-3000:]}"
                         f"{run.stderr[-2000:]}")


def check_target(target: str) -> str | None:
    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    if target == "aws" and endpoint:
        return f"--target aws talks to real AWS, but AWS_ENDPOINT_URL is set ({endpoint}): unset it first"
    if target == "emulator" and not endpoint:
        return "--target emulator needs AWS_ENDPOINT_URL (start the emulator with `make emulator`)"
    return None


def bootstrap_logs(folder: Path) -> list[Path]:
    """The nodes' bootstrap logs, those whose bootstrap finished first: a node scaled in while it was still
    booting (allowed in Pending:Wait) stops mid-playbook, and the report quotes the first log's end."""
    return sorted(folder.glob("*.bootstrap.txt"), key=lambda log: ("bootstrap: done" not in log.read_text(), log.name))


def boot_seconds(folder: Path) -> dict[str, list[float]]:
    """Each worker's start in real seconds, from when it began (`<name>.booted.txt`: a node's boot, a process's
    start): "consumer" to its consumer's (or Celery worker's) consumer_started line, "in service" to the launch
    action its node's lifecycle watcher completed (nodes only; their logs are kept when they go). A worker scaled
    in before that has none."""
    def first(path: Path, event: str, hook: str | None = None) -> datetime.datetime | None:
        lines = path.read_text().splitlines() if path.exists() else []
        found = next((e["ts"] for e in (parse_log_line(line, "") for line in lines)
                      if e and e.get("event") == event and (hook is None or e.get("hook") == hook)), None)
        return datetime.datetime.fromisoformat(found) if found else None

    boots: dict[str, list[float]] = {"consumer": [], "in service": []}
    for began in sorted(folder.glob("*.booted.txt")):
        name, start = began.name.removesuffix(".booted.txt"), datetime.datetime.fromisoformat(began.read_text().strip())
        for kind, moment in (("consumer", first(folder / f"{name}.log", "consumer_started")),
                             ("in service", first(folder / f"{name}.lifecycle.txt", "lifecycle_action_completed",
                                                  "launch"))):
            if moment:
                boots[kind].append(round((moment - start).total_seconds(), 1))
    return boots


# Why the previous design is played with local processes when the run of record boots nodes.
PREVIOUS_ON_PROCESSES = (
    "the previous design's figures rest on workers that never complete their termination action (the drain hook's "
    "300 s heartbeat holds every scale-in), but every node booted from this commit runs the lifecycle watcher, "
    "which completes it; so both designs of this comparison are played with local processes, as before, on the "
    "same burst")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", choices=("emulator", "aws"), default="emulator")
    parser.add_argument("--workers", choices=("processes", "nodes"), default="processes",
                        help="on the emulator: local consumer processes, or booted nodes (root)")
    parser.add_argument("--stack", type=Path, default=None,
                        help="the stack site.yml recorded (default: .run/stacks/local.json)")
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--period-seconds", type=float, default=EMULATOR_PERIOD_SECONDS,
                        help="real seconds one tick of the loop lasts on the emulator (a tick is 60 s of AWS time, "
                             "10 s with 10-second alarms; on AWS it lasts 60 s)")
    parser.add_argument("--idle-minutes", type=int, default=None,
                        help="with --workers nodes: the scale-in idle window site.yml sets on the lab's stack "
                             "(default: the design's, 3 minutes on SQS, 2 on Redis)")
    parser.add_argument("--max-minutes", type=int, default=120, help="give up after this many AWS minutes")
    parser.add_argument("--spot-interruptions", type=int, default=0, metavar="N",
                        help="on the emulator: interrupt N instances in service mid-burst (Spot notices, emulated)")
    parser.add_argument("--design", choices=tuple(DESIGNS), default="current",
                        help="on the emulator, local processes: the scaling design to play (previous: AWS/SQS "
                             "metrics, 15-minute idle window, terminations held by the drain hook's heartbeat)")
    parser.add_argument("--compare", action="store_true",
                        help="on the emulator, local processes: play the previous design, then the current one, "
                             "on the same burst, and set their figures side by side in REPORT.md")
    parser.add_argument("--redis-stack", type=Path, default=None,
                        help="on the emulator, local processes: then play the same burst on this stack on Redis "
                             "(site.yml -i inventory/local-redis recorded it), in its own section of REPORT.md")
    parser.add_argument("--images", default="stock", metavar="stock[,baked]",
                        help="with --workers nodes: the node image(s) to boot, one run each (baked: image.yml bakes "
                             "this commit's worker image on the lab and the nodes boot from it)")
    parser.add_argument("--redis", action="store_true",
                        help="with --workers nodes: then the same burst on a stack on Redis that the lab makes "
                             "(site.yml -i inventory/local-redis), with nodes running the Celery worker")
    parser.add_argument("--real-time", action="store_true",
                        help="with --workers nodes: a tick lasts the AWS time it stands for (10 or 60 s), so a "
                             "node's boot counts in AWS time as it took")
    parser.add_argument("--job-seconds", type=float, default=6.0,
                        help="on a stack on Redis: AWS seconds each Celery job takes (default 6)")
    parser.add_argument("--out", type=Path, default=REPO, help="where REPORT.md and its report/ folder go")
    args = parser.parse_args(argv)
    problem = check_target(args.target) or (
        "--idle-minutes must be 1 or more" if args.idle_minutes is not None and args.idle_minutes < 1 else None) or (
        "--messages must be at least 1" if args.messages < 1 else None) or (
        "--period-seconds must be above 0" if args.period_seconds <= 0 else None) or (
        "--spot-interruptions must be 0 or more" if args.spot_interruptions < 0 else None) or (
        "--spot-interruptions is emulated on the emulator only: on AWS, EC2 interrupts Spot instances itself"
        if args.spot_interruptions and args.target == "aws" else None) or (
        "--design, --compare and --redis-stack play on the emulator with local processes only (with --workers "
        "nodes, --compare plays both designs with local processes beside the nodes' run, and --redis plays Redis)"
        if (args.compare and args.target == "aws") or ((args.design != "current" or args.redis_stack) and (
            args.target == "aws" or args.workers == "nodes")) else None) or (
        "--images, --redis and --real-time are for --workers nodes"
        if (args.images != "stock" or args.redis or args.real_time) and args.workers != "nodes" else None) or (
        f"--images {args.images!r}: stock, baked or stock,baked"
        if not set(images(args)) <= {"stock", "baked"} or not images(args) else None)
    if problem:
        print(f"scale_test: {problem}", file=sys.stderr)
        return 2
    period = AWS_PERIOD_SECONDS if args.target == "aws" else args.period_seconds
    try:
        return run_plan(args, period, argv)
    except (StackNotFound, CannotPlay, aws.MissingRegion) as error:
        print(f"scale_test: {error}", file=sys.stderr)
        return 2
    except Inconsistent as error:
        print(f"scale_test: {error}", file=sys.stderr)
        return 1


@dataclass
class Target:
    """Where the plan runs: what watches (and on the emulator plays) AWS, and where its evidence comes from."""

    stack: Stack
    watch: FleetWatch
    producer_env: dict[str, str]
    workers: str  # what the workers are, for the report
    events: Callable[[int], list[dict[str, Any]]]  # the consumers' log lines, given how many to expect
    span: Callable[[int], tuple[datetime.datetime, datetime.datetime]]  # the run's metric window, given its periods
    broker_url: str | None = None  # a Redis broker's URL (no token): jobs go there, not to the SQS queue
    broker: Any = None  # a client of that broker
    period: float = 0.0  # real seconds a tick lasts, when the target set it (--real-time); else --period-seconds


def open_target(args: argparse.Namespace, context: contextlib.ExitStack, work: Path, period: float,
                design: Design) -> Target:
    logs = work / "workers"
    if args.target == "aws":
        stack = Stack.load(args.stack or output_file("local"))
        fleet = Fleet(stack, aws.clients())
        began = datetime.datetime.now(datetime.timezone.utc)
        return Target(stack, FleetWatch(fleet, AwsScaling(fleet)), {},
                      "EC2 instances booted by Auto Scaling from the launch template",
                      events=lambda expected: shipped_log_events(stack.log_group, began, expected),
                      span=lambda _: (began.replace(second=0, microsecond=0),
                                      datetime.datetime.now(datetime.timezone.utc)))
    # Lifecycle actions (emulation: the emulator has none), on the loop's clock, completed by the nodes
    # through the lab's Auto Scaling front, or by the loop for local processes.
    actions = LifecycleActions()
    metadata = None
    if args.workers == "nodes":
        from sqs_fleet.lab.fleet import Lab, NodeWorkers
        from sqs_fleet.lab.node import HOST_ADDRESS

        lab = context.enter_context(Lab(work / "lab", actions))
        broker = getattr(args, "broker", "sqs")
        image = getattr(args, "image", "stock")
        broker_url = client = None
        producer_env = lab.environment()
        if broker == "redis":
            import redis

            name = f"scale-test-{os.getpid()}"
            broker_url = f"redis://{HOST_ADDRESS}:{free_port()}/0"
        stack = provision_lab_stack(lab, lab_period(args, period), args.idle_minutes, work, broker, image, broker_url)
        if broker_url:
            token = lab_redis.stack_token(stack.broker["auth_parameter"], lab.environment())
            server = lab_redis.ensure(name, int(broker_url.rsplit(":", 1)[1].split("/")[0]), HOST_ADDRESS, token)
            context.callback(lab_redis.main, ["stop", "--name", name])
            client = redis.Redis(host=server.host, port=server.port, password=server.password)
            producer_env = {**producer_env, "REDIS_AUTH_TOKEN": server.password}
        fleet = Fleet(stack, lab.client, broker=client)
        # With --real-time a tick lasts the AWS time it stands for, so a node's boot in real seconds is the same
        # number of AWS seconds in every figure.
        real_period = float(tick_seconds(fleet.alarms)) if args.real_time else period
        workers: Any = NodeWorkers(lab, lab.launch_template_user_data(stack.launch_template), logs,
                                   image_commit=lab.commit if image == "baked" else None)
        metadata = lab.metadata
        program = ("the Celery worker role" if broker == "redis" else "the consumer role") + \
            " and the lifecycle watcher role"
        boot = (f"the {image} image baked by image.yml at this commit (the user-data only configures and starts)"
                if image == "baked" else "the stock image (cloud-init, ansible-pull of this commit)")
        description = (f"booted nodes (systemd-nspawn, Amazon Linux 2023's twin on Debian 12) from {boot}, running "
                       f"the launch template's user-data: {program}"
                       + (" on the lab's Redis server (Valkey) with the stack's AUTH token" if broker_url else "")
                       + "; they complete their own lifecycle actions through the lab's metadata service and Auto "
                       "Scaling front (emulation)")
    else:
        stack = Stack.load(args.stack or output_file("local"))
        if stack.on_redis:
            return open_redis_target(args, stack, logs, period, design)
        fleet = Fleet(stack, aws.clients())
        # A worker waits a minute of AWS time between polls whatever the tick, so both designs' workers process
        # at the same rate in AWS time.
        poll_interval = period * CONSUMER_POLL_SECONDS / tick_seconds(fleet.alarms)
        workers = ProcessWorkers(stack.queue_name, poll_interval=poll_interval, env=os.environ, logs=logs)
        producer_env, description = {}, ("local consumer processes started with the node's configuration; the loop "
                                         "completes their lifecycle actions (emulation)")
        broker_url = client = None
        real_period = period
    scaling = EmulatedScaling(fleet, workers, actions=actions, metadata=metadata,
                              complete_terminations=design.completes_terminations)
    return Target(stack, FleetWatch(fleet, scaling), producer_env, description,
                  events=lambda _: worker_events(logs),
                  span=lambda periods: (scaling.stamp(0), scaling.stamp(periods)),
                  broker_url=broker_url, broker=client, period=real_period)


def open_redis_target(args: argparse.Namespace, stack: Stack, logs: Path, period: float, design: Design) -> Target:
    """A stack on Redis with local Celery workers: the lab's Redis server (the emulator serves none) with the
    stack's AUTH token from SSM, the Celery queue's counts, one worker process per instance."""
    import redis

    server = lab_redis.ensure(password=lab_redis.stack_token(stack.broker["auth_parameter"]))
    client = redis.Redis(host=server.host, port=server.port, password=server.password)
    client.delete(stack.queue_name, stack.dead_letter_queue_name, "unacked", "unacked_index")  # a clean burst
    fleet = Fleet(stack, aws.clients(), broker=client)
    env = {**os.environ, "REDIS_AUTH_TOKEN": server.password}
    # A job lasts --job-seconds of AWS time, whatever a tick lasts in real time.
    workers = CeleryProcessWorkers(stack.queue_name, server.url, env, logs,
                                   job_seconds=args.job_seconds * period / tick_seconds(fleet.alarms))
    scaling = EmulatedScaling(fleet, workers, actions=LifecycleActions(),
                              complete_terminations=design.completes_terminations)
    return Target(stack, FleetWatch(fleet, scaling), {"REDIS_AUTH_TOKEN": server.password},
                  f"local Celery worker processes (2 pool processes each, {args.job_seconds:g} s of AWS time per "
                  "job) on the lab's Redis server (Valkey) with the stack's AUTH token; the loop completes their "
                  "lifecycle actions (emulation)",
                  events=lambda _: worker_events(logs),
                  span=lambda periods: (scaling.stamp(0), scaling.stamp(periods)),
                  broker_url=server.url, broker=client)


def produce(queue: str, messages: int, env: dict[str, str], broker_url: str | None = None) -> bool:
    """The burst, with the project's producer: to the SQS queue, or as Celery jobs to the Redis broker."""
    redis_mode = ["--broker", "redis", "--broker-url", broker_url] if broker_url else []
    burst = subprocess.run(  # noqa: S603  # nosec B603 - the project's producer
        [sys.executable, str(PRODUCER), "--queue", queue, "--count", str(messages), "--seed", "2001", "--json",
         *redis_mode], env={**os.environ, **env}, capture_output=True, text=True, check=False)
    if burst.returncode != 0:
        print(f"scale_test: the producer failed: {burst.stderr[-2000:]}", file=sys.stderr)
        return False
    sent = json.loads(burst.stdout)
    print(f"produced {sent['sent']} of {sent['records']} messages to {queue} in {sent['seconds']} s")
    return True


def shipped_log_events(log_group: str, since: datetime.datetime, expected: int) -> list[dict[str, Any]]:
    """On AWS: the consumers' lines from CloudWatch Logs, waiting a little for the agent's last batches."""
    logs = aws.client("logs")
    for _ in range(LOG_SHIPPING_CHECKS):
        events = cloudwatch_log_events(logs, log_group, since)
        if len({e.get("idempotency_key") for e in events if e["event"] == "message_processed"}) >= expected:
            break
        time.sleep(AWS_PERIOD_SECONDS / 2)
    return events


COLUMNS = ("tick", "seconds", "visible", "in flight", "desired", "instances", "in service")


def show_period(period: Period) -> None:
    """One line per period (a tick; seconds: AWS time at its start) as the run goes: the counts, then what was
    decided."""
    if period.minute == 0:
        print("  ".join(f"{c:>10}" for c in COLUMNS) + "  decided")
    values = (period.minute, period.seconds, period.visible, period.in_flight, period.desired, period.instances,
              period.in_service)
    print("  ".join(f"{v:>10}" for v in values) + "  " + ("; ".join(period.decisions) or "-"), flush=True)


def show_figures(numbers: dict[str, Any]) -> None:
    width = max(len(name) for name in numbers)
    print("\n".join(["", "figure".ljust(width) + "  value", "-" * width + "  -----"]
                    + [f"{name.ljust(width)}  {'-' if value is None else value}" for name, value in numbers.items()]))


def spot_interrupter(scaling: EmulatedScaling, count: int) -> Callable[[Period], None]:
    """Once, after the first tick that ends with at least `count` instances in service and messages still in
    the queue (mid-burst): Spot interruption notices for `count` of them, given at the next tick's start."""
    done = False

    def interrupt(period: Period) -> None:
        nonlocal done
        if done or count < 1 or period.in_service < count or period.visible + period.in_flight == 0:
            return
        victims = sorted(scaling.serving(scaling.fleet.group()))[:count]
        if len(victims) < count:
            return
        scaling.interrupt(victims, at_minute=(period.minute + 1) * scaling.tick_seconds / 60)
        done = True

    return interrupt


def images(args: argparse.Namespace) -> list[str]:
    return [name.strip() for name in args.images.split(",") if name.strip()]


def run_record(args: argparse.Namespace, period: float, argv: Sequence[str] | None) -> int:
    """With booted nodes: the current design on SQS with each image asked for (and on Redis with --redis), the
    first one being the report's main run; with --compare, both designs with local processes beside them
    (PREVIOUS_ON_PROCESSES says why)."""
    current, work = DESIGNS["current"], args.out / ".run" / "scale-test"
    booted: list[dict[str, Any]] = []
    states: dict[str, str] = {}
    for broker in ["sqs", *(["redis"] if args.redis else [])]:
        for image in images(args):
            result, final = play(argparse.Namespace(**{**vars(args), "broker": broker, "image": image}), period,
                                 argv, current)
            states = states or final
            booted.append(result)
    compared: list[dict[str, Any]] = []
    if args.compare:
        record = args.stack or output_file("local")
        processes = argparse.Namespace(**{**vars(args), "workers": "processes", "real_time": False})
        for design in (DESIGNS["previous"], current):
            configure_stack(design, record, work)
            compared.append(play(processes, period, argv, design)[0])
    final_run = booted[0]
    final_run["booted runs"] = [{key: run[key] for key in ("label", "conditions", "figures", "prediction")}
                                for run in booted]
    final_run["predictions"] = [{key: r[key] for key in ("label", "conditions", "prediction")}
                                for r in booted + compared]
    final_run["redis"] = next((run for run in booted if run["broker"] == "redis"), None)
    if compared:
        final_run["comparison"] = [{"design": r["design"], "conditions": r["conditions"], "figures": r["figures"]}
                                   for r in compared]
        final_run["comparison note"] = PREVIOUS_ON_PROCESSES
    (args.out / DATA_FILE).write_text(json.dumps(final_run, indent=1, default=str))
    (args.out / "REPORT.md").write_text(report(final_run, states))
    print(f"\nReport: {args.out / 'REPORT.md'}")
    return max(int(run["exit code"]) for run in booted + compared)


def run_plan(args: argparse.Namespace, period: float, argv: Sequence[str] | None) -> int:
    """Play the design asked for, or both designs with --compare (previous first, so the stack ends in the
    current one); REPORT.md describes the last run played."""
    if args.workers == "nodes":
        return run_record(args, period, argv)
    designs = [DESIGNS["previous"], DESIGNS["current"]] if args.compare else [DESIGNS[args.design]]
    record = args.stack or output_file("local")
    runs: list[dict[str, Any]] = []
    code = 0
    try:
        for design in designs:
            if args.compare or design.name != "current":
                configure_stack(design, record, args.out / ".run" / "scale-test")
            result, states = play(args, period, argv, design)
            runs.append(result)
            code = code or result["exit code"]
    finally:
        if designs[-1].name != "current":
            configure_stack(DESIGNS["current"], record, args.out / ".run" / "scale-test")
    final = runs[-1]
    if args.redis_stack:
        final["redis"], _ = play(argparse.Namespace(**{**vars(args), "stack": args.redis_stack}), period, argv,
                                 DESIGNS["current"])
        code = code or final["redis"]["exit code"]
    if args.compare:
        final["comparison"] = [{"design": r["design"], "conditions": r["conditions"], "figures": r["figures"]}
                               for r in runs]
    if args.target == "emulator":
        final["predictions"] = [{key: r[key] for key in ("label", "conditions", "prediction")}
                                for r in [*runs, *([final["redis"]] if args.redis_stack else [])]]
        final["nodes not booted"] = missing_requirements() or "this run was asked for local processes"
    (args.out / DATA_FILE).write_text(json.dumps(final, indent=1, default=str))
    (args.out / "REPORT.md").write_text(report(final, states))
    print(f"\nReport: {args.out / 'REPORT.md'}")
    return code


def play(args: argparse.Namespace, period: float, argv: Sequence[str] | None,
         design: Design) -> tuple[dict[str, Any], dict[str, str]]:
    """One run of the plan: burst, watch until drained and back to zero, evidence; its result and the alarms'
    final states."""
    work = args.out / ".run" / "scale-test"
    logs = work / "workers"
    for old in logs.glob("*"):
        old.unlink()
    with contextlib.ExitStack() as context:
        target = open_target(args, context, work, period, design)
        provisioned, period = lab_period(args, period), target.period or period
        watch, fleet, stack = target.watch, target.watch.fleet, target.stack
        group = fleet.group()
        scale_in = fleet.alarm("scale_in")
        # The scale-in alarm's idle window in AWS minutes (its periods may be 10 s).
        idle_minutes = (f"{int(scale_in['EvaluationPeriods']) * alarm_period(scale_in) / 60:g}" if scale_in
                        else None)
        scaling, tick = watch.scaling, watch.scaling.tick_seconds
        show = show_period
        if isinstance(scaling, EmulatedScaling) and args.spot_interruptions:
            interrupt = spot_interrupter(scaling, args.spot_interruptions)

            def show(period: Period) -> None:
                show_period(period)
                interrupt(period)

        if not produce(stack.queue_name, args.messages, target.producer_env, target.broker_url):
            raise SystemExit(1)
        timeline = watch.run(until=lambda t: len(t) > 3 and t[-1].visible + t[-1].in_flight == 0
                             and t[-1].desired == 0 and t[-1].instances == 0,
                             max_periods=math.ceil(args.max_minutes * 60 / tick), period_seconds=period, show=show)
        dead_letters = ([item.decode() for item in target.broker.lrange(fleet.dlq_name, 0, 2)] if target.broker
                        else dead_letter_sample(fleet.sqs, fleet.queues[fleet.dlq_name]))
        boards = dashboards(fleet.cloudwatch, list(stack.dashboards.values()))
        events = target.events(args.messages - timeline[-1].dead_letters)
        span = target.span(len(timeline))
        # On Redis the backlog is the publisher's PendingJobs; an SQS stack's record names it too, unused.
        metrics = evidence_metrics(fleet.queue_name, fleet.dlq_name, fleet.group_name,
                                   stack.broker.get("pending_metric") if stack.on_redis else None)
        maxima = one_minute_maxima(fleet.cloudwatch, metrics, *span)
        evidence = summarise(metrics, maxima)
        # What a user would see on the dashboards over the run (sqs_fleet.scaletest.widgets).
        pictures = render_dashboards(fleet.cloudwatch, list(stack.dashboards.values()), *span, args.out,
                                   args.target == "aws")
        if isinstance(watch.scaling, EmulatedScaling):
            # The loop published the timeline's own values: what is read back over the span must be those.
            points = published_points(timeline, span[0], fleet.queue_name, fleet.dlq_name, fleet.group_name)
            check(evidence_problems(metrics, maxima, points, span[0])
                  + widget_problems(args.out, pictures, points, span[0]), design.name)
        launch_hook = (scaling.hooks.get(LAUNCHING, {}) if isinstance(scaling, EmulatedScaling) else {})

    processed_at = processed_minutes(timeline, events, period)
    numbers = figures(timeline, events, args.messages, processed_at, tick,
                      scaling.spot_interruptions if isinstance(scaling, EmulatedScaling) else None)
    processed = processed_per_period(processed_at, len(timeline))
    bootstrap = bootstrap_logs(logs)
    on_aws = args.target == "aws"
    label = "AWS" if on_aws else f"emulator, local scaling loop, {args.workers}" + (
        ", Redis broker" if stack.on_redis else "")
    result: dict[str, Any] = {
        "target": args.target,
        "design": design.name,
        "date": datetime.date.today().isoformat(),
        "produced by": (f"real AWS ({stack.region})" if on_aws else
                        "the embedded emulator (moto) with the local scaling loop; not measured on AWS"),
        "conditions": {"messages": args.messages, "tick seconds": tick, "real seconds per tick": period,
                       "spot interruptions": args.spot_interruptions, "workers": target.workers,
                       "design": f"{design.name}: {design.summary}",
                       "machine": "AWS" if on_aws else machine(),
                       "stack": f"prefix {stack.prefix}, {group['MinSize']} to {group['MaxSize']} instances, "
                                f"scale-in after {idle_minutes} idle minutes",
                       "command": " ".join(["sqs-fleet-scale-test", *(argv if argv is not None else sys.argv[1:])])
                       .replace(f"{REPO}/", "").replace(str(REPO), ".")},
        "figures": numbers,
        "timeline": [{**asdict(p), "processed": n} for p, n in zip(timeline, processed, strict=True)],
        "metric evidence": evidence,
        "log source": f"CloudWatch Logs {stack.log_group}" if on_aws else "the workers' log files",
        "worker log excerpt": [e for e in events if e["event"] == "message_processed"][:3]
        + [e for e in events if e["event"] == "consumer_stopped"][:4],
        "bootstrap log excerpt": bootstrap[0].read_text().splitlines()[-6:] if bootstrap else [],
        "dead letters sample": dead_letters,
        "dashboards": boards,
        "dashboard images": pictures,
        "aws note": "This report is an AWS run." if on_aws else "This report holds no AWS measurement.",
        "plots": plots(timeline, processed_at, tick, label, args.out, prefix="redis-" if stack.on_redis else ""),
    }
    result["broker"] = "redis" if stack.on_redis else "sqs"
    if not on_aws:
        started = boot_seconds(logs)
        # The planner's prediction of this run, on its own settings (AWS seconds: real ones scaled by the tick).
        scale = tick / period
        nodes = args.workers == "nodes"
        run_settings = RunSettings(
            messages=args.messages, tick_seconds=tick,
            poll_seconds=max(1, round(provisioned)) * scale if nodes else CONSUMER_POLL_SECONDS,
            work_seconds=args.job_seconds if stack.on_redis and not nodes else 0.0,
            watcher_seconds=1.0 * scale if nodes else 1.0,
            launch_timeout=int(launch_hook.get("HeartbeatTimeout", 3600)),
            image=getattr(args, "image", "stock") if nodes else "stock",
            boots=[round(b * scale, 1) for b in started["consumer"]],
            in_service=[round(b * scale, 1) for b in started["in service"]],
            spot_interruptions=args.spot_interruptions, clock_factor=scale,
            completes_terminations=design.completes_terminations, broker=result["broker"])
        result["prediction"] = prediction(stack, run_settings, numbers, result["timeline"])
    result["label"] = (f"{design.name} design, {result['broker'].upper() if result['broker'] == 'sqs' else 'Redis'}, "
                       + (f"booted nodes, {getattr(args, 'image', 'stock')} image" if args.workers == "nodes"
                          else "local processes"))
    show_figures(numbers)
    result["exit code"] = 0 if numbers["messages lost"] == 0 else 1
    if numbers["minutes to zero instances"] is None:
        print(f"scale_test: the queue was not drained and the group not back to zero within {args.max_minutes} "
              "minutes; the report shows how far it got", file=sys.stderr)
        result["exit code"] = 1
    return result, dict(watch.scaling.states)


if __name__ == "__main__":
    raise SystemExit(main())
