"""PendingJobs of a Celery queue on Redis, read for the backlog publisher: the jobs waiting in the queue's list
plus the jobs workers hold (prefetched or running) in the `unacked` hash, read in one MULTI/EXEC so that a job
moving from one to the other between two reads is counted once, not zero or two times. A held job whose
done record exists (files/celery_worker.py writes it before acknowledging) is not counted: after a failover
the new primary can hold an entry whose acknowledgement was lost, and counting it would keep the fleet up.

LLEN alone misses every prefetched and running job, and the jobs stranded by a worker that died: scaling on it
would scale in under running work and never see stranded jobs.

    pending_jobs(client, "sqs-fleet-prod-vehicles")     # client: a redis-py client (the publisher's RedisReader)

The names of the keys the worker and the reader share are defined here. No import beside the standard library
(the caller brings redis-py); Python 3.9+.
"""

from __future__ import annotations

import base64
import json
from typing import Any

UNACKED = "unacked"  # kombu's Redis transport: hash of delivered, not yet acknowledged messages
UNACKED_INDEX = "unacked_index"  # kombu's: delivery tag -> time of delivery (or of the holder's last lease)
# Published beside PendingJobs (whose namespace, name and dimension the publisher's environment gives).
DEAD_METRIC = "DeadJobs"


def done_key(queue: str, job: str) -> str:
    """The record of a finished job (its idempotency key, else its task id): a redelivery finds it."""
    return f"{queue}:done:{job}"


def job_key(entry: bytes | str) -> str | None:
    """The idempotency key (else the task id) of a kombu `unacked` entry ([message, exchange, routing key],
    the message's body a base64 Celery [args, kwargs, embed]); None for an entry that is not a Celery job."""
    try:
        message = json.loads(entry)[0]
        body = message["body"]
        if message.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        kwargs = json.loads(body)[1]
        return str(kwargs.get("idempotency_key") or message["headers"]["id"])
    except (ValueError, KeyError, TypeError, IndexError, AttributeError):
        return None


def pending_jobs(client: Any, queue: str) -> int:
    """Waiting (LLEN queue) + held (the unacked hash), atomically, less the held jobs already done. One hash
    serves every queue of the broker: the stack's Redis holds one Celery queue, so the hash is that queue's.
    The done records are read after: a record only appears, so a job finished in between is left out, as it
    should be."""
    with client.pipeline(transaction=True) as pipeline:
        pipeline.llen(queue)
        pipeline.hvals(UNACKED)
        waiting, held = pipeline.execute()
    keys = [job_key(entry) for entry in held]
    known = [key for key in keys if key is not None]
    # EXISTS counts a key once per time it is named: two held copies of a done job are both left out.
    done = int(client.exists(*[done_key(queue, key) for key in known])) if known else 0
    return int(waiting) + len(held) - done


def dead_jobs(client: Any, dead_letter_list: str) -> int:
    return int(client.llen(dead_letter_list))
