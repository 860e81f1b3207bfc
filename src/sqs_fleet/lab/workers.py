"""Workers for the local scaling loop when nodes cannot boot: one local consumer process per instance."""

from __future__ import annotations

import signal
import subprocess  # nosec B404 - starts the project's own consumer
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import consumer

CONSUMER = Path(consumer.__file__)


class ProcessWorkers:
    """One local consumer process per instance, started with the node's configuration. A process cannot complete
    lifecycle actions: the scaling loop completes them for it (emulation), a launch once it has started, a
    termination once it has exited."""

    completes_lifecycle = False

    def __init__(self, queue: str, poll_interval: float, env: Mapping[str, str], logs: Path) -> None:
        self.queue, self.poll_interval, self.env, self.logs = queue, poll_interval, dict(env), logs
        self.running: dict[str, subprocess.Popen[bytes]] = {}
        logs.mkdir(parents=True, exist_ok=True)

    def in_service(self) -> set[str]:
        return set(self.running)

    def follow(self, instances: Sequence[str]) -> list[str]:
        events = []
        for name in [n for n in instances if n not in self.running]:
            with (self.logs / f"{name}.log").open("ab") as out:
                self.running[name] = subprocess.Popen(  # noqa: S603  # nosec B603 - the project's consumer
                    [sys.executable, str(CONSUMER), "--queue", self.queue, "--wait-time", "1",
                     "--poll-interval", str(self.poll_interval), "--state-file", str(self.logs / f"{name}.seen")],
                    env=self.env, stdout=out, stderr=subprocess.STDOUT)
            events.append(f"worker started on {name}")
        for name in [n for n in self.running if n not in instances]:
            process = self.running.pop(name)
            process.send_signal(signal.SIGTERM)  # what the instance's shutdown does: drain, then exit
            process.wait(60)
            events.append(f"worker on {name} drained and stopped")
        return events

    def stop(self) -> None:
        self.follow([])
