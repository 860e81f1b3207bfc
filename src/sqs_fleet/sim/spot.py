"""EC2's part for Spot instances, emulated: an interruption notice through the instance's metadata, and two
minutes later the instance terminated without lowering the desired capacity, so the group replaces it."""

from __future__ import annotations

import math
from collections.abc import Sequence

from sqs_fleet.sim.fleet import Fleet, live_ids
from sqs_fleet.sim.group import GroupLifecycle, TargetLifecycleState

SPOT_NOTICE_SECONDS = 120  # EC2's two-minute warning before a Spot interruption


class SpotInterruptions:
    def __init__(self, fleet: Fleet, group: GroupLifecycle, metadata: TargetLifecycleState | None,
                 tick_seconds: int) -> None:
        self.fleet, self.group, self.metadata, self.tick_seconds = fleet, group, metadata, tick_seconds
        self.announced: dict[int, list[str]] = {}  # tick of the notice -> instances
        self.interrupted: dict[str, int] = {}  # instance -> the tick its interruption terminates it
        self.count = 0  # notices given

    def interrupt(self, instance_ids: Sequence[str], at_minute: float) -> None:
        """Spot interruption notices for these instances at this minute of the run (AWS time): each gets its
        notice then (the metadata service) and is terminated two minutes later."""
        tick = math.ceil(at_minute * 60 / self.tick_seconds)
        self.announced.setdefault(tick, []).extend(instance_ids)

    def play(self, tick: int, decisions: list[str]) -> bool:
        """This tick's Spot notices and the interruptions they announced; True when an instance was terminated."""
        terminated = False
        for instance in self.announced.pop(tick, []):
            self.interrupted[instance] = tick + math.ceil(SPOT_NOTICE_SECONDS / self.tick_seconds)
            self.count += 1
            if self.metadata is not None:
                self.metadata.notice_spot_interruption(instance, SPOT_NOTICE_SECONDS)
            decisions.append(f"spot interruption notice for {instance} (emulated): terminated in two minutes")
        due = [i for i, until in self.interrupted.items() if until <= tick]
        # Scale-in may have taken an announced instance first (the emulator answers a call on it with a 500).
        in_group = set(live_ids(self.fleet.group())) if due else set()
        for instance in due:
            del self.interrupted[instance]
            if instance not in in_group or instance in self.group.terminating:
                decisions.append(f"spot interruption of {instance}: already terminating or gone")
                continue
            self.fleet.autoscaling.terminate_instance_in_auto_scaling_group(
                InstanceId=instance, ShouldDecrementDesiredCapacity=False)
            self.group.forget(instance)
            decisions.append(f"spot interruption: {instance} terminated by EC2 (emulated); the group replaces it")
            terminated = True
        return terminated
