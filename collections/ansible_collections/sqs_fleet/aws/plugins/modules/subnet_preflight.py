#!/usr/bin/python
# Why a project module: a worker launched where it has no path to SQS, CloudWatch, SSM or its git
# repository boots, fails its bootstrap and is replaced, silently and at a cost; checking the subnets'
# route tables and the VPC's endpoints before the group exists says what is missing instead.
from __future__ import annotations

DOCUMENTATION = r"""
module: subnet_preflight
short_description: Check that worker subnets offer the instance types and reach the services workers call
version_added: 1.1.0
author: The sqs-fleet authors
description:
  - Keeps the subnets whose Availability Zone offers every given instance type
    (DescribeInstanceTypeOfferings); fails, naming the type, when none does.
  - For each kept subnet, reads its route table (its own association, else the VPC's main table) and the
    VPC's endpoints, and fails naming the subnet, its zone and each service it has no path to. A path is
    a default route to a NAT gateway, a default route to an internet gateway when workers get a public
    IP, or an endpoint of the service in the VPC (an interface endpoint with private DNS, or for S3 a
    gateway endpoint on the subnet's route table).
  - Changes nothing.
options:
  subnet_ids:
    description: Subnets to check.
    type: list
    elements: str
    required: true
  instance_types:
    description: Instance types the subnets' zones must offer.
    type: list
    elements: str
    required: true
  services:
    description: Endpoint service names (the part after C(com.amazonaws.<region>.)) the workers call.
    type: list
    elements: str
    default: [sqs, logs, monitoring, ssm, ssmmessages, ec2messages, autoscaling, sts, s3]
  public_ip:
    description: Whether workers get a public IPv4 address (an internet gateway route then serves).
    type: bool
    default: false
  internet_for:
    description:
      - What needs the internet itself, named in the message (the git repository, package mirrors); only
        a NAT gateway or an internet gateway with a public IP serve it. Empty when nothing does.
    type: str
    default: ""
notes:
  - Supports check mode; it only reads.
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: Check the workers' subnets before the group exists
  sqs_fleet.aws.subnet_preflight:
    subnet_ids: [subnet-0a1b2c3d, subnet-4e5f6a7b]
    instance_types: [t3.micro]
    internet_for: the git repository https://github.com/example/sqs-fleet.git
  register: preflight
"""

RETURN = r"""
subnet_ids:
  description: The subnets kept, those whose zone offers every instance type, in the order given.
  returned: success
  type: list
  elements: str
dropped:
  description: The subnets left out, with their zone and why.
  returned: always
  type: list
  elements: dict
  sample: [{subnet_id: subnet-4e5f6a7b, availability_zone: us-east-1e, reason: t3.micro not offered in us-east-1e}]
problems:
  description: One sentence per subnet and service with no path.
  returned: always
  type: list
  elements: str
  sample: ["subnet subnet-0a1b2c3d (us-east-1a) has no route to SQS: no NAT gateway route and no
            com.amazonaws.us-east-1.sqs endpoint in vpc-0123"]
"""

try:
    from botocore.exceptions import BotoCoreError, ClientError
except ImportError:
    pass  # AnsibleAWSModule reports a missing botocore

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
from ansible_collections.amazon.aws.plugins.module_utils.retries import AWSRetry
from ansible_collections.sqs_fleet.aws.plugins.module_utils.network_rules import (
    keep_offering_subnets,
    subnet_problems,
    zones_offering,
)


def read(module, what, call, key, **params):
    try:
        return [item for page in call.paginate(**params) for item in page[key]]
    except (ClientError, BotoCoreError) as error:
        module.fail_json_aws(error, msg=f"Could not read {what}")


def main():
    module = AnsibleAWSModule(
        argument_spec=dict(
            subnet_ids=dict(type="list", elements="str", required=True),
            instance_types=dict(type="list", elements="str", required=True),
            services=dict(type="list", elements="str",
                          default=["sqs", "logs", "monitoring", "ssm", "ssmmessages", "ec2messages", "autoscaling",
                                   "sts", "s3"]),
            public_ip=dict(type="bool", default=False),
            internet_for=dict(type="str", default=""),
        ),
        supports_check_mode=True,
    )
    params = module.params
    if not params["subnet_ids"]:
        module.fail_json(msg="no subnet to check", dropped=[], problems=[])
    client = module.client("ec2", retry_decorator=AWSRetry.jittered_backoff())
    pager = client.get_paginator
    subnets = read(module, "the subnets", pager("describe_subnets"), "Subnets", SubnetIds=params["subnet_ids"])
    order = {subnet_id: index for index, subnet_id in enumerate(params["subnet_ids"])}
    subnets.sort(key=lambda s: order.get(s["SubnetId"], len(order)))
    offerings = read(module, "the instance type offerings", pager("describe_instance_type_offerings"),
                     "InstanceTypeOfferings", LocationType="availability-zone",
                     Filters=[{"Name": "instance-type", "Values": params["instance_types"]}])
    kept, dropped, errors = keep_offering_subnets(subnets, zones_offering(offerings, params["instance_types"]))
    if errors:
        module.fail_json(msg="; ".join(errors), dropped=dropped, problems=errors)

    vpcs = sorted({s["VpcId"] for s in kept})
    tables = read(module, "the route tables", pager("describe_route_tables"), "RouteTables",
                  Filters=[{"Name": "vpc-id", "Values": vpcs}])
    endpoints = read(module, "the VPC endpoints", pager("describe_vpc_endpoints"), "VpcEndpoints",
                     Filters=[{"Name": "vpc-id", "Values": vpcs}])
    problems = subnet_problems(kept, tables, endpoints, params["services"], module.region, params["public_ip"],
                               params["internet_for"] or None)
    if problems:
        module.fail_json(msg="; ".join(problems), dropped=dropped, problems=problems)
    module.exit_json(changed=False, subnet_ids=[s["SubnetId"] for s in kept], dropped=dropped, problems=[])


if __name__ == "__main__":
    main()
