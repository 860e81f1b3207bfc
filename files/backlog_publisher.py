#!/usr/bin/env python3
"""Publish a queue's backlog (visible + in flight) as a high-resolution CloudWatch metric, every 10 seconds.

Deployed as a Lambda function (handler `backlog_publisher.handler`) that EventBridge Scheduler invokes once a
minute, the most often a schedule fires: one invocation publishes `BACKLOG_PUBLISHES` times (6), one data point
per `BACKLOG_PERIOD` seconds (10), aligned on the period's boundaries, and stops before the function's timeout.
It reads the backlog straight from the queue's API, never from the queue's own one-minute CloudWatch copy, and
publishes 0 for an idle queue, so the metric never goes missing while the publisher runs: a scaling alarm can
read "no data" as "the publisher stopped", never as "empty".

Configuration (environment variables):
  BACKLOG_NAMESPACE        metric namespace (required)
  BACKLOG_METRIC_NAME      metric name (default Backlog)
  BACKLOG_DIMENSION_NAME   the metric's one dimension (default QueueName)
  BACKLOG_DIMENSION_VALUE  its value (required: the queue's name)
  BACKLOG_READER           where the backlog comes from: sqs (default) or redis
  BACKLOG_QUEUE_URL        the queue the SQS reader reads (required by it)
  BACKLOG_REDIS_QUEUE      the Celery queue (a Redis list) the redis reader reads (required by it)
  BACKLOG_REDIS_ENDPOINT_PARAMETER  SSM parameter with the broker's host:port, reached over TLS, or
  BACKLOG_REDIS_URL        a redis:// URL without credentials (a lab broker)
  BACKLOG_REDIS_AUTH_PARAMETER      SSM SecureString with the AUTH token (optional)
  BACKLOG_REDIS_DEAD_LETTER_LIST    Redis list of poison jobs, published as DeadJobs (optional)
  BACKLOG_PERIOD           seconds between data points: 1 to 60 (default 10)
  BACKLOG_PUBLISHES        data points per invocation (default 6)

Overlapping invocations are harmless: the function is reserved one concurrent execution where the account
allows it, but an account with too small a quota for any reservation runs it unreserved, and a late invocation
may then overlap the next one. Each publishes what it reads at that moment, with no state shared between
invocations, so two overlapping ones put two near-simultaneous readings into the same period: the alarms read
the period's Maximum (and the stale alarm its SampleCount, "fewer than 1"), which a second reading of the same
backlog does not change. Nothing here may sum or difference data points across invocations.

An invocation's event may carry `publishes` (data points this time) and `timestamp` (ISO 8601: the first data
point's time), for a caller that plays the schedule itself, one period at a time.
Errors are logged as one JSON line and raised again, so Lambda records a failed invocation.
Locally: `backlog_publisher.py --once` publishes one data point with this environment (AWS_* as usual).

A reader is anything with `backlog() -> int`; a new source of backlog is a class and one line in READERS.
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any, Callable, Protocol

# Its modules: the package's when imported as sqs_fleet_workers.backlog_publisher (the controller), top-level modules
# beside it when run as a script (a node's install directory, the Lambda's zip). mypy reads the package form.
# Why this way: docs/workers.md.
if TYPE_CHECKING or __package__:
    from .worker_common import aws_client, log
else:
    from worker_common import aws_client, log

ATTEMPTS = 3  # tries of each call (botocore's standard retry mode): the function runs again within the minute
SAFETY_MARGIN_MS = 3000  # what a publish needs at most, kept out of the remaining time
Clients = Callable[[str], Any]


class ConfigurationError(ValueError):
    """An environment variable is missing or wrong."""


class BacklogReader(Protocol):
    def backlog(self) -> int:
        """Messages waiting or being worked on right now."""


class SqsReader:
    """SQS's own counts from GetQueueAttributes: visible + in flight (never CloudWatch's delayed copy)."""

    ATTRIBUTES = ("ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible")

    def __init__(self, sqs: Any, queue_url: str) -> None:
        self.sqs, self.queue_url = sqs, queue_url

    @classmethod
    def from_environment(cls, env: Mapping[str, str], clients: Clients) -> SqsReader:
        return cls(clients("sqs"), required(env, "BACKLOG_QUEUE_URL"))

    def backlog(self) -> int:
        attributes = self.sqs.get_queue_attributes(QueueUrl=self.queue_url,
                                                   AttributeNames=list(self.ATTRIBUTES))["Attributes"]
        return sum(int(attributes.get(name, 0)) for name in self.ATTRIBUTES)


class RedisReader:
    """PendingJobs of a Celery queue on Redis: jobs waiting in its list + jobs workers hold (unacked), in one
    MULTI/EXEC (redis_backlog.pending_jobs); with a dead-letter list, its length is published as DeadJobs."""

    def __init__(self, client: Any, queue: str, dead_letter_list: str = "") -> None:
        self.client, self.queue, self.dead_letter_list = client, queue, dead_letter_list

    @classmethod
    def from_environment(cls, env: Mapping[str, str], clients: Clients) -> RedisReader:
        import redis  # packaged with the function for this reader only

        queue = required(env, "BACKLOG_REDIS_QUEUE")
        ssm = clients("ssm") if env.get("BACKLOG_REDIS_ENDPOINT_PARAMETER") or env.get("BACKLOG_REDIS_AUTH_PARAMETER") \
            else None
        url = env.get("BACKLOG_REDIS_URL", "")
        if not url:
            endpoint = parameter(ssm, required(env, "BACKLOG_REDIS_ENDPOINT_PARAMETER"))
            url = f"rediss://{endpoint}/0?ssl_cert_reqs=required"  # ElastiCache: TLS, certificate verified
        token = parameter(ssm, env["BACKLOG_REDIS_AUTH_PARAMETER"]) if env.get("BACKLOG_REDIS_AUTH_PARAMETER") else None
        client = redis.Redis.from_url(url, password=token, socket_timeout=5, socket_connect_timeout=5)
        return cls(client, queue, env.get("BACKLOG_REDIS_DEAD_LETTER_LIST", ""))

    def backlog(self) -> int:
        return int(redis_backlog().pending_jobs(self.client, self.queue))

    def extra_metrics(self) -> dict[str, int]:
        if not self.dead_letter_list:
            return {}
        module = redis_backlog()
        return {str(module.DEAD_METRIC): int(module.dead_jobs(self.client, self.dead_letter_list))}


def redis_backlog() -> ModuleType:
    """The module redis_backlog, imported on first use: only the redis reader's package holds it."""
    if TYPE_CHECKING or __package__:
        from . import redis_backlog as module
    else:
        import redis_backlog as module
    return module


def parameter(ssm: Any, name: str) -> str:
    return str(ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"])


# BACKLOG_READER -> how to make that reader from the environment.
READERS: dict[str, Callable[[Mapping[str, str], Clients], BacklogReader]] = {
    "sqs": SqsReader.from_environment,
    "redis": RedisReader.from_environment,
}


def required(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "")
    if not value:
        raise ConfigurationError(f"{name} is not set")
    return value


def positive_int(env: Mapping[str, str], name: str, default: int, highest: int) -> int:
    text = env.get(name) or str(default)
    try:
        value = int(text)
    except ValueError:
        raise ConfigurationError(f"{name}={text!r} is not an integer") from None
    if not 1 <= value <= highest:
        raise ConfigurationError(f"{name}={value}: must be 1 to {highest}")
    return value


@dataclass(frozen=True)
class Settings:
    namespace: str
    metric_name: str
    dimension_name: str
    dimension_value: str
    reader: str
    period: int
    publishes: int

    @classmethod
    def from_environment(cls, env: Mapping[str, str]) -> Settings:
        reader = env.get("BACKLOG_READER") or "sqs"
        if reader not in READERS:
            raise ConfigurationError(f"BACKLOG_READER={reader!r}: one of {', '.join(sorted(READERS))}")
        return cls(namespace=required(env, "BACKLOG_NAMESPACE"),
                   metric_name=env.get("BACKLOG_METRIC_NAME") or "Backlog",
                   dimension_name=env.get("BACKLOG_DIMENSION_NAME") or "QueueName",
                   dimension_value=required(env, "BACKLOG_DIMENSION_VALUE"),
                   reader=reader,
                   period=positive_int(env, "BACKLOG_PERIOD", 10, 60),
                   publishes=positive_int(env, "BACKLOG_PUBLISHES", 6, 60))


def publish(cloudwatch: Any, settings: Settings, value: int, at: datetime.datetime,
            extra: Mapping[str, int] | None = None) -> None:
    """One data point at one-second resolution, so alarms may use 10-second periods of it (and the reader's
    other metrics, under the same dimension, in the same call)."""
    values = {settings.metric_name: value, **(extra or {})}
    cloudwatch.put_metric_data(Namespace=settings.namespace, MetricData=[{
        "MetricName": name,
        "Dimensions": [{"Name": settings.dimension_name, "Value": settings.dimension_value}],
        "Timestamp": at, "Value": float(count), "Unit": "Count", "StorageResolution": 1}
        for name, count in values.items()])


def clients_for(env: Mapping[str, str]) -> Clients:
    """boto3 clients from the standard chain; an explicit environment (a local caller's) may name an endpoint,
    region and keys."""
    return lambda service: aws_client(service, env=env, max_attempts=ATTEMPTS)


def remaining_ms(context: Any) -> int | None:
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    return int(remaining()) if callable(remaining) else None


def run(settings: Settings, reader: BacklogReader, cloudwatch: Any, context: Any = None, publishes: int | None = None,
        first: datetime.datetime | None = None, sleep: Callable[[float], None] = time.sleep,
        now: Callable[[], float] = time.time) -> list[int]:
    """Publish `publishes` data points: the first at once, the next ones on the period's boundaries (so each
    falls in a period of its own), stopping early rather than run into the function's timeout."""
    count = settings.publishes if publishes is None else publishes
    started = now()
    boundary = math.floor(started / settings.period) * settings.period
    shift = (first.timestamp() - started) if first is not None else 0.0  # the caller's clock, if it gave one
    values: list[int] = []
    for index in range(count):
        if index:
            wait = boundary + index * settings.period - now()
            left = remaining_ms(context)
            if left is not None and left < wait * 1000 + SAFETY_MARGIN_MS:
                log("backlog_publisher_stopped_early", level="warning", published=index, remaining_ms=left)
                break
            if wait > 0:
                sleep(wait)
        value = reader.backlog()
        extra: dict[str, int] = getattr(reader, "extra_metrics", dict)()
        at = datetime.datetime.fromtimestamp(now() + shift, datetime.timezone.utc)
        publish(cloudwatch, settings, value, at, extra)
        values.append(value)
    return values


def invoke(event: Mapping[str, Any] | None, context: Any, env: Mapping[str, str],
           clients: Clients | None = None) -> dict[str, Any]:
    """One invocation with this environment; `clients` defaults to boto3's from the environment."""
    try:
        settings = Settings.from_environment(env)
        make = clients or clients_for(env)
        reader = READERS[settings.reader](env, make)
        event = event or {}
        first = event.get("timestamp")
        values = run(settings, reader, make("cloudwatch"), context,
                     publishes=int(event["publishes"]) if "publishes" in event else None,
                     first=datetime.datetime.fromisoformat(first) if first else None)
    except Exception as error:
        log("backlog_publisher_failed", level="error", error=type(error).__name__, message=str(error))
        raise
    result: dict[str, Any] = {"namespace": settings.namespace, "metric": settings.metric_name,
              settings.dimension_name: settings.dimension_value, "values": values}
    log("backlog_published", **result)
    return result


def handler(event: Mapping[str, Any] | None, context: Any) -> dict[str, Any]:
    """The Lambda entry point."""
    return invoke(event, context, os.environ)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--once", action="store_true", help="publish one data point, not BACKLOG_PUBLISHES")
    args = parser.parse_args(argv)
    try:
        invoke({"publishes": 1} if args.once else {}, None, os.environ)
    except ConfigurationError:
        return 2
    except Exception:  # noqa: BLE001 - logged by invoke as one JSON line
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
