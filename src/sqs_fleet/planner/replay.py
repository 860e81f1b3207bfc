"""A load replayed second by second in virtual time: messages arrive, workers take them as the consumer (or a
Celery worker) does, and every tick the points the alarms read are recorded and the loop's decision code
(`planner.decide`) sets the group's desired capacity; instances launch, boot, drain and are interrupted as the
stack's hooks and the settings say. Arithmetic only: no process, no clock."""

from __future__ import annotations

import bisect
import itertools
import math
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqs_fleet.planner.decide import Decider
from sqs_fleet.planner.load import Load
from sqs_fleet.planner.rules import publisher_metric, rules
from sqs_fleet.planner.settings import Settings
from sqs_fleet.sim.semantics import instances_to_terminate

SPOT_NOTICE = 120  # EC2's two-minute warning (sim.spot.SPOT_NOTICE_SECONDS)
QUEUE_SLEEPS_AFTER = 6 * 3600  # SQS: a queue idle this long stops delivering metrics
TAIL = 6 * 3600  # the replay goes on after the load until the fleet is back at its minimum, at most this long
STOP_MARGIN = 10.0  # files/consumer.py: what a stopping consumer keeps for its delete and release calls
INF = math.inf


def ceil(value: float) -> float:
    return math.ceil(value) if value < INF else INF


def floor(value: float) -> float:
    return math.floor(value) if value < INF else INF


class Worker:
    """One instance: its launch, its consumer (SQS: poll, batch, wait; Celery: one job a process) and its end."""

    __slots__ = ("id", "launched", "ready", "spot", "abandon_at", "stop_at", "end", "phase", "at", "batch",
                 "batch_end", "slots", "notice", "noticed", "stopped", "deadline")

    def __init__(self, number: int, launched: float, boot: float, spot: bool, notice: float, settings: Settings):
        self.id, self.launched, self.spot, self.notice = number, launched, spot, notice
        self.ready = launched + boot
        self.abandon_at = launched + settings.launch_timeout if boot > settings.launch_timeout else INF
        self.stop_at = INF  # when its consumer is told to stop (the watcher saw Terminated, or a Spot notice)
        self.end = INF  # when EC2 terminates it: billed until then
        self.phase, self.at = "sleep", self.ready  # SQS consumer: sleep until `at`, poll until `at`, batch
        self.batch: list[tuple[float, float, float]] = []  # (arrival, start, work) of the messages in hand
        self.batch_end = 0.0
        self.slots = [self.ready] * settings.concurrency  # Celery: when each process is free
        self.noticed = self.stopped = False
        self.deadline = INF  # the drain hook's heartbeat ends


@dataclass
class Result:
    settings: Settings
    load: Load
    seconds: int  # virtual seconds replayed (the load, then the tail until the fleet is back at its minimum)
    waits: list[float] = field(default_factory=list)
    drains: list[float | None] = field(default_factory=list)  # seconds from each burst's start to its last message done
    on_demand_seconds: float = 0.0
    spot_seconds: float = 0.0
    idle_instance_seconds: float = 0.0  # instance-seconds while nothing was visible or in flight
    scale_events: list[tuple[int, int, int]] = field(default_factory=list)  # (second, from, to)
    requests: dict[str, int] = field(default_factory=dict)
    spot_interruptions: int = 0
    abandoned_launches: int = 0
    released: int = 0  # messages a stopping consumer put back
    left: int = 0  # messages still waiting when the replay ended
    minutes: list[tuple[int, int, int, float]] = field(default_factory=list)  # (backlog, instances, desired, wait)
    ticks: list[tuple[int, dict[str, str], int]] = field(default_factory=list)  # (tick, alarm states, desired)
    first_ready: float | None = None  # when the first instance's consumer was ready (launch + boot)
    first_done: float | None = None  # when the first message was processed
    last_end: float | None = None  # when the last instance to leave the group was gone (EC2 terminated it)

    @property
    def instance_seconds(self) -> float:
        return self.on_demand_seconds + self.spot_seconds


def replay(settings: Settings, load: Load, work: Callable[[], float], seed: int = 1,
           progress: Callable[[float], None] = lambda fraction: None, quiet_steps: bool = True) -> Result:
    """`quiet_steps`: take each stretch of seconds in which nothing arrives and no instance acts (up to the next
    tick) in one step; the same result as replaying them one by one (tests/unit/test_planner_quiet.py)."""
    stack = rules(settings)
    decider = Decider(stack.alarms, stack.policies)
    tick, per_minute = decider.tick_seconds, decider.ticks_per_minute
    queue_name, group_name = settings.names["queue"], settings.names["group"]
    published = publisher_metric(settings)
    publisher_key = (published["Namespace"], published["Dimensions"][0]["Value"], published["MetricName"])
    publishing = settings.metric_source == "publisher"
    celery = settings.broker == "redis"
    rng = random.Random(seed)  # noqa: S311  # nosec B311 - simulation draws, not security
    result = Result(settings, load, 0)
    requests = {"send": 0, "receive": 0, "delete": 0, "release": 0, "publisher read": 0, "publisher put": 0}
    bursts = load.bursts()
    burst_starts = [start for start, _ in bursts]
    drained: list[float] = [-INF] * len(bursts)
    queue: deque[float] = deque()  # arrival times of the visible messages, oldest first
    live: list[Worker] = []  # launching or in service (the group's instances that are not terminating)
    ending: list[Worker] = []  # terminating: still running and billed
    desired, numbers = settings.min_size, 0
    last_active, awake_from, sample = 0.0, 0.0, 0.0
    on_demand_live = 0
    minute_backlog = minute_instances = 0
    minute_wait = 0.0
    rate = settings.spot_interruptions_per_hour / 3600

    def launch(at: float) -> None:
        nonlocal numbers, on_demand_live
        numbers += 1
        spot = settings.spot and on_demand_live >= settings.on_demand_base
        on_demand_live += not spot
        notice = at + rng.expovariate(rate) if spot and rate > 0 else INF
        live.append(Worker(numbers, at, settings.ec2_launch_seconds + settings.boot_seconds, spot, notice, settings))

    def done(arrival: float, start: float, finished: float) -> None:
        nonlocal minute_wait
        if result.first_done is None or finished < result.first_done:
            result.first_done = finished
        wait = start - arrival if start > arrival else 0.0
        result.waits.append(wait)
        minute_wait = max(minute_wait, wait)
        index = bisect.bisect_right(burst_starts, arrival) - 1
        if index >= 0 and finished > drained[index]:
            drained[index] = finished

    def stop(worker: Worker) -> None:
        """Its consumer has been told to stop (at worker.stop_at): it finishes what it holds within the stop
        timeout and releases the rest, as files/consumer.py does."""
        worker.stopped = True
        if worker.phase == "batch":
            budget = worker.stop_at + settings.stop_timeout - min(STOP_MARGIN, settings.stop_timeout / 4)
            kept = [m for m in worker.batch if m[1] + m[2] <= budget]
            release(worker, worker.batch[len(kept):])
            worker.batch = kept
            worker.batch_end = max([m[1] + m[2] for m in kept] + [worker.stop_at])

    def release(worker: Worker, messages: list[tuple[float, float, float]]) -> None:
        for arrival, _, _ in reversed(messages):
            queue.appendleft(arrival)
        result.released += len(messages)
        requests["release"] += bool(messages)

    def exit_time(worker: Worker) -> float:
        """When its consumer has exited (the watcher then completes the termination action)."""
        if worker.ready > worker.stop_at:
            return worker.stop_at  # never in service: nothing to drain
        if celery:
            return max([worker.stop_at, *worker.slots])
        return max(worker.stop_at, worker.batch_end) if worker.phase == "batch" else worker.stop_at

    def end(worker: Worker, at: float, kind: str) -> None:
        """Out of the group: EC2 takes a Spot or abandoned one at `at`; a scale-in's is held by the drain hook
        until its consumer has exited (the watcher sees Terminated within its interval) or the heartbeat ends."""
        nonlocal on_demand_live
        live.remove(worker)
        on_demand_live -= not worker.spot
        if kind in ("spot", "abandoned"):
            worker.end = at
        else:
            worker.stop_at = min(worker.stop_at, at + settings.watcher_interval)
            worker.deadline = at + settings.drain_timeout
        ending.append(worker)

    def consume(worker: Worker, t: int) -> None:
        """What the worker's consumer does in [t, t + 1)."""
        until = min(t + 1.0, worker.stop_at)
        if celery:
            slots = worker.slots
            for index, free in enumerate(slots):
                while free < until and queue:
                    arrival = queue.popleft()
                    start = max(free, arrival)
                    free = start + work()
                    done(arrival, start, free)
                slots[index] = free
            return
        while True:
            if worker.phase == "sleep":
                if worker.at >= until or worker.stopped:
                    return
                worker.phase, worker.batch_end = "poll", worker.at + settings.wait_time  # batch_end: the poll's end
                requests["receive"] += 1
            if worker.phase == "poll":
                if worker.stopped:
                    worker.phase = "sleep"
                    return
                received = max(worker.at, queue[0]) if queue else INF
                if received < until and received <= worker.batch_end:
                    start, batch = received, []
                    for _ in range(min(settings.batch, len(queue))):
                        if queue[0] > until:
                            break
                        arrival = queue.popleft()
                        seconds = work()
                        batch.append((arrival, start, seconds))
                        start += seconds
                    worker.phase, worker.batch, worker.batch_end = "batch", batch, start
                elif worker.batch_end < until:
                    worker.phase, worker.at = "sleep", worker.batch_end + settings.poll_interval
                    continue
                else:
                    return
            if worker.phase == "batch":
                if worker.batch_end >= t + 1.0:
                    return
                for arrival, start, _ in worker.batch:
                    done(arrival, start, worker.batch_end)
                requests["delete"] += 1
                worker.phase, worker.at, worker.batch = "sleep", worker.batch_end + settings.poll_interval, []

    def held_by(workers: list[Worker], t: int) -> int:
        """Messages in hand at second t. A Celery process holds a job until its slot is free; a launching worker's
        slots (free at `ready`) hold none."""
        if celery:
            return sum(1 for w in workers for free in w.slots if free > max(t, w.ready))
        return sum(len(w.batch) for w in workers if w.phase == "batch")

    def unchanged_until(worker: Worker, t: int) -> float:
        """The first second from `t` in which the pass over this instance (in the group, not terminating) may do
        anything, or its messages in hand change, while nothing arrives: the conditions of the loop below and of
        consume, each the first second it holds (t or before: now)."""
        first = min(ceil(worker.abandon_at), ceil(worker.notice + SPOT_NOTICE) if worker.noticed
                    else ceil(worker.notice), INF if worker.stopped else floor(worker.stop_at))
        if worker.ready >= t + 1:
            return min(first, floor(worker.ready))  # launching: its consumer starts then
        if result.first_ready is None or worker.ready < result.first_ready:
            return t
        if celery:
            for free in worker.slots:  # with messages waiting a free process takes one; a busy one holds one
                first = min(first, floor(free) if queue else ceil(free) if free > t else INF)
            return first
        if worker.phase == "sleep":
            return first if worker.stopped else min(first, floor(worker.at))
        if worker.phase == "poll" and (worker.stopped or queue):
            return t
        return min(first, floor(worker.batch_end))  # a poll's end, or a batch's

    seconds, arrivals = load.seconds, load.arrivals
    horizon = seconds + TAIL
    report_every = max(1, horizon // 100)
    publisher_period, min_size, max_size = settings.publisher_period, settings.min_size, settings.max_size
    arriving = list(itertools.compress(range(seconds), arrivals))  # the seconds anything arrives in
    t = 0
    while t < horizon:
        count = arrivals[t] if t < seconds else 0
        if quiet_steps and not count and not ending and t % tick:
            # Nothing arriving, nothing terminating, no tick: up to the next tick, the next arrival or the next second
            # an instance may act in, every second is this one (the same backlog and instances, nothing decided):
            # taken in one step when that is two seconds or more.
            following = bisect.bisect_left(arriving, t)
            until = min(t - t % tick + tick, horizon,
                        arriving[following] if following < len(arriving) else horizon)
            for worker in live:
                if until <= t + 1:
                    break
                until = int(min(until, unchanged_until(worker, t)))  # finite: at most the horizon
            if until > t + 1:
                if live and not celery:
                    last_active = until - 1  # consumers poll the queue
                visible = len(queue)
                held = held_by(live, t)
                backlog = visible + held
                samples = (until - 1) // publisher_period - (t - 1) // publisher_period  # seconds the publisher reads
                if samples:
                    sample = max(sample, backlog)
                    requests["publisher read"] += publishing * samples
                    requests["publisher put"] += publishing * samples
                running = len(live)
                if not backlog:
                    result.idle_instance_seconds += running * (until - t)
                minute_backlog, minute_instances = max(minute_backlog, backlog), max(minute_instances, running)
                if until % 60 == 0:  # the step ends with the minute's last second (ticks divide the minute)
                    result.minutes.append((minute_backlog, minute_instances, desired, minute_wait))
                    minute_backlog = minute_instances = 0
                    minute_wait = 0.0
                for reported in range(t // report_every * report_every + report_every, until + 1, report_every):
                    progress(min(1.0, reported / max(1, seconds)))
                t = until
                if t >= seconds and not backlog and desired == min_size == running and t % 60 == 0:
                    break
                continue
        if count:
            queue.extend(t + (n + 0.5) / count for n in range(count))
            requests["send"] += math.ceil(count / 10)  # the producer sends in batches of ten
            if t - last_active > QUEUE_SLEEPS_AFTER and not publishing:
                awake_from = t + settings.sqs_wake_delay  # its metrics arrive late after it wakes
            last_active = t
        # Instances: launches settled, Spot notices and interruptions, consumers at work, ends.
        for worker in list(live):
            if worker.abandon_at <= t:
                result.abandoned_launches += 1
                end(worker, worker.abandon_at, "abandoned")
                continue
            if worker.notice <= t and not worker.noticed:
                worker.noticed = True
                result.spot_interruptions += 1
                worker.stop_at = min(worker.stop_at, worker.notice + settings.watcher_interval)
            if worker.noticed and worker.notice + SPOT_NOTICE <= t:
                end(worker, worker.notice + SPOT_NOTICE, "spot")
                continue
            if worker.ready < t + 1:
                if result.first_ready is None or worker.ready < result.first_ready:
                    result.first_ready = worker.ready
                # An SQS consumer asleep or in a batch past this second does nothing in it (consume returns).
                if celery or not (worker.at >= t + 1 if worker.phase == "sleep" else
                                  worker.phase == "batch" and worker.batch_end >= t + 1):
                    consume(worker, t)
            if worker.stop_at < t + 1 and not worker.stopped:
                stop(worker)
        for worker in list(ending):
            if worker.ready < t + 1 and worker.end > t:
                consume(worker, t)  # finishing what it holds
            if worker.stop_at < t + 1 and not worker.stopped:
                stop(worker)
            if worker.end == INF and worker.stopped:
                exited = exit_time(worker)
                if exited < t + 1 or worker.deadline < t + 1:
                    worker.end = min(exited, worker.deadline)
            if worker.end < t + 1:
                if not celery and worker.phase == "batch" and worker.batch_end > worker.end:
                    release(worker, worker.batch)  # cut by the heartbeat: back after the visibility timeout
                    worker.phase, worker.batch = "sleep", []
                ending.remove(worker)
                result.last_end = max(result.last_end or 0.0, worker.end)
                billed = worker.end - worker.launched
                if worker.spot:
                    result.spot_seconds += billed
                else:
                    result.on_demand_seconds += billed
        if live and not celery:
            last_active = t  # consumers poll the queue
        visible = len(queue)
        held = held_by(live + ending, t)
        backlog = visible + held
        if t % publisher_period == 0:
            sample = max(sample, backlog)
            requests["publisher read"] += publishing
            requests["publisher put"] += publishing
        running = len(live) + len(ending)
        if not backlog:
            result.idle_instance_seconds += running
        minute_backlog, minute_instances = max(minute_backlog, backlog), max(minute_instances, running)
        if t % tick == 0:
            number = t // tick
            if number % per_minute == 0:
                missing = not publishing and (t < awake_from or t - last_active > QUEUE_SLEEPS_AFTER)
                decider.record(("AWS/SQS", queue_name, "ApproximateNumberOfMessagesVisible"), number,
                               None if missing else float(visible))
                decider.record(("AWS/SQS", queue_name, "ApproximateNumberOfMessagesNotVisible"), number,
                               None if missing else float(held))
            decider.record(("AWS/AutoScaling", group_name, "GroupDesiredCapacity"), number, float(desired))
            if publishing:
                decider.record(publisher_key, number, float(sample))
            sample = 0.0
            new, _ = decider.decide(number, desired, min_size, max_size)
            result.ticks.append((number, dict(decider.states), new))
            if new != desired:
                result.scale_events.append((t, desired, new))
                if new < len(live):
                    views = [{"InstanceId": str(w.id), "LifecycleState": "InService" if w.ready <= t else "Pending"}
                             for w in live]
                    victims = set(instances_to_terminate(views, new))
                    for worker in [w for w in live if str(w.id) in victims]:
                        end(worker, float(t), "scale-in")
                desired = new
            while len(live) < desired:  # a scale-out, or the replacement of an interrupted or abandoned one
                launch(float(t))
        if t % 60 == 59:
            result.minutes.append((minute_backlog, minute_instances, desired, minute_wait))
            minute_backlog = minute_instances = 0
            minute_wait = 0.0
        t += 1
        if t % report_every == 0:
            progress(min(1.0, t / max(1, seconds)))
        if t >= seconds and not backlog and not ending and desired == min_size and \
                len(live) == desired and t % 60 == 0:
            break
    for worker in live:  # still running at the end (a minimum above zero): billed until then
        if worker.spot:
            result.spot_seconds += t - worker.launched
        else:
            result.on_demand_seconds += t - worker.launched
    progress(1.0)
    result.seconds, result.left, result.requests = t, len(queue), requests
    result.drains = [finished - start if finished > -INF else None for (start, _), finished in zip(bursts, drained)]
    return result


def summary(result: Result) -> dict[str, Any]:
    """The replay's figures: waits, drains, instance time, scale events."""
    waits = sorted(result.waits)

    def percentile(share: float) -> float | None:
        return waits[min(len(waits) - 1, int(share * len(waits)))] if waits else None

    drains = [d for d in result.drains if d is not None]
    return {
        "messages": result.load.total, "processed": len(waits), "left waiting": result.left,
        "wait p50 s": percentile(0.50), "wait p95 s": percentile(0.95), "wait max s": waits[-1] if waits else None,
        "bursts": len(result.drains), "drain max s": max(drains) if drains else None,
        "drain median s": sorted(drains)[len(drains) // 2] if drains else None,
        "instance-minutes": result.instance_seconds / 60,
        "instance-minutes idle": result.idle_instance_seconds / 60,
        "idle share": result.idle_instance_seconds / result.instance_seconds if result.instance_seconds else 0.0,
        "scale events": len(result.scale_events),
        "spot interruptions": result.spot_interruptions, "abandoned launches": result.abandoned_launches,
        "released": result.released, "seconds replayed": result.seconds,
    }
