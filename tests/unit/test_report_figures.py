"""The scale test's figures are in AWS time, whatever a tick of the run spans: a hand-built timeline of 10-second
ticks (the loop's tick when an alarm reads the backlog publisher's 10-second metric) read as a user reads
REPORT.md."""

from __future__ import annotations

from typing import Any

import pytest

from sqs_fleet.scaletest import evidence, figures, plan, report
from sqs_fleet.sim.loop import Period

TICK = 10
SPOT_ACTIVITY = ("Successful: Terminating EC2 instance: i-3 (an instance was taken out of service in response to "
                 "an EC2 Spot instance interruption notice)")

# tick: (visible, in flight, desired, instances, in service, terminating)
ROWS = [
    (30, 0, 0, 0, 0, 0),  # 0: the burst, sent before tick 0
    (30, 0, 3, 3, 0, 0),  # 1: scale-out decided at the end of tick 1 (20 s)
    (28, 2, 3, 3, 3, 0),  # 2: in service at 20 s
    (10, 5, 3, 3, 3, 0),  # 3
    (0, 0, 3, 3, 3, 0),  # 4: drained at 40 s
    (0, 0, 3, 3, 3, 0),  # 5..8: the idle window, 3 instances each
    (0, 0, 3, 3, 3, 0),
    (0, 0, 3, 3, 3, 0),
    (0, 0, 3, 3, 3, 0),
    (0, 0, 0, 2, 0, 2),  # 9: scaled in; 2 still in Terminating:Wait
    (0, 0, 0, 0, 0, 0),  # 10: no instance left, seen at 100 s
    (0, 0, 0, 0, 0, 0),
]


def timeline(tick_seconds: int = TICK, decisions: dict[int, list[str]] | None = None) -> list[Period]:
    return [Period(minute=i, seconds=i * tick_seconds, at=1000.0 + i, visible=v, in_flight=f, dead_letters=0,
                   desired=d, instances=n, in_service=s, terminating=t, alarms={},
                   decisions=(decisions or {}).get(i, []))
            for i, (v, f, d, n, s, t) in enumerate(ROWS)]


def processed(key: str, worker: str = "i-1") -> dict[str, Any]:
    return {"event": "message_processed", "idempotency_key": key, "worker": worker}


EVENTS = [processed("a"), processed("b"), processed("c"), processed("a", worker="i-2"),
          {"event": "message_duplicate", "idempotency_key": "b"}]
PROCESSED_AT = [2.5, 3.0, 3.2, 3.95]  # tick indexes, as processed_minutes() places the moments


def test_figures_of_ten_second_ticks_are_in_aws_minutes_and_seconds():
    numbers = figures.figures(timeline(), EVENTS, 3, PROCESSED_AT, TICK, spot_interruptions=0)

    assert numbers["messages processed"] == 3 and numbers["messages processed more than once"] == 1
    assert numbers["redeliveries recognised and skipped"] == 1 and numbers["messages lost"] == 0
    # Each "minutes to" figure: the tick's start in AWS seconds / 60, one decimal; never the tick's index.
    assert numbers["minutes to first scale-out"] == 0.2  # tick 1: 10 s
    assert numbers["minutes to first instance in service"] == 0.3  # tick 2: 20 s
    assert numbers["minutes to first message processed"] == 0.4  # tick 2.5: 25 s, rounded down
    assert numbers["minutes to queue drained"] == 0.7  # tick 4: 40 s
    assert numbers["minutes to zero instances"] == 1.7  # tick 10: 100 s
    assert numbers["peak instances"] == 3
    # 26 instance-ticks of 10 s; 14 of them after the drain (ticks 5 to 9).
    assert numbers["instance-minutes"] == 4.3
    assert numbers["instance-minutes after the drain"] == 2.3
    # The last message at tick 3.95 (39.5 s); no instance left at the start of tick 10 (100 s).
    assert numbers["seconds from last message to last termination"] == 60.5
    # Decided in tick 1, whose data ends at 20 s.
    assert numbers["seconds from first message to scale-out decision"] == 20
    assert numbers["spot interruptions"] == 0


def test_the_same_timeline_in_one_minute_ticks_counts_minutes():
    numbers = figures.figures(timeline(60), EVENTS, 3, PROCESSED_AT, 60, spot_interruptions=0)
    assert (numbers["minutes to first scale-out"], numbers["minutes to queue drained"],
            numbers["minutes to zero instances"]) == (1.0, 4.0, 10.0)
    assert numbers["minutes to first message processed"] == 2.5
    assert (numbers["instance-minutes"], numbers["instance-minutes after the drain"]) == (26.0, 14.0)
    assert numbers["seconds from last message to last termination"] == 600 - 3.95 * 60
    assert numbers["seconds from first message to scale-out decision"] == 120


def test_a_run_that_never_drains_has_no_figures_after_the_drain():
    busy = [Period(minute=i, seconds=i * TICK, at=0.0, visible=5, in_flight=1, dead_letters=0, desired=1,
                   instances=1, in_service=1, terminating=0, alarms={}) for i in range(3)]
    numbers = figures.figures(busy, [], 6, [], TICK, spot_interruptions=0)
    assert numbers["minutes to queue drained"] is None and numbers["minutes to zero instances"] is None
    assert numbers["instance-minutes after the drain"] is None
    assert numbers["seconds from last message to last termination"] is None
    assert numbers["minutes to first message processed"] is None
    assert numbers["instance-minutes"] == 0.5


def test_spot_interruptions_are_the_emulators_count_or_the_activities_that_mention_one():
    with_activity = timeline(decisions={5: [SPOT_ACTIVITY, "Successful: Launching a new EC2 instance: i-4"]})
    assert figures.figures(with_activity, EVENTS, 3, PROCESSED_AT, TICK)["spot interruptions"] == 1  # AWS
    assert figures.figures(with_activity, EVENTS, 3, PROCESSED_AT, TICK, spot_interruptions=2)[
        "spot interruptions"] == 2  # the emulator's own count


def test_processed_per_minute_bins_ticks_into_aws_minutes():
    # 12 ticks of 10 s: two AWS minutes; tick 5.9 is 59 s, tick 6.0 is the second minute's start.
    assert figures.processed_per_minute([0.0, 2.5, 5.9, 6.0, 11.5], TICK, 12) == [3, 2]
    assert figures.processed_per_minute([0.5, 1.5], 60, 3) == [1, 1, 0]


def test_the_report_shows_ticks_with_their_aws_seconds_and_the_conditions():
    periods = timeline()
    numbers = figures.figures(periods, EVENTS, 3, PROCESSED_AT, TICK, spot_interruptions=1)
    result = {
        "target": "emulator", "date": "2026-01-01", "produced by": "the emulator",
        "conditions": {"messages": 3, "tick seconds": TICK, "real seconds per tick": 1.0, "spot interruptions": 1,
                       "workers": "local processes", "machine": "test", "stack": "prefix t",
                       "command": "sqs-fleet-scale-test"},
        "figures": numbers,
        "timeline": [{**vars(p), "processed": n} for p, n in
                     zip(periods, figures.processed_per_period(PROCESSED_AT, len(periods)), strict=True)],
        "worker log excerpt": [], "metric evidence": {}, "log source": "files", "dead letters sample": [],
        "dashboards": {}, "aws note": "No AWS measurement.",
    }
    text = report.report(result, {"scale_out": "OK"})
    assert "| tick | AWS seconds | visible |" in text and "## Timeline (one row per tick of 10 s)" in text
    assert "| 4 | 40 | 0 | 0 |" in text  # tick 4 starts 40 s into the run
    assert "one tick of the run (10 s of AWS time) lasted\n1.0 s" in text
    assert "1 Spot interruption(s) emulated mid-burst" in text
    assert "| seconds from first message to scale-out decision | 20 |" in text
    assert "| instance-minutes after the drain | 2.3 |" in text
    assert "decided in tick 1 (ticks of 10 s), 20 s after the burst" in text
    assert "in minute" not in text and "minute (one period)" not in text


class FakeScaling:
    """What spot_interrupter uses of EmulatedScaling: the serving instances and interrupt()."""

    tick_seconds = TICK

    def __init__(self) -> None:
        self.fleet = self
        self.calls: list[tuple[list[str], float]] = []

    def group(self) -> dict[str, Any]:
        return {}

    def serving(self, group: dict[str, Any]) -> set[str]:
        return {"i-3", "i-1", "i-2"}

    def interrupt(self, instance_ids: list[str], at_minute: float) -> None:
        self.calls.append((list(instance_ids), at_minute))


def test_spot_interruptions_come_once_mid_burst_with_enough_instances_in_service():
    scaling = FakeScaling()
    interrupt = plan.spot_interrupter(scaling, 2)  # type: ignore[arg-type]
    for period in timeline():
        interrupt(period)
    # Tick 2 is the first with 2 instances in service and messages queued: notices at tick 3's start (30 s).
    assert scaling.calls == [(["i-1", "i-2"], 0.5)]


def test_spot_interruptions_are_refused_on_aws(monkeypatch, capsys):
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    assert plan.main(["--target", "aws", "--spot-interruptions", "1"]) == 2
    assert "--spot-interruptions is emulated on the emulator only" in capsys.readouterr().err
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    assert plan.main(["--spot-interruptions", "-1"]) == 2
    assert "--spot-interruptions must be 0 or more" in capsys.readouterr().err


@pytest.mark.parametrize("tick_seconds", [10, 60])
def test_every_minutes_figure_is_the_ticks_start_in_aws_minutes(tick_seconds):
    periods = timeline(tick_seconds)
    numbers = figures.figures(periods, EVENTS, 3, PROCESSED_AT, tick_seconds, spot_interruptions=0)
    starts = {"minutes to first scale-out": 1, "minutes to first instance in service": 2,
              "minutes to queue drained": 4, "minutes to zero instances": 10}
    for name, tick in starts.items():
        assert numbers[name] == round(periods[tick].seconds / 60, 1), name


def test_the_report_quotes_a_node_that_finished_its_bootstrap(tmp_path):
    # i-a was scaled in while still booting (Pending:Wait): its log stops mid-playbook.
    (tmp_path / "i-a.bootstrap.txt").write_text("TASK [cloudwatch_agent : Validating ar")
    (tmp_path / "i-c.bootstrap.txt").write_text("ok: [localhost]\nbootstrap: done 2026-12-06T22:34:30.000Z\n")
    (tmp_path / "i-b.bootstrap.txt").write_text("ok: [localhost]\nbootstrap: done 2026-12-06T22:34:20.000Z\n")
    (tmp_path / "i-a.consumer.log").write_text("not a bootstrap log")
    assert [log.name for log in evidence.bootstrap_logs(tmp_path)] == [
        "i-b.bootstrap.txt", "i-c.bootstrap.txt", "i-a.bootstrap.txt"]
