"""The scale test's configuration, built once from the command line and handed down as one object.

`ScaleTestConfig` is what a run of the plan needs to know of its command line; nothing past `parse` reads the
parsed arguments themselves. `Design` names a scaling design the plan can play on the emulator.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqs_fleet import REPO
from sqs_fleet.sim.scaling import AwsScaling
from sqs_fleet.stack import output_file

AWS_PERIOD_SECONDS = float(AwsScaling.tick_seconds)  # on AWS a tick lasts what it spans: real time
# How long one tick lasts on the emulator, unless --period-seconds says otherwise: the one default.
EMULATOR_PERIOD_SECONDS = 10.0


@dataclass(frozen=True)
class Design:
    """A scaling design the plan can play on the emulator: the site.yml settings that make it, and whether the
    workers complete their own termination actions."""

    name: str
    summary: str
    site_variables: dict[str, Any]
    completes_terminations: bool


DESIGNS = {
    "current": Design("current", "backlog publisher's 10-second metric, short idle window, workers complete their "
                      "lifecycle actions", {}, completes_terminations=True),
    "previous": Design("previous", "AWS/SQS one-minute metrics, 15-minute idle window, terminations held by the "
                       "drain hook's 300 s heartbeat", {"stack_scaling_metric_source": "sqs",
                                                         "stack_scaling_idle_window": 900},
                       completes_terminations=False),
}


@dataclass(frozen=True)
class ScaleTestConfig:
    target: str  # emulator or aws
    workers: str  # processes or nodes (on the emulator)
    stack: Path | None  # the stack's record; None: .run/stacks/local.json
    messages: int
    period_seconds: float  # real seconds one tick lasts on the emulator (--period-seconds)
    idle_minutes: int | None  # None: the design's own idle window
    max_minutes: int
    spot_interruptions: int
    design: str
    compare: bool
    redis_stack: Path | None
    job_seconds: float
    out: Path
    command: str  # the command line as the report quotes it
    images: tuple[str, ...] = ("stock",)  # with nodes: the node images to boot, a run each
    redis: bool = False  # with nodes: then the same burst on Redis, on a stack the lab makes
    real_time: bool = False  # with nodes: a tick lasts the AWS time it stands for
    broker: str = "sqs"  # with nodes: the broker of this run's stack
    image: str = "stock"  # with nodes: the image of this run's nodes

    @property
    def on_aws(self) -> bool:
        return self.target == "aws"

    @property
    def tick_real_seconds(self) -> float:
        """Real seconds one tick lasts: a minute on AWS, --period-seconds on the emulator."""
        return AWS_PERIOD_SECONDS if self.on_aws else self.period_seconds

    @property
    def record(self) -> Path:
        """The stack's record."""
        return self.stack or output_file("local")

    @property
    def work(self) -> Path:
        """Where a run keeps its workers' logs, its lab and its Ansible home."""
        return self.out / ".run" / "scale-test"

    @property
    def designs(self) -> list[Design]:
        """The designs to play, in order: with --compare the previous first, so the stack ends in the current."""
        return [DESIGNS["previous"], DESIGNS["current"]] if self.compare else [DESIGNS[self.design]]

    def on_stack(self, stack: Path) -> ScaleTestConfig:
        """The same run on another stack (the --redis-stack run)."""
        return dataclasses.replace(self, stack=stack)

    def node_run(self, broker: str, image: str) -> ScaleTestConfig:
        """One of the runs with booted nodes: its broker and image."""
        return dataclasses.replace(self, broker=broker, image=image)

    def with_processes(self) -> ScaleTestConfig:
        """The same run with local processes (the --compare runs beside the nodes' runs)."""
        return dataclasses.replace(self, workers="processes", real_time=False)

    def problem(self) -> str | None:
        """What is wrong with the arguments, or None."""
        return (
            "--idle-minutes must be 1 or more" if self.idle_minutes is not None and self.idle_minutes < 1
            else None) or (
            "--messages must be at least 1" if self.messages < 1 else None) or (
            "--period-seconds must be above 0" if self.period_seconds <= 0 else None) or (
            "--spot-interruptions must be 0 or more" if self.spot_interruptions < 0 else None) or (
            "--spot-interruptions is emulated on the emulator only: on AWS, EC2 interrupts Spot instances itself"
            if self.spot_interruptions and self.on_aws else None) or (
            "--design, --compare and --redis-stack play on the emulator with local processes only (with --workers "
            "nodes, --compare plays both designs with local processes beside the nodes' run, and --redis plays Redis)"
            if (self.compare and self.on_aws) or ((self.design != "current" or self.redis_stack) and (
                self.on_aws or self.workers == "nodes")) else None) or (
            "--images, --redis and --real-time are for --workers nodes"
            if (self.images != ("stock",) or self.redis or self.real_time) and self.workers != "nodes" else None) or (
            f"--images {','.join(self.images)!r}: stock, baked or stock,baked"
            if not set(self.images) <= {"stock", "baked"} or not self.images else None)


def parse(argv: Sequence[str] | None, description: str) -> ScaleTestConfig:
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", choices=("emulator", "aws"), default="emulator")
    parser.add_argument("--workers", choices=("processes", "nodes"), default="processes",
                        help="on the emulator: local consumer processes, or booted nodes (root)")
    parser.add_argument("--stack", type=Path, default=None,
                        help="the stack site.yml recorded (default: .run/stacks/local.json)")
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--period-seconds", type=float, default=EMULATOR_PERIOD_SECONDS,
                        help="real seconds one tick of the loop lasts on the emulator (a tick is 60 s of AWS time, "
                             "10 s with 10-second alarms; on AWS it lasts 60 s)")
    parser.add_argument("--idle-minutes", type=int, default=None,
                        help="with --workers nodes: the scale-in idle window site.yml sets on the lab's stack "
                             "(default: the design's, 3 minutes on SQS, 2 on Redis)")
    parser.add_argument("--max-minutes", type=int, default=120, help="give up after this many AWS minutes")
    parser.add_argument("--spot-interruptions", type=int, default=0, metavar="N",
                        help="on the emulator: interrupt N instances in service mid-burst (Spot notices, emulated)")
    parser.add_argument("--design", choices=tuple(DESIGNS), default="current",
                        help="on the emulator, local processes: the scaling design to play (previous: AWS/SQS "
                             "metrics, 15-minute idle window, terminations held by the drain hook's heartbeat)")
    parser.add_argument("--compare", action="store_true",
                        help="on the emulator, local processes: play the previous design, then the current one, "
                             "on the same burst, and set their figures side by side in REPORT.md")
    parser.add_argument("--redis-stack", type=Path, default=None,
                        help="on the emulator, local processes: then play the same burst on this stack on Redis "
                             "(site.yml -i inventory/local-redis recorded it), in its own section of REPORT.md")
    parser.add_argument("--images", default="stock", metavar="stock[,baked]",
                        help="with --workers nodes: the node image(s) to boot, one run each (baked: image.yml bakes "
                             "this commit's worker image on the lab and the nodes boot from it)")
    parser.add_argument("--redis", action="store_true",
                        help="with --workers nodes: then the same burst on a stack on Redis that the lab makes "
                             "(site.yml -i inventory/local-redis), with nodes running the Celery worker")
    parser.add_argument("--real-time", action="store_true",
                        help="with --workers nodes: a tick lasts the AWS time it stands for (10 or 60 s), so a "
                             "node's boot counts in AWS time as it took")
    parser.add_argument("--job-seconds", type=float, default=6.0,
                        help="on a stack on Redis: AWS seconds each Celery job takes (default 6)")
    parser.add_argument("--out", type=Path, default=REPO, help="where REPORT.md and its report/ folder go")
    args = parser.parse_args(argv)
    command = " ".join(["sqs-fleet-scale-test", *(argv if argv is not None else sys.argv[1:])])
    return ScaleTestConfig(
        target=args.target, workers=args.workers, stack=args.stack, messages=args.messages,
        period_seconds=args.period_seconds, idle_minutes=args.idle_minutes, max_minutes=args.max_minutes,
        spot_interruptions=args.spot_interruptions, design=args.design, compare=args.compare,
        redis_stack=args.redis_stack, job_seconds=args.job_seconds, out=args.out,
        command=command.replace(f"{REPO}/", "").replace(str(REPO), "."),
        images=tuple(name.strip() for name in args.images.split(",") if name.strip()), redis=args.redis,
        real_time=args.real_time)
