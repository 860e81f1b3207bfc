"""Many consumers receiving from one queue at once, with a visibility timeout longer than the run: SQS returns each
message to one of them only. Shared by tests/emulator/test_receive_race.py, and runnable on its own to serve moto
in this process, plain or with the lab's corrections, and count what was received twice:

    python tests/support/receive_race.py plain|corrected [--rounds N] [--until-duplicate]

Run on its own, the thread switch interval is made very short (sys.setswitchinterval), so that a server thread is
often interrupted inside moto's receive: a race that a busy server loses now and then shows in every few rounds.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import socket
import sys
import threading
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from sqs_fleet.lab.moto_corrections import installed

THREADS = 16
MESSAGES = 200


def received_twice(sqs: Callable[[], Any], threads: int = THREADS, messages: int = MESSAGES) -> int:
    """Send `messages` to a new queue (visibility 10 minutes), receive them with `threads` consumers at once until
    the queue is empty; the number of messages that more than one receive returned."""
    client = sqs()
    url = client.create_queue(QueueName=f"race-{uuid.uuid4().hex[:12]}",
                              Attributes={"VisibilityTimeout": "600"})["QueueUrl"]
    for start in range(0, messages, 10):
        client.send_message_batch(QueueUrl=url, Entries=[
            {"Id": str(n), "MessageBody": f"message {start + n}"} for n in range(min(10, messages - start))])
    seen: collections.Counter[str] = collections.Counter()
    lock, ready = threading.Lock(), threading.Barrier(threads)

    def consume() -> None:
        own = sqs()
        ready.wait()  # every consumer starts at once
        empty = 0
        while empty < 2:
            got = own.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
            empty = 0 if got else empty + 1
            with lock:
                seen.update(message["MessageId"] for message in got)

    workers = [threading.Thread(target=consume) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    client.delete_queue(QueueUrl=url)
    assert len(seen) == messages, f"{messages - len(seen)} messages never received"
    return sum(1 for count in seen.values() if count > 1)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("server", choices=["plain", "corrected"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--until-duplicate", action="store_true", help="stop at the first round with a duplicate")
    args = parser.parse_args(argv)
    import boto3
    from moto.server import ThreadedMotoServer

    sys.setswitchinterval(1e-5)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    corrections = installed() if args.server == "corrected" else contextlib.nullcontext()
    corrections.__enter__()
    server = ThreadedMotoServer("127.0.0.1", port, verbose=False)
    server.start()
    settings = {"endpoint_url": f"http://127.0.0.1:{port}", "region_name": "us-east-1",
                "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}  # moto's placeholders
    duplicates = []
    try:
        for _ in range(args.rounds):
            duplicates.append(received_twice(lambda: boto3.client("sqs", **settings)))
            if args.until_duplicate and duplicates[-1]:
                break
    finally:
        server.stop()
        corrections.__exit__(None, None, None)
    print(json.dumps({"server": args.server, "duplicates_per_round": duplicates}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
