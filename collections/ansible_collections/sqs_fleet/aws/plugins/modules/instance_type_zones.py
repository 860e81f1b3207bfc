#!/usr/bin/python
# Why a project module: no amazon.aws or community.aws module reads DescribeInstanceTypeOfferings, and a
# group whose subnets include a zone that lacks its instance type fails every launch there (us-east-1e
# offers no t3 types).
from __future__ import annotations

DOCUMENTATION = r"""
module: instance_type_zones
short_description: The Availability Zones of the region that offer instance types
version_added: 1.1.0
author: The sqs-fleet authors
description:
  - Reads DescribeInstanceTypeOfferings with location type availability-zone and returns the zones that
    offer every given instance type. Changes nothing.
  - Fails, naming the type, when a type is offered in no zone of the region.
options:
  instance_types:
    description: Instance types the zones must all offer.
    type: list
    elements: str
    required: true
notes:
  - Supports check mode; it only reads.
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: Zones that offer the workers' instance type
  sqs_fleet.aws.instance_type_zones:
    instance_types: [t3.micro]
  register: zones
"""

RETURN = r"""
zones:
  description: Zones that offer every type, sorted by name.
  returned: always
  type: list
  elements: str
  sample: [us-east-1a, us-east-1b, us-east-1c, us-east-1d, us-east-1f]
offered:
  description: For each type, the zones that offer it.
  returned: always
  type: dict
  sample: {t3.micro: [us-east-1a, us-east-1b]}
"""

try:
    from botocore.exceptions import BotoCoreError, ClientError
except ImportError:
    pass  # AnsibleAWSModule reports a missing botocore

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
from ansible_collections.amazon.aws.plugins.module_utils.retries import AWSRetry
from ansible_collections.sqs_fleet.aws.plugins.module_utils.network_rules import common_zones, zones_offering


def offerings(module, client, instance_types):
    try:
        paginator = client.get_paginator("describe_instance_type_offerings")
        pages = paginator.paginate(LocationType="availability-zone",
                                   Filters=[{"Name": "instance-type", "Values": instance_types}])
        return [o for page in pages for o in page["InstanceTypeOfferings"]]
    except (ClientError, BotoCoreError) as error:
        module.fail_json_aws(error, msg=f"Could not read where {', '.join(instance_types)} are offered")


def main():
    module = AnsibleAWSModule(
        argument_spec=dict(instance_types=dict(type="list", elements="str", required=True)),
        supports_check_mode=True,
    )
    types = module.params["instance_types"]
    client = module.client("ec2", retry_decorator=AWSRetry.jittered_backoff())
    offered = zones_offering(offerings(module, client, types), types)
    nowhere = sorted(name for name, zones in offered.items() if not zones)
    if nowhere:
        module.fail_json(msg=f"instance type {', '.join(nowhere)} is offered in no Availability Zone of "
                             f"{module.region}", offered=offered)
    module.exit_json(changed=False, zones=common_zones(offered), offered=offered)


if __name__ == "__main__":
    main()
