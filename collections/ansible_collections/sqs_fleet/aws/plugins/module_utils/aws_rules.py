# Shared by the project's modules and its tests: AWS's documented rules that the emulator does not
# check, and the comparison that makes a "put" idempotent.
from __future__ import annotations

import math


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
