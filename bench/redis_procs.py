"""The processes bench.redis_broker measures: Celery workers on the lab's Redis (files/celery_worker.py or the
bare task beside it), paused and resumed, their log lines counted, the queue drained."""

from __future__ import annotations

import datetime
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import redis

from bench.redis_broker_jobs import BARE_QUEUE, QUEUE, Job, jobs
from sqs_fleet import REPO
from sqs_fleet.lab.redis_server import RedisServer
from sqs_fleet_workers import celery_worker, redis_backlog


class LogTail:
    """The worker's JSON lines, read as they come: complete lines only (the worker may be writing the last)."""

    def __init__(self, path: Path) -> None:
        self.path, self.offset = path, 0
        self.processed: dict[str, float] = {}  # task id -> ts (epoch seconds) of its message_processed line

    def read(self) -> int:
        with self.path.open("rb") as stream:
            stream.seek(self.offset)
            data = stream.read()
        end = data.rfind(b"\n") + 1
        self.offset += end
        for line in data[:end].decode().splitlines():
            if not line.startswith("{"):
                continue
            entry = json.loads(line)
            if entry["event"] == "message_processed":
                self.processed[entry["message_id"]] = datetime.datetime.fromisoformat(entry["ts"]).timestamp()
            elif entry["level"] == "error":
                raise RuntimeError(f"worker error: {line}")
        return len(self.processed)

    def wait_for(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.read() < count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{len(self.processed)} of {count} jobs processed after {timeout} s; "
                                   f"see {self.path}")
            time.sleep(0.05)


class Worker:
    """files/celery_worker.py in a session of its own, so that its pool processes can be paused together."""

    def __init__(self, server: RedisServer, out: Path, concurrency: int, work: float,
                 options: Sequence[str] = (), bare: bool = False) -> None:
        env = {**os.environ, "REDIS_AUTH_TOKEN": server.password,
               "PYTHONPATH": os.pathsep.join([str(REPO / "files"), *sys.path])}
        self.log = LogTail(out)
        if bare:  # the reference task on a queue of its own
            command = [str(REPO / "bench" / "bare_celery_task.py"), "--queue", BARE_QUEUE]
        else:
            command = [str(REPO / "files" / "celery_worker.py"), "--queue", QUEUE, "--simulate-work", str(work)]
        with out.open("ab") as stream:
            self.process = subprocess.Popen(
                [sys.executable, *command, "--broker-url", server.url, "--concurrency", str(concurrency), *options],
                env=env, stdout=stream, stderr=subprocess.STDOUT, start_new_session=True)

    def group(self) -> list[int]:
        """The pids of the worker's process group (main process and pool), from /proc."""
        pids = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[2]) == self.process.pid and fields[0] != "Z":
                pids.append(int(stat.parent.name))
        return pids

    def pause(self) -> None:
        """SIGSTOP to the whole group, returning once every process of it is stopped."""
        os.killpg(self.process.pid, signal.SIGSTOP)
        deadline = time.monotonic() + 5
        while True:
            states = []
            for pid in self.group():
                try:
                    states.append(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0])
                except OSError:
                    continue
            if all(state in "Tt" for state in states):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"worker not stopped: process states {states}")

    def cpu_seconds(self) -> float:
        """User + system CPU time of the group's live processes (main process and pool), from /proc."""
        ticks = 0
        for pid in self.group():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
        return ticks / os.sysconf("SC_CLK_TCK")

    def resume(self) -> None:
        os.killpg(self.process.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.process.poll() is not None:  # killed
            return
        self.resume()
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)


@contextmanager
def running_worker(server: RedisServer, out: Path, concurrency: int, work: float = 0.0,
                   options: Sequence[str] = (), bare: bool = False) -> Iterator[Worker]:
    worker = Worker(server, out, concurrency, work, options, bare)
    try:
        yield worker
    finally:
        worker.stop()


def wait_drained(client: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while redis_backlog.pending_jobs(client, QUEUE):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{redis_backlog.pending_jobs(client, QUEUE)} jobs still pending after {timeout} s")
        time.sleep(0.02)


class LineCount:
    """Lines of a worker's output that carry `marker`, counted as they come (complete lines only)."""

    def __init__(self, path: Path, marker: bytes) -> None:
        self.path, self.marker, self.offset, self.count = path, marker, 0, 0

    def read(self) -> int:
        with self.path.open("rb") as stream:
            stream.seek(self.offset)
            data = stream.read()
        end = data.rfind(b"\n") + 1
        self.offset += end
        self.count += data[:end].count(self.marker)
        return self.count


def held(client: Any, queue: str) -> int:
    """Jobs waiting in the queue's list or held in the unacked hash (done records not subtracted), in one MULTI."""
    with client.pipeline(transaction=True) as pipeline:
        pipeline.llen(queue)
        pipeline.hlen(redis_backlog.UNACKED)
        waiting, unacked = pipeline.execute()
    return int(waiting) + int(unacked)


@dataclass
class Contender:
    """A worker under measurement: its process, the queue it consumes, the producer's app for that queue and
    the count of its per-job lines."""

    name: str
    worker: Worker
    queue: str
    app: Any
    lines: LineCount


def enqueue_onto(client: Any, app: Any, batch: Sequence[Job], queue: str) -> None:
    """celery_worker.enqueue's messages pushed onto another list (the bare task's), 500 a round trip: one
    producer application in this process (a second one would register the task name again)."""
    for start in range(0, len(batch), 500):
        celery_worker.publish_chunk(client, replace(celery_worker.build_chunk(app, batch[start:start + 500]),
                                                    queue=queue))


def drain(client: Any, contender: Contender, others: Sequence[Contender], count: int, tag: str,
          timeout: float) -> tuple[float, float]:
    """`count` jobs enqueued while the worker is paused (SIGSTOP), then seconds from its resumption to its
    queue and the unacked hash both empty with every job's line logged, and the CPU seconds its processes
    used meanwhile (what other work on the machine does not change). The other workers stay paused."""
    for other in others:
        other.worker.pause()
    contender.worker.pause()
    try:
        before = contender.lines.read()
        enqueue_onto(client, contender.app, jobs(count, tag), contender.queue)
        cpu = contender.worker.cpu_seconds()
        started = time.perf_counter()
        contender.worker.resume()
        deadline = time.monotonic() + timeout
        # Polled every 5 ms: the figure is late by up to that much, on either contender alike.
        while contender.lines.read() - before < count or held(client, contender.queue):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{contender.name}: {contender.lines.read() - before} of {count} jobs done "
                                   f"after {timeout} s; see {contender.lines.path}")
            time.sleep(0.005)
        return time.perf_counter() - started, contender.worker.cpu_seconds() - cpu
    finally:
        contender.worker.resume()
        for other in others:
            other.worker.resume()


class Lines:
    """consumer.py's log stream, in memory: the wall-clock time each message_processed line was written."""

    def __init__(self) -> None:
        self.processed: dict[str, float] = {}  # idempotency key -> time

    def write(self, text: str) -> None:
        at = time.time()
        for line in text.splitlines():
            entry = json.loads(line)
            if entry["event"] == "message_processed":
                self.processed[entry["idempotency_key"]] = at

    def flush(self) -> None:
        pass


def processed_lines(path: Path) -> list[dict[str, Any]]:
    """The message_processed lines of a worker's log; complete lines only (a killed worker may leave half one)."""
    entries = []
    for line in path.read_bytes().decode(errors="replace").splitlines(keepends=True):
        if line.startswith("{") and line.endswith("\n"):
            entry = json.loads(line)
            if entry["event"] == "message_processed":
                entries.append(entry)
    return entries


def epoch(ts: str) -> float:
    return datetime.datetime.fromisoformat(ts).timestamp()


def warm_up(app: Any, client: Any, workers: Sequence[Worker], timeout: float = 120) -> None:
    """A few jobs at a time until every worker has processed one: all of them consume when the burst comes."""
    deadline = time.monotonic() + timeout
    round_ = 0
    while not all(worker.log.read() for worker in workers):
        if time.monotonic() > deadline:
            raise RuntimeError(f"not every worker took a job in {timeout} s")
        celery_worker.enqueue(app, jobs(2 * len(workers), f"warm-up-{round_}", seed=100 + round_))
        wait_drained(client, timeout)
        round_ += 1


def bench_processing(server: RedisServer, app: Any, tmp: Path, count: int, runs: int, concurrency: int,
                     options: Sequence[str] = ()) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """jobs/s of celery_worker.py and of the bare task, each draining `count` jobs queued while it was paused,
    runs alternating between the two (each run's order swapped) so that both see the same machine."""
    client = redis.Redis.from_url(server.url_with_password)
    client.flushdb()
    tag = f"c{concurrency}" + "".join(options).replace("-", "")
    rates: dict[str, list[float]] = {"celery_worker.py": [], "bare Celery task": []}
    cpu_ms: dict[str, list[float]] = {"celery_worker.py": [], "bare Celery task": []}
    with running_worker(server, tmp / f"processing-{tag}.log", concurrency, 0.0, options) as worker, \
            running_worker(server, tmp / f"bare-{tag}.log", concurrency, bare=True) as bare:
        contenders = [Contender("celery_worker.py", worker, QUEUE, app,
                                LineCount(tmp / f"processing-{tag}.log", b'"event": "message_processed"')),
                      Contender("bare Celery task", bare, BARE_QUEUE, app,
                                LineCount(tmp / f"bare-{tag}.log", b"bare_processed "))]
        for contender in contenders:  # started, connected, a job through each pool process
            enqueue_onto(client, contender.app, jobs(concurrency * 2, f"warm-up-{contender.name}"), contender.queue)
            deadline = time.monotonic() + 120
            while contender.lines.read() < concurrency * 2 or held(client, contender.queue):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{contender.name} did not start; see {contender.lines.path}")
                time.sleep(0.05)
        for run in range(runs):
            order = contenders if run % 2 == 0 else contenders[::-1]
            for contender in order:
                others = [other for other in contenders if other is not contender]
                seconds, cpu = drain(client, contender, others, count, f"{tag}-{contender.queue}-{run}",
                                     60 + count * 0.05 / concurrency)
                rates[contender.name].append(count / seconds)
                cpu_ms[contender.name].append(cpu * 1000 / count)
    client.flushdb()
    return rates, cpu_ms


def processing_rows(concurrency: int, count: int, measured: tuple[dict[str, list[float]], dict[str, list[float]]],
                    label: str = "") -> list[list[object]]:
    """A row a worker: jobs/s (wall clock) and CPU ms a job, each against the bare task's of the same runs."""
    rates, cpu_ms = measured
    ratios = [a / b for a, b in zip(rates["celery_worker.py"], rates["bare Celery task"])]
    cpu_ratios = [b / a for a, b in zip(cpu_ms["celery_worker.py"], cpu_ms["bare Celery task"])]
    rows: list[list[object]] = []
    for name, values in rates.items():
        median = statistics.median(values)
        ours = name == "celery_worker.py"
        rows.append([f"{name}{label}", concurrency, count, len(values), f"{median:.0f}",
                     f"{min(values):.0f}-{max(values):.0f}", f"{median / concurrency:.0f}",
                     f"{statistics.median(ratios):.0%} ({min(ratios):.0%}-{max(ratios):.0%})" if ours else "100%",
                     f"{statistics.median(cpu_ms[name]):.2f}",
                     f"{statistics.median(cpu_ratios):.0%} ({min(cpu_ratios):.0%}-{max(cpu_ratios):.0%})"
                     if ours else "100%"])
    return rows
