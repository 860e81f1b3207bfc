"""What bench.redis_broker and its worker processes share: the queues' names and the jobs they carry."""

from __future__ import annotations

from typing import Any

from sqs_fleet_workers import vehicles

QUEUE, DLQ = "jobs", "jobs-dlq"
BARE_QUEUE = "bare"  # bench/bare_celery_task.py's
# kombu's Redis transport: delivery tag -> time of delivery, and the lock of the sweep that restores old entries.
UNACKED_INDEX, RESTORE_MUTEX = "unacked_index", "unacked_mutex"
Job = tuple[dict[str, Any], str]


def jobs(count: int, prefix: str, seed: int = 1) -> list[Job]:
    return [(vehicle, f"{prefix}-{n}") for n, vehicle in enumerate(vehicles.generate(count, seed=seed))]
