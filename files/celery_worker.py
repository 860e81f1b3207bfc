#!/usr/bin/env python3
"""Process vehicle jobs from a Redis broker with Celery: validate each job with the schema of the SQS consumer
and log it as the same JSON line (event message_processed) on stdout.

Examples:
  celery_worker.py --queue sqs-fleet-prod-vehicles --endpoint-parameter /sqs-fleet/prod/broker/endpoint \\
      --auth-parameter /sqs-fleet/prod/broker/auth-token                      # on AWS: TLS, token from SSM
  celery_worker.py --queue jobs --broker-url redis://127.0.0.1:6390/0 --auth-parameter /lab/token
  REDIS_AUTH_TOKEN=... celery_worker.py --queue jobs --broker-url redis://127.0.0.1:6390/0 --concurrency 2

Delivery: at least once. Each job is acknowledged after it ran (acks late); a job whose pool process died is
put back at once (reject on worker lost); a worker prefetches one job per process; a job held by a worker
that vanished (SIGKILL, lost instance) goes back to the queue once the visibility timeout has passed, found by
the restore sweep of any live worker every --restore-interval seconds. Jobs must therefore be idempotent: the
log line carries the job's idempotency key.
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
import time
import urllib.parse
from collections.abc import Sequence
from typing import Any

from vehicles import fail, validation_errors

TASK_NAME = "vehicles.process"
MAX_DELIVERIES = 5  # as the SQS queue's maxReceiveCount
DELIVERY_KEY_TTL = 7 * 24 * 3600


def log(event: str, level: str = "info", **fields: Any) -> None:
    """One JSON object per line on stdout, the SQS consumer's keys.

    The pool's processes share stdout: each line goes out in one write (print would write the newline apart
    when stdout is unbuffered, and two processes' lines could run together).
    """
    line = json.dumps({"ts": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds"),
                       "level": level, "event": event, **fields}, default=str)
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


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
    import boto3  # only where a parameter is read: the lab may give the token in the environment

    # Named here: boto3 before 1.28 (Debian 12's 1.26) ignores AWS_ENDPOINT_URL, which points nodes at an emulator.
    endpoint = os.environ.get("AWS_ENDPOINT_URL_SSM") or os.environ.get("AWS_ENDPOINT_URL") or None
    client = boto3.client("ssm", region_name=region, endpoint_url=endpoint)
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


def make_app(url: str, queue: str, dead_letter_list: str, visibility_timeout: int = 900,
             restore_interval: int = 5, max_deliveries: int = MAX_DELIVERIES, simulate_work: float = 0.0) -> Any:
    """The Celery application of the vehicle job: the broker's settings and the task. The producer makes the
    same application to enqueue (celery_worker.enqueue)."""
    import redis
    from celery import Celery
    from celery.signals import worker_ready

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
            # Above the longest job: a job still running is never handed to a second worker.
            "visibility_timeout": visibility_timeout,
            # The restore sweep of jobs left by a dead worker every interval (kombu's default: 10 x 10 s).
            "unacked_restore_interval": restore_interval,
            "unacked_restore_throttle": 1,
        },
    )
    ledger = redis.Redis.from_url(url)

    @worker_ready.connect(weak=False)  # type: ignore[untyped-decorator]
    def ready(**_: Any) -> None:
        log("worker_ready", queue=queue)  # connected and consuming: what a start-up is measured to
        notify_systemd("READY=1")  # Type=notify: the unit is active once consuming, not once started

    def dead_letter(request: Any, vehicle: Any, key: str | None, reason: str) -> None:
        ledger.rpush(dead_letter_list, json.dumps({
            "job_id": request.id, "idempotency_key": key, "reason": reason, "vehicle": vehicle,
            "at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}))

    @app.task(name=TASK_NAME, bind=True)  # type: ignore[untyped-decorator]
    def process(self: Any, vehicle: Any, idempotency_key: str | None = None) -> None:
        deliveries_key = f"{queue}:deliveries:{self.request.id}"
        deliveries = int(ledger.incr(deliveries_key))
        ledger.expire(deliveries_key, DELIVERY_KEY_TTL)
        context = {"message_id": self.request.id, "receive_count": deliveries, "idempotency_key": idempotency_key}
        if deliveries > max_deliveries:
            reason = f"delivered {deliveries} times without success"
            dead_letter(self.request, vehicle, idempotency_key, reason)
            log("message_dead_lettered", level="error", reason=reason, dead_letter_list=dead_letter_list, **context)
            return
        errors = validation_errors(vehicle)
        if errors:
            # Poison: never retried; the dead-letter list keeps it for a person to look at.
            dead_letter(self.request, vehicle, idempotency_key, "; ".join(errors))
            log("message_invalid", level="error", reason="; ".join(errors), body=json.dumps(vehicle)[:1000],
                dead_letter_list=dead_letter_list, **context)
            return
        if simulate_work:
            time.sleep(simulate_work)
        log("message_processed", vehicle=vehicle, **context)
        ledger.delete(deliveries_key)

    return app


def enqueue(app: Any, jobs: Sequence[tuple[Any, str]], chunk: int = 500, replicas: int = 0,
            replica_timeout_ms: int = 100) -> int:
    """Send (vehicle, idempotency key) jobs as Celery task messages through kombu's publish batch: `chunk`
    LPUSHes to one Redis pipeline, one round trip each. With replicas, WAIT until that many replicas hold each
    chunk (Redis replication is asynchronous: a failover may drop the last writes otherwise). Returns how many
    were sent."""
    sent = 0
    task = app.signature(TASK_NAME)
    with app.producer_or_acquire() as producer:
        for start in range(0, len(jobs), chunk):
            part = jobs[start:start + chunk]
            with producer.batch(max_size=chunk):
                for vehicle, key in part:
                    task.clone(args=(vehicle,), kwargs={"idempotency_key": key}).apply_async(
                        producer=producer, retry=False)
            if replicas:
                with producer.connection.default_channel.conn_or_acquire() as client:
                    client.execute_command("WAIT", replicas, replica_timeout_ms)
            sent += len(part)
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
    parser.add_argument("--visibility-timeout", type=int, default=900, metavar="SECONDS",
                        help="above the longest job (default 900)")
    parser.add_argument("--restore-interval", type=int, default=5, metavar="SECONDS",
                        help="how often a worker looks for jobs left by dead workers (default 5)")
    parser.add_argument("--max-deliveries", type=int, default=MAX_DELIVERIES)
    parser.add_argument("--simulate-work", type=float, default=0.0, metavar="SECONDS")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
                   args.restore_interval, args.max_deliveries, args.simulate_work)
    log("consumer_started", queue=args.queue, broker=urllib.parse.urlsplit(url).hostname,
        tls=url.startswith("rediss://"), concurrency=args.concurrency, visibility_timeout=args.visibility_timeout)
    app.worker_main(["worker", "-Q", args.queue, "-c", str(args.concurrency), "--pool", args.pool,
                     "-n", f"vehicles-{os.getpid()}@{socket.gethostname()}", "--loglevel", "WARNING",
                     "--without-gossip", "--without-mingle", "--without-heartbeat"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
