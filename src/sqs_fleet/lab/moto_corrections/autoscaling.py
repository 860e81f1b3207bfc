"""Auto Scaling groups: what goes with a deleted group.

- DeleteAutoScalingGroup leaves the group's scaling policies and lifecycle hooks behind, so a site.yml after a
  teardown.yml found the old ones and made none. AWS deletes the policies with the group (Auto Scaling API
  reference, DeleteAutoScalingGroup), and a lifecycle hook exists only on its group.
"""

from __future__ import annotations

from moto.autoscaling.models import AutoScalingBackend

from sqs_fleet.lab.moto_corrections.patch import Patch

# Private names of moto this module reads (tests/unit/test_patched_dependencies.py checks the list).
PRIVATE_NAMES: dict[str, str] = {}

# DeleteAutoScalingGroup deletes the group's policies and lifecycle hooks with it

_delete_group_only = AutoScalingBackend.delete_auto_scaling_group


def delete_auto_scaling_group(self: AutoScalingBackend, group_name: str) -> None:
    _delete_group_only(self, group_name)
    for key, policy in list(self.policies.items()):
        if policy.auto_scaling_group_name == group_name:
            del self.policies[key]
    for key, hook in list(self.lifecycle_hooks.items()):
        if hook.auto_scaling_group_name == group_name:
            del self.lifecycle_hooks[key]


PATCHES = [
    Patch(AutoScalingBackend, "delete_auto_scaling_group", delete_auto_scaling_group),
]
