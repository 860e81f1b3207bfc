#!/usr/bin/env python3
"""Consume vehicle messages from an SQS queue: poll, process, log each message's content, wait, repeat.

Examples:
  consumer.py --queue sqs-fleet-local-vehicles
  consumer.py --queue https://sqs.eu-west-1.amazonaws.com/123456789012/q --poll-interval 0 --once
  QUEUE_URL=sqs-fleet-local-vehicles consumer.py --max-messages 100 --state-file /var/lib/consumer/seen

Each poll long-polls for up to 10 messages, processes them (validates and logs one JSON object per
message on stdout), deletes them in one batch, then waits --poll-interval seconds (default 60).
Invalid messages are logged and released, never deleted: the queue's redrive policy moves them to the
dead-letter queue. A redelivered message is recognised by its idempotency key and logged as a duplicate.
On SIGTERM or SIGINT it stops polling, finishes the message in hand, releases the others and exits 0.
Transient AWS errors back off and retry; configuration errors exit 2.
Region, profile and endpoint come from the standard AWS environment (AWS_REGION, AWS_PROFILE,
AWS_ENDPOINT_URL).
"""

from __future__ import annotations

import argparse
import collections
import datetime
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

from vehicles import IDEMPOTENCY_ATTRIBUTE, fail, queue_argument, queue_url, sqs_client, validation_errors

MAX_BATCH = 10  # ReceiveMessage, DeleteMessageBatch and ChangeMessageVisibilityBatch limit
MAX_BACKOFF = 60.0

Message = dict[str, Any]


class Log:
    """One JSON object per line on stdout, with stable keys; safe from several threads."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream or sys.stdout
        self.lock = threading.Lock()

    def __call__(self, event: str, level: str = "info", **fields: Any) -> None:
        line = json.dumps({
            "ts": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds"),
            "level": level,
            "event": event,
            **fields,
        }, default=str)
        with self.lock:
            self.stream.write(line + "\n")
            self.stream.flush()


class SeenKeys:
    """Idempotency keys of the most recently processed messages (a bounded window), kept in an
    append-only file when one is given, so that a restarted consumer still recognises redeliveries."""

    def __init__(self, capacity: int, path: str | None) -> None:
        self.capacity = capacity
        self.keys: collections.OrderedDict[str, None] = collections.OrderedDict()
        self.file = None
        if path:
            if os.path.exists(path):
                with open(path, encoding="utf-8") as existing:
                    for key in collections.deque((line.strip() for line in existing), maxlen=capacity):
                        self.keys[key] = None
                self._compact(path)
            self.file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - held for the process's life

    def _compact(self, path: str) -> None:
        temporary = f"{path}.tmp"
        with open(temporary, "w", encoding="utf-8") as out:
            out.writelines(f"{key}\n" for key in self.keys)
        os.replace(temporary, path)

    def __contains__(self, key: str) -> bool:
        return key in self.keys

    def add(self, key: str) -> None:
        self.keys[key] = None
        while len(self.keys) > self.capacity:
            self.keys.popitem(last=False)
        if self.file:
            self.file.write(key + "\n")
            self.file.flush()  # survives a killed process; the OS writes it out


class Heartbeat(threading.Thread):
    """Extends the visibility of the messages in hand while their processing runs long."""

    def __init__(self, client: Any, url: str, visibility_timeout: int, log: Log) -> None:
        super().__init__(daemon=True, name="heartbeat")
        self.client, self.url, self.timeout, self.log = client, url, visibility_timeout, log
        self.interval = max(1.0, visibility_timeout / 2)
        self.held: dict[str, str] = {}  # message id -> receipt handle
        self.lock = threading.Lock()
        self.finished = threading.Event()

    def hold(self, messages: list[Message]) -> None:
        with self.lock:
            self.held = {m["MessageId"]: m["ReceiptHandle"] for m in messages}

    def drop(self, message: Message) -> None:
        with self.lock:
            self.held.pop(message["MessageId"], None)

    def run(self) -> None:
        while not self.finished.wait(self.interval):
            with self.lock:
                held = list(self.held.items())
            for chunk in chunks(held, MAX_BATCH):
                try:
                    self.client.change_message_visibility_batch(QueueUrl=self.url, Entries=[
                        {"Id": str(i), "ReceiptHandle": handle, "VisibilityTimeout": self.timeout}
                        for i, (_, handle) in enumerate(chunk)
                    ])
                    self.log("visibility_extended", messages=len(chunk), seconds=self.timeout)
                except Exception as error:  # the message may reappear; its key makes that harmless
                    self.log("visibility_extend_failed", level="warning", error=str(error))


def chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


class Consumer:
    def __init__(self, client: Any, url: str, args: argparse.Namespace, log: Log, seen: SeenKeys,
                 stop: threading.Event | None = None) -> None:
        self.client, self.url, self.args, self.log, self.seen = client, url, args, log, seen
        self.stop = stop or threading.Event()
        self.counts = collections.Counter({"processed": 0, "duplicate": 0, "invalid": 0})
        self.backoff = 1.0
        self.heartbeat = Heartbeat(client, url, args.visibility_timeout, log)

    # -- the loop ---------------------------------------------------------------------------------
    def run(self) -> None:
        self.heartbeat.start()
        self.log("consumer_started", queue=self.url, poll_interval=self.args.poll_interval,
                 wait_time=self.args.wait_time, visibility_timeout=self.args.visibility_timeout)
        try:
            while not self.stop.is_set():
                messages = self.receive()
                self.handle(messages)
                if self.args.once or self.reached_max():
                    break
                if not self.stop.is_set():
                    self.log("poll_done", received=len(messages), next_poll_in=self.args.poll_interval)
                self.stop.wait(self.args.poll_interval)
        finally:
            self.heartbeat.finished.set()
            self.log("consumer_stopped", processed=self.counts["processed"], duplicate=self.counts["duplicate"],
                     invalid=self.counts["invalid"])

    def reached_max(self) -> bool:
        return self.args.max_messages is not None and self.handled() >= self.args.max_messages

    def handled(self) -> int:
        return sum(self.counts.values())

    def receive(self) -> list[Message]:
        wanted = MAX_BATCH
        if self.args.max_messages is not None:
            wanted = max(1, min(MAX_BATCH, self.args.max_messages - self.handled()))
        try:
            response = self.client.receive_message(
                QueueUrl=self.url,
                MaxNumberOfMessages=wanted,
                WaitTimeSeconds=self.args.wait_time,
                # AttributeNames, not its successor MessageSystemAttributeNames: the node's system
                # botocore (Debian 12, Amazon Linux 2023) predates the new name.
                AttributeNames=["ApproximateReceiveCount"],
                MessageAttributeNames=["All"],
            )
        except Exception as error:  # throttling, 5xx, network, queue missing: back off, never exit
            self.log("receive_failed", level="error", error=str(error), retry_in=self.backoff)
            self.stop.wait(self.backoff)
            self.backoff = min(self.backoff * 2, MAX_BACKOFF)
            return []
        self.backoff = 1.0
        return list(response.get("Messages", []))

    def handle(self, messages: list[Message]) -> None:
        """Process each message in turn; delete the done ones in one batch; release the rest."""
        if not messages:
            return
        self.heartbeat.hold(messages)
        done: list[Message] = []
        release: list[Message] = []
        for index, message in enumerate(messages):
            if self.stop.is_set():
                release += messages[index:]
                break
            if self.process(message):
                done.append(message)
            else:
                release.append(message)
            self.heartbeat.drop(message)
        self.delete(done)
        self.release(release)
        self.heartbeat.hold([])

    # -- one message ------------------------------------------------------------------------------
    def process(self, message: Message) -> bool:
        """Validate and log one message; True when it may be deleted."""
        attributes = message.get("MessageAttributes", {})
        key = attributes.get(IDEMPOTENCY_ATTRIBUTE, {}).get("StringValue") or message["MessageId"]
        context = {
            "message_id": message["MessageId"],
            "receive_count": int(message.get("Attributes", {}).get("ApproximateReceiveCount", 0)),
            "idempotency_key": key,
        }
        try:
            vehicle = json.loads(message["Body"])
            errors = validation_errors(vehicle)
        except ValueError as error:
            errors = [f"body is not JSON: {error}"]
        if errors:
            self.counts["invalid"] += 1
            # Released, not deleted: after maxReceiveCount receives the redrive policy dead-letters it.
            self.log("message_invalid", level="error", reason="; ".join(errors), body=message["Body"][:1000],
                     **context)
            return False
        if key in self.seen:
            self.counts["duplicate"] += 1
            self.log("message_duplicate", level="warning", vehicle=vehicle, **context)
            return True
        if self.args.simulate_work:
            time.sleep(self.args.simulate_work)  # the message in hand is finished even on shutdown
        self.log("message_processed", vehicle=vehicle, **context)
        self.seen.add(key)
        self.counts["processed"] += 1
        return True

    # -- batch calls ------------------------------------------------------------------------------
    def delete(self, messages: list[Message]) -> None:
        for chunk in chunks(messages, MAX_BATCH):
            try:
                response = self.client.delete_message_batch(QueueUrl=self.url, Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)
                ])
            except Exception as error:  # they reappear after the visibility timeout, then count as duplicates
                self.log("delete_failed", level="error", error=str(error), messages=len(chunk))
                continue
            for failure in response.get("Failed", []):
                message = chunk[int(failure["Id"])]
                self.log("delete_failed", level="error", message_id=message["MessageId"],
                         error=f"{failure['Code']}: {failure.get('Message', '')}")

    def release(self, messages: list[Message]) -> None:
        """Make messages visible again at once (visibility 0), for another consumer or the redrive."""
        for chunk in chunks(messages, MAX_BATCH):
            try:
                self.client.change_message_visibility_batch(QueueUrl=self.url, Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
                    for i, m in enumerate(chunk)
                ])
                self.log("messages_released", messages=len(chunk))
            except Exception as error:  # they reappear after the visibility timeout anyway
                self.log("release_failed", level="warning", error=str(error), messages=len(chunk))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="consumer.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--queue", help="queue URL or name (default: $QUEUE_URL), e.g. --queue my-queue")
    parser.add_argument("--poll-interval", type=float, default=60.0, metavar="SECONDS",
                        help="wait between polls (default 60), e.g. --poll-interval 0 to drain a backlog")
    parser.add_argument("--once", action="store_true", help="one poll cycle, then exit (tests, cron)")
    parser.add_argument("--max-messages", type=int, metavar="N", help="exit after handling N messages, e.g. 100")
    parser.add_argument("--wait-time", type=int, default=20, choices=range(0, 21), metavar="SECONDS",
                        help="long-polling wait of each receive, 0-20 (default 20)")
    parser.add_argument("--visibility-timeout", type=int, metavar="SECONDS",
                        help="how long a heartbeat keeps a message hidden (default: the queue's own), e.g. 120")
    parser.add_argument("--state-file", metavar="PATH",
                        help="remember processed keys here across restarts, e.g. /var/lib/consumer/seen")
    parser.add_argument("--dedupe-window", type=int, default=100000, metavar="N",
                        help="how many recent idempotency keys are remembered (default 100000)")
    parser.add_argument("--simulate-work", type=float, default=0.0, metavar="SECONDS",
                        help="pretend each message takes this long to process (demos, tests), e.g. 0.5")
    return parser


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.queue = queue_argument(args.queue)
    if args.poll_interval < 0 or (args.max_messages is not None and args.max_messages < 1):
        parser.error("--poll-interval must be >= 0 and --max-messages >= 1")
    return args


def resolve(client: Any, queue: str, log: Log, stop: threading.Event) -> tuple[str, int] | None:
    """The queue URL and its visibility timeout, waiting with backoff while the queue does not exist yet
    or AWS is unreachable; None when asked to stop first."""
    backoff = 1.0
    while not stop.is_set():
        try:
            url = queue_url(client, queue)
            attributes = client.get_queue_attributes(QueueUrl=url, AttributeNames=["VisibilityTimeout"])
            return url, int(attributes["Attributes"]["VisibilityTimeout"])
        except Exception as error:
            if type(error).__name__ in ("NoCredentialsError", "NoRegionError", "PartialCredentialsError"):
                raise
            log("queue_unavailable", level="error", queue=queue, error=str(error), retry_in=backoff)
            stop.wait(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)
    return None


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.queue:
        return fail("no queue: pass --queue URL|NAME or set QUEUE_URL")
    log = Log()
    try:
        client = sqs_client()
    except Exception as error:  # e.g. no region configured
        return fail(f"cannot create an SQS client: {error}")
    stop = threading.Event()

    def request_stop(signum: int, _frame: Any) -> None:
        log("shutdown_requested", signal=signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    try:
        found = resolve(client, args.queue, log, stop)
    except Exception as error:  # no credentials, no region: nothing a retry can fix
        return fail(f"cannot use queue {args.queue}: {error}")
    if found is None:
        return 0
    url, queue_visibility = found
    if args.visibility_timeout is None:
        args.visibility_timeout = queue_visibility
    Consumer(client, url, args, log, SeenKeys(args.dedupe_window, args.state_file), stop).run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
