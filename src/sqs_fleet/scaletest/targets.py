"""Where the scale test runs (`Target`): what watches AWS, or on the emulator plays it, what the workers are,
and where their log lines and the run's metric window come from. With the check that the target asked for is
the one the environment points at, and the site.yml runs that make a stack for it on the emulator."""

from __future__ import annotations

import contextlib
import datetime
import json
import math
import os
import subprocess  # nosec B404 - runs the project's own site.yml
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from sqs_fleet import REPO, aws
from sqs_fleet.lab import redis_server
from sqs_fleet.lab.emulator import free_port
from sqs_fleet.lab.fleet import Lab, NodeWorkers
from sqs_fleet.lab.lifecycle import LifecycleActions
from sqs_fleet.lab.node import HOST_ADDRESS
from sqs_fleet.lab.workers import CeleryProcessWorkers, ProcessWorkers
from sqs_fleet.scaletest.config import AWS_PERIOD_SECONDS, EMULATOR_PERIOD_SECONDS, Design, ScaleTestConfig
from sqs_fleet.sim.alarms import tick_seconds
from sqs_fleet.sim.fleet import Fleet
from sqs_fleet.sim.group import Workers
from sqs_fleet.sim.loop import FleetWatch
from sqs_fleet.sim.scaling import AwsScaling, EmulatedScaling
from sqs_fleet.stack import Stack

# Real seconds a booted node may take to complete its launch action (boot, cloud-init, ansible-pull; several
# boots share the machine's cores).
LAB_BOOT_SECONDS = 600
CONSUMER_POLL_SECONDS = 60  # the consumer's wait between polls (fleet_poll_interval), in AWS time
LOG_SHIPPING_CHECKS = 5  # the agent ships every few seconds; half a minute apart, this waits at most 2.5 minutes


def check_target(target: str) -> str | None:
    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    if target == "aws" and endpoint:
        return f"--target aws talks to real AWS, but AWS_ENDPOINT_URL is set ({endpoint}): unset it first"
    if target == "emulator" and not endpoint:
        return "--target emulator needs AWS_ENDPOINT_URL (start the emulator with `make emulator`)"
    return None


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


def shipped_log_events(log_group: str, since: datetime.datetime, expected: int) -> list[dict[str, Any]]:
    """On AWS: the consumers' lines from CloudWatch Logs, waiting a little for the agent's last batches."""
    logs = aws.client("logs")
    for _ in range(LOG_SHIPPING_CHECKS):
        events = cloudwatch_log_events(logs, log_group, since)
        if len({e.get("idempotency_key") for e in events if e["event"] == "message_processed"}) >= expected:
            break
        time.sleep(AWS_PERIOD_SECONDS / 2)
    return events


def lab_period(config: ScaleTestConfig) -> float:
    """The tick's real length a lab stack's workers are configured for (they poll once a tick of it): with
    --real-time, the default tick's, whatever --period-seconds gives the local processes of the same run."""
    return EMULATOR_PERIOD_SECONDS if config.real_time else config.tick_real_seconds


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


def open_target(config: ScaleTestConfig, context: contextlib.ExitStack, design: Design) -> Target:
    logs, period = config.work / "workers", config.tick_real_seconds
    if config.on_aws:
        stack = Stack.load(config.record)
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
    workers: Workers
    broker_url: str | None = None
    client: Any = None
    if config.workers == "nodes":
        lab = context.enter_context(Lab(config.work / "lab", actions))
        producer_env = lab.environment()
        if config.broker == "redis":
            name = f"scale-test-{os.getpid()}"
            broker_url = f"redis://{HOST_ADDRESS}:{free_port()}/0"
        stack = provision_lab_stack(lab, lab_period(config), config.idle_minutes, config.work, config.broker,
                                    config.image, broker_url)
        if broker_url:
            token = redis_server.stack_token(stack.broker["auth_parameter"], lab.environment())
            server = redis_server.ensure(name, int(broker_url.rsplit(":", 1)[1].split("/")[0]), HOST_ADDRESS, token)
            context.callback(redis_server.main, ["stop", "--name", name])
            client = redis.Redis(host=server.host, port=server.port, password=server.password)
            producer_env = {**producer_env, "REDIS_AUTH_TOKEN": server.password}
        fleet = Fleet(stack, lab.client, broker=client)
        # With --real-time a tick lasts the AWS time it stands for, so a node's boot in real seconds is the same
        # number of AWS seconds in every figure.
        if config.real_time:
            period = float(tick_seconds(fleet.alarms))
        workers = NodeWorkers(lab, lab.launch_template_user_data(stack.launch_template), logs,
                              image_commit=lab.commit if config.image == "baked" else None)
        metadata = lab.metadata
        program = ("the Celery worker role" if config.broker == "redis" else "the consumer role") + \
            " and the lifecycle watcher role"
        boot = ("the baked image made by image.yml at this commit (the user-data only configures and starts)"
                if config.image == "baked" else "the stock image (cloud-init, ansible-pull of this commit)")
        description = (f"booted nodes (systemd-nspawn, Amazon Linux 2023's twin on Debian 12) from {boot}, running "
                       f"the launch template's user-data: {program}"
                       + (" on the lab's Redis server (Valkey) with the stack's AUTH token" if broker_url else "")
                       + "; they complete their own lifecycle actions through the lab's metadata service and Auto "
                       "Scaling front (emulation)")
    else:
        stack = Stack.load(config.record)
        if stack.on_redis:
            return open_redis_target(config, stack, logs, design)
        fleet = Fleet(stack, aws.clients())
        # A worker waits a minute of AWS time between polls whatever the tick, so both designs' workers process
        # at the same rate in AWS time.
        poll_interval = period * CONSUMER_POLL_SECONDS / tick_seconds(fleet.alarms)
        workers = ProcessWorkers(stack.queue_name, poll_interval=poll_interval, env=os.environ, logs=logs)
        producer_env, description = {}, ("local consumer processes started with the node's configuration; the loop "
                                         "completes their lifecycle actions (emulation)")
    scaling = EmulatedScaling(fleet, workers, actions, metadata=metadata,
                              complete_terminations=design.completes_terminations)
    return Target(stack, FleetWatch(fleet, scaling), producer_env, description,
                  events=lambda _: worker_events(logs),
                  span=lambda periods: (scaling.stamp(0), scaling.stamp(periods)),
                  broker_url=broker_url, broker=client, period=period)


def open_redis_target(config: ScaleTestConfig, stack: Stack, logs: Path, design: Design) -> Target:
    """A stack on Redis with local Celery workers: the lab's Redis server (the emulator serves none) with the
    stack's AUTH token from SSM, the Celery queue's counts, one worker process per instance."""
    server = redis_server.ensure(password=redis_server.stack_token(stack.broker["auth_parameter"]))
    client = redis.Redis(host=server.host, port=server.port, password=server.password)
    client.delete(stack.queue_name, stack.dead_letter_queue_name, "unacked", "unacked_index")  # a clean burst
    fleet = Fleet(stack, aws.clients(), broker=client)
    env = {**os.environ, "REDIS_AUTH_TOKEN": server.password}
    # A job lasts --job-seconds of AWS time, whatever a tick lasts in real time.
    workers = CeleryProcessWorkers(stack.queue_name, server.url, env, logs,
                                   job_seconds=config.job_seconds * config.tick_real_seconds
                                   / tick_seconds(fleet.alarms))
    scaling = EmulatedScaling(fleet, workers, LifecycleActions(), complete_terminations=design.completes_terminations)
    return Target(stack, FleetWatch(fleet, scaling), {"REDIS_AUTH_TOKEN": server.password},
                  f"local Celery worker processes (2 pool processes each, {config.job_seconds:g} s of AWS time per "
                  "job) on the lab's Redis server (Valkey) with the stack's AUTH token; the loop completes their "
                  "lifecycle actions (emulation)",
                  events=lambda _: worker_events(logs),
                  span=lambda periods: (scaling.stamp(0), scaling.stamp(periods)),
                  broker_url=server.url, broker=client)
