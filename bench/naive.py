"""The baseline: how the public solutions of this exercise consume and produce, one message per call."""

from __future__ import annotations

import json
from typing import Any


def naive_consume(client: Any, url: str, wanted: int) -> int:
    """One message per receive, one DeleteMessage per message."""
    done = 0
    while done < wanted:
        messages = client.receive_message(QueueUrl=url, MaxNumberOfMessages=1, WaitTimeSeconds=0).get("Messages", [])
        for message in messages:
            print(json.loads(message["Body"]))  # "processing": log the content
            client.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
            done += 1
    return done


def naive_produce(client: Any, url: str, vehicles: list[dict[str, Any]]) -> None:
    """One SendMessage per vehicle."""
    for vehicle in vehicles:
        client.send_message(QueueUrl=url, MessageBody=json.dumps(vehicle))
