"""The vehicle message: its schema, a realistic generator, and the SQS plumbing producer and consumer share.

Standard library and boto3 only; runs on Python 3.9 (Amazon Linux 2023's system Python).
"""

from __future__ import annotations

import datetime
import os
import random
import sys
from typing import Any

# A producer-assigned key that travels as a message attribute, so the consumer can recognise a
# redelivery or a producer retry (both create a new MessageId, never a new key).
IDEMPOTENCY_ATTRIBUTE = "idempotency-key"

STRING_FIELDS = ("vehicleId", "make", "model", "color")
INTEGER_FIELDS = ("year", "mileage")
FIELDS = STRING_FIELDS + INTEGER_FIELDS
FIRST_CAR_YEAR = 1886

Vehicle = dict[str, Any]

_MODELS = {
    "Honda": ["Civic", "Accord", "CR-V", "Jazz"],
    "Toyota": ["Corolla", "Camry", "RAV4", "Yaris", "Prius"],
    "Ford": ["Focus", "Fiesta", "Mustang", "Kuga"],
    "Volkswagen": ["Golf", "Polo", "Passat", "Tiguan"],
    "BMW": ["3 Series", "5 Series", "X3", "i4"],
    "Tesla": ["Model 3", "Model Y", "Model S"],
    "Renault": ["Clio", "Megane", "Zoe"],
    "Hyundai": ["i30", "Tucson", "Kona"],
}
_COLORS = ["Blue", "Red", "Black", "White", "Silver", "Grey", "Green", "Yellow"]


def validation_errors(record: Any) -> list[str]:
    """What is wrong with a vehicle record, as sentences; empty when it is valid."""
    if not isinstance(record, dict):
        return [f"expected a JSON object, got {type(record).__name__}"]
    errors = [f"missing field {name!r}" for name in FIELDS if name not in record]
    errors += [f"unknown field {name!r}" for name in record if name not in FIELDS]
    for name in STRING_FIELDS:
        value = record.get(name)
        if name in record and (not isinstance(value, str) or not value.strip()):
            errors.append(f"{name!r} must be a non-empty string, got {value!r}")
    next_year = datetime.date.today().year + 1
    for name, low, high in (("year", FIRST_CAR_YEAR, next_year), ("mileage", 0, None)):
        value = record.get(name)
        if name not in record:
            continue
        if not isinstance(value, int) or isinstance(value, bool):
            errors.append(f"{name!r} must be an integer, got {value!r}")
        elif value < low or (high is not None and value > high):
            bounds = f"{low}..{high}" if high is not None else f">= {low}"
            errors.append(f"{name!r} must be {bounds}, got {value}")
    return errors


def generate(count: int, seed: int | None = None, first_id: int = 2001) -> list[Vehicle]:
    """`count` realistic vehicles; the same seed gives the same vehicles."""
    rng = random.Random(seed)  # noqa: S311  # nosec B311 - sample data, not security
    this_year = datetime.date.today().year
    vehicles = []
    for number in range(first_id, first_id + count):
        make = rng.choice(sorted(_MODELS))
        year = rng.randint(this_year - 20, this_year)
        vehicles.append({
            "vehicleId": f"VH{number}",
            "make": make,
            "model": rng.choice(_MODELS[make]),
            "year": year,
            "color": rng.choice(_COLORS),
            # 5,000-20,000 km a year of age
            "mileage": (this_year - year) * rng.randint(5000, 20000) + rng.randint(0, 5000),
        })
    return vehicles


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
    import boto3
    from botocore.config import Config

    config = Config(
        retries={"mode": "standard", "total_max_attempts": max_attempts},
        connect_timeout=5,
        read_timeout=30,  # above the 20 s long-poll wait
        user_agent_extra="sqs-fleet",
    )
    # botocore reads AWS_ENDPOINT_URL itself only since 1.31; the node's system boto3 may be older.
    # Likewise AWS_REGION, which the AWS CLI and SDKs read but boto3 takes only as AWS_DEFAULT_REGION.
    endpoint = os.environ.get("AWS_ENDPOINT_URL_SQS") or os.environ.get("AWS_ENDPOINT_URL") or None
    region = os.environ.get("AWS_REGION") or None
    return boto3.session.Session().client("sqs", config=config, endpoint_url=endpoint, region_name=region)


def queue_url(client: Any, queue: str) -> str:
    """The queue's URL, from a URL (returned as is) or a name (resolved with GetQueueUrl)."""
    if "://" in queue:
        return queue
    return str(client.get_queue_url(QueueName=queue)["QueueUrl"])


def queue_argument(value: str | None) -> str | None:
    """--queue, or the QUEUE_URL environment variable."""
    return value or os.environ.get("QUEUE_URL") or None


def fail(message: str) -> int:
    """Print a configuration error and return the exit status for it."""
    print(f"error: {message}", file=sys.stderr)
    return 2
