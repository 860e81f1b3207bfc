"""The figures and plots of one run of the scale-out / scale-in test plan (sqs_fleet.scaletest.plan), drawn from
the run's timeline and its workers' log lines; REPORT.md (sqs_fleet.scaletest.report) shows them.

A period of the timeline is one tick of the run: `tick_seconds` of AWS time (60 s on AWS; on the emulator 10 s
when an alarm reads 10-second periods). Figures are in AWS time, never in ticks."""

from __future__ import annotations

import bisect
import datetime
import math
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqs_fleet.sim.loop import Period


def first(timeline: list[Period], condition: Callable[[Period], bool]) -> Period | None:
    return next((p for p in timeline if condition(p)), None)


def aws_minutes(period: Period | None) -> float | None:
    """When a period began, in AWS minutes from the run's start (one decimal)."""
    return None if period is None else round(period.seconds / 60, 1)


def minute_of(starts: list[float], at: float, period_seconds: float) -> float:
    """Where a moment falls on the timeline, as a fractional tick index: period i runs from its record
    (starts[i]) to the next one; before the first record is tick 0, and nothing counts past the last period."""
    i = max(0, bisect.bisect_right(starts, at) - 1)
    length = starts[i + 1] - starts[i] if i + 1 < len(starts) else period_seconds
    return i + min(max(0.0, at - starts[i]) / length, 0.99)


def processed_minutes(timeline: list[Period], events: list[dict[str, Any]], period_seconds: float) -> list[float]:
    """When each message was processed, as fractional tick indexes of the timeline, earliest first
    (period_seconds: real seconds a period lasted, for the last one)."""
    starts = [p.at for p in timeline]
    return sorted(minute_of(starts, datetime.datetime.fromisoformat(e["ts"]).timestamp(), period_seconds)
                  for e in events if e["event"] == "message_processed")


def processed_per_period(ticks: list[float], periods: int) -> list[int]:
    """Messages processed in each period, from the moments processed_minutes placed on the timeline."""
    counts = Counter(int(tick) for tick in ticks)
    return [counts.get(period, 0) for period in range(periods)]


def figures(timeline: list[Period], events: list[dict[str, Any]], produced: int, processed_at: list[float],
            tick_seconds: int, spot_interruptions: int | None = None) -> dict[str, Any]:
    """The run's figures, in AWS time; processed_at: processed_minutes() of the same events (tick indexes);
    tick_seconds: AWS seconds per period; spot_interruptions: the emulator's count, or None on AWS, where the
    scaling activities that mention an interruption are counted."""
    processed = Counter(e["idempotency_key"] for e in events if e["event"] == "message_processed")
    repeats = sum(n - 1 for n in processed.values())
    skipped = sum(1 for e in events if e["event"] == "message_duplicate")
    first_processed = processed_at[0] if processed_at else None
    last_processed = processed_at[-1] if processed_at else None
    drained = first(timeline, lambda p: p.minute > 0 and p.visible + p.in_flight == 0)

    def after_drain(p: Period) -> bool:
        return drained is not None and p.minute > drained.minute

    scaled_out = first(timeline, lambda p: p.desired > 0)
    emptied = first(timeline, lambda p: after_drain(p) and p.instances == 0)
    dead_letters = timeline[-1].dead_letters if timeline else 0
    if spot_interruptions is None:
        spot_interruptions = sum("interruption" in d.lower() for p in timeline for d in p.decisions)
    return {
        "messages produced": produced,
        "messages processed": len(processed),
        "messages processed more than once": repeats,
        "redeliveries recognised and skipped": skipped,
        "messages lost": produced - len(processed) - dead_letters,
        "dead letters": dead_letters,
        "minutes to first scale-out": aws_minutes(scaled_out),
        "minutes to first instance in service": aws_minutes(first(timeline, lambda p: p.in_service > 0)),
        # Rounded down (in tenths of a minute, 6 s): a message processed at 0:59 is never reported as minute 1.
        "minutes to first message processed": None if first_processed is None
        else math.floor(first_processed * tick_seconds / 6 + 1e-9) / 10,
        "minutes to queue drained": aws_minutes(drained),
        "minutes to zero instances": aws_minutes(first(timeline, lambda p: after_drain(p) and p.desired == 0
                                                       and p.instances == 0)),
        "peak instances": max((p.instances for p in timeline), default=0),
        "instance-minutes": round(sum(p.instances for p in timeline) * tick_seconds / 60, 1),
        "instance-minutes after the drain": None if drained is None
        else round(sum(p.instances for p in timeline if after_drain(p)) * tick_seconds / 60, 1),
        # The last instance went during the tick before the first one that saw none.
        "seconds from last message to last termination": None if emptied is None or last_processed is None
        else round(emptied.seconds - last_processed * tick_seconds, 1),
        # The burst was sent before tick 0; a tick's decision is made on the data of the whole tick, at its end.
        "seconds from first message to scale-out decision": None if scaled_out is None
        else (scaled_out.minute + 1) * tick_seconds,
        "spot interruptions": spot_interruptions,
    }


# Generated files beside REPORT.md: the run's data and plots, in a folder of their own.
OUTPUTS = "report"
DATA_FILE = f"{OUTPUTS}/report-data.json"
QUEUE_PLOT = f"{OUTPUTS}/queue-and-instances.png"
PROCESSED_PLOT = f"{OUTPUTS}/processed-per-minute.png"


def processed_per_minute(processed_at: list[float], tick_seconds: int, periods: int) -> list[int]:
    """Messages processed in each AWS minute of a run of `periods` ticks (processed_at: tick indexes)."""
    counts = Counter(int(tick * tick_seconds // 60) for tick in processed_at)
    return [counts.get(minute, 0) for minute in range(math.ceil(periods * tick_seconds / 60))]


def plots(timeline: list[Period], processed_at: list[float], tick_seconds: int, label: str, out: Path,
          prefix: str = "") -> list[str]:
    """The run's two plots, in AWS minutes, written under `out` (file names starting with `prefix`); their paths
    relative to it."""
    queue_plot, processed_plot = (f"{OUTPUTS}/{prefix}{Path(name).name}" for name in (QUEUE_PLOT, PROCESSED_PLOT))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    minutes = [p.seconds / 60 for p in timeline]
    figure, depth = plt.subplots(figsize=(9, 4))
    depth.plot(minutes, [p.visible for p in timeline], label="visible", color="tab:blue")
    depth.plot(minutes, [p.in_flight for p in timeline], label="in flight", color="tab:cyan")
    depth.set_xlabel(f"AWS minutes (one point per {tick_seconds} s tick)")
    depth.set_ylabel("messages")
    instances = depth.twinx()
    instances.step(minutes, [p.desired for p in timeline], where="post", label="desired", color="tab:red")
    instances.step(minutes, [p.instances for p in timeline], where="post", label="instances", color="tab:orange",
                   linestyle="--")
    instances.step(minutes, [p.in_service for p in timeline], where="post", label="in service", color="tab:green",
                   linestyle=":")
    instances.set_ylabel("instances")
    instances.set_ylim(0, max([p.desired for p in timeline] + [p.instances for p in timeline] + [1]) + 1)
    figure.legend(loc="upper center", ncol=5, bbox_to_anchor=(0.5, 0.93))
    depth.set_title(f"Queue depth and instances ({label})")
    figure.tight_layout()
    (out / OUTPUTS).mkdir(parents=True, exist_ok=True)
    figure.savefig(out / queue_plot, dpi=100)
    plt.close(figure)

    figure, axis = plt.subplots(figsize=(9, 3))
    per_minute = processed_per_minute(processed_at, tick_seconds, len(timeline))
    axis.bar(range(len(per_minute)), per_minute, width=0.9, align="edge", color="tab:green")
    axis.set_xlabel("AWS minute")
    axis.set_ylabel("messages processed")
    axis.set_title(f"Messages processed per minute ({label})")
    figure.tight_layout()
    figure.savefig(out / processed_plot, dpi=100)
    plt.close(figure)
    return [queue_plot, processed_plot]
