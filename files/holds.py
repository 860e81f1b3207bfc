"""The consumer's hold on the messages it received: each one's deadline, the batch calls that carry its receipt
handle (delete, extend, release; never sent once the hold may be stale), and the heartbeat that extends the
visibility of every message in hand until its delete or release.

Standard library and boto3 only; runs on Python 3.9 (Amazon Linux 2023's system Python).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, NamedTuple

# Its modules: the package's when imported as sqs_fleet_workers.holds (the controller), top-level modules
# beside it when run as a script (a node's install directory, the Lambda's zip). mypy reads the package form.
# Why this way: docs/workers.md.
if TYPE_CHECKING or __package__:
    from .sqs_calls import classify, entry_retryable, error_code
    from .vehicles import IDEMPOTENCY_ATTRIBUTE
    from .worker_common import Log
else:
    from sqs_calls import classify, entry_retryable, error_code
    from vehicles import IDEMPOTENCY_ATTRIBUTE
    from worker_common import Log

MAX_BATCH = 10  # ReceiveMessage, DeleteMessageBatch and ChangeMessageVisibilityBatch limit
ENTRY_ATTEMPTS = 5  # tries of a batch entry that failed for a reason that is not ours
HOLD_MARGIN = 2.0  # seconds of a message's visibility left unused at most (a quarter of a shorter one)
MAX_RETRY_DELAY = 5.0  # longest backoff between two tries of a batch entry

Message = dict[str, Any]


class HoldExpired(Exception):
    """A request carrying a receipt handle was about to be sent after the hold it stands for ran out."""


_send_by = threading.local()  # the latest moment the current thread's hold-carrying request may leave


def refuse_late_send(**_: Any) -> None:
    """botocore's before-send hook: checked before every HTTP attempt, botocore's own retries included, so that no
    delete, extension or release carrying a possibly stale receipt handle is sent after its hold's deadline."""
    limit = getattr(_send_by, "limit", None)
    if limit is not None and time.monotonic() >= limit:
        raise HoldExpired("the visibility this consumer holds ran out before the request could be sent")


class Hold:
    """This consumer's hold on one received message. `deadline` is when the message becomes visible to other
    consumers by this process's monotonic clock, counted from before the request that set it (the receive or the
    last extension), so never later than SQS's own. Past it, or once SQS refuses an extension, the receipt handle
    may be stale, and SQS accepts a stale handle: a delete sent with it deletes the copy another consumer is
    working on, an extension extends that copy, a release exposes it. Such a message is no longer this consumer's:
    it is neither deleted, extended, released nor logged as processed here."""

    _lock = threading.Lock()  # lose() is called from the main thread and the heartbeat

    def __init__(self, message: Message, received_at: float, visibility: int) -> None:
        self.message = message
        self.message_id: str = message["MessageId"]
        self.handle: str = message["ReceiptHandle"]
        self.receive_count = int(message.get("Attributes", {}).get("ApproximateReceiveCount", 0))
        attributes = message.get("MessageAttributes", {})
        self.key: str = attributes.get(IDEMPOTENCY_ATTRIBUTE, {}).get("StringValue") or self.message_id
        self.received_at = received_at
        self.deadline = received_at + visibility
        # What is kept unused of the visibility: a request sent later might reach SQS after it ends.
        self.margin = min(HOLD_MARGIN, visibility / 4)
        self.lost: str | None = None
        self.outcome: str | None = None  # processed, duplicate or invalid, once logged as such

    def usable(self, now: float | None = None) -> bool:
        return self.lost is None and (time.monotonic() if now is None else now) < self.deadline - self.margin

    def lose(self, log: Log, reason: str, **details: Any) -> None:
        """Mark the hold lost and log it, once."""
        with Hold._lock:
            if self.lost is not None:
                return
            self.lost = reason
        log("hold_lost", level="warning", message_id=self.message_id, reason=reason,
            receive_count=self.receive_count, idempotency_key=self.key,
            held_for=round(time.monotonic() - self.received_at, 3), outcome=self.outcome, **details)


class Outcome(NamedTuple):
    done: list[Hold]  # the call succeeded for these
    refused: list[tuple[Hold, str, str]]  # (hold, code, error) failed for good
    expired: list[Hold]  # not sent (any more): the hold ran out or was lost first


def batch_call(client: Any, log: Log, action: str, url: str, holds: list[Hold], visibility: int | None = None,
               attempts: int | None = ENTRY_ATTEMPTS, backoff: float = 0.2) -> Outcome:
    """DeleteMessageBatch (visibility None) or ChangeMessageVisibilityBatch on held messages, ten at a time. Each
    entry that fails is logged on a line of its own with its code; the ones that failed through no fault of ours
    (SenderFault false, throttling) are sent again with backoff, `attempts` times in all (None: as long as the hold
    lasts), but never once their hold has run out: those are returned as expired. An extension renews the
    deadline of each message it succeeded for. Only the messages returned as done may be reported as done."""
    outcome = Outcome([], [], [])
    for chunk in chunks(holds, MAX_BATCH):
        pending = dict(enumerate(chunk))
        attempt = 0
        while pending:
            attempt += 1
            now = time.monotonic()
            for index, hold in list(pending.items()):
                if not hold.usable(now):
                    outcome.expired.append(pending.pop(index))
            if not pending:
                break
            send_by = min(hold.deadline - hold.margin for hold in pending.values())
            entries = []
            for index, hold in pending.items():
                entry: dict[str, Any] = {"Id": str(index), "ReceiptHandle": hold.handle}
                if visibility is not None:
                    entry["VisibilityTimeout"] = visibility
                entries.append(entry)
            failures: dict[int, tuple[str, bool, str]] = {}  # index -> (code, retryable, message)
            started = time.monotonic()
            _send_by.limit = send_by
            try:
                if visibility is None:
                    response = client.delete_message_batch(QueueUrl=url, Entries=entries)
                else:
                    response = client.change_message_visibility_batch(QueueUrl=url, Entries=entries)
            except HoldExpired:
                continue  # the next round sets the run-out holds apart and sends the others
            except Exception as error:  # botocore already retried throttling and 5xx; this is what remains
                sender_fault, _ = classify(error)
                failures = {index: (error_code(error), not sender_fault, str(error)) for index in pending}
            else:
                for ok in response.get("Successful", []):
                    hold = pending.pop(int(ok["Id"]))
                    if visibility is not None:
                        hold.deadline = started + visibility
                    outcome.done.append(hold)
                failures = {int(f["Id"]): (f.get("Code", ""), entry_retryable(f), f.get("Message", ""))
                            for f in response.get("Failed", [])}
            finally:
                _send_by.limit = None
            for index, (code, retryable, text) in failures.items():
                again = retryable and (attempts is None or attempt < attempts)
                log(f"{action}_failed", level="warning" if again else "error", message_id=pending[index].message_id,
                    code=code, error=text, attempt=attempt, retry=again)
                if not again:
                    outcome.refused.append((pending.pop(index), code, text))
            if pending:
                # Backoff, but an attempt left while the hold lasts rather than a sleep past its end.
                delay = min(backoff * 2 ** (attempt - 1), MAX_RETRY_DELAY)
                time.sleep(max(0.0, min(delay, (send_by - time.monotonic()) / 2)))
    return outcome


class Heartbeat(threading.Thread):
    """Extends the visibility of every message in hand, processed or not, until its delete or release call:
    a processed message that became visible before its delete would be received and processed again by
    another consumer, whose duplicate check cannot know it. A round of extensions starts when a message has two
    thirds of its visibility left, so a failed one is retried, with backoff, within the third that remains."""

    def __init__(self, client: Any, url: str, visibility_timeout: int, log: Log) -> None:
        super().__init__(daemon=True, name="heartbeat")
        self.client, self.url, self.timeout, self.log = client, url, visibility_timeout, log
        self.held: dict[str, Hold] = {}  # message id -> hold
        # Held for a whole round of extensions, so that once let_go() returns, no extension of those
        # messages is in flight or to come (none races their delete or release).
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.finished = threading.Event()

    def hold(self, holds: list[Hold]) -> None:
        with self.lock:
            self.held.update({hold.message_id: hold for hold in holds})
        self.wake.set()  # a long poll may have returned with little visibility left: extend at once if due

    def let_go(self, holds: list[Hold]) -> None:
        with self.lock:
            for hold in holds:
                self.held.pop(hold.message_id, None)

    def stop(self) -> None:
        self.finished.set()
        self.wake.set()

    def due_in(self) -> float | None:
        """Seconds until the next round (None: nothing held)."""
        if not self.held:
            return None
        earliest = min(hold.deadline for hold in self.held.values())
        return max(0.0, earliest - self.timeout * 2 / 3 - time.monotonic())

    def run(self) -> None:
        while not self.finished.is_set():
            with self.lock:
                wait = self.due_in()
            self.wake.wait(wait)
            self.wake.clear()
            with self.lock:
                if self.finished.is_set() or not self.held or (self.due_in() or 0.0) > 0:
                    continue
                # One round for all messages in hand: they came in one receive and keep the same pace.
                outcome = batch_call(self.client, self.log, "visibility_extend", self.url, list(self.held.values()),
                                     visibility=self.timeout, attempts=None, backoff=0.05)
                for hold, code, text in outcome.refused:  # e.g. deleted with another receive's handle
                    hold.lose(self.log, "visibility_change_failed", code=code, error=text)
                for hold in outcome.expired:  # e.g. the process was paused past the deadline
                    hold.lose(self.log, "visibility_expired")
                for hold in [*outcome.expired, *(hold for hold, _, _ in outcome.refused)]:
                    self.held.pop(hold.message_id, None)
            if outcome.done:
                self.log("visibility_extended", messages=len(outcome.done), seconds=self.timeout)


def chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]
