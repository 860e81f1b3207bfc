#!/usr/bin/env python3
"""Consume vehicle messages from an SQS queue: poll, process, log each message's content, wait, repeat.

Examples:
  consumer.py --queue sqs-fleet-local-vehicles
  consumer.py --queue https://sqs.eu-west-1.amazonaws.com/123456789012/q --poll-interval 0 --once
  QUEUE_URL=sqs-fleet-local-vehicles consumer.py --max-messages 100 --state-file /var/lib/consumer/seen

Each poll long-polls for up to 10 messages, processes them (validates and logs one JSON object per
message on stdout), deletes them in one batch, then waits --poll-interval seconds (default 60). Every
message received stays invisible to other consumers (each receive asks for --visibility-timeout, and a
heartbeat extends it, retrying a failed extension while the visibility lasts) until it is deleted or released,
so slow work never hands a message to a second consumer. A message whose hold is lost (the process paused past
its visibility, or SQS refused an extension) may be another consumer's by then: it is logged as "hold_lost"
and neither logged as processed, deleted nor released here, since SQS would apply a stale receipt handle to
the other consumer's copy. A message received before (receive count above 1) is logged as "message_redelivered".
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
import math
import os
import signal
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

# Its modules: the package's when imported as sqs_fleet_workers.consumer (the controller), top-level modules
# beside it when run as a script (a node's install directory, the Lambda's zip). mypy reads the package form.
# Why this way: docs/workers.md.
if TYPE_CHECKING or __package__:
    from .holds import MAX_BATCH, Heartbeat, Hold, Message, batch_call, refuse_late_send
    from .sqs_calls import error_code, queue_argument, queue_url, sqs_client
    from .vehicles import validation_errors
    from .worker_common import Log, fail
else:
    from holds import MAX_BATCH, Heartbeat, Hold, Message, batch_call, refuse_late_send
    from sqs_calls import error_code, queue_argument, queue_url, sqs_client
    from vehicles import validation_errors
    from worker_common import Log, fail

MAX_BACKOFF = 60.0
STOP_MARGIN = 10.0  # seconds kept, out of the stop timeout, for the last delete and release calls
MAX_VISIBILITY = 43200  # SQS's limit on a message's visibility timeout (12 h)


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


class Consumer:
    def __init__(self, client: Any, url: str, args: argparse.Namespace, log: Log, seen: SeenKeys,
                 stop: Stop | None = None) -> None:
        self.client, self.url, self.args, self.log, self.seen = client, url, args, log, seen
        self.stop = stop or Stop()
        self.counts = collections.Counter({"processed": 0, "duplicate": 0, "invalid": 0, "hold_lost": 0})
        self.lost_unhandled = 0  # messages whose hold was lost before they were processed
        self.backoff = 1.0
        self.last_work = 0.0  # seconds the last message took, to judge whether one more fits before the stop
        self.visibility: int = args.visibility_timeout
        # A long poll may end with any part of its wait spent on a message's visibility (SQS hides a message
        # from the moment it picks it): at most two thirds of it, so that at least a third is left to extend it.
        self.wait_time = min(args.wait_time, self.visibility - math.ceil(self.visibility / 3))
        self.heartbeat = Heartbeat(client, url, self.visibility, log)
        for operation in ("DeleteMessageBatch", "ChangeMessageVisibilityBatch"):
            client.meta.events.register(f"before-send.sqs.{operation}", refuse_late_send,
                                        unique_id=f"sqs-fleet-refuse-late-{operation}")

    # -- the loop ---------------------------------------------------------------------------------
    def run(self) -> None:
        self.heartbeat.start()
        self.log("consumer_started", queue=self.url, poll_interval=self.args.poll_interval,
                 wait_time=self.wait_time, visibility_timeout=self.visibility, stop_timeout=self.args.stop_timeout)
        try:
            while not self.stop.is_set():
                messages, received_at = self.receive()
                self.handle(messages, received_at)
                if self.args.once or self.reached_max():
                    break
                if not self.stop.is_set():
                    self.log("poll_done", received=len(messages), next_poll_in=self.args.poll_interval)
                self.stop.wait(self.args.poll_interval)
        finally:
            self.heartbeat.stop()
            self.log("consumer_stopped", processed=self.counts["processed"], duplicate=self.counts["duplicate"],
                     invalid=self.counts["invalid"], hold_lost=self.counts["hold_lost"])

    def reached_max(self) -> bool:
        return self.args.max_messages is not None and self.handled() >= self.args.max_messages

    def handled(self) -> int:
        return self.counts["processed"] + self.counts["duplicate"] + self.counts["invalid"] + self.lost_unhandled

    def receive(self) -> tuple[list[Message], float]:
        """The messages of one receive, and when it was sent: their visibility runs from no earlier than that."""
        wanted = MAX_BATCH
        if self.args.max_messages is not None:
            wanted = max(1, min(MAX_BATCH, self.args.max_messages - self.handled()))
        sent_at = time.monotonic()
        try:
            response = self.client.receive_message(
                QueueUrl=self.url,
                MaxNumberOfMessages=wanted,
                WaitTimeSeconds=self.wait_time,
                # The visibility the heartbeat is paced for, whatever the queue's default.
                VisibilityTimeout=self.visibility,
                # AttributeNames, not its successor MessageSystemAttributeNames: the node's system
                # botocore (Debian 12, Amazon Linux 2023) predates the new name.
                AttributeNames=["ApproximateReceiveCount", "ApproximateFirstReceiveTimestamp"],
                MessageAttributeNames=["All"],
            )
        except Exception as error:  # throttling, 5xx, network, queue missing: back off, never exit
            self.log("receive_failed", level="error", error=str(error), code=error_code(error),
                     retry_in=self.backoff)
            self.stop.wait(self.backoff)
            self.backoff = min(self.backoff * 2, MAX_BACKOFF)
            return [], sent_at
        self.backoff = 1.0
        return list(response.get("Messages", [])), sent_at

    def time_for_one_more(self) -> bool:
        """Whether, after a stop request, the next message can still be processed before systemd's stop
        timeout, leaving a margin for the delete and release calls. A message received is worth finishing:
        released, it would come back with one of its maxReceiveCount receives spent for nothing."""
        if not self.stop.is_set():
            return True
        stopped_at = self.stop.at if self.stop.at is not None else time.monotonic()
        budget: float = self.args.stop_timeout
        return time.monotonic() + self.last_work < stopped_at + budget - min(STOP_MARGIN, budget / 4)

    def handle(self, messages: list[Message], received_at: float) -> None:
        """Process each message in turn, under the heartbeat; delete the done ones in one batch; release the
        rest. One delete call per batch keeps the requests to about two per ten messages; the heartbeat, not
        an early delete, is what keeps a processed message from another consumer until then."""
        if not messages:
            return
        holds = [Hold(message, received_at, self.visibility) for message in messages]
        self.heartbeat.hold(holds)
        done: list[Hold] = []
        release: list[Hold] = []
        for index, hold in enumerate(holds):
            if not self.time_for_one_more():
                release += holds[index:]
                self.log("stop_timeout_near", level="warning", unprocessed=len(holds) - index,
                         stop_timeout=self.args.stop_timeout)
                break
            started = time.monotonic()
            if self.still_held(hold):  # not worth processing what another consumer may be processing now
                outcome = self.process(hold)
                if outcome in ("processed", "duplicate"):
                    done.append(hold)
                elif outcome == "invalid":
                    release.append(hold)
            self.last_work = time.monotonic() - started
        self.heartbeat.let_go(holds)
        self.delete(done)
        self.release(release)
        lost = [hold for hold in holds if hold.lost]
        self.counts["hold_lost"] += len(lost)
        self.lost_unhandled += sum(1 for hold in lost if hold.outcome is None)

    def still_held(self, hold: Hold) -> bool:
        """Whether the message is still this consumer's; when its visibility has run out, logs the loss."""
        if hold.usable():
            return True
        hold.lose(self.log, "visibility_expired")
        return False

    # -- one message ------------------------------------------------------------------------------
    def process(self, hold: Hold) -> str | None:
        """Validate and log one message: "processed" or "duplicate" when it may be deleted, "invalid" when it is
        to be released, None when its hold was lost before it was done (then it is not logged as processed: the
        consumer that holds it now logs it)."""
        message = hold.message
        context: dict[str, Any] = {"message_id": hold.message_id, "receive_count": hold.receive_count,
                                   "idempotency_key": hold.key}
        try:
            vehicle = json.loads(message["Body"])
            errors = validation_errors(vehicle)
        except ValueError as error:
            errors = [f"body is not JSON: {error}"]
        if errors:
            self.counts["invalid"] += 1
            hold.outcome = "invalid"
            # Released, not deleted: after maxReceiveCount receives the redrive policy dead-letters it.
            self.log("message_invalid", level="error", reason="; ".join(errors), body=message["Body"][:1000],
                     **context)
            return hold.outcome
        if hold.key in self.seen:
            self.counts["duplicate"] += 1
            hold.outcome = "duplicate"
            self.log("message_duplicate", level="warning", vehicle=vehicle, **context)
            return hold.outcome
        if hold.receive_count > 1:
            # An earlier receive's holder let it go, crashed, or lost its hold and may be processing it still.
            first = message.get("Attributes", {}).get("ApproximateFirstReceiveTimestamp")
            first_received = (datetime.datetime.fromtimestamp(int(first) / 1000, datetime.timezone.utc)
                              .isoformat(timespec="milliseconds") if first else None)
            self.log("message_redelivered", level="warning", first_received=first_received, **context)
        if self.args.simulate_work:
            time.sleep(self.args.simulate_work)  # the message in hand is finished even on shutdown
        if not self.still_held(hold):
            return None
        self.log("message_processed", vehicle=vehicle, **context)
        self.seen.add(hold.key)
        self.counts["processed"] += 1
        hold.outcome = "processed"
        return hold.outcome

    # -- batch calls ------------------------------------------------------------------------------
    def delete(self, holds: list[Hold]) -> None:
        """Delete processed messages, but none whose hold has run out: its receipt handle may be stale, and SQS
        would delete with it the copy another consumer received since. One that is not deleted reappears after
        the visibility timeout; this consumer then recognises it as a duplicate, another one cannot."""
        outcome = batch_call(self.client, self.log, "delete", self.url, holds)
        for hold in outcome.expired:
            hold.lose(self.log, "visibility_expired")
        if outcome.done:
            self.log("messages_deleted", messages=len(outcome.done))

    def release(self, holds: list[Hold]) -> None:
        """Make messages visible again at once (visibility 0), for another consumer or the redrive; not those
        whose hold has run out. One that is not released reappears after its visibility timeout anyway."""
        outcome = batch_call(self.client, self.log, "release", self.url, holds, visibility=0)
        for hold in outcome.expired:
            hold.lose(self.log, "visibility_expired")
        if outcome.done:
            self.log("messages_released", messages=len(outcome.done))


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
                        help="how long each receive and heartbeat keeps a message hidden, 1-43200 (default: the "
                             "queue's own); a long poll then waits at most two thirds of it, e.g. 120")
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
    if args.visibility_timeout is not None and not 1 <= args.visibility_timeout <= MAX_VISIBILITY:
        parser.error(f"--visibility-timeout must be 1..{MAX_VISIBILITY} seconds, got {args.visibility_timeout}")
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
        if queue_visibility < 1:  # a message the consumer cannot hold for a moment would be everyone's at once
            return fail(f"queue {args.queue} has a visibility timeout of {queue_visibility}: pass "
                        "--visibility-timeout SECONDS (1 or more)")
        args.visibility_timeout = queue_visibility
    Consumer(client, url, args, log, SeenKeys(args.dedupe_window, args.state_file), stop).run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
