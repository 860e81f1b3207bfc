"""CloudWatch's part, one tick at a time: each alarm evaluated at the end of its period from the points
recorded in it, then the step policies of the alarms in ALARM, as Auto Scaling runs them.

`AlarmEvaluation` is what both the local loop (sim.scaling.EmulatedScaling) and the planner
(planner.decide.Decider) decide with: the same code on the same points cannot decide differently.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Optional

from sqs_fleet.sim.fleet import CannotPlay
from sqs_fleet.sim.semantics import ALARM, INSUFFICIENT_DATA, aggregate, alarm_state, expression_value, new_capacity

Key = tuple[str, str, str]  # (namespace, the metric's one dimension's value, metric name)
# AWS's own namespaces: their metrics are stored at one-minute resolution (only PutMetricData with
# StorageResolution 1 stores finer points), as sqs_fleet.aws's alarm module also assumes.
ONE_MINUTE_NAMESPACE_PREFIX = "AWS/"


def one_minute_metrics(alarm: dict[str, Any]) -> list[str]:
    """The metrics an alarm reads that AWS publishes once a minute, as "namespace name"."""
    metrics = [q["MetricStat"]["Metric"] for q in alarm.get("Metrics", []) if "MetricStat" in q]
    if alarm.get("MetricName"):
        metrics.append(alarm)
    return [f"{m.get('Namespace')} {m.get('MetricName')}" for m in metrics
            if str(m.get("Namespace", "")).startswith(ONE_MINUTE_NAMESPACE_PREFIX)]


def alarm_period(alarm: dict[str, Any]) -> int:
    periods = {int(q["MetricStat"]["Period"]) for q in alarm.get("Metrics", []) if "MetricStat" in q}
    return max(periods or {int(alarm.get("Period", 60))})


def tick_seconds(alarms: Sequence[dict[str, Any]]) -> int:
    """The loop's tick: the greatest period dividing every alarm's, at most one minute (SQS's own points)."""
    tick = 60
    for alarm in alarms:
        tick = math.gcd(tick, alarm_period(alarm))
    return tick


def check_playable(alarms: Sequence[dict[str, Any]]) -> None:
    """CannotPlay for an alarm the local loop cannot play as AWS would."""
    tick = tick_seconds(alarms)
    for alarm in alarms:
        period = alarm_period(alarm)
        one_minute = one_minute_metrics(alarm)
        if period % 60 and one_minute:
            raise CannotPlay(f"alarm {alarm['AlarmName']} has a period of {period} s on {', '.join(one_minute)}, "
                             "which AWS publishes once a minute (on AWS it would lapse into INSUFFICIENT_DATA)")
        if period % tick:
            raise CannotPlay(f"alarm {alarm['AlarmName']} has a period of {period} s: the local loop plays whole "
                             f"ticks of {tick} s")


# An alarm's metrics as (id, the key of their points, statistic), and its metric-math expression (None: the alarm
# reads its one metric directly).
Reads = tuple[list[tuple[str, Key, str]], Optional[str]]


def alarm_reads(alarm: dict[str, Any]) -> Reads:
    def key(definition: dict[str, Any]) -> Key:
        # Every metric the loop records has one dimension: a queue's or the group's name.
        dimension = next((d["Value"] for d in definition.get("Dimensions", [])), "")
        return (definition.get("Namespace", ""), dimension, definition.get("MetricName", ""))

    if alarm.get("Metrics"):
        return ([(q["Id"], key(q["MetricStat"]["Metric"]), q["MetricStat"]["Stat"])
                 for q in alarm["Metrics"] if "MetricStat" in q],
                next(q["Expression"] for q in alarm["Metrics"] if q.get("ReturnData", True)))
    return [("", key(alarm), alarm.get("Statistic", "Maximum"))], None


class AlarmEvaluation:
    """The alarms (as described), their step policies (by ARN), one point per tick per metric, and each alarm's
    series and state."""

    def __init__(self, alarms: Sequence[dict[str, Any]], policies: Mapping[str, dict[str, Any]]) -> None:
        self.alarms = list(alarms)
        self.policies = dict(policies)
        self.tick_seconds = tick_seconds(self.alarms)
        # How many of the loop's ticks one period of each alarm spans.
        self.ticks = {a["AlarmName"]: alarm_period(a) // self.tick_seconds for a in self.alarms}
        self.states = {a["AlarmName"]: INSUFFICIENT_DATA for a in self.alarms}
        self.series: dict[str, list[float | None]] = {a["AlarmName"]: [] for a in self.alarms}
        # One point per tick (None: nothing published in it) per (namespace, queue, metric).
        self.history: dict[Key, list[float | None]] = {}
        self.tick = 0  # the tick being evaluated
        self.reads: dict[str, Reads] = {}  # what each alarm reads, worked out from its definition once

    @property
    def ticks_per_minute(self) -> int:
        return 60 // self.tick_seconds

    def record(self, key: Key, tick: int, value: float | None) -> None:
        points = self.history.setdefault(key, [])
        points.extend([None] * (tick - len(points)))  # ticks in which nothing was published
        points.append(value)

    def alarm_value(self, alarm: dict[str, Any]) -> float | None:
        """The alarm's data point for the period that just ended, from the points published in it."""
        name = alarm["AlarmName"]
        reads = self.reads.get(name)
        if reads is None:
            reads = self.reads[name] = alarm_reads(alarm)
        queries, expression = reads
        # The points of this period's ticks (index = tick); a tick nothing was published in has none.
        start, end = max(0, self.tick + 1 - self.ticks[name]), self.tick + 1
        history = self.history
        if expression is None:
            _, key, statistic = queries[0]
            return aggregate(history.get(key, [])[start:end], statistic)
        values = {query: aggregate(history.get(key, [])[start:end], statistic) for query, key, statistic in queries}
        return expression_value(expression, values)

    def evaluate(self, tick: int, group: dict[str, Any], decisions: list[str]) -> int:
        """Every alarm whose period ends this tick, as CloudWatch does; then the step policies of the alarms
        in ALARM, as Auto Scaling does: each is run again every period while its alarm stays in ALARM, and when
        several run at once the one giving the largest capacity wins. The tick's points must be recorded first."""
        self.tick = tick
        current: int = group["DesiredCapacity"]
        capacities = []
        for alarm in self.alarms:
            name = alarm["AlarmName"]
            if (tick + 1) % self.ticks[name]:
                continue  # this alarm's period has not ended yet
            value = self.alarm_value(alarm)
            self.series[name].append(value)
            state = alarm_state(alarm, self.series[name], self.states[name])
            if state != self.states[name]:
                decisions.append(f"{name}: {self.states[name]} -> {state} (value {value})")
            self.states[name] = state
            if state != ALARM or (value is None and alarm.get("TreatMissingData") != "breaching"):
                continue
            for policy in [self.policies[a] for a in alarm.get("AlarmActions", []) if a in self.policies]:
                breach = (value if value is not None else 0.0) - float(alarm["Threshold"])
                capacity = new_capacity(policy, breach, current, group["MinSize"], group["MaxSize"])
                if capacity is not None:
                    capacities.append((capacity, f"{policy['PolicyName']} (breach {breach:+g})"))
        if not capacities:
            return current
        desired, reason = max(capacities)
        if desired != current:
            decisions.append(f"{reason}: desired {current} -> {desired}")
        return desired
