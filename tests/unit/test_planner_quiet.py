"""The replay's quiet steps (nothing arriving, no instance acting: the seconds up to the next tick taken at once)
give the result of replaying those seconds one by one: every figure, point, decision and progress report; and
alternatives replayed side by side are those replayed one after another."""

from __future__ import annotations

import sys

import pytest

from sqs_fleet.planner import compare, load
from sqs_fleet.planner.replay import replay, summary
from sqs_fleet.planner.settings import Settings

NAMES = {"queue": "q", "dead_letter_queue": "q-dlq", "group": "g", "environment": "local",
         "publisher_metric": {"namespace": "SqsFleet", "name": "Backlog",
                              "dimensions": [{"Name": "QueueName", "Value": "q"}]}}
HOUR = 3600


def sparse(name: str, seconds: int, arrivals: dict[int, int]) -> load.Load:
    counts = [0] * seconds
    for second, count in arrivals.items():
        counts[second] = count
    return load.Load(name, counts, "a few arrivals far apart")


CASES = {
    "burst, sqs": ({}, load.named("burst", seconds=HOUR), "fixed:1"),
    "burst, redis (one-minute ticks)": ({"broker": "redis"}, load.named("burst", seconds=HOUR, scale=0.3),
                                       "exponential:4"),
    "sparse steady, sqs": ({"idle_window": 60}, load.named("steady", scale=0.01, seconds=2 * HOUR), "fixed:1"),
    "publisher reading every 7 s (not a tick's divisor)": (
        {"broker": "redis", "publisher_period": 7}, load.named("steady", scale=0.005, seconds=2 * HOUR), "fixed:2"),
    "spot interruptions, instances idle": (
        {"spot": True, "spot_interruptions_per_hour": 20.0, "idle_window": 900},
        load.named("bursty-day", seconds=3 * HOUR), "lognormal:3,1"),
    "spot interruptions, celery": (
        {"broker": "redis", "spot": True, "spot_interruptions_per_hour": 20.0, "idle_window": 1200},
        load.named("bursty-day", seconds=3 * HOUR), "exponential:5"),
    "launches abandoned long before they boot": ({"launch_timeout": 15}, load.named("burst", seconds=HOUR), "fixed:1"),
    "a queue asleep for hours, then woken (SQS metrics)": (
        {"metric_source": "sqs"}, sparse("gap", 8 * HOUR, {30: 5, 7 * HOUR: 40, 7 * HOUR + 1: 3}), "fixed:1"),
    "a minimum of one (never quiet)": ({"min_size": 1}, load.named("burst", seconds=HOUR), "fixed:1"),
}


@pytest.mark.parametrize("case", CASES)
def test_quiet_steps_replay_what_second_by_second_replays(case):
    changes, traffic, work = CASES[case]
    settings = Settings(names=NAMES).changed(changes) if changes else Settings(names=NAMES)
    results, reports = [], []
    for quiet_steps in (False, True):
        reported: list[float] = []
        results.append(replay(settings, traffic, load.work(work, 3)[0], seed=3, progress=reported.append,
                              quiet_steps=quiet_steps))
        reports.append(reported)
    plain, stepped = results
    assert plain.ticks and plain.minutes and (plain.waits or plain.abandoned_launches)  # something happened
    assert stepped == plain  # every field: waits, drains, instance time, requests, ticks and alarm states, minutes
    assert reports[1] == reports[0]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="alternatives run side by side on Linux only")
def test_alternatives_replayed_side_by_side_are_those_replayed_one_after_another():
    runs = compare.alternatives(Settings(names=NAMES), ["idle_window=120,240", "broker=sqs,redis"])
    traffic = load.named("bursty-day", seconds=4 * HOUR)
    labels: list[str] = []

    def progress(label: str):
        labels.append(label)
        return lambda fraction: None

    alone = compare.replay_all(runs, traffic, "exponential:3", 5, progress, processes=1)
    side_by_side = compare.replay_all(runs, traffic, "exponential:3", 5, progress, processes=2)
    assert labels == [label for label, _ in runs] + ["4 settings, 2 processes"]
    assert [r.settings for r in side_by_side] == [settings for _, settings in runs]
    assert side_by_side == alone
    assert len({summary(r)["wait p95 s"] for r in alone}) > 1  # the alternatives differ
