"""The step adjustments site.yml generates satisfy AWS's PutScalingPolicy rules (the emulator checks none)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from ansible_collections.sqs_fleet.aws.plugins.module_utils.aws_rules import step_adjustment_errors

from sqs_fleet import REPO
from sqs_fleet.sim.semantics import step_for


def step(lower, upper, adjustment=1):
    entry = {"ScalingAdjustment": adjustment}
    if lower is not None:
        entry["MetricIntervalLowerBound"] = lower
    if upper is not None:
        entry["MetricIntervalUpperBound"] = upper
    return entry


@pytest.mark.parametrize(
    ("steps", "error"),
    [
        ([step(0, 10), step(5, None)], "overlap"),
        ([step(0, 10), step(20, None)], "gap"),
        ([step(None, 0), step(None, None)], "both bounds null"),
        ([step(None, None)], "both bounds null"),
        ([step(None, 0), step(None, 10), step(10, None)], "more than one step has a null lower bound"),
        ([step(0, None), step(10, None)], "more than one step has a null upper bound"),
        ([step(-5, 0), step(0, None)], "negative lower bound requires"),
        ([step(0, 10)], "positive upper bound requires"),
        ([step(10, 10), step(10, None)], "empty"),
        ([], "at least one"),
    ],
)
def test_rule_breaches_are_named(steps, error):
    assert any(error in e for e in step_adjustment_errors(steps))


@pytest.mark.parametrize(
    "steps",
    [
        [step(None, 0, 0)],  # scale in to zero below the threshold
        [step(0, None, 1)],  # a group of one
        [step(None, -10, -2), step(-10, 0, -1), step(0, 10, 1), step(10, None, 2)],
    ],
)
def test_valid_steps_pass(steps):
    assert step_adjustment_errors(steps) == []


def test_bounds_are_inclusive_as_aws_documents():
    steps = [step(None, -10, -2), step(-10, 0, -1), step(0, 10, 1), step(10, None, 2)]
    assert step_for(steps, 0)["ScalingAdjustment"] == 1  # lower bound inclusive above the threshold
    assert step_for(steps, 10)["ScalingAdjustment"] == 2
    # below the threshold the lower bound is exclusive and the upper bound inclusive
    assert step_for(steps, -9.5)["ScalingAdjustment"] == -1
    assert step_for(steps, -10)["ScalingAdjustment"] == -2


def generated_out_steps(max_size: int, per_instance: int, threshold: int = 1,
                        comparison: str = "GreaterThanOrEqualToThreshold") -> list[dict]:
    """Render the scaling role's step list exactly as site.yml does."""
    result = subprocess.run(
        [str(Path(sys.executable).parent / "ansible"), "localhost",
         "-m", "ansible.builtin.debug", "-a", "var=scaling__out_steps",
         "-e", "@roles/scaling/vars/main.yml",
         "-e", json.dumps({"scaling_max_size": max_size, "scaling_backlog_per_instance": per_instance,
                           "scaling_queue_name": "q", "scaling_period": 60, "scaling_out_threshold": threshold,
                           "scaling_out_comparison": comparison})],
        cwd=REPO, capture_output=True, text=True, check=True,
        env={"ANSIBLE_LOAD_CALLBACK_PLUGINS": "1", "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
             "PATH": os.environ["PATH"], "ANSIBLE_HOME": str(REPO / ".run" / "ansible-home")},
    )
    steps = json.loads(result.stdout)["plays"][0]["tasks"][0]["hosts"]["localhost"]["scaling__out_steps"]
    return [
        {"ScalingAdjustment": s["adjustment"],
         **({"MetricIntervalLowerBound": s["lower_bound"]} if s["lower_bound"] is not None else {}),
         **({"MetricIntervalUpperBound": s["upper_bound"]} if s["upper_bound"] is not None else {})}
        for s in steps
    ]


@pytest.mark.parametrize(("max_size", "per_instance"), [(1, 1), (1, 100), (2, 5), (4, 10), (4, 100), (20, 3)])
@pytest.mark.parametrize(("threshold", "comparison"), [
    (1, "GreaterThanOrEqualToThreshold"),  # any backlog (SQS)
    (4, "GreaterThanThreshold"),  # the Redis design's PendingJobs > 4
])
def test_generated_scale_out_steps_are_valid_and_size_the_group_to_the_backlog(max_size, per_instance, threshold,
                                                                              comparison):
    steps = generated_out_steps(max_size, per_instance, threshold, comparison)
    assert step_adjustment_errors(steps) == []
    first = threshold if comparison == "GreaterThanOrEqualToThreshold" else threshold + 1
    for backlog in range(first, (max_size + 2) * per_instance + first):
        wanted = min(max_size, math.ceil(backlog / per_instance))
        assert step_for(steps, backlog - threshold)["ScalingAdjustment"] == wanted, backlog
