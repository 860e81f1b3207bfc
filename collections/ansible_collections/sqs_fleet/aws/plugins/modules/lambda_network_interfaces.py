#!/usr/bin/python
# Why a project module: Lambda deletes a VPC function's network interfaces itself, with the function's execution
# role, many minutes after the function is deleted or leaves its VPC. Whatever removes that role, or the subnets
# and security groups the interfaces sit in, has to wait for them first; no collection has a module that does.
from __future__ import annotations

DOCUMENTATION = r"""
module: lambda_network_interfaces
short_description: Take a Lambda function out of its VPC and wait until Lambda has released its network interfaces
version_added: 1.6.0
author: The sqs-fleet authors
description:
  - Finds the network interfaces Lambda made for a function (interface type C(lambda), description
    C(AWS Lambda VPC ENI-<function>-...)) with DescribeNetworkInterfaces; they exist after the function itself is
    deleted, until Lambda releases them.
  - With O(detach), a function still in a VPC is first taken out of it (UpdateFunctionConfiguration with no
    subnets and no security groups), and its update is waited for (LastUpdateStatus Successful).
  - With O(wait_timeout), the action plugin of the same name polls every O(poll_interval) seconds, prints the
    interfaces that remain after each poll, and fails naming them if any remain after O(wait_timeout) seconds.
    Lambda releases them with the function's execution role; that role, and its ec2:DeleteNetworkInterface
    permission, must stay until this returns.
options:
  function_name:
    description: Name of the function (it may no longer exist).
    type: str
    required: true
  detach:
    description: Take the function out of its VPC first, if it exists and is in one.
    type: bool
    default: false
  wait_timeout:
    description:
      - Seconds to wait for the interfaces to be released; 0 reports them without waiting.
      - AWS documents that release can take up to 45 minutes (the Terraform AWS provider waits as long).
    type: int
    default: 0
  poll_interval:
    description: Seconds between two polls while waiting.
    type: int
    default: 30
notes:
  - Supports check mode (nothing is detached, nothing is waited for) and diff mode.
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: Wait until Lambda has released the interfaces of a deleted function (before removing its role)
  sqs_fleet.aws.lambda_network_interfaces:
    function_name: backlog-publisher
    wait_timeout: 2700

- name: Take a function out of its VPC and wait for its interfaces to go
  sqs_fleet.aws.lambda_network_interfaces:
    function_name: backlog-publisher
    detach: true
    wait_timeout: 2700
    poll_interval: 30
"""

RETURN = r"""
interfaces:
  description: The function's interfaces that remain (after the wait, if any).
  returned: always
  type: list
  elements: dict
  contains:
    id: {description: The interface's id., type: str, sample: eni-0123456789abcdef0}
    subnet_id: {description: Its subnet., type: str, sample: subnet-0123456789abcdef0}
    status: {description: Its status., type: str, sample: in-use}
    description: {description: Lambda's description of it., type: str}
detached:
  description: Whether the function was (or, in check mode, would be) taken out of its VPC.
  returned: always
  type: bool
waited:
  description: Seconds the action plugin waited.
  returned: when O(wait_timeout) is more than 0
  type: int
"""

try:
    from botocore.exceptions import BotoCoreError, ClientError, WaiterError
except ImportError:
    pass  # AnsibleAWSModule reports a missing botocore

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
from ansible_collections.amazon.aws.plugins.module_utils.retries import AWSRetry

# What Lambda names a function's interfaces (Lambda developer guide, "Connecting functions to a VPC").
DESCRIPTION_PREFIX = "AWS Lambda VPC ENI-"


def interfaces_of(client, name):
    """The function's own interfaces: the description names it, followed by a dash (not a longer name)."""
    filters = [{"Name": "interface-type", "Values": ["lambda"]},
               {"Name": "description", "Values": [f"{DESCRIPTION_PREFIX}{name}-*"]}]
    found = []
    paginator = client.get_paginator("describe_network_interfaces")
    for interface in paginator.paginate(Filters=filters).build_full_result()["NetworkInterfaces"]:
        if interface.get("Description", "").startswith(f"{DESCRIPTION_PREFIX}{name}-"):
            found.append({"id": interface["NetworkInterfaceId"], "subnet_id": interface.get("SubnetId"),
                          "status": interface.get("Status"), "description": interface.get("Description", "")})
    return sorted(found, key=lambda i: i["id"])


def function_vpc(client, name):
    """(subnets, security groups) of the function, or None when it does not exist."""
    try:
        config = client.get_function_configuration(FunctionName=name, aws_retry=True)
    except ClientError as error:
        if error.response["Error"]["Code"] == "ResourceNotFoundException":
            return None
        raise
    vpc = config.get("VpcConfig") or {}
    return vpc.get("SubnetIds") or [], vpc.get("SecurityGroupIds") or []


def main():
    module = AnsibleAWSModule(
        argument_spec=dict(function_name=dict(type="str", required=True), detach=dict(type="bool", default=False),
                           wait_timeout=dict(type="int", default=0), poll_interval=dict(type="int", default=30)),
        supports_check_mode=True,
    )
    name = module.params["function_name"]
    for option in ("wait_timeout", "poll_interval"):
        if module.params[option] < 0:
            module.fail_json(msg=f"{option} {module.params[option]}: must be 0 or more")
    retry = AWSRetry.jittered_backoff()
    lambda_client = module.client("lambda", retry_decorator=retry)
    ec2 = module.client("ec2", retry_decorator=retry)

    detached = False
    if module.params["detach"]:
        try:
            vpc = function_vpc(lambda_client, name)
        except (ClientError, BotoCoreError) as error:
            module.fail_json_aws(error, msg=f"Could not read the configuration of function {name}")
        if vpc is not None and (vpc[0] or vpc[1]):
            detached = True
            if not module.check_mode:
                try:
                    lambda_client.get_waiter("function_updated_v2").wait(FunctionName=name)
                    lambda_client.update_function_configuration(
                        FunctionName=name, VpcConfig={"SubnetIds": [], "SecurityGroupIds": []}, aws_retry=True)
                    # LastUpdateStatus Successful: Lambda has taken the change, and releases the interfaces later.
                    lambda_client.get_waiter("function_updated_v2").wait(FunctionName=name)
                except (ClientError, BotoCoreError, WaiterError) as error:
                    module.fail_json_aws(error, msg=f"Could not take function {name} out of its VPC")
            vpc_before = {"subnet_ids": vpc[0], "security_group_ids": vpc[1]}
    try:
        interfaces = interfaces_of(ec2, name)
    except (ClientError, BotoCoreError) as error:
        module.fail_json_aws(error, msg=f"Could not list the network interfaces of function {name}")
    diff = {"before": {"vpc": vpc_before}, "after": {"vpc": {"subnet_ids": [], "security_group_ids": []}}} \
        if detached else {}
    module.exit_json(changed=detached, detached=detached, interfaces=interfaces, diff=diff)


if __name__ == "__main__":
    main()
