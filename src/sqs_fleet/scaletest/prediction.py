"""The planner's prediction of a scale-test run, beside what the run measured.

`predict` replays the run's burst with `sqs-fleet-plan`'s model (sqs_fleet.planner: the stack's own alarms and
steps, decided by the loop's code) on the run's own settings: its stack record, its burst size, its consumers'
poll interval and work per message, and the boot time its nodes measured (0 for local processes, which serve the
moment they start). `measured` reads the same figures from the run; `compare` sets them side by side, each with
whether they agree within one tick of the run and, where they do not, why.

A run sees a moment at the start of the next tick (its figures are tick starts; the first message processed is
floored to 6 s); the replay gives it to the second. So agreement is within one tick (`tick_seconds`) for the
times, within one tick of every instance (peak x tick) for the instance-minutes, and exact for the scale events.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from sqs_fleet.planner.load import Load
from sqs_fleet.planner.replay import replay
from sqs_fleet.planner.settings import Settings
from sqs_fleet.stack import Stack

FIGURES = ("seconds to first instance in service", "seconds to first message processed", "seconds to queue drained",
           "seconds to zero instances", "instance-minutes", "scale events")


@dataclass(frozen=True)
class RunSettings:
    """What the planner needs of a run besides its stack record, all in AWS time."""

    messages: int
    tick_seconds: int
    poll_seconds: float  # a consumer's wait between polls
    work_seconds: float  # each message's (or job's) work
    watcher_seconds: float  # how often a node's lifecycle watcher reads its metadata
    launch_timeout: int  # the launch hook's heartbeat
    image: str = "stock"
    boots: Sequence[float] = field(default_factory=list)  # each worker's start: boot (or process) -> consumer started
    in_service: Sequence[float] = field(default_factory=list)  # each node's boot -> launch action completed
    spot_interruptions: int = 0
    clock_factor: float = 1.0  # AWS seconds per real second of the run (tick / its real length)
    completes_terminations: bool = True  # False: the drain hook's heartbeat ends every termination
    broker: str = "sqs"

    @property
    def boot_seconds(self) -> float:
        """The run's median boot (nodes), or 0: a local process serves from its start."""
        return float(statistics.median(self.boots)) if self.boots else 0.0


def planner_settings(stack: Stack, run: RunSettings) -> Settings:
    """The planner's settings for this run: the stack's record, then the run's own figures. The lab has no
    EC2 launch before the boot (a node boots the tick its instance appears), so the boot is the whole launch."""
    settings = Settings.from_stack(stack, {"fleet_launch_timeout": run.launch_timeout,
                                           "fleet_poll_interval": run.poll_seconds, "fleet_image": run.image})
    return settings.changed({"ec2_launch_seconds": 0.0, "boot_seconds": run.boot_seconds,
                             "watcher_interval": run.watcher_seconds}, source="the run")


def predict(stack: Stack, run: RunSettings) -> dict[str, Any]:
    """The planner's figures for one burst of `run.messages` at second 0 (times in seconds from the burst), and
    its desired capacities in turn ("desired")."""
    load = Load(f"burst of {run.messages}", [run.messages], f"{run.messages} messages at second 0")
    result = replay(planner_settings(stack, run), load, lambda: run.work_seconds)
    drain = result.drains[0] if result.drains else None
    return {
        "desired": [stack.data["group"]["min_size"], *(to for _, _, to in result.scale_events)],
        "seconds to first instance in service": result.first_ready,
        "seconds to first message processed": result.first_done,
        "seconds to queue drained": None if drain is None else drain,
        "seconds to zero instances": result.last_end,
        "instance-minutes": round(result.instance_seconds / 60, 1),
        "scale events": float(len(result.scale_events)),
    }


def measured(numbers: Mapping[str, Any], timeline: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The same figures from a run's figures (AWS minutes) and timeline (each tick's desired capacity)."""
    def seconds(name: str) -> float | None:
        value = numbers.get(name)
        return None if value is None else round(float(value) * 60, 1)

    desired = [0, *(int(p["desired"]) for p in timeline)]  # the group starts at zero
    decided = [p["seconds"] for p, before in zip(timeline, desired) if p["desired"] == 0 and before > 0]
    return {
        "desired": [d for i, d in enumerate(desired) if i == 0 or d != desired[i - 1]],
        # When the last scale-in to zero was decided: what the last instance's termination is measured from.
        "scale-in to zero": float(decided[-1]) if decided else None,
        "seconds to first instance in service": seconds("minutes to first instance in service"),
        "seconds to first message processed": seconds("minutes to first message processed"),
        "seconds to queue drained": seconds("minutes to queue drained"),
        "seconds to zero instances": seconds("minutes to zero instances"),
        "instance-minutes": numbers.get("instance-minutes"),
        "scale events": float(sum(a != b for a, b in zip(desired, desired[1:]))),
    }


@dataclass(frozen=True)
class Row:
    figure: str
    predicted: float | None
    measured: float | None
    tolerance: float
    agrees: bool
    why: str


def tolerance(figure: str, run: RunSettings, peak: int) -> float:
    """How far apart the two may be and still agree: one tick (of every instance, for instance-minutes)."""
    if figure == "scale events":
        return 0.0
    if figure == "instance-minutes":
        return max(1, peak) * run.tick_seconds / 60
    return float(run.tick_seconds)


def compare(predicted: Mapping[str, Any], seen: Mapping[str, Any], run: RunSettings, peak: int) -> list[Row]:
    """Predicted against measured, figure by figure; `peak`: the run's peak instances."""
    rows = []
    for figure in FIGURES:
        guess, value = predicted.get(figure), seen.get(figure)
        allowed = tolerance(figure, run, peak)
        agrees = guess is not None and value is not None and abs(guess - value) <= allowed + 1e-9
        rows.append(Row(figure, guess, value, allowed, agrees, "" if agrees else why(figure, predicted, seen, run)))
    return rows


def arrows(sizes: Sequence[int]) -> str:
    return " -> ".join(str(size) for size in sizes)


def why(figure: str, predicted: Mapping[str, Any], seen: Mapping[str, Any], run: RunSettings) -> str:
    """Why a figure is more than a tick off: what the replay does not model of this run, or the figure it follows
    from."""
    guess, value = predicted.get(figure), seen.get(figure)
    if guess is None or value is None:
        return ("the run did not reach it" if value is None else "the replay did not reach it") + \
            " (see the run's timeline)"
    reasons = []
    if run.spot_interruptions:
        reasons.append(f"the run interrupted {run.spot_interruptions} instance(s) mid-burst at a tick it chose "
                       "(emulated Spot notices); the replay draws no interruption")
    if len(run.boots) > 1 and min(run.boots) < max(run.boots) - run.tick_seconds:
        reasons.append(f"the workers took {min(run.boots):.0f} to {max(run.boots):.0f} s to start consuming; the "
                       f"replay gives every instance the median, {run.boot_seconds:.0f} s")
    if figure == "seconds to first instance in service" and run.in_service and run.boots:
        lag = statistics.median(run.in_service) - run.boot_seconds
        reasons.append(f"a node's lifecycle watcher completed its launch action a median {lag:.0f} s after its "
                       "consumer started (the node playbook starts the consumer, then the watcher); the replay has "
                       "an instance in service when its consumer is")
    if run.clock_factor > 1.5:
        reasons.append(f"each real second of this run counts {run.clock_factor:g} AWS seconds (its ticks were "
                       "played faster than real time), so every call a worker makes to the emulator and Redis "
                       "stretches the run; the replay's workers take no time but their work")
    runs_sizes, replay_sizes = list(seen.get("desired") or []), list(predicted.get("desired") or [])
    if figure in ("scale events", "instance-minutes", "seconds to zero instances") and runs_sizes != replay_sizes:
        reasons.append(f"the run's desired capacity went {arrows(runs_sizes)}, the replay's {arrows(replay_sizes)}: "
                       "while the scale-out alarm is in ALARM its ExactCapacity steps follow the backlog down, "
                       "and the run's workers, ready at different moments, took their batches out of step and "
                       "left a backlog that asked for fewer instances, where the replay's, ready together, take "
                       "theirs in step")
    if figure == "seconds to zero instances":
        decided = seen.get("scale-in to zero")
        if not run.completes_terminations:
            reasons.append("this design's workers leave their termination action to the drain hook's heartbeat, "
                           "which holds each instance; the replay's lifecycle watcher completes it once the consumer "
                           "has stopped")
        elif decided is not None and value - decided > run.tick_seconds:
            reasons.append(f"the run's last instance left {value - decided:.0f} s after the scale-in decision: its "
                           "watcher completes the termination action once the consumer has stopped, and a consumer "
                           "in a long poll stops when the poll returns; the replay stops a polling consumer at once")
        if run.broker == "redis" and value < guess:
            reasons.append("the loop publishes PendingJobs once a tick, as it is at the tick's start; the replay "
                           "publishes the largest of the tick's 10-second samples, as the function does, so its "
                           "idle window begins a tick later")
    order = list(FIGURES)
    for earlier in order[:order.index(figure)]:
        before, after = predicted.get(earlier), seen.get(earlier)
        if earlier.startswith("seconds") and before is not None and after is not None \
                and abs(before - after) > run.tick_seconds:
            reasons.append(f"it follows from the {earlier.removeprefix('seconds to ')}, {after - before:+.0f} s "
                           "off")
            break
    if figure == "instance-minutes" and not reasons:
        reasons.append("the run counts each instance for every tick it is seen at a tick's start (launch and "
                       "termination ticks whole); the replay bills each to the second")
    if figure == "seconds to first message processed" and not reasons and run.poll_seconds > run.tick_seconds:
        reasons.append(f"a consumer takes what is visible at its poll, {run.poll_seconds:g} s apart")
    return "; ".join(reasons) or (f"{(value - guess) / max(1, run.tick_seconds):+.1f} ticks apart, not explained "
                                  "by the model's inputs")


def prediction(stack: Stack, run: RunSettings, numbers: Mapping[str, Any],
               timeline: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """What REPORT.md shows for one run: the planner's inputs taken from the run, and the rows."""
    predicted, seen = predict(stack, run), measured(numbers, timeline)
    rows = compare(predicted, seen, run, int(numbers.get("peak instances") or 0))
    return {"inputs": {**asdict(run), "boot seconds": run.boot_seconds}, "rows": [asdict(r) for r in rows],
            "desired": {"predicted": predicted["desired"], "measured": seen["desired"]}}
