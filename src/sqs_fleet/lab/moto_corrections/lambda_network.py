"""Lambda in a VPC: a function's network interfaces, and what they hold on to.

- A function in a VPC gets no network interfaces from moto. Lambda makes them (interface type `lambda`,
  description `AWS Lambda VPC ENI-<function>-<id>`, requester-managed, in use) in each of the function's subnets
  with its security groups, and needs its execution role to allow ec2:CreateNetworkInterface for that
  (CreateFunction and UpdateFunctionConfiguration fail otherwise). When the function is deleted or leaves its
  VPC, Lambda releases them with that same role, some time later (SQS_FLEET_LAMBDA_ENI_RELEASE_SECONDS, default
  3; many minutes on AWS): if the role is gone by then, or no longer allows ec2:DeleteNetworkInterface, they stay,
  and the subnets and security groups they sit in fail to delete with DependencyViolation, as on AWS (moto checks
  no dependency of a subnet or security group). DescribeNetworkInterfaces takes the interface-type,
  requester-managed and status filters. A function's VpcConfig names its subnets' VPC, not a fixed placeholder.
"""

from __future__ import annotations

import fnmatch
import json
import os
import threading
import uuid
from typing import Any

from moto.awslambda.exceptions import InvalidParameterValueException
from moto.awslambda.models import LambdaBackend, LambdaFunction
from moto.ec2.exceptions import (
    DependencyViolationError,
    InvalidSecurityGroupNotFoundError,
)
from moto.ec2.models import ec2_backends
from moto.ec2.models.elastic_network_interfaces import NetworkInterface
from moto.ec2.models.security_groups import SecurityGroupBackend
from moto.ec2.models.subnets import SubnetBackend
from moto.iam.models import iam_backends
from moto.utilities.utils import get_partition

from sqs_fleet.lab.moto_corrections.patch import Patch

# Private names of moto this module reads (tests/unit/test_patched_dependencies.py checks the list).
PRIVATE_NAMES: dict[str, str] = {
    "_vpc_config": "moto.awslambda.models.LambdaFunction._vpc_config: the function's VpcConfig as given",
    "_group_set": "moto.ec2.models.elastic_network_interfaces.NetworkInterface._group_set: its security groups",
}

# Lambda: a VPC function's network interfaces

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


PATCHES = [
    Patch(LambdaBackend, "create_function", create_function),
    Patch(LambdaBackend, "update_function_configuration", update_function_configuration),
    Patch(LambdaBackend, "delete_function", delete_function),
    Patch(LambdaFunction, "vpc_config", property(vpc_config)),
    Patch(NetworkInterface, "get_filter_value", get_filter_value),
    Patch(SubnetBackend, "delete_subnet", delete_subnet),
    Patch(SecurityGroupBackend, "delete_security_group", delete_security_group),
]
