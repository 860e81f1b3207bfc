"""Removing the Auto Scaling group fails loudly when the group outlives the wait, naming what is left: AWS can keep
a deleted group for minutes (instances terminating, a lifecycle hook holding one), which the emulator never does,
so the wait is driven here by a fake Auto Scaling client."""

from __future__ import annotations

from typing import Any

from ansible_collections.sqs_fleet.aws.plugins.modules import scaling_group

DELETING = {
    "AutoScalingGroupName": "sqs-fleet-prod-workers", "Status": "Delete in progress",
    "Instances": [{"InstanceId": "i-0aa", "LifecycleState": "Terminating:Wait"},
                  {"InstanceId": "i-0bb", "LifecycleState": "Terminating"}],
}


class FakeAutoScaling:
    """Answers DescribeAutoScalingGroups with the groups given, one per call (the last one repeated)."""

    def __init__(self, *answers: dict[str, Any] | None) -> None:
        self.answers = list(answers)
        self.deleted: list[str] = []

    def delete_auto_scaling_group(self, AutoScalingGroupName: str, **_: Any) -> None:  # noqa: N803 - boto3's names
        self.deleted.append(AutoScalingGroupName)

    def describe_auto_scaling_groups(self, **_: Any) -> dict[str, Any]:
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        return {"AutoScalingGroups": [answer] if answer else []}


class FakeModule:
    def __init__(self, wait_timeout: float) -> None:
        self.params = {"wait_timeout": wait_timeout}

    def fail_json_aws(self, error: Exception, msg: str) -> None:
        raise AssertionError(f"{msg}: {error}")


def test_a_group_still_deleting_when_the_wait_runs_out_is_returned_and_named() -> None:
    client = FakeAutoScaling(DELETING)
    left = scaling_group.delete(FakeModule(wait_timeout=0.2), client, DELETING)
    assert client.deleted == ["sqs-fleet-prod-workers"]
    assert left == DELETING
    assert scaling_group.still_there(left, 600) == (
        "Auto Scaling group sqs-fleet-prod-workers is still there after 600 s (Delete in progress; "
        "instances: i-0aa Terminating:Wait, i-0bb Terminating)")


def test_a_group_gone_within_the_wait_leaves_nothing() -> None:
    client = FakeAutoScaling(DELETING, None)
    assert scaling_group.delete(FakeModule(wait_timeout=30), client, DELETING) is None
