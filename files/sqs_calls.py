"""The SQS calls the producer and the consumer share: the client, the queue's URL, and which failures (of a
whole call or of one entry of a batch call) are worth another try.

Standard library and boto3 only; runs on Python 3.9 (Amazon Linux 2023's system Python).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

# Its modules: the package's when imported as sqs_fleet_workers.sqs_calls (the controller), top-level modules
# beside it when run as a script (a node's install directory, the Lambda's zip). mypy reads the package form.
# Why this way: docs/workers.md.
if TYPE_CHECKING or __package__:
    from . import worker_common as common
else:
    import worker_common as common

# Error codes that mean "try again later", never "the request is wrong", whatever the HTTP status: the
# throttles in botocore's SQS model (RequestThrottled, KmsThrottled, the latter also by its query-protocol name
# KMS.ThrottlingException) and the throttling and timeout codes of botocore's standard retry mode. botocore
# itself retries only its own list, which lacks KmsThrottled; an entry a batch call reports Failed carries
# these codes too.
RETRYABLE_ERRORS = frozenset({
    "RequestThrottled", "KmsThrottled", "KMS.ThrottlingException",
    "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottledException",
    "TooManyRequestsException", "RequestLimitExceeded", "SlowDown",
    "RequestTimeout", "RequestTimeoutException", "PriorRequestNotComplete",
    "InternalError", "InternalFailure", "ServiceUnavailable",
})


def error_code(error: Exception) -> str:
    """The AWS error code of a failed call, or the exception's class name (network errors)."""
    response = getattr(error, "response", None) or {}
    return str(response.get("Error", {}).get("Code") or type(error).__name__)


def classify(error: Exception) -> tuple[bool, str]:
    """(is it the sender's fault, reason) for a whole-call failure: a 4xx other than throttling is ours
    (no retry helps); throttling, 5xx and network errors are worth another try."""
    response = getattr(error, "response", None) or {}
    code = error_code(error)
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    return 400 <= status < 500 and code not in RETRYABLE_ERRORS, f"{code}: {error}"


def entry_retryable(failure: dict[str, Any]) -> bool:
    """Whether a batch call's Failed entry is worth sending again: not the sender's fault, or throttled."""
    return not failure.get("SenderFault", True) or failure.get("Code") in RETRYABLE_ERRORS


def sqs_client(max_attempts: int = 5) -> Any:
    """An SQS client configured from the standard AWS environment (region, profile, AWS_ENDPOINT_URL),
    with botocore's standard retry mode (throttling and 5xx, exponential backoff with jitter)."""
    return common.aws_client("sqs", max_attempts=max_attempts, read_timeout=30)  # above the 20 s long-poll wait


def queue_url(client: Any, queue: str) -> str:
    """The queue's URL, from a URL (returned as is) or a name (resolved with GetQueueUrl)."""
    if "://" in queue:
        return queue
    return str(client.get_queue_url(QueueName=queue)["QueueUrl"])


def queue_argument(value: str | None) -> str | None:
    """--queue, or the QUEUE_URL environment variable."""
    return value or os.environ.get("QUEUE_URL") or None

