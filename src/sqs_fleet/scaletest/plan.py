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

import contextlib
import datetime
import json
import math
import os
import subprocess  # nosec B404 - runs the project's producer
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any

from sqs_fleet import aws
from sqs_fleet.lab.node import missing_requirements
from sqs_fleet.lab.workers import CONSUMER
from sqs_fleet.scaletest.config import DESIGNS, Design, ScaleTestConfig, parse
from sqs_fleet.scaletest.consistency import Inconsistent
from sqs_fleet.scaletest.evidence import Evidence, bootstrap_logs, gather, machine
from sqs_fleet.scaletest.figures import DATA_FILE, figures, plots, processed_minutes, processed_per_period
from sqs_fleet.scaletest.prediction import RunSettings, prediction
from sqs_fleet.scaletest.report import report
from sqs_fleet.scaletest.targets import (
    CONSUMER_POLL_SECONDS,
    Target,
    boot_seconds,
    check_target,
    configure_stack,
    lab_period,
    open_target,
)
from sqs_fleet.sim.alarms import alarm_period
from sqs_fleet.sim.fleet import CannotPlay
from sqs_fleet.sim.loop import Period
from sqs_fleet.sim.scaling import EmulatedScaling
from sqs_fleet.sim.semantics import LAUNCHING
from sqs_fleet.stack import StackNotFound

PRODUCER = CONSUMER.with_name("producer.py")


def main(argv: Sequence[str] | None = None) -> int:
    config = parse(argv, __doc__ or "")
    problem = check_target(config.target) or config.problem()
    if problem:
        print(f"scale_test: {problem}", file=sys.stderr)
        return 2
    try:
        return run_plan(config)
    except (StackNotFound, CannotPlay, aws.MissingRegion) as error:
        print(f"scale_test: {error}", file=sys.stderr)
        return 2
    except Inconsistent as error:
        print(f"scale_test: {error}", file=sys.stderr)
        return 1


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


# Why the previous design is played with local processes when the run of record boots nodes.
PREVIOUS_ON_PROCESSES = (
    "the previous design's figures rest on workers that never complete their termination action (the drain hook's "
    "300 s heartbeat holds every scale-in), but every node booted from this commit runs the lifecycle watcher, "
    "which completes it; so both designs of this comparison are played with local processes, as before, on the "
    "same burst")
PREDICTION_KEYS = ("label", "conditions", "prediction")


def run_record(config: ScaleTestConfig) -> int:
    """With booted nodes: the current design on SQS with each image asked for (and on Redis with --redis), the
    first one being the report's main run; with --compare, both designs with local processes beside them
    (PREVIOUS_ON_PROCESSES says why)."""
    current = DESIGNS["current"]
    booted: list[dict[str, Any]] = []
    states: dict[str, str] = {}
    for broker in ["sqs", *(["redis"] if config.redis else [])]:
        for image in config.images:
            result, final = play(config.node_run(broker, image), current)
            states = states or final
            booted.append(result)
    compared: list[dict[str, Any]] = []
    if config.compare:
        processes = config.with_processes()
        for design in (DESIGNS["previous"], current):
            configure_stack(design, config.record, config.work)
            compared.append(play(processes, design)[0])
    final_run = booted[0]
    final_run["booted runs"] = [{key: run[key] for key in ("label", "conditions", "figures", "prediction")}
                                for run in booted]
    final_run["predictions"] = [{key: r[key] for key in PREDICTION_KEYS} for r in booted + compared]
    final_run["redis"] = next((run for run in booted if run["broker"] == "redis"), None)
    if compared:
        final_run["comparison"] = [{"design": r["design"], "conditions": r["conditions"], "figures": r["figures"]}
                                   for r in compared]
        final_run["comparison note"] = PREVIOUS_ON_PROCESSES
    (config.out / DATA_FILE).write_text(json.dumps(final_run, indent=1, default=str))
    (config.out / "REPORT.md").write_text(report(final_run, states))
    print(f"\nReport: {config.out / 'REPORT.md'}")
    return max(int(run["exit code"]) for run in booted + compared)


def run_plan(config: ScaleTestConfig) -> int:
    """Play the design asked for, or both designs with --compare (previous first, so the stack ends in the
    current one); REPORT.md describes the last run played."""
    if config.workers == "nodes":
        return run_record(config)
    designs = config.designs
    runs: list[dict[str, Any]] = []
    code = 0
    try:
        for design in designs:
            if config.compare or design.name != "current":
                configure_stack(design, config.record, config.work)
            result, states = play(config, design)
            runs.append(result)
            code = code or result["exit code"]
    finally:
        if designs[-1].name != "current":
            configure_stack(DESIGNS["current"], config.record, config.work)
    final = runs[-1]
    if config.redis_stack:
        final["redis"], _ = play(config.on_stack(config.redis_stack), DESIGNS["current"])
        code = code or final["redis"]["exit code"]
    if config.compare:
        final["comparison"] = [{"design": r["design"], "conditions": r["conditions"], "figures": r["figures"]}
                               for r in runs]
    if not config.on_aws:
        final["predictions"] = [{key: r[key] for key in PREDICTION_KEYS}
                                for r in [*runs, *([final["redis"]] if config.redis_stack else [])]]
        final["nodes not booted"] = missing_requirements() or "this run was asked for local processes"
    (config.out / DATA_FILE).write_text(json.dumps(final, indent=1, default=str))
    (config.out / "REPORT.md").write_text(report(final, states))
    print(f"\nReport: {config.out / 'REPORT.md'}")
    return code


def burst_and_watch(config: ScaleTestConfig, target: Target) -> list[Period]:
    """The burst, then one period after another until the queue is drained and the group back to zero (or
    --max-minutes), Spot interruptions given mid-burst if asked."""
    watch = target.watch
    scaling = watch.scaling
    show = show_period
    if isinstance(scaling, EmulatedScaling) and config.spot_interruptions:
        interrupt = spot_interrupter(scaling, config.spot_interruptions)

        def show(period: Period) -> None:
            show_period(period)
            interrupt(period)

    if not produce(target.stack.queue_name, config.messages, target.producer_env, target.broker_url):
        raise SystemExit(1)
    return watch.run(until=lambda t: len(t) > 3 and t[-1].visible + t[-1].in_flight == 0
                     and t[-1].desired == 0 and t[-1].instances == 0,
                     max_periods=math.ceil(config.max_minutes * 60 / scaling.tick_seconds),
                     period_seconds=target.period or config.tick_real_seconds, show=show)


def play(config: ScaleTestConfig, design: Design) -> tuple[dict[str, Any], dict[str, str]]:
    """One run of the plan: burst, watch until drained and back to zero, evidence; its result and the alarms'
    final states."""
    for old in (config.work / "workers").glob("*"):
        old.unlink()
    with contextlib.ExitStack() as context:
        target = open_target(config, context, design)
        group = target.watch.fleet.group()
        scale_in = target.watch.fleet.alarm("scale_in")
        # The scale-in alarm's idle window in AWS minutes (its periods may be 10 s).
        idle_minutes = (f"{int(scale_in['EvaluationPeriods']) * alarm_period(scale_in) / 60:g}" if scale_in
                        else None)
        timeline = burst_and_watch(config, target)
        evidence = gather(config, target, timeline, design.name)
    stack = target.stack
    conditions = f"prefix {stack.prefix}, {group['MinSize']} to {group['MaxSize']} instances, " \
                 f"scale-in after {idle_minutes} idle minutes"
    result = run_result(config, design, target, timeline, evidence, conditions)
    if not config.on_aws:
        result["prediction"] = predict_run(config, design, target, result)
    return result, dict(target.watch.scaling.states)


def predict_run(config: ScaleTestConfig, design: Design, target: Target, result: dict[str, Any]) -> dict[str, Any]:
    """The planner's prediction of this run, on its own settings (AWS seconds: real ones scaled by the tick)."""
    scaling, stack = target.watch.scaling, target.stack
    tick = scaling.tick_seconds
    scale = tick / (target.period or config.tick_real_seconds)
    nodes = config.workers == "nodes"
    started = boot_seconds(config.work / "workers")
    launch_hook = scaling.group.hooks.get(LAUNCHING, {}) if isinstance(scaling, EmulatedScaling) else {}
    run = RunSettings(
        messages=config.messages, tick_seconds=tick,
        poll_seconds=max(1, round(lab_period(config))) * scale if nodes else CONSUMER_POLL_SECONDS,
        work_seconds=config.job_seconds if stack.on_redis and not nodes else 0.0,
        watcher_seconds=1.0 * scale if nodes else 1.0,
        launch_timeout=int(launch_hook.get("HeartbeatTimeout", 3600)),
        image=config.image if nodes else "stock",
        boots=[round(b * scale, 1) for b in started["consumer"]],
        in_service=[round(b * scale, 1) for b in started["in service"]],
        spot_interruptions=config.spot_interruptions, clock_factor=scale,
        completes_terminations=design.completes_terminations, broker=result["broker"])
    return prediction(stack, run, result["figures"], result["timeline"])


def run_result(config: ScaleTestConfig, design: Design, target: Target, timeline: list[Period], evidence: Evidence,
               stack_conditions: str) -> dict[str, Any]:
    """A run's figures, timeline and evidence, as report-data.json holds them and REPORT.md shows them."""
    stack, scaling, on_aws = target.stack, target.watch.scaling, config.on_aws
    tick, events = scaling.tick_seconds, evidence.events
    period = target.period or config.tick_real_seconds
    processed_at = processed_minutes(timeline, events, period)
    numbers = figures(timeline, events, config.messages, processed_at, tick,
                      scaling.spot_interruptions if isinstance(scaling, EmulatedScaling) else None)
    processed = processed_per_period(processed_at, len(timeline))
    bootstrap = bootstrap_logs(config.work / "workers")
    label = "AWS" if on_aws else f"emulator, local scaling loop, {config.workers}" + (
        ", Redis broker" if stack.on_redis else "")
    result: dict[str, Any] = {
        "target": config.target,
        "design": design.name,
        "date": datetime.date.today().isoformat(),
        "produced by": (f"real AWS ({stack.region})" if on_aws else
                        "the embedded emulator (moto) with the local scaling loop; not measured on AWS"),
        "conditions": {"messages": config.messages, "tick seconds": tick,
                       "real seconds per tick": period,
                       "spot interruptions": config.spot_interruptions, "workers": target.workers,
                       "design": f"{design.name}: {design.summary}",
                       "machine": "AWS" if on_aws else machine(),
                       "stack": stack_conditions,
                       "command": config.command},
        "figures": numbers,
        "timeline": [{**asdict(p), "processed": n} for p, n in zip(timeline, processed, strict=True)],
        "metric evidence": evidence.metrics,
        "log source": f"CloudWatch Logs {stack.log_group}" if on_aws else "the workers' log files",
        "worker log excerpt": [e for e in events if e["event"] == "message_processed"][:3]
        + [e for e in events if e["event"] == "consumer_stopped"][:4],
        "bootstrap log excerpt": bootstrap[0].read_text().splitlines()[-6:] if bootstrap else [],
        "dead letters sample": evidence.dead_letters,
        "dashboards": evidence.dashboards,
        "dashboard images": evidence.images,
        "aws note": "This report is an AWS run." if on_aws else "This report holds no AWS measurement.",
        "plots": plots(timeline, processed_at, tick, label, config.out, prefix="redis-" if stack.on_redis else ""),
    }
    result["broker"] = "redis" if stack.on_redis else "sqs"
    result["label"] = (f"{design.name} design, {'Redis' if stack.on_redis else 'SQS'}, "
                       + (f"booted nodes, {config.image} image" if config.workers == "nodes" else "local processes"))
    show_figures(numbers)
    result["exit code"] = 0 if numbers["messages lost"] == 0 else 1
    if numbers["minutes to zero instances"] is None:
        print(f"scale_test: the queue was not drained and the group not back to zero within {config.max_minutes} "
              "minutes; the report shows how far it got", file=sys.stderr)
        result["exit code"] = 1
    return result


if __name__ == "__main__":
    raise SystemExit(main())
