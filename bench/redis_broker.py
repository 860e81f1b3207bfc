"""The Redis broker path on a real Redis server (Valkey from sqs_fleet.lab.redis_server, AUTH on): the producer's
enqueue rate, pipelined and one job a round trip, with and without a replica; jobs/s of files/celery_worker.py
against a bare Celery task; enqueue-to-processed latency beside the SQS consumer's; and PendingJobs
(files/redis_backlog.py) against ground truth while workers prefetch.

    python -m bench.redis_broker [--enqueue-jobs 2000] [--burst-jobs 1500] [--accuracy-jobs 300]
                                 [--kill-jobs 200] [--kill-work 0.1] [--latency-rate 100] [--smoke]

Enqueue: celery_worker.enqueue (one chunk of `chunk` jobs a round trip, all or nothing) at several chunk sizes,
and Celery's app.send_task once per job; round trips are counted on the client's socket writes, on loopback and
with a modelled round trip added to each.
Processing: celery_worker.py and bench/bare_celery_task.py (one printed line a job, the same broker settings)
started as the lab starts them (broker URL without the token, REDIS_AUTH_TOKEN in the environment), warmed up,
each on its own queue; a run pauses a worker (SIGSTOP), enqueues the burst, resumes it and times its resumption
to its queue and `unacked` empty with every job's line logged, and the CPU time of its process group meanwhile.
Runs alternate between the two workers, the idle one paused. The same on the lab's primary + replica, with and
without --replicas 1.
Latency: one job at a time at a steady rate onto an empty queue, from before the producer's round trip to the
job's message_processed line; the SQS consumer (files/consumer.py) the same way on a private emulator.
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
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import redis
from redis.connection import AbstractConnection

from bench.common import machine, smoke_option, table
from bench.redis_broker_jobs import DLQ, QUEUE, Job, jobs
from bench.redis_faults import (
    bench_accuracy,
    bench_kill,
    bench_replicas,
    bench_worker_replicas,
    error_row,
    role_defaults,
)
from bench.redis_procs import (
    Lines,
    bench_processing,
    processing_rows,
    running_worker,
    wait_drained,
)
from sqs_fleet.lab.redis_server import RedisServer, free_port, start_redis
from sqs_fleet_workers import celery_worker


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


def percentiles(values: Sequence[float]) -> str:
    ordered = sorted(values)
    p99 = ordered[max(0, -(-len(ordered) * 99 // 100) - 1)]  # nearest rank
    return f"{statistics.median(ordered):.1f} / {p99:.1f} / {ordered[-1]:.1f}"


def bench_latency(server: RedisServer, app: Any, tmp: Path, rate: float, count: int) -> list[float]:
    """Milliseconds from a job's enqueue (before its round trip) to its message_processed line, one job at a
    time at `rate` jobs/s into an empty queue, celery_worker.py at concurrency 1 waiting (BRPOP)."""
    client = redis.Redis.from_url(server.url_with_password)
    client.flushdb()
    producer = redis.Redis.from_url(server.url_with_password)
    producer.ping()
    chunks = [celery_worker.build_chunk(app, [job]) for job in jobs(count, "latency")]  # built before: not timed
    sent: dict[str, float] = {}
    with running_worker(server, tmp / "latency.log", 1) as worker:
        celery_worker.enqueue(app, jobs(2, "latency-warm-up"))
        worker.log.wait_for(2, 120)
        wait_drained(client, 30)
        start = time.time() + 0.1
        for n, chunk in enumerate(chunks):
            delay = start + n / rate - time.time()
            if delay > 0:
                time.sleep(delay)
            at = time.time()
            celery_worker.publish_chunk(producer, chunk)
            sent[json.loads(chunk.messages[0])["headers"]["id"]] = at
        worker.log.wait_for(2 + count, 60)
    client.flushdb()
    return [(worker.log.processed[task] - at) * 1000 for task, at in sent.items()]


def bench_sqs_latency(tmp: Path, rate: float, count: int, wait_time: int) -> list[float]:
    """The SQS path on the emulator: milliseconds from SendMessage (before its request) to consumer.py's
    message_processed line, one message at a time at `rate`, the consumer long-polling (--wait-time) with no
    pause between polls (--poll-interval 0)."""
    import threading

    from bench.common import private_emulator
    from sqs_fleet_workers import consumer
    from sqs_fleet_workers.sqs_calls import sqs_client
    from sqs_fleet_workers.vehicles import IDEMPOTENCY_ATTRIBUTE

    emulator = private_emulator(tmp)
    try:
        client = sqs_client()
        url = client.create_queue(QueueName="latency")["QueueUrl"]
        lines = Lines()
        args = consumer.parse_args(["--queue", url, "--poll-interval", "0", "--wait-time", str(wait_time),
                                    "--max-messages", str(count), "--visibility-timeout", "30"])
        worker = consumer.Consumer(sqs_client(), url, args, consumer.Log(lines), consumer.SeenKeys(count, None))
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        time.sleep(1)  # the consumer's first long poll under way
        sent: dict[str, float] = {}
        start = time.time()
        for n, (vehicle, key) in enumerate(jobs(count, "sqs-latency")):
            delay = start + n / rate - time.time()
            if delay > 0:
                time.sleep(delay)
            at = time.time()
            client.send_message(QueueUrl=url, MessageBody=json.dumps(vehicle, separators=(",", ":")),
                                MessageAttributes={IDEMPOTENCY_ATTRIBUTE: {"DataType": "String", "StringValue": key}})
            sent[key] = at
        thread.join(60 + wait_time)
        if thread.is_alive():
            worker.stop.set()
            raise RuntimeError(f"consumer.py processed {len(lines.processed)} of {count} messages")
    finally:
        emulator.stop()
    return [(lines.processed[key] - at) * 1000 for key, at in sent.items()]


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
    parser.add_argument("--latency-rate", type=float, default=100, help="jobs/s of the latency run")
    parser.add_argument("--latency-jobs", type=int, default=1000, help="jobs of the latency run")
    parser.add_argument("--sqs-latency-rate", type=float, default=2, help="messages/s of the SQS latency run")
    parser.add_argument("--sqs-latency-jobs", type=int, default=30, help="messages of the SQS latency run")
    smoke_option(parser)
    args = parser.parse_args(argv)
    # (visibility timeout, restore interval): the recovery's terms one at a time, the role's restore interval last.
    kill_settings = [(5, 1), (10, 1), (20, 1), (10, role_defaults()[2])]
    if args.smoke:
        args.enqueue_jobs, args.burst_jobs, args.accuracy_jobs, args.runs = 200, 50, 20, 1
        args.kill_jobs, kill_settings = 40, [(3, 1)]
        args.latency_jobs, args.sqs_latency_jobs = 50, 3
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
            rows = []
            for concurrency in (1, 2):
                load_before = load()
                rates = bench_processing(server, app, Path(tmp), args.burst_jobs, args.runs, concurrency)
                rows += [[*row, f"{load_before} / {load()}"] for row in processing_rows(concurrency, args.burst_jobs,
                                                                                          rates)]
            table(f"Processing alone: {args.burst_jobs} jobs enqueued while the worker is paused (SIGSTOP), timed from "
                  f"its resumption to its queue and `unacked` empty and every job's line logged; "
                  f"celery_worker.py (validation, delivery counter, execution lease, done record, one JSON line) "
                  f"against a bare Celery task (one printed line), same broker and settings (prefork, acks late, "
                  f"prefetch 1 a process, reject on worker lost, visibility 30 s, restore sweep 5 s), runs "
                  f"alternating, the other worker paused; no simulated work; {version}; machine: {machine()}",
                  ["worker", "concurrency", "jobs", "runs", "jobs/s (median)", "jobs/s min-max",
                   "jobs/s per process", "jobs/s of the bare task's (median, run pairs min-max)",
                   "CPU ms a job", "speed by CPU: bare's CPU ms / ours", "load average before / after"], rows)
            rows = bench_worker_replicas(Path(tmp), args.burst_jobs, args.runs)
            table(f"Processing alone on a primary with a replica (the lab's failover pair: both behind a TCP proxy "
                  f"in Python, on loopback), concurrency 1, {args.burst_jobs} jobs, measured as above, median of "
                  f"{args.runs}: celery_worker.py acknowledging on the primary's word or once the replica holds the "
                  f"done record (WAIT 1, timeout {celery_worker.REPLICA_TIMEOUT_MS} ms)",
                  ["worker", "concurrency", "jobs", "runs", "jobs/s (median)", "jobs/s min-max",
                   "jobs/s per process", "jobs/s of the bare task's (median, run pairs min-max)",
                   "CPU ms a job", "speed by CPU: bare's CPU ms / ours"], rows)
            load_before = load()
            latencies = bench_latency(server, app, Path(tmp), args.latency_rate, args.latency_jobs)
            rows = [[f"Redis: celery_worker.py -c 1, jobs at {args.latency_rate:g}/s", len(latencies),
                     percentiles(latencies), f"{load_before} / {load()}"]]
            load_before = load()
            sqs = bench_sqs_latency(Path(tmp), args.sqs_latency_rate, args.sqs_latency_jobs, 20)
            rows.append([f"SQS (moto): consumer.py --poll-interval 0 --wait-time 20, messages at "
                         f"{args.sqs_latency_rate:g}/s", len(sqs), percentiles(sqs), f"{load_before} / {load()}"])
            table("Latency: enqueue (before the producer's request) to the message_processed line, one job at a "
                  "time at a steady rate onto an empty queue, no simulated work (Redis: the line's `ts`, "
                  "millisecond resolution; SQS: the time the line was written)",
                  ["path", "jobs", "ms p50 / p99 / max", "load average before / after"], rows)
            print("  consumer.py's defaults (--poll-interval 60 --wait-time 20): a message sent while the consumer "
                  "waits between polls is received at its next poll: up to 60 s + its work, by design")
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
