"""How CloudWatch alarms and Auto Scaling step policies decide, as the AWS guides document it: the part
of AWS the emulator does not play (it evaluates no alarm and applies no step policy correctly).

The building blocks of the local scaling loop; each is a pure function, tested against the documented
rules in tests/unit/test_aws_semantics.py.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Mapping, Sequence
from typing import Any, Optional

OK, ALARM, INSUFFICIENT_DATA = "OK", "ALARM", "INSUFFICIENT_DATA"
# The lifecycle hooks' transitions.
LAUNCHING, TERMINATING = "autoscaling:EC2_INSTANCE_LAUNCHING", "autoscaling:EC2_INSTANCE_TERMINATING"
COMPARISONS = {
    "GreaterThanOrEqualToThreshold": operator.ge,
    "GreaterThanThreshold": operator.gt,
    "LessThanThreshold": operator.lt,
    "LessThanOrEqualToThreshold": operator.le,
}
Datapoint = Optional[float]


def step_for(steps: Sequence[Mapping[str, Any]], breach: float) -> Mapping[str, Any] | None:
    """The step adjustment AWS applies for `breach` = metric value - alarm threshold, or None.

    Above the threshold (breach >= 0) a range includes its lower bound and excludes its upper
    bound; below it (breach < 0) the reverse, as the user guide's step scaling page states.
    """
    for step in steps:
        lower, upper = step.get("MetricIntervalLowerBound"), step.get("MetricIntervalUpperBound")
        lo = -math.inf if lower is None else float(lower)
        up = math.inf if upper is None else float(upper)
        if (breach >= 0 and lo <= breach < up) or (breach < 0 and lo < breach <= up):
            return step
    return None


# Metric math as the stack's alarms use it: metric ids, numbers, + - * /, parentheses, the comparisons
# == != < > <= >= (1 or 0) and IF(condition, then, else); other functions are not evaluated here.
MATH_TOKEN = re.compile(r"\s*(?:(?P<number>\d+(?:\.\d*)?)|(?P<function>IF)\s*(?=\()|(?P<id>[a-z][a-zA-Z0-9_]*)"
                        r"|(?P<op>==|!=|<=|>=|[-+*/()<>,]))")
MATH_COMPARISONS = {"==": operator.eq, "!=": operator.ne, "<": operator.lt, ">": operator.gt, "<=": operator.le,
                    ">=": operator.ge}


def expression_value(expression: str, values: Mapping[str, Datapoint]) -> Datapoint:
    """One data point of a metric-math expression of metric ids (`visible + inflight`, `(a - b) / 60`,
    `IF(desired == 0, IF(backlog <= 4, backlog, 0), 0)`), as metric math computes it: a missing value counts
    as 0, but with every input missing there is no data point at all, and a point whose computation divides
    by zero is dropped (None). A comparison is 1 when true, else 0; IF takes `then` where the condition is not 0."""
    unsupported = f"only + - * /, comparisons and IF of metric ids and numbers are supported, not {expression!r}"
    tokens: list[tuple[str, str]] = []
    position, text = 0, expression.rstrip()
    while position < len(text):
        match = MATH_TOKEN.match(text, position)
        if not match:
            raise ValueError(unsupported)
        kind = match.lastgroup or ""
        tokens.append((kind, match.group(kind)))
        position = match.end()
    at = 0

    def take(*wanted: str) -> str | None:
        nonlocal at
        if at < len(tokens) and tokens[at][0] == "op" and tokens[at][1] in wanted:
            at += 1
            return tokens[at - 1][1]
        return None

    def expect(token: str) -> None:
        if not take(token):
            raise ValueError(unsupported)

    def factor() -> float:
        nonlocal at
        if take("-"):
            return -factor()
        if take("("):
            inner = comparison()
            expect(")")
            return inner
        if at < len(tokens) and tokens[at][0] == "function":
            at += 1
            expect("(")
            condition = comparison()
            expect(",")
            then = comparison()
            expect(",")
            otherwise = comparison()
            expect(")")
            return then if condition else otherwise
        if at < len(tokens) and tokens[at][0] in ("number", "id"):
            kind, token = tokens[at]
            at += 1
            return float(token) if kind == "number" else float(values.get(token) or 0.0)
        raise ValueError(unsupported)

    def product() -> float:
        result = factor()
        while operation := take("*", "/"):
            right = factor()
            result = result * right if operation == "*" else result / right if right else math.nan
        return result

    def total() -> float:
        result = product()
        while operation := take("+", "-"):
            right = product()
            result = result + right if operation == "+" else result - right
        return result

    def comparison() -> float:
        result = total()
        while operation := take(*MATH_COMPARISONS):
            result = float(MATH_COMPARISONS[operation](result, total()))
        return result

    result = comparison()
    if at != len(tokens):
        raise ValueError(unsupported)
    present = any(values.get(token) is not None for kind, token in tokens if kind == "id")
    return None if not present or math.isnan(result) else float(result)


def aggregate(values: Sequence[Datapoint], statistic: str) -> Datapoint:
    """One alarm-period data point from the one-minute points inside it (None: no point in the period)."""
    present = [value for value in values if value is not None]
    if not present:
        return None
    if statistic == "Maximum":
        return max(present)
    if statistic == "Minimum":
        return min(present)
    if statistic == "Sum":
        return float(sum(present))
    if statistic == "Average":
        return sum(present) / len(present)
    if statistic == "SampleCount":
        return float(len(present))
    raise ValueError(f"unsupported statistic {statistic!r}")


def alarm_state(alarm: Mapping[str, Any], datapoints: Sequence[Datapoint], previous: str) -> str:
    """The state after evaluating the last EvaluationPeriods datapoints (oldest first; None = missing)."""
    periods = int(alarm["EvaluationPeriods"])
    needed = int(alarm.get("DatapointsToAlarm", periods))
    recent: list[Datapoint] = list(datapoints[-periods:])
    missing: list[Datapoint] = [None] * (periods - len(recent))  # periods before the first point
    window = missing + recent
    compare = COMPARISONS[alarm["ComparisonOperator"]]
    threshold = float(alarm["Threshold"])
    treat = alarm.get("TreatMissingData", "missing")

    if treat == "breaching":
        breaches = [True if value is None else compare(value, threshold) for value in window]
    elif treat == "notBreaching":
        breaches = [False if value is None else compare(value, threshold) for value in window]
    else:
        present = [value for value in window if value is not None]
        if not present:
            return previous if treat == "ignore" else INSUFFICIENT_DATA
        breaches = [compare(value, threshold) for value in present]
    return ALARM if sum(breaches) >= needed else OK


def new_capacity(policy: Mapping[str, Any], breach: float, current: int, min_size: int, max_size: int) -> int | None:
    """The group's desired capacity after a step policy runs for `breach` = metric - threshold, clamped to
    [min, max]; None when no step covers the breach."""
    step = step_for(policy["StepAdjustments"], breach)
    if step is None:
        return None
    adjustment = int(step["ScalingAdjustment"])
    kind = policy["AdjustmentType"]
    if kind == "ExactCapacity":
        wanted = adjustment
    elif kind == "ChangeInCapacity":
        wanted = current + adjustment
    elif kind == "PercentChangeInCapacity":
        change = current * adjustment / 100
        change = math.floor(change) if change > 0 else math.ceil(change)  # rounds toward zero
        magnitude = int(policy.get("MinAdjustmentMagnitude") or 0)
        if adjustment and abs(change) < magnitude:
            change = magnitude if adjustment > 0 else -magnitude
        wanted = current + int(change)
    else:
        raise ValueError(f"unknown adjustment type {kind}")
    return max(min_size, min(max_size, wanted))


def instances_to_terminate(instances: Sequence[Mapping[str, Any]], desired: int) -> list[str]:
    """The instances a scale-in to `desired` terminates: never one protected from scale-in; when too few are
    unprotected the desired capacity still drops and the protected ones keep running. Among the rest, the
    default termination policy's order: instances of an older launch template version first, then (where AWS
    takes the one closest to its next billing hour, per-second billing makes that arbitrary) the oldest."""
    candidates = [i for i in instances if not i.get("ProtectedFromScaleIn")
                  and i.get("LifecycleState", "InService") in ("InService", "Pending")]
    excess = max(0, len(instances) - desired)

    def version(instance: Mapping[str, Any]) -> int:
        value = str(instance.get("LaunchTemplate", {}).get("Version", "0"))
        return int(value) if value.isdigit() else 0

    ordered = sorted(enumerate(candidates), key=lambda pair: (version(pair[1]), pair[0]))
    return [instance["InstanceId"] for _, instance in ordered[:excess]]


def termination_wait_minutes(hooks: Sequence[Mapping[str, Any]]) -> int:
    """Whole minutes a terminating instance spends in Terminating:Wait when nothing completes its lifecycle
    actions: each termination hook waits its heartbeat timeout, and they run side by side. Either default
    result, CONTINUE or ABANDON, then lets a terminating instance go."""
    timeouts = [int(h.get("HeartbeatTimeout", 3600)) for h in hooks
                if h.get("LifecycleTransition") == "autoscaling:EC2_INSTANCE_TERMINATING"]
    return math.ceil(max(timeouts, default=0) / 60)
