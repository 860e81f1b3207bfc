"""The replay over its time: backlog, instances (and desired capacity), and the longest wait each minute."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from sqs_fleet.planner.replay import Result


def prepare() -> None:
    """matplotlib imported (about half a second), with the Agg backend: the planner does it while it waits for
    something else."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot  # noqa: F401


def draw(runs: Sequence[tuple[str, Result]], path: Path) -> Path:
    prepare()
    import matplotlib.pyplot as plt

    figure, (backlog, instances, wait) = plt.subplots(3, 1, sharex=True, figsize=(11, 8))
    for label, result in runs:
        hours = [(minute + 1) / 60 for minute in range(len(result.minutes))]
        backlog.plot(hours, [m[0] for m in result.minutes], label=label, linewidth=0.9)
        instances.step(hours, [m[1] for m in result.minutes], where="post", label=f"{label}: running", linewidth=0.9)
        wait.plot(hours, [m[3] for m in result.minutes], label=label, linewidth=0.9)
    backlog.set_ylabel("backlog\n(visible + in flight)")
    instances.set_ylabel("instances running\n(max a minute)")
    wait.set_ylabel("longest wait (s)\nof messages started")
    wait.set_xlabel("hours of virtual time")
    for axis in (backlog, instances, wait):
        axis.grid(alpha=0.3)
    backlog.legend(fontsize="small", loc="upper right")
    first = runs[0][1]
    figure.suptitle(f"sqs-fleet-plan: {first.load.name} ({first.load.total} messages), broker {first.settings.broker}")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path
