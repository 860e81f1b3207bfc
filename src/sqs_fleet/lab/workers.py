"""Workers for the local scaling loop when nodes cannot boot: one local worker process per instance, the SQS
consumer or, for a stack on Redis, the Celery worker."""

from __future__ import annotations

import datetime
import signal
import subprocess  # nosec B404 - starts the project's own workers
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from sqs_fleet_workers import celery_worker, consumer

CONSUMER = Path(consumer.__file__)
CELERY_WORKER = Path(celery_worker.__file__)
READY_SECONDS = 60  # the longest a Celery worker may take to start on a loaded machine


class ProcessWorkers:
    """One local consumer process per instance, started with the node's configuration. A process cannot complete
    lifecycle actions: the scaling loop completes them for it (emulation), a launch once it has started, a
    termination once it has exited."""

    completes_lifecycle = False

    def __init__(self, queue: str, poll_interval: float, env: Mapping[str, str], logs: Path) -> None:
        self.queue, self.poll_interval, self.env, self.logs = queue, poll_interval, dict(env), logs
        self.running: dict[str, subprocess.Popen[bytes]] = {}
        logs.mkdir(parents=True, exist_ok=True)

    def command(self, name: str) -> list[str]:
        return [sys.executable, str(CONSUMER), "--queue", self.queue, "--wait-time", "1",
                "--poll-interval", str(self.poll_interval), "--state-file", str(self.logs / f"{name}.seen")]

    def in_service(self) -> set[str]:
        return set(self.running)

    def follow(self, instances: Sequence[str]) -> list[str]:
        events = []
        for name in [n for n in instances if n not in self.running]:
            # When it started, beside its log, as a node's boot is kept: the report measures each start from it.
            (self.logs / f"{name}.booted.txt").write_text(
                datetime.datetime.now(datetime.timezone.utc).isoformat() + "\n")
            with (self.logs / f"{name}.log").open("ab") as out:
                self.running[name] = subprocess.Popen(  # noqa: S603  # nosec B603 - the project's worker
                    self.command(name), env=self.env, stdout=out, stderr=subprocess.STDOUT)
            events.append(f"worker started on {name}")
        for name in [n for n in self.running if n not in instances]:
            process = self.running.pop(name)
            # What the instance's shutdown does: SIGTERM to the main process (systemd's KillMode=mixed for the
            # Celery worker), which drains and exits.
            process.send_signal(signal.SIGTERM)
            process.wait(60)
            events.append(f"worker on {name} drained and stopped")
        return events

    def stop(self) -> None:
        self.follow([])


class CeleryProcessWorkers(ProcessWorkers):
    """One local Celery worker per instance on the lab's Redis (its token in REDIS_AUTH_TOKEN of `env`), as the
    celery_worker role runs it; `job_seconds`: real seconds each job takes, so a burst lasts a while."""

    def __init__(self, queue: str, broker_url: str, env: Mapping[str, str], logs: Path, concurrency: int = 2,
                 job_seconds: float = 0.0) -> None:
        super().__init__(queue, 0.0, env, logs)
        self.broker_url, self.concurrency, self.job_seconds = broker_url, concurrency, job_seconds

    def follow(self, instances: Sequence[str]) -> list[str]:
        """As for consumers, but a new worker counts as started once it is consuming (its worker_ready line):
        Celery takes seconds of real time to start, which the loop's scaled clock would multiply."""
        new = [n for n in instances if n not in self.running]
        events = super().follow(instances)
        deadline = time.monotonic() + READY_SECONDS
        for name in new:
            log = self.logs / f"{name}.log"
            while '"worker_ready"' not in log.read_text() and time.monotonic() < deadline:
                if self.running[name].poll() is not None:
                    break  # it exited: the loop sees it as gone
                time.sleep(0.05)
        return events

    def command(self, name: str) -> list[str]:
        return [sys.executable, str(CELERY_WORKER), "--queue", self.queue, "--broker-url", self.broker_url,
                "--concurrency", str(self.concurrency), "--restore-interval", "1",
                "--simulate-work", str(self.job_seconds)]
