"""What every worker program shares: its JSON log lines, its configuration errors and its AWS clients.

Each program ships with this module beside it (the roles copy it; the Lambda package holds it). Standard library
only at import time (boto3 is imported where a client is made: the Celery worker may need none); Python 3.9+.
"""

from __future__ import annotations

import datetime
import json
import os
import sys
import threading
from collections.abc import Mapping
from typing import Any

USER_AGENT = "sqs-fleet"
# The service's part of AWS_ENDPOINT_URL_<SERVICE> where it is not the client's name in capitals (the SDKs
# derive it from the service id, "Auto Scaling").
ENDPOINT_VARIABLES = {"autoscaling": "AUTO_SCALING"}


def log_line(event: str, level: str = "info", **fields: Any) -> str:
    """One log record as a JSON object with stable keys (ts, level, event, then the fields), without newline:
    journald, the CloudWatch agent and Lambda ingest it, and Logs Insights queries its keys."""
    return json.dumps({"ts": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds"),
                       "level": level, "event": event, **fields}, default=str)


def log(event: str, level: str = "info", **fields: Any) -> None:
    """Write one log record on stdout. The line and its newline go out in one write: processes sharing stdout
    (a Celery pool) never run two lines together, as print's separate newline write could."""
    sys.stdout.write(log_line(event, level, **fields) + "\n")
    sys.stdout.flush()


class Log:
    """`log` bound to a stream, safe from several threads (a consumer's heartbeat and its main loop)."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream or sys.stdout
        # Reentrant: a signal handler logs too, and may run while the main thread holds the lock.
        self.lock = threading.RLock()

    def __call__(self, event: str, level: str = "info", **fields: Any) -> None:
        line = log_line(event, level, **fields)
        with self.lock:
            self.stream.write(line + "\n")
            self.stream.flush()


def fail(message: str) -> int:
    """Print a configuration error and return the exit status for it."""
    print(f"error: {message}", file=sys.stderr)
    return 2


def aws_client(service: str, *, env: Mapping[str, str] | None = None, region: str | None = None,
               max_attempts: int = 5, connect_timeout: float = 5, read_timeout: float = 30,
               user_agent: str = USER_AGENT) -> Any:
    """A boto3 client with botocore's standard retry mode (throttling and 5xx, exponential backoff with jitter)
    and bounded timeouts, configured from the standard AWS environment: `env` (os.environ by default) names the
    endpoint (AWS_ENDPOINT_URL_<SERVICE>, then AWS_ENDPOINT_URL) and the region (AWS_REGION, then
    AWS_DEFAULT_REGION) unless `region` is given. Named here because botocore reads AWS_ENDPOINT_URL itself only
    since 1.31 and boto3 takes the region only as AWS_DEFAULT_REGION, and a node's system boto3 may be older.
    Another mapping than os.environ (a local caller's) supplies the access keys too."""
    import boto3
    from botocore.config import Config

    environ: Mapping[str, str] = os.environ if env is None else env
    config = Config(retries={"mode": "standard", "total_max_attempts": max_attempts},
                    connect_timeout=connect_timeout, read_timeout=read_timeout, user_agent_extra=user_agent)
    service_key = ENDPOINT_VARIABLES.get(service, service.upper().replace("-", "_"))
    endpoint = environ.get(f"AWS_ENDPOINT_URL_{service_key}") or environ.get("AWS_ENDPOINT_URL") or None
    region = region or environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION") or None
    keys: dict[str, Any] = {}
    if environ is not os.environ:
        keys = {"aws_access_key_id": environ.get("AWS_ACCESS_KEY_ID") or None,
                "aws_secret_access_key": environ.get("AWS_SECRET_ACCESS_KEY") or None}
    return boto3.session.Session().client(service, config=config, endpoint_url=endpoint, region_name=region, **keys)
