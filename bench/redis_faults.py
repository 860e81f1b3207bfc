"""The faults bench.redis_broker measures: PendingJobs against ground truth while workers prefetch, a worker
killed mid-burst, and what waiting for a replica costs the producer and the workers."""

from __future__ import annotations

import json
import os
import random
import signal
import statistics
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import redis

from bench.redis_broker_jobs import DLQ, QUEUE, RESTORE_MUTEX, UNACKED_INDEX, jobs
from bench.redis_procs import (
    Worker,
    bench_processing,
    epoch,
    processed_lines,
    processing_rows,
    running_worker,
    wait_drained,
    warm_up,
)
from sqs_fleet import REPO
from sqs_fleet.lab.redis_server import RedisServer
from sqs_fleet_workers import celery_worker, redis_backlog


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


def bench_worker_replicas(tmp: Path, count: int, runs: int) -> list[list[object]]:
    """Processing alone (bench_processing) on a primary with a replica, celery_worker.py with and without
    --replicas 1 (WAIT for the replica's copy of each done record before acknowledging)."""
    from sqs_fleet.lab.redis_failover import ReplicatedRedis

    rows = []
    with ReplicatedRedis(tmp / "replicated-workers") as group:
        app = celery_worker.make_app(group.url_with_password, QUEUE, DLQ)
        for options in ((), ("--replicas", "1")):
            rates = bench_processing(group, app, tmp, count, runs, 1, options)
            rows += processing_rows(1, count, rates, f", {' '.join(options) or '--replicas 0'}")[:1 if options else 2]
    return rows
