"""Launch templates as EC2 keeps them: versions and their user-data.

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
"""

from __future__ import annotations

from typing import Any

from moto.core.responses import ActionResult
from moto.ec2.exceptions import (
    InvalidLaunchTemplateVersionNotFound,
    InvalidParameterCombination,
    MissingParameter,
)
from moto.ec2.models.launch_templates import LaunchTemplate, LaunchTemplateBackend, LaunchTemplateVersion
from moto.ec2.responses.launch_templates import LaunchTemplates
from moto.ec2.utils import parse_user_data

from sqs_fleet.lab.moto_corrections.patch import Patch

# Private names of moto this module reads (tests/unit/test_patched_dependencies.py checks the list).
PRIVATE_NAMES: dict[str, str] = {
    "_get_param": "moto.core.responses.BaseResponse._get_param: a request parameter (DeleteLaunchTemplateVersions)",
}

# CreateLaunchTemplateVersion decodes UserData, as CreateLaunchTemplate does; versions keep their numbers


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




# DeleteLaunchTemplateVersions

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


PATCHES = [
    Patch(LaunchTemplate, "create_version", create_version),
    Patch(LaunchTemplate, "get_version", get_version),
    Patch(LaunchTemplate, "default_version", default_version),
    Patch(LaunchTemplateBackend, "describe_launch_template_versions", describe_launch_template_versions),
    Patch(LaunchTemplateBackend, "delete_launch_template_versions", backend_delete_launch_template_versions),
    Patch(LaunchTemplates, "delete_launch_template_versions", delete_launch_template_versions),
]
