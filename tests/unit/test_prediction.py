"""The planner's prediction of a scale-test run beside its measurement (sqs_fleet.scaletest.prediction): the
figures read from a run, the replay on the run's own settings, and the comparison within one tick."""

from __future__ import annotations

import pytest

from sqs_fleet.scaletest.prediction import FIGURES, RunSettings, compare, measured, predict, prediction
from sqs_fleet.stack import Stack

# What site.yml records of the local stack, the parts the planner reads.
STACK = Stack({
    "environment": "local", "prefix": "sqs-fleet-local",
    "queue": {"name": "sqs-fleet-local-vehicles"}, "dead_letter_queue": {"name": "sqs-fleet-local-vehicles-dlq"},
    "group": {"name": "sqs-fleet-local-workers", "min_size": 0, "max_size": 4},
    "scaling": {"metric_source": "publisher", "period": 60, "idle_window": 180, "backlog_per_instance": 10},
})
RUN = RunSettings(messages=200, tick_seconds=10, poll_seconds=10, work_seconds=0.0, watcher_seconds=1.0,
                  launch_timeout=3600, boots=[20.0, 22.0, 24.0, 23.0])


def test_the_replay_takes_the_runs_median_boot_as_the_whole_launch():
    figures = predict(STACK, RUN)
    assert RUN.boot_seconds == 22.5
    assert figures["seconds to first instance in service"] == 22.5  # no EC2 launch before the lab's boot
    assert 22.5 <= figures["seconds to first message processed"] < 22.5 + RUN.poll_seconds
    assert figures["seconds to first message processed"] <= figures["seconds to queue drained"]
    # 200 messages, 10 a poll, 4 instances polling every 10 s: five rounds after the boot.
    assert 22.5 + 4 * RUN.poll_seconds <= figures["seconds to queue drained"] <= 22.5 + 6 * RUN.poll_seconds
    # Back to zero after the 180 s idle window; one scale-out to 4, one scale-in to 0.
    assert figures["seconds to zero instances"] >= figures["seconds to queue drained"] + 180
    assert figures["scale events"] == 2
    assert figures["instance-minutes"] == pytest.approx(4 * figures["seconds to zero instances"] / 60, abs=0.5)
    slower = predict(STACK, RunSettings(**{**RUN.__dict__, "boots": [80.0]}))
    assert slower["seconds to first instance in service"] == 80.0
    assert slower["seconds to queue drained"] > figures["seconds to queue drained"]


def test_the_measured_figures_are_read_in_seconds_with_every_change_of_desired_capacity():
    numbers = {"minutes to first instance in service": 0.5, "minutes to first message processed": 0.5,
               "minutes to queue drained": 1.2, "minutes to zero instances": 4.5, "instance-minutes": 17.3}
    timeline = [{"desired": d, "seconds": 10 * n} for n, d in enumerate((4, 4, 4, 2, 2, 0, 0))]
    seen = measured(numbers, timeline)
    assert seen == {"desired": [0, 4, 2, 0], "scale-in to zero": 50.0,
                    "seconds to first instance in service": 30.0, "seconds to first message processed": 30.0,
                    "seconds to queue drained": 72.0, "seconds to zero instances": 270.0, "instance-minutes": 17.3,
                    "scale events": 3.0}  # 0 -> 4 in the first tick, 4 -> 2, 2 -> 0


def agreeing(predicted: dict) -> dict:
    """What a run would measure for this prediction: each moment seen at the start of the next tick."""
    seen = {name: (value // 10 + 1) * 10 for name, value in predicted.items() if name.startswith("seconds")}
    return {**seen, "instance-minutes": predicted["instance-minutes"] + 0.5,
            "scale events": predicted["scale events"], "desired": predicted["desired"],
            "scale-in to zero": seen["seconds to zero instances"] - 10}


def test_figures_within_one_tick_agree_and_the_others_say_why():
    predicted = predict(STACK, RUN)
    rows = compare(predicted, agreeing(predicted), RUN, peak=4)
    assert [r.figure for r in rows] == list(FIGURES)
    assert all(r.agrees and not r.why for r in rows), rows

    # The first node in service two ticks before the median boot, the drain after it: the boots' spread
    # explains the first, the second follows from it.
    spread = RunSettings(**{**RUN.__dict__, "boots": [2.0, 22.0, 23.0, 40.0]})
    predicted = predict(STACK, spread)
    seen = {**agreeing(predicted), "seconds to first instance in service": 10.0, "seconds to queue drained": 0.0}
    rows = {r.figure: r for r in compare(predicted, seen, spread, peak=4)}
    assert not rows["seconds to first instance in service"].agrees
    assert "took 2 to 40 s to start consuming" in rows["seconds to first instance in service"].why
    assert not rows["seconds to queue drained"].agrees
    assert "follows from the first instance in service" in rows["seconds to queue drained"].why
    assert rows["seconds to zero instances"].agrees

    # A scale event more than the replay's never agrees; the two sequences are named, and Spot interruptions the
    # replay does not draw.
    interrupted = RunSettings(**{**RUN.__dict__, "spot_interruptions": 2})
    predicted = predict(STACK, interrupted)
    assert predicted["desired"] == [0, 4, 0]
    seen = {**agreeing(predicted), "scale events": predicted["scale events"] + 1, "desired": [0, 4, 3, 0]}
    rows = {r.figure: r for r in compare(predicted, seen, interrupted, peak=4)}
    assert not rows["scale events"].agrees and "interrupted 2 instance(s)" in rows["scale events"].why
    assert "desired capacity went 0 -> 4 -> 3 -> 0, the replay's 0 -> 4 -> 0" in rows["scale events"].why

    # A design whose workers leave terminations to the drain hook's heartbeat, on a clock faster than real time.
    held = RunSettings(**{**RUN.__dict__, "completes_terminations": False, "clock_factor": 30.0})
    predicted = predict(STACK, held)
    seen = {**agreeing(predicted), "seconds to zero instances": predicted["seconds to zero instances"] + 300}
    reason = {r.figure: r for r in compare(predicted, seen, held, peak=4)}["seconds to zero instances"].why
    assert "drain hook's heartbeat" in reason and "counts 30 AWS seconds" in reason
    # A figure the run never reached is not an agreement.
    row = {r.figure: r for r in compare(predicted, {**seen, "seconds to zero instances": None}, interrupted, 4)}
    assert not row["seconds to zero instances"].agrees and "did not reach" in row["seconds to zero instances"].why


def test_the_report_entry_holds_the_inputs_and_one_row_per_figure():
    numbers = {"minutes to first instance in service": 0.5, "minutes to first message processed": 0.3,
               "minutes to queue drained": 1.5, "minutes to zero instances": 5.0, "instance-minutes": 20.0,
               "peak instances": 4}
    entry = prediction(STACK, RUN, numbers, [{"desired": 4, "seconds": 0}, {"desired": 0, "seconds": 10}])
    assert entry["inputs"]["boot seconds"] == 22.5 and entry["inputs"]["messages"] == 200
    assert [r["figure"] for r in entry["rows"]] == list(FIGURES)
    assert entry["desired"] == {"predicted": [0, 4, 0], "measured": [0, 4, 0]}


def test_the_report_sets_each_runs_prediction_beside_its_measurement_and_says_why_nodes_did_not_boot():
    from sqs_fleet.scaletest import report

    numbers = {"minutes to first instance in service": 0.5, "minutes to first message processed": 0.3,
               "minutes to queue drained": 9.0, "minutes to zero instances": 12.0, "instance-minutes": 40.0,
               "instance-minutes after the drain": 12.0, "peak instances": 4, "messages lost": 0, "dead letters": 0,
               "messages processed more than once": 0, "spot interruptions": 0,
               "seconds from first message to scale-out decision": 10,
               "seconds from last message to last termination": 180.0}
    timeline = [{"minute": 0, "seconds": 0, "visible": 200, "in_flight": 0, "processed": 0, "desired": 4,
                 "instances": 4, "in_service": 0, "terminating": 0, "decisions": []}]
    entry = prediction(STACK, RUN, numbers, timeline)
    result = {
        "target": "emulator", "date": "2026-01-01", "produced by": "the emulator",
        "conditions": {"messages": 200, "tick seconds": 10, "real seconds per tick": 10.0, "workers": "nodes",
                       "machine": "test", "stack": "prefix t", "command": "sqs-fleet-scale-test"},
        "figures": numbers, "timeline": timeline, "worker log excerpt": [], "metric evidence": {},
        "log source": "files", "dead letters sample": [], "dashboards": {}, "aws note": "No AWS measurement.",
        "predictions": [{"label": "current design, SQS, booted nodes, stock image", "conditions": {},
                         "prediction": entry}],
        "nodes not booted": "booting test nodes needs root",
    }
    text = report.report(result, {})
    assert "## The planner's prediction beside the measurement" in text
    assert "### current design, SQS, booted nodes, stock image" in text
    assert "to its consumer started, 22.5 s, as the whole launch" in text
    # Drained at 540 s measured: far from the replay, so not agreed, with its reason.
    drained = next(line for line in text.splitlines() if line.startswith("| seconds to queue drained |"))
    assert "| 540 | 10 | no |" in drained and drained.rstrip(" |").split("|")[-1].strip() != "-"
    assert "Booted nodes: none in this run (booting test nodes needs root)" in text
