"""What CloudWatch and Auto Scaling decide each tick, by the local loop's own code.

`Decider` holds what `sim.loop.EmulatedScaling` holds for its decisions (the alarms, the policies, one point per
tick per metric, each alarm's series and state) and runs that class's own `record`, `alarm_value` and `evaluate`
on them: the planner and the loop cannot decide differently on the same points, and nothing of the loop is
copied. The loop's tick and each alarm's period in ticks come from its pure functions `tick_seconds` and
`alarm_period`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

from sqs_fleet.sim.loop import EmulatedScaling, alarm_period, tick_seconds
from sqs_fleet.sim.semantics import INSUFFICIENT_DATA

Key = tuple[str, str, str]  # (namespace, the metric's one dimension's value, metric name)


class _Alarms:
    """The part of the loop's `Fleet` its decisions read: the alarms, as described."""

    def __init__(self, alarms: Sequence[dict[str, Any]]) -> None:
        self.alarms = list(alarms)


class Decider:
    def __init__(self, alarms: Sequence[dict[str, Any]], policies: Mapping[str, dict[str, Any]]) -> None:
        self.fleet = _Alarms(alarms)
        self.policies = dict(policies)
        self.tick_seconds = tick_seconds(self.fleet.alarms)
        self.ticks = {a["AlarmName"]: alarm_period(a) // self.tick_seconds for a in self.fleet.alarms}
        self.states = {a["AlarmName"]: INSUFFICIENT_DATA for a in self.fleet.alarms}
        self.series: dict[str, list[float | None]] = {a["AlarmName"]: [] for a in self.fleet.alarms}
        self.history: dict[Key, list[float | None]] = {}
        self.tick = 0

    @property
    def ticks_per_minute(self) -> int:
        return 60 // self.tick_seconds

    def record(self, key: Key, tick: int, value: float | None) -> None:
        EmulatedScaling.record(cast(Any, self), key, tick, value)

    def alarm_value(self, alarm: dict[str, Any]) -> float | None:
        value: float | None = EmulatedScaling.alarm_value(cast(Any, self), alarm)
        return value

    def decide(self, tick: int, desired: int, min_size: int, max_size: int) -> tuple[int, list[str]]:
        """The alarms whose period ends this tick evaluated, and the group's new desired capacity (with the
        decisions as the loop words them); the tick's points must be recorded first."""
        self.tick, decisions = tick, list[str]()
        group = {"DesiredCapacity": desired, "MinSize": min_size, "MaxSize": max_size}
        new: int = EmulatedScaling.evaluate(cast(Any, self), tick, group, decisions)
        return new, decisions
