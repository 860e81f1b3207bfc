"""PendingJobs of a Celery queue on Redis, read for the backlog publisher: the jobs waiting in the queue's list
plus the jobs workers hold (prefetched or running) in the `unacked` hash, read in one MULTI/EXEC so that a job
moving from one to the other between two reads is counted once, not zero or two times.

LLEN alone misses every prefetched and running job, and the jobs stranded by a worker that died: scaling on it
would scale in under running work and never see stranded jobs.

    pending_jobs(client, "sqs-fleet-prod-vehicles")     # client: a redis-py client (the publisher's RedisReader)

No import beside the standard library (the caller brings redis-py); Python 3.9+.
"""

from __future__ import annotations

from typing import Any

UNACKED = "unacked"  # kombu's Redis transport: hash of delivered, not yet acknowledged messages
# Published beside PendingJobs (whose namespace, name and dimension the publisher's environment gives).
DEAD_METRIC = "DeadJobs"


def pending_jobs(client: Any, queue: str) -> int:
    """Waiting (LLEN queue) + unacked (HLEN unacked), atomically. One hash serves every queue of the broker:
    the stack's Redis holds one Celery queue, so the hash is that queue's."""
    with client.pipeline(transaction=True) as pipeline:
        pipeline.llen(queue)
        pipeline.hlen(UNACKED)
        waiting, unacked = pipeline.execute()
    return int(waiting) + int(unacked)


def dead_jobs(client: Any, dead_letter_list: str) -> int:
    return int(client.llen(dead_letter_list))
