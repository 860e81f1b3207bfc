# Shared by the project's modules and its tests: AWS's documented rules that the emulator does not
# check, and the comparison that makes a "put" idempotent.
from __future__ import annotations

import math
import re


def matches(desired, current):
    """True when every value the caller asked for is already in place.

    Dicts are compared on the desired keys only (AWS adds defaults such as ReturnData or a
    policy ARN to what it returns); lists element by element and in order; numbers by value, so
    that 60 and 60.0 agree.
    """
    if isinstance(desired, dict):
        return isinstance(current, dict) and all(
            key in current and matches(value, current[key]) for key, value in desired.items()
        )
    if isinstance(desired, list):
        return (
            isinstance(current, list)
            and len(desired) == len(current)
            and all(matches(d, c) for d, c in zip(desired, current))
        )
    if isinstance(desired, bool) or isinstance(current, bool):
        return desired == current
    if isinstance(desired, (int, float)) and isinstance(current, (int, float)):
        return math.isclose(desired, current)
    return desired == current


def step_adjustment_errors(steps):
    """Reasons AWS's PutScalingPolicy would reject these step adjustments (empty when valid).

    The rules of the EC2 Auto Scaling API reference (StepAdjustment): ranges are offsets from the
    alarm threshold, they must neither overlap nor leave a gap, at most one step has a null lower
    bound and at most one a null upper bound, and no step has both bounds null. A null lower bound
    is required once any lower bound is negative, a null upper bound once any upper bound is
    positive.
    """
    errors = []
    if not steps:
        return ["at least one step adjustment is required"]
    lowers = [s.get("MetricIntervalLowerBound") for s in steps]
    uppers = [s.get("MetricIntervalUpperBound") for s in steps]
    if any(lo is None and up is None for lo, up in zip(lowers, uppers)):
        errors.append("a step may not have both bounds null")
    if lowers.count(None) > 1:
        errors.append("more than one step has a null lower bound")
    if uppers.count(None) > 1:
        errors.append("more than one step has a null upper bound")
    if any(lo is not None and lo < 0 for lo in lowers) and None not in lowers:
        errors.append("a negative lower bound requires a step with a null lower bound")
    if any(up is not None and up > 0 for up in uppers) and None not in uppers:
        errors.append("a positive upper bound requires a step with a null upper bound")
    for step in steps:
        lo, up = step.get("MetricIntervalLowerBound"), step.get("MetricIntervalUpperBound")
        if lo is not None and up is not None and lo >= up:
            errors.append(f"step [{lo}, {up}) is empty: its lower bound must be below its upper bound")
        if not isinstance(step.get("ScalingAdjustment"), int):
            errors.append(f"step [{lo}, {up}) needs an integer ScalingAdjustment")
    if errors:
        return errors
    ordered = sorted(steps, key=lambda s: -math.inf if s.get("MetricIntervalLowerBound") is None
                     else s["MetricIntervalLowerBound"])
    for before, after in zip(ordered, ordered[1:]):
        end, start = before.get("MetricIntervalUpperBound"), after.get("MetricIntervalLowerBound")
        if end is None or start is None or end > start:
            errors.append(f"steps overlap at {start if start is not None else '-inf'}")
        elif end < start:
            errors.append(f"steps leave a gap between {end} and {start}")
    return errors


# CreateReplicationGroup's AuthToken (ElastiCache API reference, as botocore's model documents the member):
# printable ASCII, 16 to 128 characters, and besides letters and digits only these special characters.
AUTH_TOKEN_SPECIALS = "!&#$^<>-"  # noqa: S105  # nosec B105 - the allowed characters, not a token
AUTH_TOKEN_RULE = (f"16 to 128 characters, only ASCII letters, digits and {' '.join(AUTH_TOKEN_SPECIALS)} "
                   "(ElastiCache's AUTH token rules)")
AUTH_TOKEN_PATTERN = re.compile(r"[A-Za-z0-9!&#$^<>-]{16,128}")


def auth_token_errors(token, transit_encryption):
    """Reasons CreateReplicationGroup would reject this AUTH token (empty when valid). They never quote the
    token, nor any character of it: it is a secret."""
    errors = []
    if not transit_encryption:
        errors.append("an AUTH token needs TLS in transit (transit_encryption)")
    if AUTH_TOKEN_PATTERN.fullmatch(token):
        return errors
    outside = sum(1 for c in token if not (c.isascii() and (c.isalnum() or c in AUTH_TOKEN_SPECIALS)))
    found = [f"{len(token)} characters"] + ([f"{outside} outside that set"] if outside else [])
    errors.append(f"the AUTH token must have {AUTH_TOKEN_RULE}; it has {' with '.join(found)}")
    return errors


# Namespaces AWS services publish to: their metrics are stored at one-minute resolution (only PutMetricData
# with StorageResolution 1 stores high-resolution data), so a 10, 20 or 30 s period on them reads no data
# for most periods and the alarm "might often lapse into INSUFFICIENT_DATA" (PutMetricAlarm, Period).
ONE_MINUTE_NAMESPACE_PREFIX = "AWS/"


def alarm_metrics(alarm):
    """(namespace, metric name, period, query id or None) of each metric an alarm reads: its own, or each metric
    query's."""
    if "MetricName" in alarm:
        yield alarm.get("Namespace", ""), alarm["MetricName"], alarm.get("Period"), None
    for query in alarm.get("Metrics") or []:
        if "MetricStat" in query:
            stat = query["MetricStat"]
            metric = stat.get("Metric", {})
            yield metric.get("Namespace", ""), metric.get("MetricName"), stat.get("Period"), query.get("Id")


def sub_minute_errors(alarm):
    """A sub-minute period on a metric AWS publishes once a minute (a namespace AWS/*), naming the metric."""
    return [f"period {period} on {namespace} {name}{f' (query {query})' if query else ''}: AWS publishes it once "
            "a minute, so a period under 60 s reads no data for most periods (INSUFFICIENT_DATA); use 60 or a "
            "multiple of it"
            for namespace, name, period, query in alarm_metrics(alarm)
            if period is not None and period < 60 and str(namespace).startswith(ONE_MINUTE_NAMESPACE_PREFIX)]
