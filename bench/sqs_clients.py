"""Benchmark producer.py and consumer.py against the naive baseline, on a private emulator.

    python -m bench.sqs_clients [--depth 500] [--smoke]

Prints API requests per message and messages per second for each, with the queue depth and machine.
"""

from __future__ import annotations

import argparse
import io
import sys
import threading
import time
from contextlib import redirect_stdout
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from bench.common import machine, private_emulator, smoke_option, table
from bench.naive import naive_consume, naive_produce
from sqs_fleet_workers import consumer, producer
from sqs_fleet_workers.sqs_calls import sqs_client
from sqs_fleet_workers.vehicles import generate

LATENCY = {"seconds": 0.0}  # a modelled network round trip added to every request


def counted_client() -> tuple[Any, dict[str, int]]:
    client = sqs_client()
    calls = {"requests": 0}

    def count(**_: Any) -> None:
        calls["requests"] += 1
        time.sleep(LATENCY["seconds"])

    client.meta.events.register("before-send.sqs.*", count)
    return client, calls


def bench_producer(depth: int) -> list[list[object]]:
    rows = []
    vehicles = generate(depth, seed=1)
    url = sqs_client().create_queue(QueueName=f"bench-produce-naive-{run_id()}")["QueueUrl"]
    client, calls = counted_client()
    started = time.perf_counter()
    naive_produce(client, url, vehicles)
    naive_seconds = time.perf_counter() - started
    rows.append(["naive (SendMessage each)", depth, calls["requests"], f"{calls['requests'] / depth:.3f}",
                 f"{depth / naive_seconds:.0f}", "1.0x"])

    for concurrency in (1, 4):
        url = sqs_client().create_queue(QueueName=f"bench-produce-{concurrency}-{run_id()}")["QueueUrl"]
        client, calls = counted_client()
        producer.sqs_client = lambda client=client: client  # type: ignore[assignment]
        started = time.perf_counter()
        with redirect_stdout(io.StringIO()):
            assert producer.main(["--queue", url, "--count", str(depth), "--seed", "1",
                                  "--concurrency", str(concurrency), "--json"]) == 0
        seconds = time.perf_counter() - started
        sends = calls["requests"] - 1  # GetQueueAttributes once (MaximumMessageSize); a URL needs no GetQueueUrl
        rows.append([f"producer.py --concurrency {concurrency}", depth, calls["requests"],
                     f"{sends / depth:.3f}", f"{depth / seconds:.0f}", f"{naive_seconds / seconds:.1f}x"])
    return rows


def bench_consumer(depth: int) -> list[list[object]]:
    rows = []
    seed_client = sqs_client()
    naive_url = seed_client.create_queue(QueueName=f"bench-consume-naive-{run_id()}")["QueueUrl"]
    producer.sqs_client = sqs_client  # type: ignore[assignment]
    with redirect_stdout(io.StringIO()):
        producer.main(["--queue", naive_url, "--count", str(depth), "--json"])
    client, calls = counted_client()
    started = time.perf_counter()
    with redirect_stdout(io.StringIO()):
        naive_consume(client, naive_url, depth)
    seconds = time.perf_counter() - started
    rows.append(["naive (1 per receive, single deletes)", depth, calls["requests"],
                 f"{calls['requests'] / depth:.3f}", f"{depth / seconds:.0f}"])

    url = seed_client.create_queue(QueueName=f"bench-consume-{run_id()}")["QueueUrl"]
    with redirect_stdout(io.StringIO()):
        producer.main(["--queue", url, "--count", str(depth), "--json"])
    client, calls = counted_client()
    args = consumer.parse_args(["--queue", url, "--poll-interval", "0", "--wait-time", "0",
                                "--max-messages", str(depth), "--visibility-timeout", "30"])
    worker = consumer.Consumer(client, url, args, consumer.Log(io.StringIO()), consumer.SeenKeys(depth, None))
    started = time.perf_counter()
    worker.run()
    seconds = time.perf_counter() - started
    rows.append(["consumer.py --poll-interval 0", depth, calls["requests"],
                 f"{calls['requests'] / depth:.3f}", f"{depth / seconds:.0f}"])
    return rows


def run_id() -> str:
    return f"{LATENCY['seconds'] * 1000:.0f}ms"


def bench_idle(seconds: float) -> list[list[object]]:
    """Requests a minute on an empty queue, with the defaults (60 s between polls, 20 s long polls)."""
    url = sqs_client().create_queue(QueueName="bench-idle")["QueueUrl"]
    client, calls = counted_client()
    args = consumer.parse_args(["--queue", url, "--visibility-timeout", "30"])
    worker = consumer.Consumer(client, url, args, consumer.Log(io.StringIO()), consumer.SeenKeys(10, None))
    thread = threading.Thread(target=worker.run)
    thread.start()
    time.sleep(seconds)
    worker.stop.set()
    thread.join()
    return [["consumer.py defaults, empty queue", f"{seconds:.0f} s", calls["requests"],
             f"{calls['requests'] * 60 / seconds:.2f}"]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--depth", type=int, default=500, help="messages per run (moto slows as a queue fills)")
    parser.add_argument("--idle-seconds", type=float, default=170, help="how long to watch an idle consumer")
    parser.add_argument("--latency-ms", type=float, default=15,
                        help="modelled round trip per request for the second run (in-region AWS: ~10-20 ms)")
    smoke_option(parser)
    args = parser.parse_args(argv)
    if args.smoke:
        args.depth, args.idle_seconds = 20, 2
    with TemporaryDirectory() as tmp:
        server = private_emulator(Path(tmp))
        try:
            print(f"machine: {machine()}")
            print("AWS side: moto server on 127.0.0.1 (one process); figures are the clients' work, not AWS's")
            for latency in (0.0, args.latency_ms / 1000):
                LATENCY["seconds"] = latency
                where = "round trip: loopback" + (f" + {latency * 1000:.0f} ms modelled" if latency else "")
                table(f"Producer ({where})",
                      ["client", "messages", "requests", "requests/message", "messages/s", "speed-up"],
                      bench_producer(args.depth))
                table(f"Consumer under backlog ({where})",
                      ["client", "queue depth", "requests", "requests/message", "messages/s"],
                      bench_consumer(args.depth))
            LATENCY["seconds"] = 0.0
            table("Consumer idle", ["client", "watched", "requests", "requests/minute"], bench_idle(args.idle_seconds))
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
