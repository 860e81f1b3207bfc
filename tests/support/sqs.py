"""Queues, producers and consumers on the test emulator, driven as a user drives them."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from sqs_fleet_workers import consumer, sqs_calls
from support.polling import wait_until

FILES = Path(consumer.__file__).parent


class Queues:
    """A fresh work queue with a dead-letter queue, per test."""

    def __init__(self, sqs: Any, visibility: int = 30, max_receive_count: int = 3, maximum_size: int = 262144):
        name = f"t-{uuid.uuid4().hex[:12]}"
        self.sqs = sqs
        self.dlq_url = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=self.dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        self.name = name
        self.url = sqs.create_queue(QueueName=name, Attributes={
            "VisibilityTimeout": str(visibility),
            "MaximumMessageSize": str(maximum_size),
            "RedrivePolicy": json.dumps({"maxReceiveCount": max_receive_count, "deadLetterTargetArn": dlq_arn}),
        })["QueueUrl"]

    def counts(self, url: str | None = None) -> tuple[int, int]:
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=url or self.url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]), int(attributes["ApproximateNumberOfMessagesNotVisible"])

    def wait_for_counts(self, counts: tuple[int, int], timeout: float = 30, interval: float = 0.05) -> None:
        """Until the work queue's (visible, in flight) counts are `counts`."""
        wait_until(lambda: self.counts() == counts, timeout, lambda: f"counts {counts}; now {self.counts()}",
                   interval=interval)

    def bodies(self, url: str) -> list[dict[str, Any]]:
        """Every message on a queue (made visible again afterwards)."""
        found: dict[str, dict[str, Any]] = {}
        for _ in range(20):
            batch = self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=30,
                                             MessageAttributeNames=["All"]).get("Messages", [])
            if not batch:
                break
            found.update({m["MessageId"]: m for m in batch})
        for message in found.values():
            self.sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"],
                                               VisibilityTimeout=0)
        return list(found.values())


def script_env(emulator: Any, **extra: str) -> dict[str, str]:
    return {**os.environ, **emulator.environment(), "PYTHONUNBUFFERED": "1", **extra}


def run_script(emulator: Any, script: str, *args: str, stdin: str | None = None, **env: str):
    return subprocess.run([sys.executable, str(FILES / script), *args], env=script_env(emulator, **env),
                          input=stdin, capture_output=True, text=True, timeout=300, check=False)


class ConsumerProcess:
    """consumer.py in the background, its stdout collected in a file."""

    def __init__(self, emulator: Any, log: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.log = log
        self.out = log.open("a")
        self.process = subprocess.Popen([sys.executable, str(FILES / "consumer.py"), *args],
                                        env=script_env(emulator, **(env or {})), stdout=self.out,
                                        stderr=subprocess.STDOUT)

    def events(self) -> list[dict[str, Any]]:
        return events(self.log.read_text())

    def wait_for(self, predicate: Any, timeout: float = 60) -> None:
        """Until predicate(what the consumer logged) holds; fails at once if the consumer exits."""

        def logged() -> bool:
            assert self.process.poll() is None, f"consumer exited: {self.log.read_text()[-2000:]}"
            return bool(predicate(self.events()))

        wait_until(logged, timeout, lambda: f"the consumer's log; log: {self.log.read_text()[-2000:]}",
                   interval=0.05)

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def stop(self, timeout: float = 60) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout)
        self.out.close()
        return code


def events(text: str) -> list[dict[str, Any]]:
    # Complete lines only: a running consumer may be writing the last one while it is read.
    return [json.loads(line) for line in text.splitlines(keepends=True)
            if line.startswith("{") and line.endswith("\n")]


def processed_ids(all_events: list[dict[str, Any]]) -> list[str]:
    return [e["vehicle"]["vehicleId"] for e in all_events if e["event"] == "message_processed"]


def in_process(monkeypatch: Any, emulator: Any, queues: Queues, *argv: str, stop: consumer.Stop | None = None):
    """A consumer in this process on a real client to the emulator (for botocore event hooks): the consumer, its
    client, and a function returning what it logged so far."""
    for name, value in emulator.environment().items():
        monkeypatch.setenv(name, value)
    client = sqs_calls.sqs_client()
    args = consumer.parse_args(["--queue", queues.url, "--poll-interval", "0", "--wait-time", "0", *argv])
    if args.visibility_timeout is None:
        args.visibility_timeout = 30
    out = io.StringIO()
    worker = consumer.Consumer(client, queues.url, args, consumer.Log(out), consumer.SeenKeys(1000, None), stop)
    return worker, client, lambda: events(out.getvalue())
