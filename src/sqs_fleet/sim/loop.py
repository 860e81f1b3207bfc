"""Watch a fleet each period, on AWS or on the emulator: the run's tick loop.

`FleetWatch` records what a run sees each period: the queue's counts, the group's desired capacity and
instances, the alarms' states and what was decided. What decides is a `Scaling` (sim.scaling), composed in:
`AwsScaling` reads what CloudWatch and Auto Scaling did on AWS, `EmulatedScaling` plays their part on the
emulator.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sqs_fleet.sim.fleet import Fleet
from sqs_fleet.sim.scaling import Scaling


@dataclass
class Period:
    # The tick's index in the run (0, 1, ...): a minute only when a tick is 60 s of AWS time; `seconds` says when.
    minute: int
    seconds: int  # AWS seconds from the run's start to this tick's start: minute * the scaling's tick_seconds
    at: float  # when it was recorded (epoch seconds): what happened until the next period's `at` belongs to it
    visible: int
    in_flight: int
    dead_letters: int
    desired: int
    instances: int
    in_service: int
    terminating: int
    alarms: dict[str, str]
    decisions: list[str] = field(default_factory=list)


class FleetWatch:
    """The fleet as a run sees it, one period at a time; `scaling` decides what happens in each."""

    def __init__(self, fleet: Fleet, scaling: Scaling) -> None:
        self.fleet, self.scaling = fleet, scaling
        self.timeline: list[Period] = []

    def step(self) -> Period:
        counts = self.fleet.counts()
        outcome = self.scaling.period(len(self.timeline), counts, self.fleet.group())
        keys = self.fleet.alarm_keys
        period = Period(
            minute=len(self.timeline), seconds=len(self.timeline) * self.scaling.tick_seconds, at=time.time(),
            visible=int(counts[(self.fleet.queue_name, "ApproximateNumberOfMessagesVisible")]),
            in_flight=int(counts[(self.fleet.queue_name, "ApproximateNumberOfMessagesNotVisible")]),
            dead_letters=int(counts[(self.fleet.dlq_name, "ApproximateNumberOfMessagesVisible")]),
            desired=outcome.group["DesiredCapacity"], instances=outcome.instances, in_service=outcome.in_service,
            terminating=outcome.terminating,
            alarms={keys.get(name, name): state for name, state in self.scaling.states.items()},
            decisions=outcome.decisions,
        )
        self.timeline.append(period)
        return period

    def run(self, until: Callable[[list[Period]], bool], max_periods: int, period_seconds: float,
            show: Callable[[Period], None] = lambda period: None) -> list[Period]:
        """One step per period until `until(timeline)` holds or max_periods have passed; `show` sees each period."""
        try:
            for _ in range(max_periods):
                started = time.monotonic()
                show(self.step())
                if until(self.timeline):
                    break
                time.sleep(max(0.0, period_seconds - (time.monotonic() - started)))
        finally:
            self.scaling.close()
        return self.timeline
