"""moto's server (`moto_server`) with the corrections the stack needs from it, so that the emulator behaves as AWS
does: moto 5.2's launch templates, Auto Scaling groups and SQS receives, and Lambda's network interfaces,
concurrency and async invoke configuration:

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
- A function in a VPC gets no network interfaces from moto. Lambda makes them (interface type `lambda`,
  description `AWS Lambda VPC ENI-<function>-<id>`, requester-managed, in use) in each of the function's subnets
  with its security groups, and needs its execution role to allow ec2:CreateNetworkInterface for that
  (CreateFunction and UpdateFunctionConfiguration fail otherwise). When the function is deleted or leaves its
  VPC, Lambda releases them with that same role, some time later (SQS_FLEET_LAMBDA_ENI_RELEASE_SECONDS, default
  3; many minutes on AWS): if the role is gone by then, or no longer allows ec2:DeleteNetworkInterface, they stay,
  and the subnets and security groups they sit in fail to delete with DependencyViolation, as on AWS (moto checks
  no dependency of a subnet or security group). DescribeNetworkInterfaces takes the interface-type,
  requester-managed and status filters. A function's VpcConfig names its subnets' VPC, not a fixed placeholder.
- Reserved concurrency: PutFunctionConcurrency is refused, with AWS's error, when it would leave the account's
  unreserved concurrency below 100; the account's concurrency limit is SQS_FLEET_LAMBDA_ACCOUNT_CONCURRENCY
  (default 1000, AWS's default quota; new accounts may have 10). GetAccountSettings (not in moto) returns
  AccountLimit and AccountUsage as AWS does.
- PutFunctionEventInvokeConfig replaces a function's async invoke configuration (moto appended it, and Get
  returned the first one ever put); UpdateFunctionEventInvokeConfig changes only the settings it names.
- ReceiveMessage checks that a message is visible and then marks it received (starting its visibility timeout)
  without a lock, and the server answers each request on a thread of its own: two receives at once can both
  return the same message within its visibility timeout, which SQS never does. A scale test's workers saw
  "messages processed more than once". One queue's receives are serialised here; a long poll waits for
  messages outside the lock, so it never holds other receivers back.

    python -m sqs_fleet.lab.moto_server -H 127.0.0.1 -p 4566      # what sqs_fleet.lab.emulator runs
"""

from __future__ import annotations

import fnmatch
import json
import os
import sys
import threading
import uuid
from typing import Any

from moto.autoscaling.models import AutoScalingBackend
from moto.awslambda import urls as lambda_urls
from moto.awslambda.exceptions import InvalidParameterValueException
from moto.awslambda.models import EventInvokeConfig, LambdaBackend, LambdaFunction
from moto.awslambda.responses import LambdaResponse
from moto.core.responses import ActionResult
from moto.core.utils import iso_8601_datetime_with_nanoseconds, unix_time
from moto.ec2.exceptions import (
    DependencyViolationError,
    InvalidLaunchTemplateVersionNotFound,
    InvalidParameterCombination,
    InvalidSecurityGroupNotFoundError,
    MissingParameter,
)
from moto.ec2.models import ec2_backends
from moto.ec2.models.elastic_network_interfaces import NetworkInterface
from moto.ec2.models.launch_templates import LaunchTemplate, LaunchTemplateBackend, LaunchTemplateVersion
from moto.ec2.models.security_groups import SecurityGroupBackend
from moto.ec2.models.subnets import SubnetBackend
from moto.ec2.responses.launch_templates import LaunchTemplates
from moto.ec2.utils import parse_user_data
from moto.iam.models import iam_backends
from moto.server import main
from moto.sqs.models import Message, SQSBackend
from moto.utilities.utils import get_partition

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

# ---- Lambda: a VPC function's network interfaces -------------------------------------------------------------

LAMBDA_INTERFACE_TYPE = "lambda"
# Seconds between a function leaving its VPC (or being deleted) and Lambda releasing its interfaces.
RELEASE_SECONDS_VARIABLE = "SQS_FLEET_LAMBDA_ENI_RELEASE_SECONDS"


def interface_description(function_name: str) -> str:
    return f"AWS Lambda VPC ENI-{function_name}-{uuid.uuid4()}"


def role_allows(account_id: str, region: str, role_arn: str, action: str) -> bool:
    """Whether the role exists and one of its policies (inline or attached) allows `action`: what Lambda needs
    of the execution role to make or delete the function's interfaces."""
    iam = iam_backends[account_id][get_partition(region)]
    try:
        role = iam.get_role_by_arn(role_arn)
    except Exception:  # noqa: BLE001 - moto's NotFound: the role is gone
        return False
    documents = list(role.policies.values()) + [
        version.document for policy in role.managed_policies.values() for version in policy.versions
        if version.is_default]
    for document in documents:
        statements = json.loads(document if isinstance(document, str) else json.dumps(document))["Statement"]
        for statement in statements if isinstance(statements, list) else [statements]:
            actions = statement.get("Action", [])
            if statement.get("Effect") == "Allow" and any(
                    fnmatch.fnmatchcase(action.lower(), pattern.lower())
                    for pattern in (actions if isinstance(actions, list) else [actions])):
                return True
    return False


def vpc_of(function: LambdaFunction) -> tuple[list[str], list[str]]:
    config = function._vpc_config or {}
    return list(config.get("SubnetIds") or []), list(config.get("SecurityGroupIds") or [])


def require_interface_permission(account_id: str, region: str, role_arn: str) -> None:
    if not role_allows(account_id, region, role_arn, "ec2:CreateNetworkInterface"):
        raise InvalidParameterValueException(
            "The provided execution role does not have permissions to call CreateNetworkInterface on EC2")


def make_interfaces(function: LambdaFunction) -> None:
    """One interface per subnet, with the function's security groups, as Lambda makes them."""
    subnets, groups = vpc_of(function)
    ec2 = ec2_backends[function.account_id][function.region]
    for subnet in subnets:
        interface = ec2.create_network_interface(subnet=subnet, private_ip_address=[], group_ids=groups,
                                                 description=interface_description(function.function_name))
        interface.interface_type = LAMBDA_INTERFACE_TYPE
        interface.requester_managed = True
        interface.status = "in-use"


def interfaces_of(account_id: str, region: str, function_name: str) -> list[NetworkInterface]:
    prefix = f"AWS Lambda VPC ENI-{function_name}-"
    return [i for i in ec2_backends[account_id][region].enis.values()
            if i.interface_type == LAMBDA_INTERFACE_TYPE and i.description.startswith(prefix)]


def release_interfaces(account_id: str, region: str, interfaces: list[NetworkInterface], role_arn: str) -> None:
    """What Lambda does some time after a function leaves its VPC: delete its interfaces with the function's
    execution role. Without the role (or its permission) they stay, blocking their subnets and groups."""

    def release() -> None:
        if not role_allows(account_id, region, role_arn, "ec2:DeleteNetworkInterface"):
            return
        ec2 = ec2_backends[account_id][region]
        for interface in interfaces:
            if ec2.enis.get(interface.id) is interface:  # not an interface of a state reset since
                del ec2.enis[interface.id]

    if not interfaces:
        return
    delay = float(os.environ.get(RELEASE_SECONDS_VARIABLE, "3"))
    if delay <= 0:
        release()
        return
    timer = threading.Timer(delay, release)
    timer.daemon = True
    timer.start()


_create_function = LambdaBackend.create_function
_update_function_configuration = LambdaBackend.update_function_configuration
_delete_function = LambdaBackend.delete_function


def create_function(self: LambdaBackend, spec: dict[str, Any]) -> LambdaFunction:
    if (spec.get("VpcConfig") or {}).get("SubnetIds"):
        require_interface_permission(self.account_id, self.region_name, spec.get("Role", ""))
    function = _create_function(self, spec)
    make_interfaces(self.get_function(function.function_name))
    return function


def update_function_configuration(self: LambdaBackend, function_name: str, qualifier: str,
                                  body: dict[str, Any]) -> dict[str, Any] | None:
    function = self.get_function(function_name, qualifier)
    before = vpc_of(function)
    wanted = body.get("VpcConfig")
    after = (list(wanted.get("SubnetIds") or []), list(wanted.get("SecurityGroupIds") or [])) \
        if wanted is not None else before
    moved = sorted(after[0]) != sorted(before[0]) or sorted(after[1]) != sorted(before[1])
    if moved and after[0]:
        require_interface_permission(self.account_id, self.region_name, body.get("Role") or function.role)
    old = interfaces_of(self.account_id, self.region_name, function.function_name) if moved else []
    result = _update_function_configuration(self, function_name, qualifier, body)
    if moved:
        make_interfaces(function)
        release_interfaces(self.account_id, self.region_name, old, function.role)
    return result


def delete_function(self: LambdaBackend, function_name: str, qualifier: str | None = None) -> None:
    function = self.get_function(function_name) if not qualifier else None
    _delete_function(self, function_name, qualifier)
    if function is not None:
        release_interfaces(self.account_id, self.region_name,
                           interfaces_of(self.account_id, self.region_name, function.function_name), function.role)


def vpc_config(self: LambdaFunction) -> dict[str, Any] | None:
    """The VPC of the function's subnets (moto names a fixed vpc-123abc); an empty one once it left."""
    if not self._vpc_config:
        return None
    subnets, groups = vpc_of(self)
    vpc_id = ec2_backends[self.account_id][self.region].get_subnet(subnets[0]).vpc_id if subnets else ""
    return {"SubnetIds": subnets, "SecurityGroupIds": groups, "VpcId": vpc_id}


_filter_value = NetworkInterface.get_filter_value


def get_filter_value(self: NetworkInterface, filter_name: str, method_name: str | None = None) -> Any:
    if filter_name == "interface-type":
        return self.interface_type
    if filter_name == "requester-managed":
        return str(self.requester_managed).lower()
    if filter_name == "status":
        return self.status
    return _filter_value(self, filter_name, method_name)


def lambda_interfaces_in(backend: Any, subnet_id: str | None = None, group_id: str | None = None) -> list[str]:
    return [i.id for i in backend.enis.values() if i.interface_type == LAMBDA_INTERFACE_TYPE and (
        (subnet_id and i.subnet.id == subnet_id) or (group_id and group_id in [g.id for g in i._group_set]))]


_delete_subnet = SubnetBackend.delete_subnet
_delete_security_group = SecurityGroupBackend.delete_security_group


def delete_subnet(self: Any, subnet_id: str) -> Any:
    if lambda_interfaces_in(self, subnet_id=subnet_id):
        raise DependencyViolationError(f"The subnet '{subnet_id}' has dependencies and cannot be deleted.")
    return _delete_subnet(self, subnet_id)


def delete_security_group(self: Any, name: str | None = None, group_id: str | None = None) -> None:
    group = self.get_security_group_by_name_or_id(group_id or name or "")
    if group is None:
        raise InvalidSecurityGroupNotFoundError(group_id or name)
    if lambda_interfaces_in(self, group_id=group.id):
        raise DependencyViolationError(f"resource {group.id} has a dependent object")
    return _delete_security_group(self, name, group_id)


LambdaBackend.create_function = create_function  # type: ignore[method-assign]
LambdaBackend.update_function_configuration = update_function_configuration  # type: ignore[method-assign]
LambdaBackend.delete_function = delete_function  # type: ignore[method-assign]
LambdaFunction.vpc_config = property(vpc_config)  # type: ignore[assignment,method-assign]
NetworkInterface.get_filter_value = get_filter_value  # type: ignore[method-assign]
SubnetBackend.delete_subnet = delete_subnet  # type: ignore[method-assign]
SecurityGroupBackend.delete_security_group = delete_security_group  # type: ignore[method-assign]

# ---- Lambda: the account's concurrency, and the floor of unreserved concurrency --------------------------------

# AWS's default quota of concurrent executions; a new account may start at 10.
ACCOUNT_CONCURRENCY_VARIABLE = "SQS_FLEET_LAMBDA_ACCOUNT_CONCURRENCY"
UNRESERVED_MINIMUM = 100


def account_concurrency() -> int:
    return int(os.environ.get(ACCOUNT_CONCURRENCY_VARIABLE, "1000"))


def reserved_by_others(backend: LambdaBackend, function_name: str | None) -> int:
    return sum(int(f.reserved_concurrency) for f in backend.list_functions()
               if f.reserved_concurrency is not None and f.function_name != function_name)


_put_function_concurrency = LambdaBackend.put_function_concurrency


def put_function_concurrency(self: LambdaBackend, function_name: str, reserved_concurrency: str) -> str:
    name = self.get_function(function_name).function_name
    unreserved = account_concurrency() - reserved_by_others(self, name) - int(reserved_concurrency)
    if unreserved < UNRESERVED_MINIMUM:
        raise InvalidParameterValueException(
            "Specified ReservedConcurrentExecutions for function decreases account's UnreservedConcurrentExecution "
            f"below its minimum value of [{UNRESERVED_MINIMUM}].")
    return _put_function_concurrency(self, function_name, reserved_concurrency)


def get_account_settings(self: LambdaResponse) -> tuple[int, dict[str, str], str]:
    backend = self.backend
    functions = list(backend.list_functions())
    limit = account_concurrency()
    settings = {
        "AccountLimit": {"TotalCodeSize": 80530636800, "CodeSizeUnzipped": 262144000, "CodeSizeZipped": 52428800,
                         "ConcurrentExecutions": limit,
                         "UnreservedConcurrentExecutions": limit - reserved_by_others(backend, None)},
        "AccountUsage": {"TotalCodeSize": sum(int(getattr(f, "code_size", 0) or 0) for f in functions),
                         "FunctionCount": len(functions)},
    }
    return 200, {}, json.dumps(settings)


LambdaBackend.put_function_concurrency = put_function_concurrency  # type: ignore[method-assign]
LambdaResponse.get_account_settings = get_account_settings  # type: ignore[attr-defined]
lambda_urls.url_paths[r"{0}/(?P<api_version>[^/]+)/account-settings/?$"] = LambdaResponse.dispatch

# ---- Lambda: PutFunctionEventInvokeConfig replaces, UpdateFunctionEventInvokeConfig merges ---------------------


def put_function_event_invoke_config(self: LambdaBackend, function_name: str,
                                     config: dict[str, Any]) -> dict[str, Any]:
    function = self.get_function(function_name)
    settings = {k: v for k, v in config.items() if k in ("MaximumRetryAttempts", "MaximumEventAgeInSeconds",
                                                           "DestinationConfig")}
    made = EventInvokeConfig(function.function_arn, iso_8601_datetime_with_nanoseconds(), settings)
    function.event_invoke_config = [made]
    return made.response()


def update_function_event_invoke_config(self: LambdaBackend, function_name: str,
                                        config: dict[str, Any]) -> dict[str, Any]:
    function = self.get_function(function_name)
    current = function.event_invoke_config[0].config if function.event_invoke_config else {}
    return put_function_event_invoke_config(self, function_name, {**current, **config})


LambdaBackend.put_function_event_invoke_config = put_function_event_invoke_config  # type: ignore[method-assign]
LambdaBackend.update_function_event_invoke_config = update_function_event_invoke_config  # type: ignore[method-assign]

if __name__ == "__main__":
    main(sys.argv[1:])
