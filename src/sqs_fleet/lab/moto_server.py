"""moto's server (`moto_server`) with the corrections the stack needs from it, so that the emulator behaves as AWS
does. Two are moto 5.2's launch templates, one its Auto Scaling groups, one its SQS queues:

- CreateLaunchTemplateVersion keeps the new version's UserData as the raw base64 text, where
  CreateLaunchTemplate decodes it, and any later launch from that version (SetDesiredCapacity with $Latest)
  fails inside moto with an AssertionError. A stack whose user-data changed (a new node setting, a new pinned
  commit) could not scale on the emulator after its next site.yml.
- DeleteLaunchTemplateVersions is not implemented (NotImplementedError), and amazon.aws.ec2_launch_template
  state=absent calls it for every version but the default before DeleteLaunchTemplate: teardown.yml fails on
  any stack whose template has more than one version (each site.yml that changes it adds one). It is added
  as AWS documents it (EC2 API reference, DeleteLaunchTemplateVersions): each version asked for is reported
  deleted or not, with a ResponseError; the default version is never deleted. A template's versions keep
  their numbers once one is deleted (moto found a version by its place in the list), and a new one never
  takes a deleted one's number.
- DeleteAutoScalingGroup leaves the group's scaling policies and lifecycle hooks behind, so a site.yml after a
  teardown.yml found the old ones and made none. AWS deletes the policies with the group (Auto Scaling API
  reference, DeleteAutoScalingGroup), and a lifecycle hook exists only on its group.
- ReceiveMessage checks that a message is visible and then marks it received (starting its visibility timeout)
  without a lock, and the server answers each request on a thread of its own: two receives at once can both
  return the same message within its visibility timeout, which SQS never does. A scale test's workers saw
  "messages processed more than once". One queue's receives are serialised here; a long poll waits for
  messages outside the lock, so it never holds other receivers back.

    python -m sqs_fleet.lab.moto_server -H 127.0.0.1 -p 4566      # what sqs_fleet.lab.emulator runs
"""

from __future__ import annotations

import sys
import threading
from typing import Any

from moto.autoscaling.models import AutoScalingBackend
from moto.core.responses import ActionResult
from moto.core.utils import unix_time
from moto.ec2.exceptions import InvalidLaunchTemplateVersionNotFound, InvalidParameterCombination, MissingParameter
from moto.ec2.models.launch_templates import LaunchTemplate, LaunchTemplateBackend, LaunchTemplateVersion
from moto.ec2.responses.launch_templates import LaunchTemplates
from moto.ec2.utils import parse_user_data
from moto.server import main
from moto.sqs.models import Message, SQSBackend

# ---- CreateLaunchTemplateVersion decodes UserData, as CreateLaunchTemplate does; versions keep their numbers ----


def create_version(self: LaunchTemplate, data: dict[str, Any], description: str) -> LaunchTemplateVersion:
    if isinstance(data.get("UserData"), (str, bytes)):
        data = {**data, "UserData": parse_user_data(data["UserData"])}
    # The next number after the highest a version ever had: AWS never reuses a deleted version's number.
    number = getattr(self, "highest_version_number", 0) + 1
    version = LaunchTemplateVersion(self, number, data, description)
    self.versions.append(version)
    self.highest_version_number = number  # type: ignore[attr-defined]
    return version


def get_version(self: LaunchTemplate, num: Any) -> LaunchTemplateVersion:
    if str(num).lower() == "$latest":
        return self.versions[-1]
    if str(num).lower() == "$default":
        return self.default_version()
    for version in self.versions:
        if str(version.number) == str(num):
            return version
    raise InvalidLaunchTemplateVersionNotFound(template_id=self.id, version=num)


def default_version(self: LaunchTemplate) -> LaunchTemplateVersion:
    return self.get_version(self.default_version_number)


LaunchTemplate.create_version = create_version  # type: ignore[method-assign]
LaunchTemplate.get_version = get_version  # type: ignore[method-assign]
LaunchTemplate.default_version = default_version  # type: ignore[method-assign]

_describe_versions = LaunchTemplateBackend.describe_launch_template_versions


def describe_launch_template_versions(
    self: LaunchTemplateBackend, template_name: str, template_id: str, versions: list[str], min_version: int,
    max_version: int, max_results: int,
) -> list[tuple[LaunchTemplate, LaunchTemplateVersion]]:
    """MinVersion and MaxVersion by the versions' numbers, where moto slices the list by place."""
    if versions or not (min_version or max_version) or not (template_name or template_id):
        return _describe_versions(self, template_name, template_id, versions, min_version, max_version, max_results)
    template = self.get_launch_template_by_name(template_name) if template_name else self.get_launch_template(
        template_id)
    highest = max_version or min_version + max_results
    return [(template, v) for v in template.versions if (min_version or 1) <= v.number <= highest][:max_results]


LaunchTemplateBackend.describe_launch_template_versions = describe_launch_template_versions  # type: ignore[method-assign]

# ---- DeleteLaunchTemplateVersions ----------------------------------------------------------------------------

# The ResponseError codes (EC2 API reference, ResponseError). The default version's refusal has no code of its
# own in that list: unexpectedError is the one it documents for anything else.
VERSION_DOES_NOT_EXIST = "launchTemplateVersionDoesNotExist"
VERSION_IS_DEFAULT = "unexpectedError"


def backend_delete_launch_template_versions(
    self: LaunchTemplateBackend, template_name: str | None, template_id: str | None, versions: list[str],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(deleted, not deleted): DeleteLaunchTemplateVersions' two sets, one item per version asked for."""
    tid = self.launch_template_name_to_ids.get(template_name) if template_name else template_id
    template = self.launch_templates.get(tid) if tid else None
    deleted: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []

    def refuse(item: dict[str, Any], code: str, message: str) -> None:
        failed.append({**item, "ResponseError": {"Code": code, "Message": message}})

    for asked in versions:
        number = int(asked) if str(asked).isdigit() else None
        item = {k: v for k, v in {"LaunchTemplateId": template.id if template else template_id,
                                  "LaunchTemplateName": template.name if template else template_name,
                                  "VersionNumber": number}.items() if v is not None}
        if template is None:
            code = "launchTemplateNameDoesNotExist" if template_name else "launchTemplateIdDoesNotExist"
            refuse(item, code, f"The specified launch template, {template_name or template_id}, does not exist.")
            continue
        found = [v for v in template.versions if v.number == number]
        if not found:
            refuse(item, VERSION_DOES_NOT_EXIST,
                   f"The specified launch template version, {asked}, does not exist for {template.id}.")
        elif template.is_default(found[0]):
            refuse(item, VERSION_IS_DEFAULT, "The default version of a launch template cannot be deleted.")
        else:
            template.versions.remove(found[0])
            deleted.append(item)
    return deleted, failed


def delete_launch_template_versions(self: LaunchTemplates) -> ActionResult:
    name = self._get_param("LaunchTemplateName")
    template_id = self._get_param("LaunchTemplateId")
    versions = self._get_param("Versions", [])

    if name and template_id:
        raise InvalidParameterCombination(
            "Either provide launch template ID or launch template name to delete the template versions.")
    if not (name or template_id):
        raise MissingParameter("The request must contain the parameter launch template ID or launch template name")

    self.error_on_dryrun()

    deleted, failed = self.ec2_backend.delete_launch_template_versions(name, template_id, versions)

    result = {
        "SuccessfullyDeletedLaunchTemplateVersions": deleted,
        "UnsuccessfullyDeletedLaunchTemplateVersions": failed,
    }
    return ActionResult(result)


# ---- DeleteAutoScalingGroup deletes the group's policies and lifecycle hooks with it -------------------------

_delete_group_only = AutoScalingBackend.delete_auto_scaling_group


def delete_auto_scaling_group(self: AutoScalingBackend, group_name: str) -> None:
    _delete_group_only(self, group_name)
    for key, policy in list(self.policies.items()):
        if policy.auto_scaling_group_name == group_name:
            del self.policies[key]
    for key, hook in list(self.lifecycle_hooks.items()):
        if hook.auto_scaling_group_name == group_name:
            del self.lifecycle_hooks[key]


AutoScalingBackend.delete_auto_scaling_group = delete_auto_scaling_group  # type: ignore[method-assign]

# ---- ReceiveMessage: one receive at a time per queue -----------------------------------------------------------

_receive_unlocked = SQSBackend.receive_message
_receive_locks: dict[str, threading.Lock] = {}
_receive_locks_guard = threading.Lock()


def receive_lock(queue_arn: str) -> threading.Lock:
    with _receive_locks_guard:
        return _receive_locks.setdefault(queue_arn, threading.Lock())


def receive_message(
    self: SQSBackend, queue_name: str, count: int, wait_seconds_timeout: int, visibility_timeout: int,
    message_attribute_names: list[str] | None = None,
) -> list[Message]:
    """moto's receive, run without waiting under the queue's lock; a long poll (WaitTimeSeconds) waits for
    messages between attempts, outside the lock, until one attempt returns some or the wait is over."""
    queue = self.get_queue(queue_name)
    lock = receive_lock(queue.queue_arn)
    polling_end = unix_time() + wait_seconds_timeout
    while True:
        with lock:
            result: list[Message] = _receive_unlocked(self, queue_name, count, 0, visibility_timeout,
                                                      message_attribute_names)
        remaining = polling_end - unix_time()
        if result or remaining <= 0:
            return result
        queue.wait_for_messages(min(1, remaining))  # type: ignore[arg-type]


SQSBackend.receive_message = receive_message  # type: ignore[method-assign]
LaunchTemplateBackend.delete_launch_template_versions = backend_delete_launch_template_versions  # type: ignore[attr-defined]
LaunchTemplates.delete_launch_template_versions = delete_launch_template_versions  # type: ignore[attr-defined]

if __name__ == "__main__":
    main(sys.argv[1:])
