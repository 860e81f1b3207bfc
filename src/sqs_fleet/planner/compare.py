"""Alternatives side by side: `--compare name=v1,v2,...` (repeatable: every combination), each replayed and
priced, and the cheapest one that meets a p95 wait target named."""

from __future__ import annotations

import itertools
import multiprocessing
import os
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqs_fleet.planner import load
from sqs_fleet.planner.replay import Result, replay
from sqs_fleet.planner.settings import Settings, SettingsError


@dataclass(frozen=True)
class Row:
    label: str
    figures: dict[str, Any]
    per_day: float
    per_month: float


def parse_compare(specs: Sequence[str]) -> list[tuple[str, list[str]]]:
    axes = []
    for spec in specs:
        name, sep, values = spec.partition("=")
        choices = [v.strip() for v in values.split(",") if v.strip()]
        if not sep or not name.strip() or not choices:
            raise SettingsError(f"--compare {spec!r}: NAME=VALUE,VALUE,... e.g. idle_window=60,180,900")
        axes.append((name.strip(), choices))
    return axes


def alternatives(base: Settings, specs: Sequence[str]) -> list[tuple[str, Settings]]:
    """Every combination of the compared values over `base` (checked before anything is replayed)."""
    axes = parse_compare(specs)
    if not axes:
        return [("as configured", base)]
    result = []
    for values in itertools.product(*(choices for _, choices in axes)):
        changes = dict(zip((name for name, _ in axes), values))
        label = " ".join(f"{name}={value}" for name, value in changes.items())
        try:
            result.append((label, base.changed(changes, source="--compare")))
        except SettingsError as error:
            raise SettingsError(f"{label}: {error}") from None
    return result


def cheapest(rows: Sequence[Row], wait_target_p95: float | None) -> tuple[Row | None, str]:
    """The cheapest row a month whose p95 wait meets the target (and which left nothing waiting); why."""
    if not rows:
        return None, "nothing was compared"
    if wait_target_p95 is None:
        row = min(rows, key=lambda r: r.per_month)
        return row, f"cheapest: {row.label} (no wait target given: --wait-target-p95 SECONDS)"
    meeting = [r for r in rows if r.figures["wait p95 s"] is not None and r.figures["wait p95 s"] <= wait_target_p95
               and not r.figures["left waiting"]]
    if not meeting:
        best = min(rows, key=lambda r: r.figures["wait p95 s"] if r.figures["wait p95 s"] is not None else 1e18)
        return None, (f"no setting meets a p95 wait of {wait_target_p95:g} s; the lowest p95 is "
                      f"{best.figures['wait p95 s']:.0f} s ({best.label})")
    row = min(meeting, key=lambda r: r.per_month)
    return row, (f"cheapest meeting p95 wait <= {wait_target_p95:g} s: {row.label} "
                 f"(${row.per_month:.2f}/month, p95 {row.figures['wait p95 s']:.0f} s)")


def replayed(settings: Settings, traffic: load.Load, work: str, seed: int,
             progress: Callable[[float], None] = lambda fraction: None) -> Result:
    """One alternative's replay, with its own draws of the work (the same for every alternative)."""
    work_of, _ = load.work(work, seed)
    return replay(settings, traffic, work_of, seed=seed, progress=progress)


def replay_all(runs: Sequence[tuple[str, Settings]], traffic: load.Load, work: str, seed: int,
               progress: Callable[[str], Callable[[float], None]],
               meanwhile: Callable[[], None] = lambda: None, processes: int | None = None) -> list[Result]:
    """Every alternative replayed, in the order given. Each replay depends only on its settings, the load, the
    work and the seed, so several run side by side in forked processes (by default one a core), with the same
    results as one after another (tests/unit/test_planner_quiet.py). `progress(label)` reports each
    alternative's own replay when they run in this process, and the alternatives done when they run side by
    side; `meanwhile` runs here while they do."""
    if processes is None:
        processes = min(len(runs), os.cpu_count() or 1)
        # Not from a process with another thread (it could hold a lock the child would wait on forever).
        processes = processes if threading.active_count() == 1 else 1
    # Forked on Linux only: macOS's system libraries may not survive a fork.
    if processes < 2 or not sys.platform.startswith("linux"):
        meanwhile()
        return [replayed(settings, traffic, work, seed, progress(label)) for label, settings in runs]
    done = progress(f"{len(runs)} settings, {processes} processes")
    done(0.0)
    results: list[Result | None] = [None] * len(runs)
    with multiprocessing.get_context("fork").Pool(processes) as pool:
        jobs = [(settings, traffic, work, seed) for _, settings in runs]
        replays = pool.imap_unordered(_indexed, enumerate(jobs))
        meanwhile()
        for finished, (index, result) in enumerate(replays, 1):
            results[index] = result
            done(finished / len(runs))
    return [result for result in results if result is not None]


def _indexed(job: tuple[int, tuple[Settings, load.Load, str, int]]) -> tuple[int, Result]:
    return job[0], replayed(*job[1])
