#!/usr/bin/env python3
"""Consume vehicle messages from an SQS queue: poll, process, log each message's content, wait, repeat.

Examples:
  consumer.py --queue sqs-fleet-local-vehicles
  consumer.py --queue https://sqs.eu-west-1.amazonaws.com/123456789012/q --poll-interval 0 --once
  QUEUE_URL=sqs-fleet-local-vehicles consumer.py --max-messages 100 --state-file /var/lib/consumer/seen

Each poll long-polls for up to 10 messages, processes them (validates and logs one JSON object per
message on stdout), deletes them in one batch, then waits --poll-interval seconds (default 60). Every
message received stays invisible to other consumers (a heartbeat extends its visibility) until it is
deleted or released, so slow work never hands a message to a second consumer.
Invalid messages are logged and released, never deleted: the queue's redrive policy moves them to the
dead-letter queue. A redelivered message is recognised by its idempotency key and logged as a duplicate.
On SIGTERM or SIGINT it stops polling, processes the messages already received (even those a long poll
returns after the signal) while --stop-timeout allows, releases any others and exits 0.
Transient AWS errors back off and retry, and so do the entries a batch call reports failed through no
fault of ours; each failed entry is logged with its code. Configuration errors exit 2.
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

from vehicles import (
    IDEMPOTENCY_ATTRIBUTE,
    classify,
    entry_retryable,
    error_code,
    fail,
    queue_argument,
    queue_url,
    sqs_client,
    validation_errors,
)

MAX_BATCH = 10  # ReceiveMessage, DeleteMessageBatch and ChangeMessageVisibilityBatch limit
MAX_BACKOFF = 60.0
ENTRY_ATTEMPTS = 5  # tries of a batch entry that failed for a reason that is not ours
STOP_MARGIN = 10.0  # seconds kept, out of the stop timeout, for the last delete and release calls

Message = dict[str, Any]


class Log:
    """One JSON object per line on stdout, with stable keys; safe from several threads."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream or sys.stdout
        # Reentrant: the SIGTERM handler logs too, and may run while the main thread holds the lock.
        self.lock = threading.RLock()

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


class Stop(threading.Event):
    """Set on SIGTERM or SIGINT; remembers when, so that the messages in hand are finished within the time
    systemd allows for a graceful stop, counted from the signal rather than from the end of the long poll."""

    def __init__(self) -> None:
        super().__init__()
        self.at: float | None = None

    def set(self) -> None:
        if self.at is None:
            self.at = time.monotonic()
        super().set()


def batch_call(client: Any, log: Log, action: str, url: str, messages: list[tuple[str, str]],
               visibility: int | None = None, attempts: int = ENTRY_ATTEMPTS, backoff: float = 0.2) -> list[str]:
    """DeleteMessageBatch (visibility None) or ChangeMessageVisibilityBatch on (message id, receipt handle)
    pairs, ten at a time. Each entry that fails is logged on a line of its own with its code; the ones that
    failed through no fault of ours (SenderFault false, throttling) are sent again, with backoff. Returns the
    ids of the messages the call succeeded for: only those may be reported as done."""
    done: list[str] = []
    for chunk in chunks(messages, MAX_BATCH):
        pending = dict(enumerate(chunk))
        for attempt in range(1, attempts + 1):
            entries = []
            for index, (_, handle) in pending.items():
                entry: dict[str, Any] = {"Id": str(index), "ReceiptHandle": handle}
                if visibility is not None:
                    entry["VisibilityTimeout"] = visibility
                entries.append(entry)
            failures: dict[int, tuple[str, bool, str]] = {}  # index -> (code, retryable, message)
            try:
                if visibility is None:
                    response = client.delete_message_batch(QueueUrl=url, Entries=entries)
                else:
                    response = client.change_message_visibility_batch(QueueUrl=url, Entries=entries)
            except Exception as error:  # botocore already retried throttling and 5xx; this is what remains
                sender_fault, _ = classify(error)
                failures = {index: (error_code(error), not sender_fault, str(error)) for index in pending}
            else:
                done += [pending[int(ok["Id"])][0] for ok in response.get("Successful", [])]
                failures = {int(f["Id"]): (f.get("Code", ""), entry_retryable(f), f.get("Message", ""))
                            for f in response.get("Failed", [])}
            retry = {}
            for index, (code, retryable, text) in failures.items():
                again = retryable and attempt < attempts
                log(f"{action}_failed", level="warning" if again else "error", message_id=pending[index][0], code=code,
                    error=text, attempt=attempt, retry=again)
                if again:
                    retry[index] = pending[index]
            if not retry:
                break
            pending = retry
            time.sleep(backoff * 2 ** (attempt - 1))
    return done


class Heartbeat(threading.Thread):
    """Extends the visibility of every message in hand, processed or not, until its delete or release call:
    a processed message that became visible before its delete would be received and processed again by
    another consumer, whose duplicate check cannot know it."""

    def __init__(self, client: Any, url: str, visibility_timeout: int, log: Log) -> None:
        super().__init__(daemon=True, name="heartbeat")
        self.client, self.url, self.timeout, self.log = client, url, visibility_timeout, log
        # Three beats per visibility timeout: one may fail or be slow and the message still stays hidden.
        self.interval = max(0.2, visibility_timeout / 3)
        self.held: dict[str, str] = {}  # message id -> receipt handle
        # Held for a whole round of extensions, so that once let_go() returns, no extension of those
        # messages is in flight or to come (none races their delete or release).
        self.lock = threading.Lock()
        self.finished = threading.Event()

    def hold(self, messages: list[Message]) -> None:
        with self.lock:
            self.held.update({m["MessageId"]: m["ReceiptHandle"] for m in messages})

    def let_go(self, messages: list[Message]) -> None:
        with self.lock:
            for message in messages:
                self.held.pop(message["MessageId"], None)

    def run(self) -> None:
        while not self.finished.wait(self.interval):
            with self.lock:
                held = list(self.held.items())
                if not held:
                    continue
                # Retries stay well inside one beat; an entry that fails for good is not extended again
                # (its handle is stale or the message is no longer in flight).
                extended = set(batch_call(self.client, self.log, "visibility_extend", self.url, held,
                                          visibility=self.timeout, attempts=3, backoff=0.05))
                for message_id, _ in held:
                    if message_id not in extended:
                        self.held.pop(message_id, None)
            if extended:
                self.log("visibility_extended", messages=len(extended), seconds=self.timeout)


def chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


class Consumer:
    def __init__(self, client: Any, url: str, args: argparse.Namespace, log: Log, seen: SeenKeys,
                 stop: Stop | None = None) -> None:
        self.client, self.url, self.args, self.log, self.seen = client, url, args, log, seen
        self.stop = stop or Stop()
        self.counts = collections.Counter({"processed": 0, "duplicate": 0, "invalid": 0})
        self.backoff = 1.0
        self.last_work = 0.0  # seconds the last message took, to judge whether one more fits before the stop
        self.heartbeat = Heartbeat(client, url, args.visibility_timeout, log)

    # -- the loop ---------------------------------------------------------------------------------
    def run(self) -> None:
        self.heartbeat.start()
        self.log("consumer_started", queue=self.url, poll_interval=self.args.poll_interval,
                 wait_time=self.args.wait_time, visibility_timeout=self.args.visibility_timeout,
                 stop_timeout=self.args.stop_timeout)
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
            self.log("receive_failed", level="error", error=str(error), code=error_code(error),
                     retry_in=self.backoff)
            self.stop.wait(self.backoff)
            self.backoff = min(self.backoff * 2, MAX_BACKOFF)
            return []
        self.backoff = 1.0
        return list(response.get("Messages", []))

    def time_for_one_more(self) -> bool:
        """Whether, after a stop request, the next message can still be processed before systemd's stop
        timeout, leaving a margin for the delete and release calls. A message received is worth finishing:
        released, it would come back with one of its maxReceiveCount receives spent for nothing."""
        if not self.stop.is_set():
            return True
        stopped_at = self.stop.at if self.stop.at is not None else time.monotonic()
        budget: float = self.args.stop_timeout
        return time.monotonic() + self.last_work < stopped_at + budget - min(STOP_MARGIN, budget / 4)

    def handle(self, messages: list[Message]) -> None:
        """Process each message in turn, under the heartbeat; delete the done ones in one batch; release the
        rest. One delete call per batch keeps the requests to about two per ten messages; the heartbeat, not
        an early delete, is what keeps a processed message from another consumer until then."""
        if not messages:
            return
        self.heartbeat.hold(messages)
        done: list[Message] = []
        release: list[Message] = []
        for index, message in enumerate(messages):
            if not self.time_for_one_more():
                release += messages[index:]
                self.log("stop_timeout_near", level="warning", unprocessed=len(messages) - index,
                         stop_timeout=self.args.stop_timeout)
                break
            started = time.monotonic()
            if self.process(message):
                done.append(message)
            else:
                release.append(message)
            self.last_work = time.monotonic() - started
        self.heartbeat.let_go(messages)
        self.delete(done)
        self.release(release)

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
        """Delete processed messages. One that cannot be deleted reappears after the visibility timeout; this
        consumer then recognises it as a duplicate, another one cannot."""
        batch_call(self.client, self.log, "delete", self.url, [(m["MessageId"], m["ReceiptHandle"]) for m in messages])

    def release(self, messages: list[Message]) -> None:
        """Make messages visible again at once (visibility 0), for another consumer or the redrive. One that
        cannot be released reappears after its visibility timeout anyway."""
        released = batch_call(self.client, self.log, "release", self.url,
                              [(m["MessageId"], m["ReceiptHandle"]) for m in messages], visibility=0)
        if released:
            self.log("messages_released", messages=len(released))


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
    parser.add_argument("--stop-timeout", type=float, default=60.0, metavar="SECONDS",
                        help="time systemd allows for a graceful stop (the unit's TimeoutStopSec, default 60): "
                             "after SIGTERM the messages in hand are still processed until 10 s before it, "
                             "e.g. 90")
    parser.add_argument("--simulate-work", type=float, default=0.0, metavar="SECONDS",
                        help="pretend each message takes this long to process (demos, tests), e.g. 0.5")
    return parser


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.queue = queue_argument(args.queue)
    if args.poll_interval < 0 or args.stop_timeout < 0 or (args.max_messages is not None and args.max_messages < 1):
        parser.error("--poll-interval and --stop-timeout must be >= 0, --max-messages >= 1")
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
    stop = Stop()

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
