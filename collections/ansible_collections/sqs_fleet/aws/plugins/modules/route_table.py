#!/usr/bin/python
# Why a project module: amazon.aws.ec2_vpc_route_table sleeps 5 s after any change before it reads the table
# back, whatever AWS says. This module reads the table back at once and waits only while AWS does not show
# the routes and associations it made yet.
from __future__ import annotations

DOCUMENTATION = r"""
module: route_table
short_description: Create, update or delete a VPC route table found by its Name tag
version_added: 1.3.0
author: The sqs-fleet authors
description:
  - Finds the table by its C(Name) tag in the VPC; creates it tagged, or brings its routes, subnet
    associations and tags to the ones given.
  - Routes go to an internet gateway (C(igw-...)) or a NAT gateway (C(nat-...)); a route whose target differs
    (or whose gateway is gone) is replaced in place.
  - The table ends associated with exactly the subnets given; a subnet associated with another table is moved.
  - After a change, reads the table back until AWS shows it as asked (bounded by I(wait_timeout)); never
    sleeps a fixed time.
options:
  vpc_id:
    description: The table's VPC.
    type: str
    required: true
  name:
    description: The table's C(Name) tag, unique in the VPC; the table is found by it.
    type: str
    required: true
  state:
    description: Whether the table should exist.
    type: str
    default: present
    choices: [present, absent]
  routes:
    description: IPv4 routes besides the local one.
    type: list
    elements: dict
    default: []
    suboptions:
      dest:
        description: Destination CIDR block.
        type: str
        required: true
      gateway_id:
        description: An internet gateway (C(igw-...)) or a NAT gateway (C(nat-...)) id.
        type: str
        required: true
  purge_routes:
    description:
      - Remove the routes to a CIDR block that are not in I(routes). Routes to a prefix list (a gateway
        endpoint's) and the local route are never removed.
    type: bool
    default: true
  subnets:
    description: Ids of the subnets the table is associated with; others are disassociated.
    type: list
    elements: str
    default: []
  tags:
    description: The table's tags besides C(Name); others are removed (except AWS's own C(aws:) tags).
    type: dict
    default: {}
  wait_timeout:
    description: Seconds to wait for AWS to show a new or changed table as asked.
    type: int
    default: 120
notes:
  - Supports check mode and diff mode; the diff shows the routes, the subnets and the tags.
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: A public subnet's way to the internet
  sqs_fleet.aws.route_table:
    vpc_id: vpc-0a1b2c3d
    name: network-public
    subnets: [subnet-0a1b2c3d]
    routes:
      - {dest: 0.0.0.0/0, gateway_id: igw-0a1b2c3d}
    tags: {Project: sqs-fleet, Environment: prod}

- name: Private subnets through a NAT gateway, keeping the routes a gateway endpoint adds
  sqs_fleet.aws.route_table:
    vpc_id: vpc-0a1b2c3d
    name: network-private
    subnets: [subnet-4e5f6a7b, subnet-8c9d0e1f]
    routes:
      - {dest: 0.0.0.0/0, gateway_id: nat-0a1b2c3d4e5f6a7b8}
    purge_routes: false

- name: Remove the table (its subnets go back to the VPC's main table)
  sqs_fleet.aws.route_table:
    vpc_id: vpc-0a1b2c3d
    name: network-public
    state: absent
"""

RETURN = r"""
route_table:
  description:
    - The table as DescribeRouteTables returns it, with its id also as C(id); C({id null}) in check mode before
      the table exists, C({}) when absent.
  returned: always
  type: dict
  sample: {id: rtb-0123456789abcdef0, RouteTableId: rtb-0123456789abcdef0, VpcId: vpc-0a1b2c3d}
"""

try:
    from botocore.exceptions import BotoCoreError, ClientError
except ImportError:
    pass  # AnsibleAWSModule reports a missing botocore

from ansible_collections.amazon.aws.plugins.module_utils.botocore import is_boto3_error_code
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

# The keys a route's target can sit in, in DescribeRouteTables.
TARGET_KEYS = ("GatewayId", "NatGatewayId", "TransitGatewayId", "VpcPeeringConnectionId", "NetworkInterfaceId",
               "InstanceId", "CarrierGatewayId", "LocalGatewayId")


def target_key(gateway_id):
    return "NatGatewayId" if gateway_id.startswith("nat-") else "GatewayId"


def target_of(route):
    """A route's target, or None when its gateway is gone (a blackhole route must be replaced)."""
    if route.get("State") == "blackhole":
        return None
    return next((route[key] for key in TARGET_KEYS if route.get(key)), None)


def cidr_routes(table):
    """{destination: target} of the table's routes to a CIDR block, the local one left out."""
    return {r["DestinationCidrBlock"]: target_of(r) for r in table.get("Routes", [])
            if r.get("DestinationCidrBlock") and r.get("GatewayId") != "local"}


def other_routes(table):
    """{destination: target} of the routes this module never touches: the local route and prefix lists."""
    return {(r.get("DestinationCidrBlock") or r.get("DestinationPrefixListId")): target_of(r)
            for r in table.get("Routes", [])
            if r.get("GatewayId") == "local" or not r.get("DestinationCidrBlock")}


def associated(table):
    """{subnet id: association id} of the table's subnet associations."""
    return {a["SubnetId"]: a["RouteTableAssociationId"] for a in table.get("Associations", []) if a.get("SubnetId")}


def view(table):
    if not table:
        return {}
    return {
        "RouteTableId": table.get("RouteTableId"), "VpcId": table.get("VpcId"),
        "Routes": {**other_routes(table), **cidr_routes(table)},
        "Subnets": sorted(associated(table)),
        "Tags": boto3_tag_list_to_ansible_dict(table.get("Tags") or []),
    }


def find(client, vpc_id, name):
    filters = [{"Name": "vpc-id", "Values": [vpc_id]}, {"Name": "tag:Name", "Values": [name]}]
    return client.describe_route_tables(Filters=filters, aws_retry=True)["RouteTables"]


def read(client, table_id):
    try:
        return client.describe_route_tables(RouteTableIds=[table_id], aws_retry=True)["RouteTables"][0]
    except is_boto3_error_code("InvalidRouteTableID.NotFound"):
        return None  # created, not visible yet (eventual consistency)


def plan(table, wanted_routes, purge_routes, subnets, tags):
    """What remains to do to the table: routes to create, replace and delete, subnets to associate and
    disassociate (by association id), tags to set and remove."""
    have = cidr_routes(table)
    create = {dest: target for dest, target in wanted_routes.items() if dest not in have}
    replace = {dest: target for dest, target in wanted_routes.items() if dest in have and have[dest] != target}
    delete = sorted(dest for dest in have if dest not in wanted_routes) if purge_routes else []
    linked = associated(table)
    associate = sorted(s for s in subnets if s not in linked)
    disassociate = sorted(a for s, a in linked.items() if s not in subnets)
    return {
        "create": create, "replace": replace, "delete": delete, "associate": associate,
        "disassociate": disassociate,
        "tags": compare_aws_tags(boto3_tag_list_to_ansible_dict(table.get("Tags") or []), tags),
    }


def is_done(steps):
    return not any(value for key, value in steps.items() if key != "tags") and not any(steps["tags"])


def association_elsewhere(client, subnet_id):
    """The association id of the subnet with another table, if it has an explicit one."""
    tables = client.describe_route_tables(Filters=[{"Name": "association.subnet-id", "Values": [subnet_id]}],
                                          aws_retry=True)["RouteTables"]
    for table in tables:
        for association in table.get("Associations", []):
            if association.get("SubnetId") == subnet_id:
                return association["RouteTableAssociationId"]
    return None


def apply(module, client, table_id, steps):
    for dest, target in steps["create"].items():
        client.create_route(RouteTableId=table_id, DestinationCidrBlock=dest, **{target_key(target): target},
                            aws_retry=True)
    for dest, target in steps["replace"].items():
        client.replace_route(RouteTableId=table_id, DestinationCidrBlock=dest, **{target_key(target): target},
                             aws_retry=True)
    for dest in steps["delete"]:
        client.delete_route(RouteTableId=table_id, DestinationCidrBlock=dest, aws_retry=True)
    for subnet_id in steps["associate"]:
        elsewhere = association_elsewhere(client, subnet_id)
        if elsewhere:
            client.replace_route_table_association(AssociationId=elsewhere, RouteTableId=table_id, aws_retry=True)
        else:
            client.associate_route_table(RouteTableId=table_id, SubnetId=subnet_id, aws_retry=True)
    for association_id in steps["disassociate"]:
        client.disassociate_route_table(AssociationId=association_id, aws_retry=True)
    to_set, to_remove = steps["tags"]
    add_ec2_tags(client, module, table_id, to_set)
    remove_ec2_tags(client, module, table_id, to_remove)


def delete(client, table):
    for association_id in associated(table).values():
        client.disassociate_route_table(AssociationId=association_id, aws_retry=True)
    try:
        client.delete_route_table(RouteTableId=table["RouteTableId"], aws_retry=True)
    except is_boto3_error_code("InvalidRouteTableID.NotFound"):
        pass  # removed meanwhile: the end state is the one asked for


def main():
    module = AnsibleAWSModule(
        argument_spec=dict(
            vpc_id=dict(type="str", required=True),
            name=dict(type="str", required=True),
            state=dict(type="str", default="present", choices=["present", "absent"]),
            routes=dict(type="list", elements="dict", default=[], options=dict(
                dest=dict(type="str", required=True),
                gateway_id=dict(type="str", required=True),
            )),
            purge_routes=dict(type="bool", default=True),
            subnets=dict(type="list", elements="str", default=[]),
            tags=dict(type="dict", default={}),
            wait_timeout=dict(type="int", default=120),
        ),
        supports_check_mode=True,
    )
    params = module.params
    vpc_id, name = params["vpc_id"], params["name"]
    client = module.client("ec2", retry_decorator=AWSRetry.jittered_backoff())
    try:
        tables = find(client, vpc_id, name)
    except (ClientError, BotoCoreError) as error:
        module.fail_json_aws(error, msg=f"Could not read route table {name}")
    if len(tables) > 1:
        module.fail_json(msg=f"route table {name}: {len(tables)} tables with that Name tag in {vpc_id}")
    table = tables[0] if tables else None
    before = view(table)

    if params["state"] == "absent":
        if table and not module.check_mode:
            try:
                delete(client, table)
            except (ClientError, BotoCoreError) as error:
                module.fail_json_aws(error, msg=f"Could not delete route table {name}")
        module.exit_json(changed=table is not None, route_table={}, diff={"before": before, "after": {}})

    bad = [r["gateway_id"] for r in params["routes"] if not r["gateway_id"].startswith(("igw-", "nat-"))]
    if bad:
        module.fail_json(msg=f"route table {name}: {', '.join(bad)}: a route goes to an igw- or a nat- gateway")
    wanted_routes = {r["dest"]: r["gateway_id"] for r in params["routes"]}
    subnets = sorted(set(params["subnets"]))
    tags = dict({str(k): str(v) for k, v in params["tags"].items()}, Name=name)
    after = {
        "RouteTableId": before.get("RouteTableId"), "VpcId": vpc_id,
        "Routes": {**other_routes(table or {}), **({} if params["purge_routes"] else cidr_routes(table or {})),
                   **wanted_routes},
        "Subnets": subnets, "Tags": tags_after(before.get("Tags", {}), tags),
    }

    def settled(current):
        return current is not None and is_done(plan(current, wanted_routes, params["purge_routes"], subnets, tags))

    changed = table is None or not settled(table)
    if changed and not module.check_mode:
        try:
            if table is None:
                table_id = client.create_route_table(
                    VpcId=vpc_id, aws_retry=True, **tagged_at_creation("route-table", tags),
                )["RouteTable"]["RouteTableId"]
                table, shown = wait_for(lambda: read(client, table_id), lambda t: t is not None,
                                        params["wait_timeout"])
                if not shown:
                    module.fail_json(msg=f"route table {name} ({table_id}) was created but AWS did not show it "
                                         f"within {params['wait_timeout']} s", changed=True)
            table_id = table["RouteTableId"]
            apply(module, client, table_id, plan(table, wanted_routes, params["purge_routes"], subnets, tags))
            table, shown = wait_for(lambda: read(client, table_id), settled, params["wait_timeout"])
            if not shown:
                module.warn(f"route table {name}: AWS did not show the routes, subnets and tags as asked within "
                            f"{params['wait_timeout']} s; a rerun will say what is left")
        except (ClientError, BotoCoreError) as error:
            action = "update" if before else "create"
            module.fail_json_aws(error, msg=f"Could not {action} route table {name}")
    result = dict(table, id=table["RouteTableId"]) if table else {"id": None}
    module.exit_json(changed=changed, route_table=result, diff={"before": before, "after": after})


if __name__ == "__main__":
    main()
