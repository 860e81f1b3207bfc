"""The reference for the worker's throughput: a bare Celery task under the vehicle job's name, on the broker
settings files/celery_worker.py uses (acks late, reject on worker lost, prefetch 1 a process, the same transport
options and worker flags), printing one line a job and doing nothing else: no validation, no done record, no
delivery counter, no lease renewal.

    REDIS_AUTH_TOKEN=... python bench/bare_celery_task.py --queue bare --broker-url redis://127.0.0.1:6390/0
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from collections.abc import Sequence
from typing import Any

from sqs_fleet_workers import celery_worker


def make_app(url: str, queue: str) -> Any:
    from celery import Celery

    app = Celery("bare", broker=url)
    # files/celery_worker.py's settings at its defaults (its make_app also connects the worker's signal handlers,
    # which start the lease renewal: not bare).
    visibility, restore = celery_worker.VISIBILITY_TIMEOUT, 5
    app.conf.update(
        task_default_queue=queue, task_serializer="json", accept_content=["json"], result_backend=None,
        task_ignore_result=True, task_acks_late=True, task_reject_on_worker_lost=True, worker_prefetch_multiplier=1,
        broker_connection_retry_on_startup=True, worker_hijack_root_logger=False, worker_redirect_stdouts=False,
        broker_transport_options={"visibility_timeout": visibility, "unacked_restore_interval": restore,
                                  "unacked_restore_throttle": 1,
                                  "unacked_mutex_expire": max(visibility, 2 * restore)})

    @app.task(name=celery_worker.TASK_NAME, bind=True)  # type: ignore[untyped-decorator]
    def process(self: Any, vehicle: Any, idempotency_key: str | None = None) -> None:
        print(f"bare_processed {self.request.id}", flush=True)

    return app


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queue", required=True)
    parser.add_argument("--broker-url", required=True, help="without the token ($REDIS_AUTH_TOKEN)")
    parser.add_argument("--concurrency", type=int, default=1)
    args = parser.parse_args(argv)
    app = make_app(celery_worker.broker_url(args.broker_url, None, os.environ.get("REDIS_AUTH_TOKEN")), args.queue)
    app.worker_main(["worker", "-Q", args.queue, "-c", str(args.concurrency), "--pool", "prefork",
                     "-n", f"bare-{os.getpid()}@{socket.gethostname()}", "--loglevel", "WARNING",
                     "--without-gossip", "--without-mingle", "--without-heartbeat"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
