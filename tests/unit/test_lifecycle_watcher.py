"""The node's lifecycle watcher (files/lifecycle_watcher.py) against the lab's metadata service and Auto Scaling
front, as a node runs it: once the consumer is active it completes the launch action with CONTINUE; when the
target lifecycle state turns Terminated it stops the consumer (a stub command here) and then completes the
termination action with CONTINUE; on a Spot notice it stops the consumer at once and keeps watching."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sqs_fleet.lab.lifecycle import AutoScalingFront, LifecycleActions
from sqs_fleet.lab.metadata import Instance, MetadataService
from sqs_fleet.sim.semantics import LAUNCHING, TERMINATING
from sqs_fleet_workers import consumer
from support.polling import wait_until

WATCHER = Path(consumer.__file__).with_name("lifecycle_watcher.py")
INSTANCE, GROUP, HOOK = "i-0fedcba9876543210", "sqs-fleet-test-workers", "drain"


@pytest.fixture
def lab(tmp_path):
    actions = LifecycleActions()
    imds = MetadataService("127.0.0.1").start()
    imds.register("127.0.0.1", Instance(INSTANCE))
    # Only the lifecycle calls reach the front here; nothing is forwarded to an emulator.
    front = AutoScalingFront(actions, "http://127.0.0.1:9", "127.0.0.1", 0).start()
    node_config = tmp_path / "node.json"
    node_config.write_text(json.dumps({"consumer_queue": "q", "lifecycle_watcher_group_name": GROUP,
                                       "lifecycle_watcher_hook_name": HOOK,
                                       "lifecycle_watcher_launch_hook_name": "launch"}))
    stopped, active = tmp_path / "stopped", tmp_path / "active"
    stub = f"{sys.executable} -c \"import pathlib; pathlib.Path('{stopped}').write_text('stopped')\""
    # The consumer counts as active once the file `active` exists.
    is_active = f"{sys.executable} -c \"import pathlib, sys; sys.exit(not pathlib.Path('{active}').exists())\""
    env = {"PATH": "/usr/bin:/bin", "AWS_EC2_METADATA_SERVICE_ENDPOINT": imds.url, "AWS_ENDPOINT_URL": front.url,
           "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}  # the region comes from IMDS
    watcher = subprocess.Popen(
        [sys.executable, str(WATCHER), "--node-config", str(node_config), "--interval", "0.2", "--stop-command", stub,
         "--active-command", is_active],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    yield actions, imds, watcher, stopped, active
    if watcher.poll() is None:
        watcher.kill()
        watcher.communicate()
    front.stop()
    imds.stop()


def events(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines()]


def test_terminated_stops_the_consumer_then_completes_the_action_with_continue(lab):
    actions, imds, watcher, stopped, _ = lab
    action = actions.begin(INSTANCE, GROUP, {"LifecycleHookName": HOOK, "LifecycleTransition": TERMINATING,
                                             "HeartbeatTimeout": 300, "DefaultResult": "ABANDON"})
    time.sleep(1)
    assert watcher.poll() is None and not stopped.exists()  # InService: nothing to do
    imds.set_target_lifecycle_state(INSTANCE, "Terminated")
    out, err = watcher.communicate(timeout=30)
    assert watcher.returncode == 0, err
    assert stopped.read_text() == "stopped"
    settled = actions.settled(INSTANCE)
    assert settled is not None and (settled.token, settled.result, settled.timed_out) == (action.token, "CONTINUE",
                                                                                         False)
    seen = events(out)
    names = [e["event"] for e in seen]
    # The consumer stops before the action is completed: the instance goes only once it has drained.
    assert names.index("consumer_stopped") < names.index("lifecycle_action_completed")
    assert [e["state"] for e in seen if e["event"] == "target_lifecycle_state"][-1] == "Terminated"
    completed = seen[names.index("lifecycle_action_completed")]
    assert (completed["group"], completed["hook"], completed["instance_id"]) == (GROUP, HOOK, INSTANCE)


def test_a_spot_notice_stops_the_consumer_at_once_and_the_watcher_keeps_watching(lab):
    actions, imds, watcher, stopped, _ = lab
    time.sleep(0.5)
    imds.notice_spot_interruption(INSTANCE)
    wait_until(stopped.exists, 15, "the consumer stopped", interval=0.1)
    time.sleep(0.5)
    assert watcher.poll() is None  # still watching: the termination that follows is still to complete
    actions.begin(INSTANCE, GROUP, {"LifecycleHookName": HOOK, "LifecycleTransition": TERMINATING,
                                    "HeartbeatTimeout": 300, "DefaultResult": "CONTINUE"})
    imds.set_target_lifecycle_state(INSTANCE, "Terminated")
    out, _ = watcher.communicate(timeout=30)
    names = [e["event"] for e in events(out)]
    assert names.count("spot_interruption_notice") == 1 and names.count("consumer_stopped") == 1
    assert "lifecycle_action_completed" in names and actions.settled(INSTANCE).result == "CONTINUE"


def test_no_action_to_complete_is_logged_and_the_watcher_ends(lab):
    _, imds, watcher, stopped, _ = lab
    imds.set_target_lifecycle_state(INSTANCE, "Terminated")  # e.g. the heartbeat already ran out
    out, _ = watcher.communicate(timeout=30)
    failed = [e for e in events(out) if e["event"] == "lifecycle_action_complete_failed"]
    assert watcher.returncode == 0 and stopped.exists()
    assert [(e["code"], e["retry"]) for e in failed] == [("ValidationError", False)]
    assert "No active Lifecycle Action found" in failed[0]["error"]


def test_the_launch_action_is_completed_once_the_consumer_is_active(lab):
    actions, _, watcher, _, active = lab
    actions.begin(INSTANCE, GROUP, {"LifecycleHookName": "launch", "LifecycleTransition": LAUNCHING,
                                    "HeartbeatTimeout": 600, "DefaultResult": "ABANDON"})
    time.sleep(1.5)
    assert actions.waiting(INSTANCE) is not None  # Pending:Wait while the consumer is not active
    active.touch()
    wait_until(lambda: actions.settled(INSTANCE) is not None, 15, "the launch action settled", interval=0.1)
    settled = actions.settled(INSTANCE)
    assert (settled.hook, settled.result, settled.timed_out) == ("launch", "CONTINUE", False)
    time.sleep(0.5)
    assert watcher.poll() is None  # still watching for the termination
