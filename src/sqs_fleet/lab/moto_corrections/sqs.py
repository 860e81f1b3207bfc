"""SQS receives: one message to one receive within its visibility timeout.

- ReceiveMessage checks that a message is visible and then marks it received (starting its visibility timeout)
  without a lock, and the server answers each request on a thread of its own: two receives at once can both
  return the same message within its visibility timeout, which SQS never does. A scale test's workers saw
  "messages processed more than once". One queue's receives are serialised here; a long poll waits for
  messages outside the lock, so it never holds other receivers back.
"""

from __future__ import annotations

import threading

from moto.core.utils import unix_time
from moto.sqs.models import Message, SQSBackend

from sqs_fleet.lab.moto_corrections.patch import Patch

# Private names of moto this module reads (tests/unit/test_patched_dependencies.py checks the list).
PRIVATE_NAMES: dict[str, str] = {}

# ReceiveMessage: one receive at a time per queue

_receive_unlocked = SQSBackend.receive_message
_receive_locks: dict[str, threading.Lock] = {}
_receive_locks_guard = threading.Lock()


def receive_lock(queue_arn: str) -> threading.Lock:
    with _receive_locks_guard:
        return _receive_locks.setdefault(queue_arn, threading.Lock())


def receive_message(
    self: SQSBackend, queue_name: str, count: int, wait_seconds_timeout: int, visibility_timeout: int,
    message_attribute_names: list[str] | None = None,
) -> list[Message]:
    """moto's receive, run without waiting under the queue's lock; a long poll (WaitTimeSeconds) waits for
    messages between attempts, outside the lock, until one attempt returns some or the wait is over."""
    queue = self.get_queue(queue_name)
    lock = receive_lock(queue.queue_arn)
    polling_end = unix_time() + wait_seconds_timeout
    while True:
        with lock:
            result: list[Message] = _receive_unlocked(self, queue_name, count, 0, visibility_timeout,
                                                      message_attribute_names)
        remaining = polling_end - unix_time()
        if result or remaining <= 0:
            return result
        queue.wait_for_messages(min(1, remaining))  # type: ignore[arg-type]


PATCHES = [
    Patch(SQSBackend, "receive_message", receive_message),
]
