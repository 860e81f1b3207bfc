#!/usr/bin/env python3
"""Send vehicle messages to an SQS queue, or vehicle jobs to a Celery queue on Redis, in batches, with nothing
lost silently.

Examples:
  producer.py --queue sqs-fleet-local-vehicles --count 100 --seed 7
  producer.py --queue https://sqs.eu-west-1.amazonaws.com/123456789012/q --file vehicles.json
  jq -c '.[]' fleet.json | producer.py --queue q --file - --json
  producer.py --broker redis --queue sqs-fleet-prod-vehicles --count 100 \\
      --endpoint-parameter /sqs-fleet/prod/broker/endpoint --auth-parameter /sqs-fleet/prod/broker/auth-token
  REDIS_AUTH_TOKEN=... producer.py --broker redis --broker-url redis://127.0.0.1:6390/0 --queue jobs --count 10

Every record is validated before anything is sent; an invalid one is reported with its position and
nothing is sent (unless --skip-invalid). Entries SQS rejects for a reason of its own (throttling, a
server fault) are retried with backoff; what still could not be sent is listed and the exit status is 1.
Region, profile and endpoint come from the standard AWS environment (AWS_REGION, AWS_PROFILE,
AWS_ENDPOINT_URL); the queue may also come from QUEUE_URL.
With --broker redis each record becomes a Celery task message of files/celery_worker.py, enqueued 500 a
round trip, each chunk all or nothing and once (a script that pushes it with a marker: a retry after an
unknown outcome pushes nothing twice). A chunk is sent when the primary holds it and, with --replicas N, when
N replicas acknowledged it within --replica-timeout (WAIT); otherwise it is retried with backoff, and listed
as not sent (exit 1) when it stays unconfirmed: such a chunk may still be on the primary, and run, or be lost
by a failover. The token comes from REDIS_AUTH_TOKEN or the SSM
SecureString --auth-parameter names; the broker from --broker-url or the SSM parameter --endpoint-parameter
names (host:port, reached over TLS).
Exit status: 0 all sent, 1 some not sent, 2 bad input or configuration.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

# Its modules: the package's when imported as sqs_fleet_workers.producer (the controller), top-level modules
# beside it when run as a script (a node's install directory, the Lambda's zip). mypy reads the package form.
# Why this way: docs/workers.md.
if TYPE_CHECKING or __package__:
    from .sqs_calls import classify, entry_retryable, error_code, queue_argument, queue_url, sqs_client
    from .vehicles import IDEMPOTENCY_ATTRIBUTE, generate, validation_errors
    from .worker_common import fail, log_line
else:
    from sqs_calls import classify, entry_retryable, error_code, queue_argument, queue_url, sqs_client
    from vehicles import IDEMPOTENCY_ATTRIBUTE, generate, validation_errors
    from worker_common import fail, log_line

BATCH_ENTRIES = 10  # SendMessageBatch's limit
BATCH_BYTES = 1024 * 1024  # SendMessageBatch's payload limit (sum of bodies and attributes)
ENTRY_ATTEMPTS = 5  # tries of an entry that failed for a reason that is not the sender's
REDIS_CHUNK = 500  # Celery task messages per Redis pipeline (one round trip)
# A job on Redis is held to the SQS queue's default MaximumMessageSize: the same validation in both modes.
REDIS_MAX_BYTES = 262144


@dataclass
class Entry:
    position: int  # 1-based position in the input, for reports
    body: str
    key: str

    @property
    def size(self) -> int:
        # SQS counts the body and each attribute's name, type and value.
        return len(self.body.encode()) + len(IDEMPOTENCY_ATTRIBUTE) + len("String") + len(self.key)

    def request(self, entry_id: str) -> dict[str, Any]:
        return {
            "Id": entry_id,
            "MessageBody": self.body,
            "MessageAttributes": {IDEMPOTENCY_ATTRIBUTE: {"DataType": "String", "StringValue": self.key}},
        }


@dataclass
class Report:
    sent: int = 0
    requests: int = 0
    not_sent: list[tuple[int, str]] = field(default_factory=list)  # (position, reason)
    skipped: int = 0  # invalid records left out on request (--skip-invalid)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


def read_records(source: IO[str]) -> list[Any]:
    """A JSON array, or JSON lines (one object per line)."""
    text = source.read()
    stripped = text.lstrip()
    if stripped.startswith("["):
        records = json.loads(stripped)
        if not isinstance(records, list):
            raise ValueError("expected a JSON array of vehicles")
        return records
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def batches(entries: Sequence[Entry]) -> Iterator[list[Entry]]:
    """Consecutive groups of at most 10 entries and 1 MiB."""
    batch: list[Entry] = []
    size = 0
    for entry in entries:
        if batch and (len(batch) == BATCH_ENTRIES or size + entry.size > BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(entry)
        size += entry.size
    if batch:
        yield batch


class RateLimiter:
    """At most `rate` messages a second over the whole run (0: unlimited)."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.next_slot = time.monotonic()
        self.lock = threading.Lock()

    def wait(self, messages: int) -> None:
        if not self.interval:
            return
        with self.lock:
            now = time.monotonic()
            start = max(now, self.next_slot)
            self.next_slot = start + messages * self.interval
        time.sleep(max(0.0, start - now))


def log_failure(entry: Entry, code: str, reason: str, attempt: int, retry: bool) -> None:
    """One JSON line on stderr for each entry a send failed for, retried or not."""
    sys.stderr.write(log_line("send_failed", "warning" if retry else "error", position=entry.position,
                              idempotency_key=entry.key, code=code, error=reason, attempt=attempt, retry=retry)
                     + "\n")  # one write per line: whole lines even with --concurrency


def send_batch(client: Any, url: str, batch: list[Entry], report: Report, backoff: float) -> None:
    """Send one batch; retry what failed through no fault of ours; record what could not be sent."""
    pending = {str(index): entry for index, entry in enumerate(batch)}
    for attempt in range(1, ENTRY_ATTEMPTS + 1):
        with report.lock:
            report.requests += 1
        try:
            response = client.send_message_batch(
                QueueUrl=url, Entries=[entry.request(entry_id) for entry_id, entry in pending.items()]
            )
        except Exception as error:  # botocore already retried throttling and 5xx; this is what remains
            sender_fault, reason = classify(error)
            failed = {entry_id: (not sender_fault, error_code(error), reason) for entry_id in pending}
        else:
            with report.lock:
                report.sent += len(response.get("Successful", []))
            failed = {f["Id"]: (entry_retryable(f), f["Code"], f"{f['Code']}: {f.get('Message', '')}")
                      for f in response.get("Failed", [])}
        retry = {}
        for entry_id, (retryable, code, reason) in failed.items():
            again = retryable and attempt < ENTRY_ATTEMPTS
            log_failure(pending[entry_id], code, reason, attempt, again)
            if again:
                retry[entry_id] = pending[entry_id]
            else:
                with report.lock:
                    report.not_sent.append((pending[entry_id].position, reason))
        if not retry:
            return
        pending = retry
        time.sleep(backoff * 2 ** (attempt - 1))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="producer.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--queue", help="queue URL or name (default: $QUEUE_URL), e.g. --queue my-queue")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--count", type=int, metavar="N", help="generate N realistic vehicles, e.g. --count 100")
    source.add_argument("--file", metavar="F", help="JSON array or JSON lines; - reads stdin, e.g. --file cars.json")
    parser.add_argument("--seed", type=int, help="with --count: the same seed gives the same vehicles, e.g. --seed 7")
    parser.add_argument("--skip-invalid", action="store_true", help="send the valid records even if some are invalid")
    parser.add_argument("--concurrency", type=int, default=1, metavar="N",
                        help="batches in flight at once (default 1), e.g. --concurrency 4")
    parser.add_argument("--rate", type=float, default=0, metavar="MSG_PER_S",
                        help="at most this many messages a second (default: unlimited), e.g. --rate 50")
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    parser.add_argument("--retry-backoff", type=float, default=0.2, metavar="SECONDS",
                        help="first backoff before retrying failed entries (doubles each time; default 0.2)")
    redis = parser.add_argument_group("Redis broker (--broker redis)")
    redis.add_argument("--broker", choices=("sqs", "redis"), default=os.environ.get("BROKER") or "sqs",
                       help="where to send: the SQS queue (default, or $BROKER) or a Celery queue on Redis")
    redis.add_argument("--broker-url", help="redis:// or rediss:// URL without the token (a lab broker), "
                                            "e.g. --broker-url redis://127.0.0.1:6390/0")
    redis.add_argument("--endpoint-parameter", help="SSM parameter with the broker's host:port (TLS is used), "
                                                    "e.g. --endpoint-parameter /sqs-fleet/prod/broker/endpoint")
    redis.add_argument("--auth-parameter", help="SSM SecureString with the AUTH token (default: $REDIS_AUTH_TOKEN), "
                                                "e.g. --auth-parameter /sqs-fleet/prod/broker/auth-token")
    redis.add_argument("--region", help="AWS region of the SSM parameters (default: the environment's)")
    redis.add_argument("--replicas", type=int, default=0, metavar="N",
                       help="a chunk counts as sent once N replicas hold it (default 0: the primary's word), e.g. "
                            "--replicas 1 where the broker has a replica")
    redis.add_argument("--replica-timeout", type=int, metavar="MS",
                       help="how long to wait for the replicas on each try (default 500), e.g. --replica-timeout 1000")
    return parser


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.queue = queue_argument(args.queue)
    if args.count is not None and args.count < 0:
        parser.error("--count must be 0 or more")
    if args.concurrency < 1:
        parser.error("--concurrency must be 1 or more")
    if args.replicas < 0:
        parser.error("--replicas must be 0 or more")
    if args.replica_timeout is not None and args.replica_timeout < 1:
        parser.error("--replica-timeout must be 1 ms or more")
    if args.broker == "redis" and not (args.broker_url or args.endpoint_parameter):
        parser.error("--broker redis needs --broker-url or --endpoint-parameter")
    if args.broker_url and "@" in args.broker_url:
        parser.error("--broker-url holds credentials: give the token in REDIS_AUTH_TOKEN or --auth-parameter")
    return args


def load(args: argparse.Namespace) -> list[Any]:
    if args.count is not None:
        return list(generate(args.count, args.seed))
    if args.file == "-":
        return read_records(sys.stdin)
    with open(args.file, encoding="utf-8") as source:
        return read_records(source)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.queue:
        return fail("no queue: pass --queue URL|NAME or set QUEUE_URL")
    try:
        records = load(args)
    except (OSError, ValueError) as error:
        return fail(f"cannot read {args.file}: {error}")
    if args.broker == "redis":
        return produce_to_redis(args, records)

    try:
        client = sqs_client()
        url = queue_url(client, args.queue)
        attributes = client.get_queue_attributes(
            QueueUrl=url, AttributeNames=["MaximumMessageSize", "FifoQueue"])["Attributes"]
        max_size = int(attributes["MaximumMessageSize"])
    except Exception as error:  # no credentials, no such queue, no endpoint: all configuration
        return fail(f"cannot use queue {args.queue}: {error}")
    if attributes.get("FifoQueue") == "true":  # every send would fail for want of a MessageGroupId
        return fail(f"queue {args.queue} is a FIFO queue: this producer sends to standard queues only")
    entries, skipped = checked_entries(records, max_size, args.skip_invalid)
    if entries is None:
        return 2

    report = Report(skipped=skipped)
    limiter = RateLimiter(args.rate)
    progress = Progress(len(entries), enabled=sys.stderr.isatty() and not args.json)
    started = time.monotonic()

    def send(batch: list[Entry]) -> None:
        limiter.wait(len(batch))
        send_batch(client, url, batch, report, args.retry_backoff)
        progress.update(report.sent)

    with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
        list(pool.map(send, batches(entries)))
    progress.close()
    elapsed = time.monotonic() - started
    print_summary(report, len(records), elapsed, args.json)
    return 1 if report.not_sent else 0


def checked_entries(records: Sequence[Any], max_size: int, skip_invalid: bool) -> tuple[list[Entry] | None, int]:
    """The valid records as entries (each with a fresh idempotency key) and how many were left out; None when
    some are invalid and --skip-invalid was not given. Every invalid one is reported with its position."""
    entries: list[Entry] = []
    invalid: list[tuple[int, str]] = []
    for position, record in enumerate(records, start=1):
        errors = validation_errors(record)
        body = json.dumps(record, separators=(",", ":")) if not errors else ""
        entry = Entry(position, body, str(uuid.uuid4()))
        if not errors and entry.size > max_size:
            errors = [f"message is {entry.size} bytes, above the queue's MaximumMessageSize of {max_size}"]
        if errors:
            invalid.append((position, "; ".join(errors)))
        else:
            entries.append(entry)
    for position, reason in invalid:
        print(f"invalid record {position}: {reason}", file=sys.stderr)
    if invalid and not skip_invalid:
        fail(f"{len(invalid)} invalid record(s); nothing sent (use --skip-invalid to send the rest)")
        return None, len(invalid)
    return entries, len(invalid)


def produce_to_redis(args: argparse.Namespace, records: Sequence[Any]) -> int:
    """The records as Celery jobs on Redis: the same validation, report and exit status as for SQS."""
    # The worker's application, which knows how its jobs look (imported here: only this mode needs Celery).
    if TYPE_CHECKING or __package__:
        from . import celery_worker
    else:
        import celery_worker

    try:
        token = os.environ.get("REDIS_AUTH_TOKEN")
        if args.auth_parameter and not token:
            token = celery_worker.ssm_parameter(args.auth_parameter, args.region)
        endpoint = None if args.broker_url else celery_worker.ssm_parameter(args.endpoint_parameter, args.region)
        url = celery_worker.broker_url(args.broker_url, endpoint, token)
        app = celery_worker.make_app(url, args.queue, f"{args.queue}-dlq")
        with app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1)
    except Exception as error:  # no parameter, no credentials, broker unreachable or AUTH refused
        return fail(f"cannot use the Redis broker for {args.queue}: {error}")
    entries, skipped = checked_entries(records, REDIS_MAX_BYTES, args.skip_invalid)
    if entries is None:
        return 2
    report = Report(skipped=skipped)
    timeout = args.replica_timeout or celery_worker.REPLICA_TIMEOUT_MS
    started = time.monotonic()
    client = redis_client(url)
    for start in range(0, len(entries), REDIS_CHUNK):
        entries_part = entries[start:start + REDIS_CHUNK]
        # Built once: every try sends the same task messages under the same marker.
        chunk = celery_worker.build_chunk(app, [(json.loads(entry.body), entry.key) for entry in entries_part])
        for attempt in range(1, ENTRY_ATTEMPTS + 1):
            report.requests += 1
            try:
                celery_worker.publish_chunk(client, chunk, args.replicas, timeout)
            except Exception as error:  # unknown outcome or unconfirmed: trying again pushes nothing twice
                again = attempt < ENTRY_ATTEMPTS
                for entry in entries_part:
                    log_failure(entry, type(error).__name__, str(error), attempt, again)
                if again:
                    time.sleep(args.retry_backoff * 2 ** (attempt - 1))
                    continue
                report.not_sent += [(entry.position, str(error)) for entry in entries_part]
            else:
                report.sent += len(entries_part)
            break
    client.close()
    print_summary(report, len(records), time.monotonic() - started, args.json)
    return 1 if report.not_sent else 0


def redis_client(url: str) -> Any:
    """A client that never resends a command by itself (the loop above decides, and logs each try)."""
    import redis

    return redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5, retry=None)


class Progress:
    """A one-line progress display on stderr, for terminals only."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.enabled, self.last = total, enabled, 0.0

    def update(self, done: int) -> None:
        now = time.monotonic()
        if self.enabled and now - self.last > 0.2:
            self.last = now
            print(f"\rsent {done}/{self.total}", end="", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.enabled:
            print(file=sys.stderr)


def print_summary(report: Report, total: int, elapsed: float, as_json: bool) -> None:
    summary = {
        "records": total,
        "sent": report.sent,
        "not_sent": len(report.not_sent),
        "skipped_invalid": report.skipped,
        "requests": report.requests,
        "seconds": round(elapsed, 3),
        "messages_per_second": round(report.sent / elapsed, 1) if elapsed > 0 else None,
        "failures": [{"position": p, "reason": r} for p, r in sorted(report.not_sent)],
    }
    if as_json:
        print(json.dumps(summary))
        return
    for position, reason in sorted(report.not_sent):
        print(f"not sent: record {position}: {reason}", file=sys.stderr)
    print(f"sent {report.sent} of {total} in {elapsed:.2f} s ({summary['messages_per_second']} msg/s), "
          f"{report.requests} requests, {len(report.not_sent)} not sent, {report.skipped} invalid skipped")


if __name__ == "__main__":
    raise SystemExit(main())
