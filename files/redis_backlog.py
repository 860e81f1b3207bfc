"""PendingJobs of a Celery queue on Redis, read for the backlog publisher: the jobs waiting in the queue's list
plus the jobs workers hold (prefetched or running) in the `unacked` hash, read in one MULTI/EXEC so that a job
moving from one to the other between two reads is counted once, not zero or two times.

LLEN alone misses every prefetched and running job, and the jobs stranded by a worker that died: scaling on it
would scale in under running work and never see stranded jobs.

    client = reader_from_environment()          # REDIS_URL (without the token), REDIS_AUTH_TOKEN or the SSM one
    pending_jobs(client, "sqs-fleet-prod-vehicles")

Only redis-py beside the standard library (boto3 to read the token from SSM); Python 3.9+.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

UNACKED = "unacked"  # kombu's Redis transport: hash of delivered, not yet acknowledged messages
# What the publisher puts by default (the design's): namespace BMAT, metric PendingJobs, QueueName=<env>-bmat.
NAMESPACE = "BMAT"
METRIC = "PendingJobs"
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


def reader_from_environment(environ: Mapping[str, str] | None = None) -> Any:
    """A redis-py client from REDIS_URL (redis:// or rediss://, no token), and the token from
    REDIS_AUTH_TOKEN or the SSM SecureString named by REDIS_AUTH_PARAMETER (AWS_REGION)."""
    import redis

    environ = os.environ if environ is None else environ
    token = environ.get("REDIS_AUTH_TOKEN")
    if not token and environ.get("REDIS_AUTH_PARAMETER"):
        import boto3

        ssm = boto3.client("ssm", region_name=environ.get("AWS_REGION"))
        token = ssm.get_parameter(Name=environ["REDIS_AUTH_PARAMETER"], WithDecryption=True)["Parameter"]["Value"]
    return redis.Redis.from_url(environ["REDIS_URL"], password=token or None, socket_timeout=5,
                                socket_connect_timeout=5)


def metric_data(pending: int, dimensions: Mapping[str, str], metric: str = METRIC) -> list[dict[str, Any]]:
    """The PutMetricData entry of one reading (namespace given apart)."""
    return [{"MetricName": metric, "Value": float(pending), "Unit": "Count",
             "Dimensions": [{"Name": k, "Value": v} for k, v in dimensions.items()]}]
