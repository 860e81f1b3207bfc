"""What CloudWatch and Auto Scaling decide each tick, by the local loop's own code.

`Decider` is the loop's `sim.alarms.AlarmEvaluation` (the alarms, the policies, one point per tick per metric,
each alarm's series and state), composed in: the planner and the loop cannot decide differently on the same
points, and nothing of the loop is copied.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqs_fleet.sim.alarms import AlarmEvaluation, Key


class Decider:
    def __init__(self, alarms: Sequence[dict[str, Any]], policies: Mapping[str, dict[str, Any]]) -> None:
        self.evaluation = AlarmEvaluation(alarms, policies)
        self.tick_seconds = self.evaluation.tick_seconds

    @property
    def ticks_per_minute(self) -> int:
        return self.evaluation.ticks_per_minute

    @property
    def states(self) -> dict[str, str]:
        return self.evaluation.states

    def record(self, key: Key, tick: int, value: float | None) -> None:
        self.evaluation.record(key, tick, value)

    def decide(self, tick: int, desired: int, min_size: int, max_size: int) -> tuple[int, list[str]]:
        """The alarms whose period ends this tick evaluated, and the group's new desired capacity (with the
        decisions as the loop words them); the tick's points must be recorded first."""
        decisions: list[str] = []
        group = {"DesiredCapacity": desired, "MinSize": min_size, "MaxSize": max_size}
        return self.evaluation.evaluate(tick, group, decisions), decisions
