"""A worker boots as on EC2: the user-data site.yml rendered into the launch template (read back from the
emulator) runs under cloud-init on a fresh systemd node, ansible-pull fetches this repository at the
pinned commit from a git daemon, and the node ends consuming. It completes its own lifecycle actions through
the lab's metadata service and Auto Scaling front: the launch action (CONTINUE once consuming, ABANDON when
the bootstrap fails) and, when its metadata turns Terminated, the termination action once its consumer has
stopped. Needs root and systemd-nspawn."""

from __future__ import annotations

import datetime
import json
import time

import pytest

from sqs_fleet.lab.node import HOST_ADDRESS, exec_in, missing_requirements, task_seconds
from support.ansible_runs import assert_ok
from support.polling import wait_until

pytestmark = pytest.mark.skipif(missing_requirements() is not None, reason=f"{missing_requirements()}")


def hook(lab, group: str, transition: str) -> dict:
    hooks = lab.client("autoscaling").describe_lifecycle_hooks(AutoScalingGroupName=group)["LifecycleHooks"]
    return next(h for h in hooks if h["LifecycleTransition"] == transition)


def node_events(name: str, path: str) -> list[dict]:
    return [json.loads(line) for line in exec_in(name, ["cat", path]).stdout.splitlines() if line.startswith("{")]


def at(event: dict) -> datetime.datetime:
    return datetime.datetime.fromisoformat(event["ts"])


def cloud_init_status(name: str) -> dict:
    return json.loads(exec_in(name, ["cloud-init", "status", "--wait", "--format", "json"]).stdout or "{}")


@pytest.fixture(scope="module")
def stack_user_data(lab, run_playbook, names) -> str:
    """site.yml on the lab's emulator, pinned to this commit; the user-data it put in the launch template."""
    site = run_playbook("site.yml", env=lab.environment(),
                        extra_vars=lab.site_variables(fleet_poll_interval=2))
    assert_ok(site, ["site.yml"])
    return lab.launch_template_user_data(names.launch_template)


def test_a_node_booted_with_the_launch_template_user_data_becomes_a_working_consumer(lab, names, stack_user_data):
    assert f"readonly REPO_VERSION={lab.commit}" in stack_user_data
    name = "i-0b00700000000000a"  # the node's instance id, as its metadata service gives it
    group = names.group_name
    lab.actions.begin(name, group, hook(lab, group, "autoscaling:EC2_INSTANCE_LAUNCHING"))  # Pending:Wait
    try:
        lab.boot_worker(name, stack_user_data, wait_for_system=False)  # cloud-init's wait below
        status = cloud_init_status(name)
        log = exec_in(name, ["cat", "/var/log/sqs-fleet-bootstrap.log"]).stdout
        assert status.get("status") == "done" and not status.get("errors"), log[-3000:]
        assert "bootstrap: done" in log
        # Each task's seconds, kept beside the log (ansible-core's junit report) to see where a slow boot went.
        tasks = task_seconds(name)
        assert any(task.startswith("consumer : ") for task in tasks) and min(tasks.values()) >= 0, tasks
        # The node itself said it works, once its consumer was active: the instance goes InService.
        launch = wait_until(lambda: lab.actions.settled(name), 30, "the launch action completed by the node")
        assert (launch.hook, launch.result, launch.timed_out) == ("launch", "CONTINUE", False), log[-3000:]
        head = exec_in(name, ["git", "-C", "/opt/sqs-fleet", "rev-parse", "HEAD"]).stdout.strip()
        assert head == lab.commit
        assert exec_in(name, ["systemctl", "is-active", "sqs-consumer"]).stdout.strip() == "active"

        produce = lab.produce(names.queue_name, "VH-BOOT")
        assert produce.returncode == 0, produce.stderr
        wait_until(lambda: '"vehicleId": "VH-BOOT"' in exec_in(
            name, ["cat", "/var/log/sqs-consumer/consumer.log"]).stdout, 60, "the vehicle in the consumer log")
        assert exec_in(name, ["systemctl", "is-active", "sqs-lifecycle-watcher"]).stdout.strip() == "active"

        # Scale-in: Terminating:Wait, the metadata's target state turns Terminated; the node's watcher stops the
        # consumer gracefully and completes the action well before the drain hook's heartbeat.
        lab.actions.begin(name, group, hook(lab, group, "autoscaling:EC2_INSTANCE_TERMINATING"))
        terminated_at = time.time()
        lab.metadata.set_target_lifecycle_state(name, "Terminated")
        drain = wait_until(lambda: lab.actions.settled(name) if lab.actions.waiting(name) is None else None, 90,
                           "the termination action completed by the node")
        completed_after = time.time() - terminated_at
        assert (drain.hook, drain.result, drain.timed_out) == ("drain", "CONTINUE", False)
        assert exec_in(name, ["systemctl", "is-active", "sqs-consumer"]).stdout.strip() != "active"
        watcher = node_events(name, "/var/log/sqs-lifecycle-watcher.log")
        watched = [e["event"] for e in watcher]
        # The launch action was completed first (once the consumer was active); the termination action only
        # once the consumer had stopped.
        drained = next(i for i, e in enumerate(watcher) if e["event"] == "lifecycle_action_completed"
                       and e["hook"] == "drain")
        assert watched.index("consumer_stopped") < drained
        consumer_stopped = next(e for e in node_events(name, "/var/log/sqs-consumer/consumer.log")
                                if e["event"] == "consumer_stopped")
        last_processed = [e for e in node_events(name, "/var/log/sqs-consumer/consumer.log")
                          if e["event"] == "message_processed"][-1]
        completed = watcher[drained]
        print(f"\nnode termination: Terminated -> action completed {completed_after:.1f} s (host clock); "
              f"consumer stopped -> completed {(at(completed) - at(consumer_stopped)).total_seconds():.1f} s; "
              f"watcher's stop + complete {completed['seconds']} s; last message processed -> completed "
              f"{(at(completed) - at(last_processed)).total_seconds():.1f} s (includes the test's own steps)")
    finally:
        lab.remove_worker(name)


def test_a_broken_repository_url_fails_the_boot_visibly(lab, names, stack_user_data):
    broken = (stack_user_data.replace(lab.repo_url, f"git://{HOST_ADDRESS}:1/missing.git")
              .replace("readonly MAX_ATTEMPTS=5", "readonly MAX_ATTEMPTS=2")
              .replace("readonly BACKOFF=10", "readonly BACKOFF=1"))
    assert "MAX_ATTEMPTS=2" in broken and "missing.git" in broken
    name = "i-0b00700000000000b"
    group = names.group_name
    lab.actions.begin(name, group, hook(lab, group, "autoscaling:EC2_INSTANCE_LAUNCHING"))
    try:
        lab.boot_worker(name, broken, wait_for_system=False)
        status = cloud_init_status(name)  # --wait returns once cloud-init has finished: no hang
        log = exec_in(name, ["cat", "/var/log/sqs-fleet-bootstrap.log"]).stdout
        assert status.get("status") == "error", status
        assert "bootstrap: FAILED: ansible-pull failed 2 times" in log
        assert exec_in(name, ["systemctl", "is-active", "sqs-consumer"]).stdout.strip() != "active"
        # The node abandoned its own launch at once: never counted as capacity, not left to the 600 s heartbeat.
        launch = lab.actions.settled(name)
        assert launch is not None and (launch.result, launch.timed_out) == ("ABANDON", False), log[-3000:]
        assert f"launch lifecycle action of {name} completed with ABANDON" in log
    finally:
        lab.remove_worker(name)
