#!/usr/bin/env python3
"""Process vehicle jobs from a Redis broker with Celery: validate each job with the schema of the SQS consumer
and log it as the same JSON line (event message_processed) on stdout.

Examples:
  celery_worker.py --queue sqs-fleet-prod-vehicles --endpoint-parameter /sqs-fleet/prod/broker/endpoint \\
      --auth-parameter /sqs-fleet/prod/broker/auth-token                      # on AWS: TLS, token from SSM
  celery_worker.py --queue jobs --broker-url redis://127.0.0.1:6390/0 --auth-parameter /lab/token
  REDIS_AUTH_TOKEN=... celery_worker.py --queue jobs --broker-url redis://127.0.0.1:6390/0 --concurrency 2

Delivery: at least once, and a job already done is recognised. Each job is acknowledged after it ran (acks
late); a job whose pool process died is put back at once (reject on worker lost); a worker prefetches one job
per process. A held job carries a lease: its entry in kombu's unacked index is renewed by its worker every
--visibility-timeout / 6 seconds, so a job of any length is never handed to a second worker while its worker
lives, and a job held by a worker that vanished (SIGKILL, lost instance, a failover that dropped its prefetch)
goes back to the queue within --visibility-timeout + --restore-interval seconds (35 s by default), found by the
restore sweep of any live worker. A job runs under an execution lease (job_leases.py): a job given back while
its first run goes on (a failover) waits for that run. Before acknowledging, the worker records the job as done
(its idempotency key, kept --done-ttl seconds) and, with --replicas N, waits until N replicas hold the record: a
redelivered job whose record exists is logged as message_duplicate and not run again.
Poison jobs: an invalid job, a job that failed --max-deliveries times (a crash of its worker included) goes
to the dead-letter list at once, with the reason, and is never retried again.
On SIGTERM to the main process (systemd's KillMode=mixed) the worker stops taking jobs, finishes the running
ones and returns its prefetched ones to the queue.
Only celery and redis-py beside the standard library (and boto3 to read the token from SSM); Python 3.9+.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import socket
import sys
import threading
import time
import urllib.parse
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

# Its modules: the package's when imported as sqs_fleet_workers.celery_worker (the controller), top-level modules
# beside it when run as a script (a node's install directory, the Lambda's zip). mypy reads the package form.
# Why this way: docs/workers.md.
if TYPE_CHECKING or __package__:
    from .job_leases import RENEWALS, JobLeases, renew_leases
    from .vehicles import validation_errors
    from .worker_common import aws_client, fail, log
else:
    from job_leases import RENEWALS, JobLeases, renew_leases
    from vehicles import validation_errors
    from worker_common import aws_client, fail, log

TASK_NAME = "vehicles.process"
MAX_DELIVERIES = 5  # as the SQS queue's maxReceiveCount
VISIBILITY_TIMEOUT = 30  # seconds a held job outlives its worker's last lease renewal
DONE_TTL = 24 * 3600  # seconds a done record is kept: redeliveries come within minutes of the first run
# WAIT's timeout for a replica. Measured on loopback (bench/redis_broker.py, a 500-job chunk of 0.5 MB):
# replica acknowledgement in under 5 ms at p99; 500 ms leaves room for a cross-AZ link and a busy replica.
REPLICA_TIMEOUT_MS = 500
PUBLISHED_TTL = 24 * 3600  # seconds a chunk's publication marker is kept (a producer's retries take seconds)
# One chunk, all or nothing (a script runs atomically, and reaches replicas as one MULTI/EXEC), once: the chunk's
# marker is set with its jobs, and a retry finding it only renews it. Either way the call writes, so a WAIT on
# the same connection covers the chunk even when the retry runs on a new connection.
PUBLISH_SCRIPT = """
if redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[1]) then
  for first = 2, #ARGV, 100 do
    redis.call('LPUSH', KEYS[1], unpack(ARGV, first, math.min(first + 99, #ARGV)))
  end
  return 1
end
redis.call('EXPIRE', KEYS[2], ARGV[1])
return 0
"""


def notify_systemd(state: str) -> None:
    """sd_notify without libsystemd: one datagram to $NOTIFY_SOCKET (set by systemd for Type=notify)."""
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]  # an abstract socket
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.connect(address)
        sock.sendall(state.encode())


def ssm_parameter(name: str, region: str | None) -> str:
    # A client only where a parameter is read: the lab may give the token in the environment.
    client = aws_client("ssm", region=region)
    return str(client.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"])


def broker_url(url: str | None, endpoint: str | None, token: str | None) -> str:
    """The Celery broker URL with the AUTH token. Without a URL, the ElastiCache endpoint host:port over TLS
    (rediss://, certificates verified); a given URL (the lab's plain loopback or bridge address) is kept."""
    if not url:
        if not endpoint:
            raise ValueError("no broker: give --broker-url or --endpoint-parameter")
        url = f"rediss://{endpoint}/0?ssl_cert_reqs=required"
    if not token:
        return url
    parts = urllib.parse.urlsplit(url)
    netloc = f":{urllib.parse.quote(token, safe='')}@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def ledger_client(url: str, single_connection: bool = False) -> Any:
    """A redis-py client that rides out a failover: a command cut by a lost connection, or refused by a primary
    demoted to replica, is sent again on a new connection (the endpoint's name then reaches the new primary)."""
    import redis
    from redis.backoff import ExponentialBackoff
    from redis.retry import Retry

    return redis.Redis.from_url(
        url, socket_timeout=10, socket_connect_timeout=5, retry=Retry(ExponentialBackoff(cap=2.0, base=0.1), 20),
        retry_on_error=[redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
                        redis.exceptions.ReadOnlyError], single_connection_client=single_connection)


def make_app(url: str, queue: str, dead_letter_list: str, visibility_timeout: int = VISIBILITY_TIMEOUT,
             restore_interval: int = 5, max_deliveries: int = MAX_DELIVERIES, simulate_work: float = 0.0,
             replicas: int = 0, replica_timeout_ms: int = REPLICA_TIMEOUT_MS, done_ttl: int = DONE_TTL) -> Any:
    """The Celery application of the vehicle job: the broker's settings and the task. The producer makes the
    same application to build the jobs it enqueues (celery_worker.enqueue)."""
    from celery import Celery
    from celery.exceptions import Reject
    from celery.signals import worker_ready, worker_shutdown
    from redis.exceptions import RedisError

    app = Celery("vehicles", broker=url)
    app.conf.update(
        task_default_queue=queue,
        task_serializer="json", accept_content=["json"], result_backend=None, task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        # The JSON lines go to stdout as they are (the agent ships that file), not through Celery's logger.
        worker_redirect_stdouts=False,
        broker_transport_options={
            # How long a held job outlives its worker's last lease renewal (renew_leases): not the longest
            # job, which may run for as long as its worker renews.
            "visibility_timeout": visibility_timeout,
            # The restore sweep of jobs left by a dead worker every interval (kombu's default: 10 x 10 s).
            "unacked_restore_interval": restore_interval,
            "unacked_restore_throttle": 1,
            # The sweep's lock, should its holder die mid-sweep (kombu's default: 300 s without a sweep).
            "unacked_mutex_expire": max(visibility_timeout, 2 * restore_interval),
        },
    )
    ledger = ledger_client(url)
    # Each pool process its own client of one connection: without --replicas a job's two script calls check
    # none out of a pool (with it, each goes with its WAIT as a pipeline on a pooled connection).
    leases = JobLeases(lambda: ledger_client(url, single_connection=True), queue, visibility_timeout, replicas,
                       replica_timeout_ms, done_ttl, log)
    stop_leases = threading.Event()

    @worker_ready.connect(weak=False)  # type: ignore[untyped-decorator]
    def ready(**_: Any) -> None:
        # In the main process, which holds the jobs: a client of its own, apart from kombu's connection.
        threading.Thread(target=renew_leases, args=(ledger_client(url), visibility_timeout / RENEWALS,
                                                    stop_leases), name="leases", daemon=True).start()
        log("worker_ready", queue=queue)  # connected and consuming: what a start-up is measured to
        notify_systemd("READY=1")  # Type=notify: the unit is active once consuming, not once started

    @worker_shutdown.connect(weak=False)  # type: ignore[untyped-decorator]
    def shutdown(**_: Any) -> None:
        stop_leases.set()

    def dead_letter(request: Any, vehicle: Any, key: str | None, reason: str) -> None:
        ledger.rpush(dead_letter_list, json.dumps({
            "job_id": request.id, "idempotency_key": key, "reason": reason, "vehicle": vehicle,
            "at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}))

    @app.task(name=TASK_NAME, bind=True)  # type: ignore[untyped-decorator]
    def process(self: Any, vehicle: Any, idempotency_key: str | None = None) -> None:
        try:
            run(self.request, vehicle, idempotency_key)
        except RedisError as error:  # out of reach past every retry: give the job back, never acknowledge it
            log("message_requeued", level="error", reason=str(error), message_id=self.request.id,
                idempotency_key=idempotency_key)
            raise Reject(str(error), requeue=True) from error

    def run(request: Any, vehicle: Any, idempotency_key: str | None) -> None:
        with leases.hold(request.id, idempotency_key or request.id) as hold:
            context = {"message_id": request.id, "receive_count": hold.deliveries, "idempotency_key": idempotency_key}
            if hold.state == "held":
                # Given back by a failover while its first worker runs it: wait for that run's end.
                log("message_running_elsewhere", level="warning", holder=hold.holder, **context)
                leases.wait_turn(hold)
            if hold.state == "done":
                # Run before, its acknowledgement lost (a failover) or its lease run out: at least once, not twice.
                log("message_duplicate", level="warning", **context)
                ledger.delete(hold.deliveries_key)
                return
            errors = validation_errors(vehicle) if hold.deliveries <= max_deliveries else []
            reason = "; ".join(errors) if errors else f"delivered {hold.deliveries} times without success"
            if errors or hold.deliveries > max_deliveries:
                # Poison: never retried; the dead-letter list keeps it for a person to look at, and its done
                # record makes a later delivery a duplicate.
                dead_letter(request, vehicle, idempotency_key, reason)
                log("message_invalid" if errors else "message_dead_lettered", level="error", reason=reason,
                    dead_letter_list=dead_letter_list, **({"body": json.dumps(vehicle)[:1000]} if errors else {}),
                    **context)
                hold.finish()
                return
            if simulate_work:
                time.sleep(simulate_work)
            if not hold.kept():
                # Another run may have it (this one went a lease time unconfirmed): given back, not acknowledged
                # (its delivery tag is the other run's too), and the lease or the done record decides who runs it.
                log("message_not_processed", level="error", reason="lease lost", **context)
                raise Reject("lease lost", requeue=True)
            log("message_processed", vehicle=vehicle, **context)
            confirmed, kept = hold.finish()
            if not kept:
                log("lease_lost", level="error", reason="the lease lapsed while the job ran: it may run again",
                    **context)
            if confirmed < replicas:
                # Acknowledged all the same: a failover now could run it again (and it would be logged again).
                log("done_unconfirmed", level="warning", replicas=confirmed, wanted=replicas, **context)

    return app


class NotConfirmed(Exception):
    """A chunk the primary holds but fewer replicas than asked for acknowledged within the timeout."""

    def __init__(self, replicas: int, wanted: int, timeout_ms: int) -> None:
        super().__init__(f"{replicas} of {wanted} replica(s) acknowledged within {timeout_ms} ms: on the primary "
                         "only, where it may run, or be lost on a failover")
        self.replicas = replicas


@dataclass
class Chunk:
    """Jobs as the Celery task messages kombu would push (built once, so a retry sends the same task ids), with
    the marker that makes their publication happen once."""

    queue: str  # the Redis list
    messages: list[str]
    marker: str


def build_chunk(app: Any, jobs: Sequence[tuple[Any, str]]) -> Chunk:
    """(vehicle, idempotency key) jobs as Celery task messages, built by Celery and kombu as for a publish, and
    kept instead of pushed: kombu's batched publish is a non-transactional pipeline, which a cut connection can
    leave half applied. The queue is named directly (the anonymous exchange): no binding to look up."""
    task = app.signature(TASK_NAME)
    queue = app.conf.task_default_queue
    pushed: list[tuple[str, str]] = []
    from kombu.utils.json import dumps

    with app.producer_or_acquire() as producer:
        channel = producer.channel
        original = channel._put

        def keep(name: str, message: Any, **_: Any) -> None:  # kombu's Redis _put, less the LPUSH
            pushed.append((channel._q_for_pri(name, channel._get_message_priority(message, reverse=False)),
                           dumps(message)))

        channel._put = keep
        try:
            for vehicle, key in jobs:
                task.clone(args=(vehicle,), kwargs={"idempotency_key": key}).apply_async(
                    producer=producer, exchange="", routing_key=queue, retry=False)
        finally:
            channel._put = original
    if {name for name, _ in pushed} != {queue}:
        raise RuntimeError(f"jobs routed to {sorted({name for name, _ in pushed})}, not to the list {queue}")
    return Chunk(queue, [message for _, message in pushed], f"{queue}:published:{uuid.uuid4()}")


def publish_chunk(client: Any, chunk: Chunk, replicas: int = 0, replica_timeout_ms: int = REPLICA_TIMEOUT_MS,
                  ttl: int = PUBLISHED_TTL) -> bool:
    """Push a chunk all or nothing, once however often it is called, then (with replicas) WAIT on the same
    connection, in the same round trip. Returns whether this call pushed it (False: an earlier one had);
    raises NotConfirmed when fewer than `replicas` replicas hold it, and redis-py's errors when the outcome is
    unknown (call again: nothing is pushed twice)."""
    pipeline = client.pipeline(transaction=False)
    pipeline.eval(PUBLISH_SCRIPT, 2, chunk.queue, chunk.marker, ttl, *chunk.messages)
    if replicas:
        pipeline.execute_command("WAIT", replicas, replica_timeout_ms)
    results = pipeline.execute()
    if replicas and int(results[1]) < replicas:
        raise NotConfirmed(int(results[1]), replicas, replica_timeout_ms)
    return bool(results[0])


def enqueue(app: Any, jobs: Sequence[tuple[Any, str]], chunk: int = 500, replicas: int = 0,
            replica_timeout_ms: int = REPLICA_TIMEOUT_MS) -> int:
    """Send (vehicle, idempotency key) jobs `chunk` at a time, each chunk one round trip, all or nothing, and
    with replicas confirmed by WAIT (NotConfirmed otherwise). Returns how many were sent."""
    import redis

    client = redis.Redis.from_url(app.conf.broker_url)
    sent = 0
    try:
        for start in range(0, len(jobs), chunk):
            part = build_chunk(app, jobs[start:start + chunk])
            publish_chunk(client, part, replicas, replica_timeout_ms)
            sent += len(part.messages)
    finally:
        client.close()
    return sent


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="celery_worker.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queue", default=os.environ.get("CELERY_QUEUE"), help="Celery queue (a Redis list)")
    parser.add_argument("--dead-letter-list", default=os.environ.get("CELERY_DEAD_LETTER_LIST"),
                        help="Redis list of poison jobs (default: QUEUE-dlq)")
    parser.add_argument("--broker-url", default=os.environ.get("WORKER_BROKER_URL"),
                        help="redis:// or rediss:// URL without the token (the lab's); else --endpoint-parameter")
    parser.add_argument("--endpoint-parameter", default=os.environ.get("BROKER_ENDPOINT_PARAMETER"),
                        help="SSM parameter with the broker's host:port (TLS is used)")
    parser.add_argument("--auth-parameter", default=os.environ.get("BROKER_AUTH_PARAMETER"),
                        help="SSM SecureString with the AUTH token (else $REDIS_AUTH_TOKEN)")
    parser.add_argument("--region", default=os.environ.get("AWS_REGION"))
    parser.add_argument("--concurrency", type=int, default=1, help="pool processes (default 1)")
    parser.add_argument("--pool", default="prefork", choices=["prefork", "solo", "threads"])
    parser.add_argument("--visibility-timeout", type=int, default=VISIBILITY_TIMEOUT, metavar="SECONDS",
                        help="how long the jobs of a vanished worker stay held; its leases are renewed every "
                             f"sixth of it (default {VISIBILITY_TIMEOUT})")
    parser.add_argument("--restore-interval", type=int, default=5, metavar="SECONDS",
                        help="how often a worker looks for jobs left by dead workers (default 5)")
    parser.add_argument("--max-deliveries", type=int, default=MAX_DELIVERIES)
    parser.add_argument("--replicas", type=int, default=0, metavar="N",
                        help="wait until N replicas hold a job's done record before acknowledging it (default 0)")
    parser.add_argument("--replica-timeout", type=int, default=REPLICA_TIMEOUT_MS, metavar="MS",
                        help=f"how long to wait for them (default {REPLICA_TIMEOUT_MS})")
    parser.add_argument("--done-ttl", type=int, default=DONE_TTL, metavar="SECONDS",
                        help=f"how long a done record is kept (default {DONE_TTL})")
    parser.add_argument("--simulate-work", type=float, default=0.0, metavar="SECONDS")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if min(args.visibility_timeout, args.restore_interval, args.done_ttl, args.replica_timeout) < 1 or \
            args.replicas < 0:
        parser.error("--visibility-timeout, --restore-interval, --done-ttl and --replica-timeout must be 1 or "
                     "more, --replicas 0 or more")
    if not args.queue:
        return fail("no queue: pass --queue or set CELERY_QUEUE")
    try:
        token = os.environ.get("REDIS_AUTH_TOKEN")
        if args.auth_parameter and not token:
            token = ssm_parameter(args.auth_parameter, args.region)
        endpoint = ssm_parameter(args.endpoint_parameter, args.region) if args.endpoint_parameter and \
            not args.broker_url else None
        url = broker_url(args.broker_url, endpoint, token)
    except Exception as error:  # no parameter, no credentials: nothing a restart loop of ours fixes
        return fail(f"cannot find the broker: {error}")
    # Celery prefers these to the app's broker, the URL with the token: one left in the environment would
    # connect without AUTH (BROKER_URL is its command line's --broker).
    for name in ("CELERY_BROKER_URL", "CELERY_BROKER_READ_URL", "CELERY_BROKER_WRITE_URL", "BROKER_URL"):
        os.environ.pop(name, None)
    app = make_app(url, args.queue, args.dead_letter_list or f"{args.queue}-dlq", args.visibility_timeout,
                   args.restore_interval, args.max_deliveries, args.simulate_work, args.replicas,
                   args.replica_timeout, args.done_ttl)
    log("consumer_started", queue=args.queue, broker=urllib.parse.urlsplit(url).hostname,
        tls=url.startswith("rediss://"), concurrency=args.concurrency, visibility_timeout=args.visibility_timeout,
        replicas=args.replicas)
    app.worker_main(["worker", "-Q", args.queue, "-c", str(args.concurrency), "--pool", args.pool,
                     "-n", f"vehicles-{os.getpid()}@{socket.gethostname()}", "--loglevel", "WARNING",
                     "--without-gossip", "--without-mingle", "--without-heartbeat"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
