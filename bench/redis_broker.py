"""The Redis broker path on a real Redis server (Valkey from sqs_fleet.lab.redis, AUTH on): the producer's
enqueue rate, pipelined and one job a round trip; jobs/s of files/celery_worker.py per pool process; and
PendingJobs (files/redis_backlog.py) against ground truth while workers prefetch.

    python -m bench.redis_broker [--enqueue-jobs 2000] [--burst-jobs 1500] [--accuracy-jobs 300]
                                 [--kill-jobs 200] [--kill-work 0.1] [--smoke]

Enqueue: celery_worker.enqueue (kombu's publish batch: one pipeline of `chunk` LPUSHes a round trip) at several
chunk sizes, and Celery's app.send_task once per job; round trips are counted on the client's socket writes, on
loopback and with a modelled round trip added to each.
Workers: celery_worker.py started as the lab starts it (broker URL without the token, REDIS_AUTH_TOKEN in the
environment), warmed up, then a burst enqueued; seconds from the first enqueue to the `ts` of the last
message_processed line.
PendingJobs: the whole worker (its process group) is stopped with SIGSTOP for each sample, so the ground truth,
jobs enqueued minus message_processed lines logged, cannot move between the reading and the log read; what
differs is PendingJobs' own error, split by the unacked hash into jobs logged but not yet acknowledged (+1) and
jobs popped by BRPOP but not yet recorded in the hash (-1). The same samples give LLEN alone's error.
Recovery after SIGKILL mid-burst: two workers on one queue, a burst, and the first worker's process group (main
process and pool, as a lost instance) killed with SIGKILL while both are stopped (SIGSTOP) right after reading
the unacked hash, so that the reading is the state at the kill. An entry of that reading is the killed worker's
when the survivor processes it only once its visibility timeout ran out (restored by the survivor's sweep); the
survivor's own entries are done within their job's time. Measured: jobs stranded, seconds from the kill to the
survivor's message_processed line of the last of them (log `ts`), jobs lost, and jobs processed twice (allowed by
at-least-once delivery: a job logged by the killed worker but not yet acknowledged runs again).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import redis
from redis.connection import AbstractConnection

import celery_worker
import redis_backlog
import vehicles
from bench.common import machine, smoke_option, table
from sqs_fleet import REPO
from sqs_fleet.lab.redis import RedisServer, free_port, start_redis

QUEUE, DLQ = "jobs", "jobs-dlq"
# kombu's Redis transport: delivery tag -> time of delivery, and the lock of the sweep that restores old entries.
UNACKED_INDEX, RESTORE_MUTEX = "unacked_index", "unacked_mutex"
Job = tuple[dict[str, Any], str]


def jobs(count: int, prefix: str, seed: int = 1) -> list[Job]:
    return [(vehicle, f"{prefix}-{n}") for n, vehicle in enumerate(vehicles.generate(count, seed=seed))]


def server_version(client: Any) -> str:
    info = client.info("server")
    if "valkey_version" in info:
        return f"Valkey {info['valkey_version']} (redis_version {info['redis_version']})"
    return f"Redis {info['redis_version']}"


def auth_required(server: RedisServer) -> bool:
    try:
        redis.Redis(host=server.host, port=server.port).ping()
    except (redis.exceptions.AuthenticationError, redis.exceptions.ResponseError):
        return True
    return False


@contextmanager
def round_trips(latency: float) -> Iterator[dict[str, int]]:
    """Count this process's round trips to Redis (one socket write per command or per pipeline), each delayed
    by `latency` seconds to model a network between the producer and the broker."""
    original: Callable[..., None] = AbstractConnection.send_packed_command
    counted = {"round trips": 0}

    def send(connection: Any, command: Any, check_health: bool = True) -> None:
        counted["round trips"] += 1
        if latency:
            time.sleep(latency)
        original(connection, command, check_health)

    AbstractConnection.send_packed_command = send  # type: ignore[method-assign]
    try:
        yield counted
    finally:
        AbstractConnection.send_packed_command = original  # type: ignore[method-assign]


def send_task_each(app: Any, batch: Sequence[Job]) -> int:
    """Celery's plain call, one LPUSH a job."""
    for vehicle, key in batch:
        app.send_task(celery_worker.TASK_NAME, args=(vehicle,), kwargs={"idempotency_key": key})
    return len(batch)


def enqueue_methods() -> list[tuple[str, Callable[[Any, Sequence[Job]], int]]]:
    def chunked(chunk: int) -> Callable[[Any, Sequence[Job]], int]:
        return lambda app, batch: int(celery_worker.enqueue(app, batch, chunk=chunk))

    return [("enqueue(chunk=500), pipelined", chunked(500)), ("enqueue(chunk=50), pipelined", chunked(50)),
            ("enqueue(chunk=1), a round trip a job", chunked(1)),
            ("app.send_task, a round trip a job", send_task_each)]


def bench_enqueue(server: RedisServer, app: Any, count: int, runs: int, latency: float) -> list[list[object]]:
    client = redis.Redis.from_url(server.url_with_password)
    results = []
    for label, method in enqueue_methods():
        client.flushdb()
        method(app, jobs(2, "warm-up"))  # connection, AUTH and queue binding outside the measurement
        client.delete(QUEUE)
        seconds, trips = [], 0
        for run in range(runs):
            batch = jobs(count, f"enqueue-{run}", seed=run)
            with round_trips(latency) as counted:
                started = time.perf_counter()
                sent = method(app, batch)
                seconds.append(time.perf_counter() - started)
            assert sent == count and client.llen(QUEUE) == count, (label, sent, client.llen(QUEUE))
            client.delete(QUEUE)
            trips = counted["round trips"]
        results.append((label, trips, statistics.median(seconds), min(seconds), max(seconds)))
    client.flushdb()
    one_each = next(median for label, _, median, _, _ in results if label.startswith("enqueue(chunk=1)"))
    return [[label, count, trips, f"{trips / count:.3f}", f"{count / median:.0f}",
             f"{count / high:.0f}-{count / low:.0f}", f"{one_each / median:.1f}x"]
            for label, trips, median, low, high in results]


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
                 options: Sequence[str] = ()) -> None:
        env = {**os.environ, "REDIS_AUTH_TOKEN": server.password,
               "PYTHONPATH": os.pathsep.join([str(REPO / "files"), *sys.path])}
        self.log = LogTail(out)
        with out.open("ab") as stream:
            self.process = subprocess.Popen(
                [sys.executable, str(REPO / "files" / "celery_worker.py"), "--queue", QUEUE,
                 "--broker-url", server.url, "--concurrency", str(concurrency), "--simulate-work", str(work),
                 *options],
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
                   options: Sequence[str] = ()) -> Iterator[Worker]:
    worker = Worker(server, out, concurrency, work, options)
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


def bench_workers(server: RedisServer, app: Any, tmp: Path, count: int, runs: int, concurrency: int,
                  work: float) -> list[object]:
    client = redis.Redis.from_url(server.url_with_password)
    client.flushdb()
    rates = []
    with running_worker(server, tmp / f"throughput-{concurrency}.log", concurrency, work) as worker:
        # Started and warmed: a job for each pool process, and the producer's connection made.
        celery_worker.enqueue(app, jobs(concurrency * 2, "warm-up"))
        worker.log.wait_for(concurrency * 2, 120)
        wait_drained(client, 30)
        for run in range(runs):
            burst = jobs(count, f"burst-{run}", seed=run)
            done_before = len(worker.log.processed)
            finished_before = set(worker.log.processed)
            started = time.time()
            celery_worker.enqueue(app, burst, chunk=500)
            worker.log.wait_for(done_before + count, 60 + count * (work + 0.05) / concurrency)
            last = max(ts for task, ts in worker.log.processed.items() if task not in finished_before)
            rates.append(count / (last - started))
            wait_drained(client, 30)
    client.flushdb()
    median = statistics.median(rates)
    return [concurrency, count, runs, f"{count / median:.2f}", f"{median:.0f}", f"{min(rates):.0f}-{max(rates):.0f}",
            f"{median / concurrency:.0f}"]


def distribution(errors: Sequence[int]) -> str:
    return ", ".join(f"{error:+d}: {n}" if error else f"0: {n}" for error, n in sorted(Counter(errors).items()))


def task_id(entry: bytes) -> str:
    """The Celery task id of an entry of kombu's unacked hash: [message, exchange, routing key]."""
    return str(json.loads(entry)[0]["headers"]["id"])


def bench_accuracy(server: RedisServer, app: Any, tmp: Path, count: int, concurrency: int, work: float,
                   interval: float) -> dict[str, Any]:
    client = redis.Redis.from_url(server.url_with_password)
    client.flushdb()
    enqueued = celery_worker.enqueue(app, jobs(count, "accuracy"))
    quiescent = [redis_backlog.pending_jobs(client, QUEUE) - enqueued]  # before any worker runs
    pending_errors, llen_errors = [], []
    logged_not_acked = in_transit = holding = moved = 0
    pauses = []
    pick = random.Random(1)
    with running_worker(server, tmp / f"accuracy-{concurrency}.log", concurrency, work) as worker:
        # Samples from the worker's first fetch on: while it starts, nothing moves and every reading is exact.
        deadline = time.monotonic() + 120
        while not client.hlen(redis_backlog.UNACKED) and client.llen(QUEUE) == enqueued and not worker.log.read():
            if time.monotonic() > deadline:
                raise RuntimeError("the worker took no job in 120 s")
            time.sleep(0.005)
        while True:
            time.sleep(pick.uniform(0, 2 * interval))  # no fixed phase against the jobs' own period
            paused = time.perf_counter()
            worker.pause()
            try:
                pending = redis_backlog.pending_jobs(client, QUEUE)
                with client.pipeline(transaction=True) as pipeline:
                    pipeline.llen(QUEUE)
                    pipeline.hvals(redis_backlog.UNACKED)
                    waiting, unacked = pipeline.execute()
                truth = enqueued - worker.log.read()
            finally:
                worker.resume()
                pauses.append(time.perf_counter() - paused)
            # The paused worker cannot move a job; only a BRPOP it sent just before the stop can still be
            # served in between the two reads.
            moved += pending != waiting + len(unacked)
            held = {task_id(entry) for entry in unacked}
            done_held = len(held & set(worker.log.processed))
            logged_not_acked += done_held
            in_transit += truth - waiting - (len(unacked) - done_held)
            holding += bool(unacked)
            pending_errors.append(pending - truth)
            llen_errors.append(int(waiting) - truth)
            if truth == 0 and pending == 0:
                break
        wait_drained(client, 30)
        quiescent.append(redis_backlog.pending_jobs(client, QUEUE) - (enqueued - worker.log.read()))
    client.flushdb()
    return {"pending": pending_errors, "llen": llen_errors, "quiescent": quiescent, "moved": moved,
            "logged not acked": logged_not_acked, "in transit": in_transit, "holding": holding,
            "pause ms": statistics.median(pauses) * 1000}


def error_row(label: str, errors: Sequence[int]) -> list[object]:
    return [label, len(errors), sum(1 for e in errors if e == 0), max(abs(e) for e in errors), distribution(errors)]


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


def kill_first(client: Any, victim: Worker, survivor: Worker) -> tuple[float, dict[str, float], int]:
    """SIGKILL to the victim's process group (main process and pool) with both workers stopped (SIGSTOP) since
    the unacked hash was read: no job is taken, acknowledged or restored between the reading and the kill.
    A moment when the restore sweep's lock is held, or the hash is empty, is let pass (a worker killed holding
    the lock would hold up every sweep for kombu's unacked_mutex_expire, 300 s).
    Returns the kill's time (epoch seconds), message id -> time of delivery of each unacked entry, and LLEN."""
    while True:
        survivor.pause()
        victim.pause()
        with client.pipeline(transaction=True) as pipeline:
            pipeline.exists(RESTORE_MUTEX)
            pipeline.hgetall(redis_backlog.UNACKED)
            pipeline.zrange(UNACKED_INDEX, 0, -1, withscores=True)
            pipeline.llen(QUEUE)
            locked, unacked, index, waiting = pipeline.execute()
        if not locked and unacked:
            break
        victim.resume()
        survivor.resume()
        time.sleep(0.01)
    os.killpg(victim.process.pid, signal.SIGKILL)
    killed_at = time.time()
    victim.process.wait(10)
    survivor.resume()
    delivered = dict(index)
    return killed_at, {task_id(entry): delivered[tag] for tag, entry in unacked.items()}, int(waiting)


def bench_kill(server: RedisServer, app: Any, tmp: Path, count: int, work: float, visibility: int,
               restore: int) -> list[object]:
    if 2 * work >= visibility:  # the survivor's own jobs would come back too, and could not be told apart
        raise ValueError(f"a job of {work} s is too long for a visibility timeout of {visibility} s")
    client = redis.Redis.from_url(server.url_with_password)
    client.flushdb()
    options = ["--visibility-timeout", str(visibility), "--restore-interval", str(restore)]
    name = f"kill-{visibility}-{restore}"
    killed_log, survivor_log = tmp / f"{name}-killed.log", tmp / f"{name}-survivor.log"
    with running_worker(server, killed_log, 2, work, options) as victim, \
            running_worker(server, survivor_log, 2, work, options) as survivor:
        warm_up(app, client, [victim, survivor])
        burst = jobs(count, name, seed=visibility * 100 + restore)
        keys = {key for _, key in burst}
        done_before = victim.log.read()
        celery_worker.enqueue(app, burst)
        # Mid-burst: once the first worker has done a tenth of it.
        deadline = time.monotonic() + 60 + count * work
        while victim.log.read() - done_before < max(1, count // 10):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the first worker did not get through a tenth of the burst; see {killed_log}")
            time.sleep(0.01)
        killed_at, held, waiting = kill_first(client, victim, survivor)
        # Until every job is processed; a job nowhere (neither waiting nor held) for 2 s is lost.
        deadline = time.monotonic() + visibility + restore + count * work + 60
        empty_since = None
        while True:
            lines = processed_lines(killed_log) + processed_lines(survivor_log)
            survivor_ids = {entry["message_id"] for entry in processed_lines(survivor_log)}
            if keys <= {entry["idempotency_key"] for entry in lines} and set(held) <= survivor_ids:
                break
            if redis_backlog.pending_jobs(client, QUEUE):
                empty_since = None
            elif empty_since is None:
                empty_since = time.monotonic()
            elif time.monotonic() - empty_since > 2:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{redis_backlog.pending_jobs(client, QUEUE)} jobs pending after the kill; see "
                                   f"{killed_log}, {survivor_log}")
            time.sleep(0.05)
        wait_drained(client, 30)
    lines = processed_lines(killed_log) + processed_lines(survivor_log)
    by_survivor: dict[str, float] = {}
    for entry in processed_lines(survivor_log):
        by_survivor.setdefault(entry["message_id"], epoch(entry["ts"]))
    # The killed worker's entries come back only through the sweep: after their time of delivery + visibility.
    stranded = {tid: at for tid, at in held.items() if by_survivor.get(tid, float("inf")) >= at + visibility}
    recovered = [by_survivor[tid] for tid in stranded if tid in by_survivor]
    times = Counter(entry["idempotency_key"] for entry in lines if entry["idempotency_key"] in keys)
    client.flushdb()
    return [visibility, restore, f"{work:g}", count, waiting, len(stranded),
            f"{max(recovered) - killed_at:.1f}" if recovered else "-",
            f"{max(killed_at - at for at in stranded.values()):.2f}" if stranded else "-",
            f"{visibility + restore + work:g}", f"{len(times)}/{count}", len(keys - set(times)),
            sum(n - 1 for n in times.values())]


def role_defaults() -> tuple[int, int, int]:
    """Longest job, visibility timeout and restore interval of the celery_worker role as it deploys them."""
    import yaml

    defaults = yaml.safe_load((REPO / "roles" / "celery_worker" / "defaults" / "main.yml").read_text())
    return (int(defaults["celery_worker_longest_job"]), int(defaults["celery_worker_visibility_timeout"]),
            int(defaults["celery_worker_restore_interval"]))


def bench_replicas(tmp: Path, count: int, runs: int) -> tuple[list[list[object]], list[float]]:
    """Enqueue onto a primary with a replica (sqs_fleet.lab.redis_failover), the chunk counted sent on the
    primary's word and once WAIT saw the replica hold it; and each chunk's WAIT alone (what sets the producer's
    replica timeout)."""
    from sqs_fleet.lab.redis_failover import ReplicatedRedis

    rows, waits = [], []
    with ReplicatedRedis(tmp / "replicated") as group:
        app = celery_worker.make_app(group.url_with_password, QUEUE, DLQ)
        client = redis.Redis.from_url(group.url_with_password)
        for replicas in (0, 1):
            seconds = []
            for run in range(runs):
                batch = jobs(count, f"replicated-{replicas}-{run}", seed=run)
                started = time.perf_counter()
                assert celery_worker.enqueue(app, batch, replicas=replicas) == count
                seconds.append(time.perf_counter() - started)
                client.delete(QUEUE)
            median = statistics.median(seconds)
            rows.append([f"enqueue(chunk=500), --replicas {replicas}", count, f"{count / median:.0f}",
                         f"{count / max(seconds):.0f}-{count / min(seconds):.0f}"])
        for run in range(max(20, runs * 10)):
            chunk = celery_worker.build_chunk(app, jobs(500, f"wait-{run}", seed=run))
            celery_worker.publish_chunk(client, chunk)
            started = time.perf_counter()
            client.execute_command("WAIT", 1, 0)  # the replica's acknowledgement of the chunk just pushed
            waits.append((time.perf_counter() - started) * 1000)
        client.flushdb()
    return rows, waits


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--enqueue-jobs", type=int, default=2000, help="jobs sent by each enqueue method a run")
    parser.add_argument("--burst-jobs", type=int, default=1500, help="jobs of each burst given to the workers")
    parser.add_argument("--accuracy-jobs", type=int, default=300, help="jobs drained while PendingJobs is sampled")
    parser.add_argument("--runs", type=int, default=3, help="runs of each enqueue method and each burst")
    parser.add_argument("--latency-ms", type=float, default=0.5,
                        help="modelled round trip for the second enqueue table (ElastiCache in the same AZ: <1 ms)")
    parser.add_argument("--work", type=float, default=0.02,
                        help="simulated work a job (seconds) while PendingJobs is sampled, so that workers hold jobs")
    parser.add_argument("--sample-interval", type=float, default=0.02, help="mean seconds between samples")
    parser.add_argument("--kill-jobs", type=int, default=200, help="jobs of the burst during which a worker is killed")
    parser.add_argument("--kill-work", type=float, default=0.1,
                        help="simulated work a job (seconds) of that burst, so that it lasts several seconds")
    smoke_option(parser)
    args = parser.parse_args(argv)
    # (visibility timeout, restore interval): the recovery's terms one at a time, the role's restore interval last.
    kill_settings = [(5, 1), (10, 1), (20, 1), (10, role_defaults()[2])]
    if args.smoke:
        args.enqueue_jobs, args.burst_jobs, args.accuracy_jobs, args.runs = 200, 50, 20, 1
        args.kill_jobs, kill_settings = 40, [(3, 1)]
    with TemporaryDirectory() as tmp:
        server = start_redis(free_port(), Path(tmp) / "redis.log")
        try:
            client = redis.Redis.from_url(server.url_with_password)
            # One application for every producer call (a second one would register the task name again).
            app = celery_worker.make_app(server.url_with_password, QUEUE, DLQ)
            version = server_version(client)
            print(f"machine: {machine()}; load average at the start: {load()}")
            print(f"broker: {version} on 127.0.0.1, one process, no persistence; AUTH required: "
                  f"{'yes' if auth_required(server) else 'NO'}; client: redis-py {redis.__version__}, "
                  f"Celery {celery_version()}")
            for latency in (0.0, args.latency_ms / 1000):
                where = "round trip: loopback" + (f" + {latency * 1000:g} ms modelled" if latency else "")
                table(f"Enqueue, Celery task messages onto an empty queue (queue depth 0 -> {args.enqueue_jobs}), "
                      f"median of {args.runs} ({where})",
                      ["producer path", "jobs", "round trips", "round trips/job", "jobs/s", "jobs/s min-max",
                       "speed-up"],
                      bench_enqueue(server, app, args.enqueue_jobs, args.runs, latency))
            rows, waits = bench_replicas(Path(tmp), args.enqueue_jobs, args.runs)
            table(f"Enqueue onto a primary with a replica (loopback), {args.enqueue_jobs} jobs, median of "
                  f"{args.runs}: a chunk sent on the primary's word, or once the replica holds it (WAIT 1)",
                  ["producer path", "jobs", "jobs/s", "jobs/s min-max"], rows)
            waits.sort()
            print(f"  WAIT 1 after a 500-job chunk, {len(waits)} chunks: median {statistics.median(waits):.2f} ms, "
                  f"p99 {waits[int(len(waits) * 0.99) - 1]:.2f} ms, max {waits[-1]:.2f} ms (the producer's and the "
                  f"worker's default timeout: {celery_worker.REPLICA_TIMEOUT_MS} ms)")
            rows = [bench_workers(server, app, Path(tmp), args.burst_jobs, args.runs, concurrency, 0.0)
                    for concurrency in (1, 2)]
            table(f"Worker throughput: celery_worker.py (prefork, prefetch 1 a process, acks late), burst of "
                  f"{args.burst_jobs} jobs onto an empty queue (queue depth <= {args.burst_jobs}), no simulated "
                  f"work, first enqueue to last processed, median of {args.runs}",
                  ["concurrency", "jobs", "runs", "seconds", "jobs/s", "jobs/s min-max", "jobs/s per process"], rows)
            for concurrency in (1, 2):
                result = bench_accuracy(server, app, Path(tmp), args.accuracy_jobs, concurrency, args.work,
                                        args.sample_interval)
                table(f"PendingJobs vs ground truth (enqueued - processed), concurrency {concurrency}, queue depth "
                      f"{args.accuracy_jobs} at the start, {args.work:g} s simulated work a job, samples from the "
                      f"worker's first fetch to drained, the worker paused (SIGSTOP) for each",
                      ["reading", "samples", "exact", "max |error|", "error: samples"],
                      [error_row("PendingJobs (LLEN + HLEN unacked, MULTI/EXEC)", result["pending"]),
                       error_row("LLEN alone (same samples)", result["llen"]),
                       error_row("PendingJobs, quiescent (before start, drained)", result["quiescent"])])
                print(f"  samples with jobs in the unacked hash: {result['holding']}; PendingJobs' error, job by "
                      f"job: +{result['logged not acked']} logged but not yet acknowledged, -{result['in transit']} "
                      f"popped by BRPOP but not yet in the hash; readings that moved during the pause: "
                      f"{result['moved']}; a sample every {args.sample_interval * 1000:g} ms on average, median pause "
                      f"{result['pause ms']:.1f} ms")
                assert all(error == 0 for error in result["quiescent"]), result["quiescent"]
            started = time.monotonic()
            rows = [bench_kill(server, app, Path(tmp), args.kill_jobs, args.kill_work, visibility, restore)
                    for visibility, restore in kill_settings]
            elapsed = time.monotonic() - started
            longest, visibility, restore = role_defaults()
            rows.append([f"{visibility} (role)", f"{restore} (role)", f"<= {longest}", "-", "-", "-",
                         "tests/emulator/test_redis_delivery.py", "-", f"{visibility + restore} + job", "-", "-", "-"])
            table(f"Recovery after SIGKILL mid-burst: 2 workers (celery_worker.py, concurrency 2 each, prefetch 1 a "
                  f"process, acks late) on one queue, a burst onto an empty queue (queue depth = jobs), the first "
                  f"worker's process group (main and pool) killed once it has done a tenth of the burst; recovery: "
                  f"kill to the survivor's message_processed ts of the last job the killed worker held; "
                  f"machine: {machine()}",
                  ["visibility timeout s", "restore interval s", "job s", "jobs", "queue depth at kill", "stranded",
                   "recovery s", "held before kill s", "visibility + restore + job s", "processed", "lost",
                   "duplicates"], rows)
            print(f"  a stranded job is restored by the first sweep after its worker's last lease renewal + the "
                  f"visibility timeout (a live worker renews every sixth of it, so jobs up to {longest} s run "
                  f"once), at the head of the queue, then run: recovery <= visibility timeout + restore interval + "
                  f"job. The role's {visibility} s and {restore} s: the jobs of a worker lost mid-job run again "
                  f"within {visibility + restore} s + the job's time. (Measured rows: {elapsed:.0f} s, workers' "
                  f"start included.)")
            print(f"\nload average at the end: {load()} (other work on the machine shows in the spread)")
        finally:
            server.stop()
    return 0


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.1f} {five:.1f} {fifteen:.1f}"


def celery_version() -> str:
    import celery

    return str(celery.__version__)


if __name__ == "__main__":
    sys.exit(main())
