"""Load: messages arriving each second (a named profile or a CSV of arrivals per interval), and the work each
message takes (a distribution, seeded)."""

from __future__ import annotations

import csv
import itertools
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

DAY = 86400
PROFILES = ("burst", "steady", "diurnal", "bursty-day")
BURST_GAP = 300  # seconds without arrivals that end a burst


class LoadError(ValueError):
    """A load the planner cannot read, named with the reason."""


@dataclass(frozen=True)
class Load:
    name: str
    arrivals: list[int]  # messages arriving in each second, from second 0
    description: str

    @property
    def seconds(self) -> int:
        return len(self.arrivals)

    @property
    def total(self) -> int:
        return sum(self.arrivals)

    def bursts(self, gap: int = BURST_GAP) -> list[tuple[int, int]]:
        """(first second, last second) of each run of arrivals, runs apart by `gap` seconds or more of none."""
        runs: list[tuple[int, int]] = []
        start = last = -1
        for second in itertools.compress(range(len(self.arrivals)), self.arrivals):  # the seconds with arrivals
            if start < 0 or second - last > gap:
                if start >= 0:
                    runs.append((start, last))
                start = second
            last = second
        if start >= 0:
            runs.append((start, last))
        return runs


def poisson(rng: random.Random, mean: float) -> int:
    """A Poisson count (Knuth's method for small means, a rounded normal above 30)."""
    if mean <= 0:
        return 0
    if mean > 30:
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit, count, product = math.exp(-mean), 0, rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count


def named(profile: str, scale: float = 1.0, seconds: int = DAY, seed: int = 1) -> Load:
    """burst: 1000 messages in the first minute after 10 min; steady: 0.2 a second, Poisson; diurnal: 0 at night,
    a sine from 06:00 to 18:00 peaking at 0.5 a second at noon; bursty-day: six bursts of 300 in a minute
    (02:00, 07:00, 09:00, 12:00, 15:00, 19:00). `scale` multiplies every rate and burst."""
    if profile not in PROFILES:
        raise LoadError(f"unknown profile {profile!r}: one of {', '.join(PROFILES)}")
    if scale <= 0 or seconds < 60:
        raise LoadError("the profile's scale must be above 0 and its duration at least 60 s")
    rng = random.Random(seed)  # noqa: S311  # nosec B311 - simulation draws, not security
    arrivals = [0] * seconds

    def burst(at: int, messages: int, spread: int = 60) -> None:
        if at >= seconds:
            return
        for n in range(messages):
            arrivals[min(seconds - 1, at + n * spread // messages)] += 1

    if profile == "burst":
        burst(600, round(1000 * scale))
        text = f"{round(1000 * scale)} messages within a minute, 10 minutes in"
    elif profile == "steady":
        arrivals = [poisson(rng, 0.2 * scale) for _ in range(seconds)]
        text = f"{0.2 * scale:g} messages a second, Poisson"
    elif profile == "diurnal":
        for second in range(seconds):
            hour = (second % DAY) / 3600
            rate = 0.5 * scale * math.sin(math.pi * (hour - 6) / 12) if 6 <= hour < 18 else 0.0
            arrivals[second] = poisson(rng, rate)
        text = f"none at night; 06:00-18:00 a sine peaking at {0.5 * scale:g} a second at noon, Poisson"
    else:
        for hour in (2, 7, 9, 12, 15, 19):
            burst(hour * 3600, round(300 * scale))
        text = f"six bursts of {round(300 * scale)} messages within a minute (02, 07, 09, 12, 15, 19 h)"
    return Load(profile, arrivals, text)


def from_csv(path: Path, interval: int = 60) -> Load:
    """Arrivals per interval: one count a row, or `start_second,count` rows (a header row is skipped); each
    interval's messages are spread evenly over its seconds."""
    if interval < 1:
        raise LoadError("the CSV's interval must be 1 second or more")
    try:
        rows = [row for row in csv.reader(path.read_text().splitlines()) if row and any(c.strip() for c in row)]
    except OSError as error:
        raise LoadError(f"cannot read {path}: {error.strerror}") from None
    if rows and not rows[0][-1].strip().lstrip("-").isdigit():
        rows = rows[1:]
    counts: dict[int, int] = {}
    for number, row in enumerate(rows, 1):
        try:
            values = [int(cell) for cell in row]
        except ValueError:
            raise LoadError(f"{path}: row {number} is not one or two whole numbers: {row}") from None
        if len(values) not in (1, 2) or min(values) < 0:
            raise LoadError(f"{path}: row {number}: a count, or a start second and a count, none negative: {row}")
        start = values[0] if len(values) == 2 else (number - 1) * interval
        counts[start] = counts.get(start, 0) + values[-1]
    if not counts:
        raise LoadError(f"{path}: no rows")
    arrivals = [0] * (max(counts) + interval)
    for start, count in counts.items():
        for n in range(count):
            arrivals[start + n * interval // count] += 1
    return Load(path.name, arrivals, f"{sum(counts.values())} messages from {path} ({interval} s intervals)")


def work(spec: str, seed: int = 1) -> tuple[Callable[[], float], str]:
    """The seconds one message takes: fixed:S, exponential:MEAN or lognormal:MEDIAN,SIGMA; with its description."""
    kind, _, arguments = spec.partition(":")
    try:
        values = [float(v) for v in arguments.split(",")] if arguments else []
    except ValueError:
        raise LoadError(f"work {spec!r}: the parameters must be numbers") from None
    rng = random.Random(seed)  # noqa: S311  # nosec B311 - simulation draws, not security
    if kind == "fixed" and len(values) == 1 and values[0] >= 0:
        seconds = values[0]
        return (lambda: seconds), f"fixed {seconds:g} s"
    if kind == "exponential" and len(values) == 1 and values[0] > 0:
        rate = 1 / values[0]
        return (lambda: rng.expovariate(rate)), f"exponential, mean {values[0]:g} s (seed {seed})"
    if kind == "lognormal" and len(values) == 2 and values[0] > 0 and values[1] >= 0:
        mu, sigma = math.log(values[0]), values[1]
        text = f"lognormal, median {values[0]:g} s, sigma {sigma:g} (seed {seed})"
        return (lambda: rng.lognormvariate(mu, sigma)), text
    raise LoadError(f"work {spec!r}: fixed:SECONDS, exponential:MEAN or lognormal:MEDIAN,SIGMA")
