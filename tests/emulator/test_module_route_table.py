"""sqs_fleet.aws.route_table on the emulator: create with its routes, subnets and tags, rerun without change,
check mode, update (a route replaced, a subnet moved from another table, a tag changed), routes a gateway
endpoint added kept with purge_routes false, delete."""

from __future__ import annotations

from typing import Any

import pytest

from support.ansible_runs import ok

NAME = "modules-table"
TAGS = {"Project": "sqs-fleet", "Environment": "modules"}


@pytest.fixture
def vpc(aws) -> dict[str, Any]:
    """A VPC of its own with two subnets, an internet gateway and a NAT gateway."""
    ec2 = aws("ec2")
    vpc_id = ec2.create_vpc(CidrBlock="10.90.0.0/16")["Vpc"]["VpcId"]
    subnets = [ec2.create_subnet(VpcId=vpc_id, CidrBlock=f"10.90.{i}.0/24")["Subnet"]["SubnetId"] for i in (1, 2)]
    igw = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    ec2.attach_internet_gateway(InternetGatewayId=igw, VpcId=vpc_id)
    allocation = ec2.allocate_address(Domain="vpc")["AllocationId"]
    nat = ec2.create_nat_gateway(SubnetId=subnets[0], AllocationId=allocation)["NatGateway"]["NatGatewayId"]
    return {"id": vpc_id, "subnets": subnets, "igw": igw, "nat": nat}


def table_on_emulator(aws, vpc_id: str) -> dict[str, Any] | None:
    tables = aws("ec2").describe_route_tables(Filters=[{"Name": "vpc-id", "Values": [vpc_id]},
                                                      {"Name": "tag:Name", "Values": [NAME]}])["RouteTables"]
    return tables[0] if tables else None


def routes(table: dict[str, Any]) -> dict[str, str]:
    return {r["DestinationCidrBlock"]: r.get("NatGatewayId") or r["GatewayId"] for r in table["Routes"]
            if r.get("DestinationCidrBlock") and r.get("GatewayId") != "local"}


def subnets(table: dict[str, Any]) -> list[str]:
    return sorted(a["SubnetId"] for a in table["Associations"] if a.get("SubnetId"))


def tags(table: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in table.get("Tags", [])}


def test_table_lifecycle(run_module, aws, vpc):
    present = {"vpc_id": vpc["id"], "name": NAME, "subnets": [vpc["subnets"][0]],
               "routes": [{"dest": "0.0.0.0/0", "gateway_id": vpc["igw"]}], "tags": TAGS}

    planned = ok(run_module("route_table", present, "--check"))
    assert planned["changed"] and planned["route_table"] == {"id": None} and planned["diff"]["before"] == {}
    assert planned["diff"]["after"]["Routes"] == {"0.0.0.0/0": vpc["igw"]}
    assert table_on_emulator(aws, vpc["id"]) is None, "check mode created the table"

    created = ok(run_module("route_table", present))
    table = table_on_emulator(aws, vpc["id"])
    assert created["changed"] and table and created["route_table"]["id"] == table["RouteTableId"]
    assert routes(table) == {"0.0.0.0/0": vpc["igw"]}
    assert subnets(table) == [vpc["subnets"][0]]
    assert tags(table) == {**TAGS, "Name": NAME}

    assert not ok(run_module("route_table", present))["changed"], "a rerun changed the table"
    assert not ok(run_module("route_table", present, "--check"))["changed"]

    # The second subnet is associated with another table: the update moves it. The route goes to the NAT
    # gateway instead, and a tag changes.
    ec2 = aws("ec2")
    other = ec2.create_route_table(VpcId=vpc["id"])["RouteTable"]["RouteTableId"]
    ec2.associate_route_table(RouteTableId=other, SubnetId=vpc["subnets"][1])
    update = dict(present, subnets=vpc["subnets"], routes=[{"dest": "0.0.0.0/0", "gateway_id": vpc["nat"]}],
                  tags={**TAGS, "Environment": "modules-2"})
    planned = ok(run_module("route_table", update, "--check"))
    assert planned["changed"]
    assert planned["diff"]["before"]["Routes"]["0.0.0.0/0"] == vpc["igw"]
    assert planned["diff"]["after"]["Routes"]["0.0.0.0/0"] == vpc["nat"]
    assert planned["diff"]["after"]["Subnets"] == sorted(vpc["subnets"])
    assert routes(table_on_emulator(aws, vpc["id"])) == {"0.0.0.0/0": vpc["igw"]}, "check mode changed the table"
    assert ok(run_module("route_table", update))["changed"]
    table = table_on_emulator(aws, vpc["id"])
    assert routes(table) == {"0.0.0.0/0": vpc["nat"]}
    assert subnets(table) == sorted(vpc["subnets"])
    assert tags(table) == {**TAGS, "Environment": "modules-2", "Name": NAME}
    assert subnets(ec2.describe_route_tables(RouteTableIds=[other])["RouteTables"][0]) == []
    assert not ok(run_module("route_table", update))["changed"], "a rerun after the update changed the table"

    # A route someone else added: kept with purge_routes false, removed by default.
    ec2.create_route(RouteTableId=table["RouteTableId"], DestinationCidrBlock="192.168.0.0/16", GatewayId=vpc["igw"])
    assert not ok(run_module("route_table", dict(update, purge_routes=False)))["changed"]
    assert ok(run_module("route_table", update))["changed"]
    assert routes(table_on_emulator(aws, vpc["id"])) == {"0.0.0.0/0": vpc["nat"]}

    absent = {"vpc_id": vpc["id"], "name": NAME, "state": "absent"}
    planned = ok(run_module("route_table", absent, "--check"))
    assert planned["changed"] and planned["diff"]["before"]["RouteTableId"] == table["RouteTableId"]
    assert planned["diff"]["after"] == {}
    assert table_on_emulator(aws, vpc["id"]), "check mode deleted the table"
    assert ok(run_module("route_table", absent))["changed"]
    assert table_on_emulator(aws, vpc["id"]) is None
    assert not ok(run_module("route_table", absent))["changed"], "deleting a missing table changed it"


def test_a_route_to_another_kind_of_target_fails_before_any_call(run_module, aws, vpc):
    result = run_module("route_table", {"vpc_id": vpc["id"], "name": NAME,
                                        "routes": [{"dest": "0.0.0.0/0", "gateway_id": "vgw-0a1b2c3d"}]})
    assert result.get("failed") and "vgw-0a1b2c3d" in result["msg"]
    assert table_on_emulator(aws, vpc["id"]) is None
