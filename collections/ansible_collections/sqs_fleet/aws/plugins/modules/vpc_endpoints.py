#!/usr/bin/python
# Why a project module: amazon.aws.ec2_vpc_endpoint manages one endpoint per call, so a VPC's interface
# endpoints cost a task run each (a new boto3 session, a read of every endpoint), on every run. This module
# reads the VPC's endpoints once and makes, changes or deletes all of them in one run.
from __future__ import annotations

DOCUMENTATION = r"""
module: vpc_endpoints
short_description: The interface endpoints of a VPC, all in one call; or remove a VPC's endpoints
version_added: 1.4.0
author: The sqs-fleet authors
description:
  - Reads the VPC's endpoints once. For each service of I(services), creates an interface endpoint with
    private DNS, in I(subnets) with I(security_groups), tagged at creation; or brings an existing one's
    subnets, security groups, private DNS and tags to those given.
  - Endpoints of other services are left alone.
  - With I(state=absent), deletes the endpoints of I(services) (every endpoint of the VPC, of any type, when
    I(services) is empty) and waits until AWS has deleted them, so that their network interfaces have left
    the subnets.
options:
  vpc_id:
    description: The endpoints' VPC.
    type: str
    required: true
  state:
    description: Whether the endpoints should exist.
    type: str
    default: present
    choices: [present, absent]
  services:
    description: Full service names, such as C(com.amazonaws.us-east-1.sqs).
    type: list
    elements: str
    default: []
  subnets:
    description: The subnets each interface endpoint has a network interface in (one per zone).
    type: list
    elements: str
    default: []
  security_groups:
    description: The security groups of each endpoint's network interfaces.
    type: list
    elements: str
    default: []
  name_prefix:
    description: Each endpoint's C(Name) tag is this followed by the last part of its service name.
    type: str
    default: ""
  tags:
    description: Tags of each endpoint besides C(Name); others are removed (except AWS's own C(aws:) tags).
    type: dict
    default: {}
  wait_timeout:
    description: Seconds to wait for deleted endpoints to be gone (I(state=absent)).
    type: int
    default: 300
notes:
  - Supports check mode and diff mode; the diff shows each service's endpoint.
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: The endpoints private workers call
  sqs_fleet.aws.vpc_endpoints:
    vpc_id: vpc-0a1b2c3d
    services: [com.amazonaws.us-east-1.sqs, com.amazonaws.us-east-1.logs]
    subnets: [subnet-0a1b2c3d, subnet-4e5f6a7b]
    security_groups: [sg-0a1b2c3d]
    name_prefix: network-
    tags: {Project: sqs-fleet}

- name: Remove every endpoint of the VPC before the VPC
  sqs_fleet.aws.vpc_endpoints:
    vpc_id: vpc-0a1b2c3d
    state: absent
"""

RETURN = r"""
vpc_endpoints:
  description:
    - The endpoints of I(services) as this run read them before changing them, a new one as CreateVpcEndpoint
      returns it; C([]) when absent.
  returned: always
  type: list
  elements: dict
  sample: [{VpcEndpointId: vpce-0123456789abcdef0, ServiceName: com.amazonaws.us-east-1.sqs, State: available}]
"""

try:
    from botocore.exceptions import BotoCoreError, ClientError
except ImportError:
    pass  # AnsibleAWSModule reports a missing botocore

from ansible_collections.amazon.aws.plugins.module_utils.ec2 import add_ec2_tags, remove_ec2_tags
from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
from ansible_collections.amazon.aws.plugins.module_utils.retries import AWSRetry
from ansible_collections.amazon.aws.plugins.module_utils.tagging import (
    boto3_tag_list_to_ansible_dict,
    compare_aws_tags,
)
from ansible_collections.sqs_fleet.aws.plugins.module_utils.ec2_resources import (
    tagged_at_creation,
    tags_after,
    wait_for,
)

# An endpoint in these states is gone, or going: never changed, never counted as present.
GONE = ("deleting", "deleted", "failed", "rejected", "expired")
# DeleteVpcEndpoints takes at most 25 ids per call.
DELETE_BATCH = 25


def described(client, vpc_id):
    """Every endpoint of the VPC that DescribeVpcEndpoints shows, whatever its state."""
    paginator = client.get_paginator("describe_vpc_endpoints")
    return paginator.paginate(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}]).build_full_result()["VpcEndpoints"]


def endpoints_of(client, vpc_id):
    return [e for e in described(client, vpc_id) if e.get("State", "").lower() not in GONE]


def view(endpoint):
    if not endpoint:
        return {}
    return {
        "VpcEndpointId": endpoint.get("VpcEndpointId"), "ServiceName": endpoint["ServiceName"],
        "SubnetIds": sorted(endpoint.get("SubnetIds", [])),
        "SecurityGroupIds": sorted(g["GroupId"] for g in endpoint.get("Groups", [])),
        "PrivateDnsEnabled": endpoint.get("PrivateDnsEnabled", False),
        "Tags": boto3_tag_list_to_ansible_dict(endpoint.get("Tags") or []),
    }


def modification(have, want):
    """The ModifyVpcEndpoint arguments that turn one endpoint (a view) into the wanted one; {} when none."""
    changes = {}
    for key, add, remove in (("SubnetIds", "AddSubnetIds", "RemoveSubnetIds"),
                             ("SecurityGroupIds", "AddSecurityGroupIds", "RemoveSecurityGroupIds")):
        added = sorted(set(want[key]) - set(have[key]))
        removed = sorted(set(have[key]) - set(want[key]))
        if added:
            changes[add] = added
        if removed:
            changes[remove] = removed
    if not have["PrivateDnsEnabled"]:
        changes["PrivateDnsEnabled"] = True
    return changes


def delete(module, client, endpoints):
    ids = [e["VpcEndpointId"] for e in endpoints]
    for start in range(0, len(ids), DELETE_BATCH):
        unsuccessful = client.delete_vpc_endpoints(VpcEndpointIds=ids[start:start + DELETE_BATCH],
                                                   aws_retry=True).get("Unsuccessful", [])
        if unsuccessful:
            module.fail_json(msg=f"Could not delete endpoints: {unsuccessful}", changed=True)
    vpc_id = module.params["vpc_id"]

    def deleting():
        return [e["VpcEndpointId"] for e in described(client, vpc_id)
                if e["VpcEndpointId"] in ids and e.get("State", "").lower() != "deleted"]

    left, gone = wait_for(deleting, lambda still: not still, module.params["wait_timeout"])
    if not gone:
        module.fail_json(msg=f"endpoints {', '.join(left)} of {vpc_id} were still being deleted after "
                             f"{module.params['wait_timeout']} s", changed=True)


def main():
    module = AnsibleAWSModule(
        argument_spec=dict(
            vpc_id=dict(type="str", required=True),
            state=dict(type="str", default="present", choices=["present", "absent"]),
            services=dict(type="list", elements="str", default=[]),
            subnets=dict(type="list", elements="str", default=[]),
            security_groups=dict(type="list", elements="str", default=[]),
            name_prefix=dict(type="str", default=""),
            tags=dict(type="dict", default={}),
            wait_timeout=dict(type="int", default=300),
        ),
        supports_check_mode=True,
    )
    params = module.params
    missing = [key for key in ("services", "subnets", "security_groups") if not params[key]]
    if params["state"] == "present" and missing:
        module.fail_json(msg=f"endpoints of {params['vpc_id']}: state present needs {', '.join(missing)}")
    vpc_id, services = params["vpc_id"], list(dict.fromkeys(params["services"]))
    client = module.client("ec2", retry_decorator=AWSRetry.jittered_backoff())
    try:
        existing = endpoints_of(client, vpc_id)
    except (ClientError, BotoCoreError) as error:
        module.fail_json_aws(error, msg=f"Could not read the endpoints of {vpc_id}")

    if params["state"] == "absent":
        doomed = [e for e in existing if not services or e["ServiceName"] in services]
        if doomed and not module.check_mode:
            try:
                delete(module, client, doomed)
            except (ClientError, BotoCoreError) as error:
                module.fail_json_aws(error, msg=f"Could not delete the endpoints of {vpc_id}")
        module.exit_json(changed=bool(doomed), vpc_endpoints=[],
                         diff={"before": {e["ServiceName"]: view(e) for e in doomed}, "after": {}})

    interfaces = {e["ServiceName"]: e for e in existing if e.get("VpcEndpointType") == "Interface"}
    common_tags = {str(k): str(v) for k, v in params["tags"].items()}
    before, after, results, changed = {}, {}, [], False
    try:
        for service in services:
            endpoint = interfaces.get(service)
            tags = dict(common_tags, Name=params["name_prefix"] + service.rsplit(".", 1)[-1])
            have = view(endpoint)
            want = {"VpcEndpointId": have.get("VpcEndpointId"), "ServiceName": service,
                    "SubnetIds": sorted(set(params["subnets"])),
                    "SecurityGroupIds": sorted(set(params["security_groups"])), "PrivateDnsEnabled": True,
                    "Tags": tags_after(have.get("Tags", {}), tags)}
            before[service], after[service] = have, want
            if endpoint is None:
                changed = True
                if not module.check_mode:
                    endpoint = client.create_vpc_endpoint(
                        VpcEndpointType="Interface", VpcId=vpc_id, ServiceName=service, SubnetIds=want["SubnetIds"],
                        SecurityGroupIds=want["SecurityGroupIds"], PrivateDnsEnabled=True, aws_retry=True,
                        **tagged_at_creation("vpc-endpoint", tags),
                    )["VpcEndpoint"]
            else:
                changes = modification(have, want)
                tag_steps = compare_aws_tags(have["Tags"], tags)
                if changes or any(tag_steps):
                    changed = True
                    if not module.check_mode:
                        if changes:
                            client.modify_vpc_endpoint(VpcEndpointId=endpoint["VpcEndpointId"], aws_retry=True,
                                                       **changes)
                        add_ec2_tags(client, module, endpoint["VpcEndpointId"], tag_steps[0])
                        remove_ec2_tags(client, module, endpoint["VpcEndpointId"], tag_steps[1])
            if endpoint:
                results.append(endpoint)
    except (ClientError, BotoCoreError) as error:
        module.fail_json_aws(error, msg=f"Could not make the endpoints of {vpc_id}", changed=changed)
    module.exit_json(changed=changed, vpc_endpoints=results, diff={"before": before, "after": after})


if __name__ == "__main__":
    main()
