"""What decides the group's size each period (`Scaling`): AWS itself (`AwsScaling`), or on the emulator, which
evaluates no alarm and runs no policy, the local loop playing CloudWatch's and Auto Scaling's part
(`EmulatedScaling`).

`EmulatedScaling` composes the parts of AWS it plays: it publishes the AWS/SQS metrics from GetQueueAttributes
(sim.clock), invokes the backlog publisher's handler (sim.publisher), evaluates the stack's alarms and runs their
step policies (sim.alarms), sets the group's desired capacity, plays its lifecycle hooks and gives every
instance a worker (sim.group), and plays Spot interruptions (sim.spot). Alarms, policies and hooks are read back
from AWS (or the emulator), never from the project's variables. A time scale shrinks a period (60 s on AWS) to
a few seconds; the logic is the same.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sqs_fleet.sim.alarms import AlarmEvaluation, Key, check_playable
from sqs_fleet.sim.clock import RunClock
from sqs_fleet.sim.fleet import Counts, Fleet, live_ids
from sqs_fleet.sim.group import GroupLifecycle, HookActions, TargetLifecycleState, Workers
from sqs_fleet.sim.publisher import EmulatedPublisher
from sqs_fleet.sim.spot import SpotInterruptions


@dataclass
class Outcome:
    """What one period of scaling did, and the group it left."""

    group: dict[str, Any]
    instances: int  # running, Terminating:Wait included (it is billed)
    in_service: int
    terminating: int
    decisions: list[str]


class Scaling(Protocol):
    """What decides the group's size each period: AWS itself, or the local loop playing it."""

    tick_seconds: int  # AWS seconds one period (a tick of the run) spans

    @property
    def states(self) -> dict[str, str]:
        """Alarm name -> state."""

    def period(self, minute: int, counts: Counts, group: dict[str, Any]) -> Outcome: ...

    def close(self) -> None: ...


class AwsScaling:
    """On AWS: CloudWatch and Auto Scaling act; this reads their states and the new scaling activities."""

    tick_seconds = 60  # the plan watches AWS once a minute, in real time

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        self.states = {a["AlarmName"]: a.get("StateValue", "INSUFFICIENT_DATA") for a in fleet.alarms}
        self.activities_seen = {a["ActivityId"] for a in self.scaling_activities()}  # only the run's own count

    def scaling_activities(self) -> list[dict[str, Any]]:
        activities: list[dict[str, Any]] = self.fleet.autoscaling.describe_scaling_activities(
            AutoScalingGroupName=self.fleet.group_name, MaxRecords=20)["Activities"]
        return activities

    def new_activities(self) -> list[str]:
        """The scaling activities begun since the last look, oldest first, as the timeline's decisions."""
        fresh = [a for a in reversed(self.scaling_activities()) if a["ActivityId"] not in self.activities_seen]
        self.activities_seen |= {a["ActivityId"] for a in fresh}
        return [f"{a['StatusCode']}: {a['Description']} ({a.get('Cause', '').split(' At ')[-1][:120]})"
                for a in fresh]

    def period(self, minute: int, counts: Counts, group: dict[str, Any]) -> Outcome:
        self.states = {a["AlarmName"]: a["StateValue"] for a in self.fleet.cloudwatch.describe_alarms(
            AlarmNames=list(self.fleet.alarm_keys))["MetricAlarms"]}
        states = [i["LifecycleState"] for i in group.get("Instances", [])]
        return Outcome(group=group, instances=sum(1 for state in states if state != "Terminated"),
                       in_service=states.count("InService"),
                       terminating=sum(1 for state in states if state.startswith("Terminating")),
                       decisions=self.new_activities())

    def close(self) -> None:
        """Nothing to stop: AWS runs the instances."""


class EmulatedScaling:
    """On the emulator: CloudWatch's and Auto Scaling's part, one period at a time, and workers for the group.

    The loop's tick is the shortest period it must play: 10 s of AWS time when an alarm reads 10-second periods
    (the backlog publisher's high-resolution metric), else one minute. AWS's own metrics (SQS's, the group's)
    stay one point a minute at any tick, and an alarm with a sub-minute period on one cannot be played.

    `actions`: the lifecycle actions, kept where the workers complete them (the lab's, which its nodes reach);
    `metadata`: where a node reads its target lifecycle state and Spot notices; `complete_terminations`: False
    plays local processes whose termination action nothing completes (sim.group.GroupLifecycle).
    """

    def __init__(self, fleet: Fleet, workers: Workers, actions: HookActions,
                 metadata: TargetLifecycleState | None = None, complete_terminations: bool = True) -> None:
        self.fleet, self.workers = fleet, workers
        # A period the loop cannot play fails here, before anything is sent.
        check_playable(fleet.alarms)
        self.alarms = AlarmEvaluation(fleet.alarms, {p["PolicyARN"]: p for p in fleet.autoscaling.describe_policies(
            AutoScalingGroupName=fleet.group_name)["ScalingPolicies"]})
        self.tick_seconds = self.alarms.tick_seconds
        self.tick = 0  # the tick being played
        # Lifecycle actions run on the loop's clock (AWS time: ticks played), so a 300 s heartbeat lasts the
        # ticks it spans on AWS however long a tick takes to play.
        actions.clock = lambda: float(self.tick * self.tick_seconds)
        self.group = GroupLifecycle(fleet, workers, actions, metadata, complete_terminations)
        self.publisher = EmulatedPublisher.for_stack(fleet)
        self.spot = SpotInterruptions(fleet, self.group, metadata, self.tick_seconds)
        self.clock = RunClock(fleet.cloudwatch, self.dimensions(), self.tick_seconds)

    def dimensions(self) -> list[tuple[str, str]]:
        """The dimensions of every metric the loop publishes: the queues', the group's, the publisher's."""
        named = [("QueueName", self.fleet.queue_name), ("QueueName", self.fleet.dlq_name),
                 ("AutoScalingGroupName", self.fleet.group_name)]
        if self.publisher is not None:
            named.append(self.publisher.dimension)
        return named

    # What a run reads of the parts (the timeline's alarm states, the points recorded, ...).
    @property
    def states(self) -> dict[str, str]:
        return self.alarms.states

    @property
    def history(self) -> dict[Key, list[float | None]]:
        return self.alarms.history

    @property
    def policies(self) -> dict[str, dict[str, Any]]:
        return self.alarms.policies

    @property
    def spot_interruptions(self) -> int:
        return self.spot.count

    def stamp(self, tick: int) -> datetime.datetime:
        return self.clock.stamp(tick)

    def serving(self, group: dict[str, Any]) -> set[str]:
        return self.group.serving(group)

    def resize(self, tick: int, group: dict[str, Any], desired: int, decisions: list[str]) -> None:
        self.group.resize(tick, group, desired, decisions)

    def interrupt(self, instance_ids: Sequence[str], at_minute: float) -> None:
        self.spot.interrupt(instance_ids, at_minute)

    def period(self, minute: int, counts: Counts, group: dict[str, Any]) -> Outcome:
        """One tick of the loop (`minute` is the tick's index: a minute, or 10 s with high-resolution alarms)."""
        tick, decisions = minute, list[str]()
        self.tick = tick
        minute_starts = tick % self.alarms.ticks_per_minute == 0
        if minute_starts:
            self.clock.put_queue_metrics(tick, counts)
            for (queue, metric), value in counts.items():
                self.alarms.record(("AWS/SQS", queue, metric), tick, value)
            # What an alarm on the group's desired capacity reads in this minute: the capacity it started with, one
            # point a minute as Auto Scaling publishes its group metrics.
            self.alarms.record(("AWS/AutoScaling", self.fleet.group_name, "GroupDesiredCapacity"), tick,
                               float(group["DesiredCapacity"]))
        if self.publisher is not None:
            published = self.publisher.invoke(self.stamp(tick), decisions)
            if published is not None:
                self.alarms.record(self.publisher.key, tick, published)
        if self.spot.play(tick, decisions):
            group = self.fleet.group()
        desired = self.alarms.evaluate(tick, group, decisions)
        if desired != group["DesiredCapacity"]:
            self.group.resize(tick, group, desired, decisions)
        self.group.settle(decisions)
        group = self.fleet.group()
        self.group.begin_launches(group, decisions)
        if self.group.follow(group, decisions):
            group = self.fleet.group()
        running = live_ids(group)
        serving = self.group.serving(group)
        terminating = len(self.group.terminating)
        if minute_starts:
            # The group's size at the end of this period.
            self.clock.put_group_metrics(tick, self.fleet.group_name, (
                ("GroupDesiredCapacity", group["DesiredCapacity"]), ("GroupInServiceInstances", len(serving)),
                ("GroupTotalInstances", len(running) + terminating)))
        return Outcome(group=group, instances=len(running) + terminating, in_service=len(serving),
                       terminating=terminating, decisions=decisions)

    def close(self) -> None:
        self.workers.stop()
