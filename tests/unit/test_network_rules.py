"""The worker subnets' rules (sqs_fleet.aws module_utils network_rules): the zones that offer an instance
type, and the path from a subnet to each service, decided from EC2's descriptions as AWS returns them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ansible_collections.sqs_fleet.aws.plugins.module_utils.network_rules import (
    common_zones,
    keep_offering_subnets,
    subnet_problems,
    zones_offering,
)

REGION = "us-east-1"
SERVICES = ["sqs", "s3"]


def subnet(subnet_id: str, zone: str, vpc: str = "vpc-1") -> dict[str, Any]:
    return {"SubnetId": subnet_id, "AvailabilityZone": zone, "VpcId": vpc}


def table(table_id: str, routes: list[dict[str, Any]], subnets: Sequence[str] = (), main: bool = False,
          vpc: str = "vpc-1") -> dict[str, Any]:
    associations = [{"SubnetId": s, "Main": False} for s in subnets] + ([{"Main": True}] if main else [])
    return {"RouteTableId": table_id, "VpcId": vpc, "Associations": associations,
            "Routes": [{"DestinationCidrBlock": "10.0.0.0/16", "GatewayId": "local", "State": "active"}, *routes]}


def endpoint(service: str, kind: str = "Interface", **extra: Any) -> dict[str, Any]:
    return {"VpcId": "vpc-1", "ServiceName": f"com.amazonaws.{REGION}.{service}", "VpcEndpointType": kind,
            "State": "available", "PrivateDnsEnabled": kind == "Interface", **extra}


NAT = {"DestinationCidrBlock": "0.0.0.0/0", "NatGatewayId": "nat-1", "State": "active"}
IGW = {"DestinationCidrBlock": "0.0.0.0/0", "GatewayId": "igw-1", "State": "active"}
OFFERINGS = [{"InstanceType": "t3.micro", "Location": z} for z in ("us-east-1a", "us-east-1b", "us-east-1f")] + [
    {"InstanceType": "t2.micro", "Location": z} for z in ("us-east-1a", "us-east-1e")]


def test_zones_that_offer_every_type():
    offered = zones_offering(OFFERINGS, ["t3.micro"])
    assert offered == {"t3.micro": ["us-east-1a", "us-east-1b", "us-east-1f"]}
    assert common_zones(zones_offering(OFFERINGS, ["t3.micro", "t2.micro"])) == ["us-east-1a"]
    assert zones_offering(OFFERINGS, ["m7g.large"]) == {"m7g.large": []}


def test_a_subnet_in_a_zone_without_the_type_is_dropped():
    subnets = [subnet("subnet-a", "us-east-1a"), subnet("subnet-e", "us-east-1e")]
    kept, dropped, errors = keep_offering_subnets(subnets, zones_offering(OFFERINGS, ["t3.micro"]))
    assert [s["SubnetId"] for s in kept] == ["subnet-a"]
    assert dropped == [{"subnet_id": "subnet-e", "availability_zone": "us-east-1e",
                        "reason": "t3.micro not offered in us-east-1e"}]
    assert errors == []


def test_no_subnet_offering_the_type_names_the_type():
    _, _, errors = keep_offering_subnets([subnet("subnet-e", "us-east-1e")], zones_offering(OFFERINGS, ["t3.micro"]))
    assert errors == ["instance type t3.micro is not offered in the Availability Zone of any chosen subnet: "
                      "subnet-e (us-east-1e)"]


def test_a_nat_route_serves_everything():
    tables = [table("rtb-1", [NAT], subnets=["subnet-a"])]
    assert subnet_problems([subnet("subnet-a", "us-east-1a")], tables, [], SERVICES, REGION, False, "git") == []


def test_no_route_names_the_subnet_the_service_and_the_missing_endpoint():
    tables = [table("rtb-1", [], subnets=["subnet-a"])]
    problems = subnet_problems([subnet("subnet-a", "us-east-1a")], tables, [], SERVICES, REGION, False)
    assert problems == [
        "subnet subnet-a (us-east-1a) has no route to SQS: no NAT gateway route and no "
        "com.amazonaws.us-east-1.sqs endpoint in vpc-1",
        "subnet subnet-a (us-east-1a) has no route to S3: no NAT gateway route and no "
        "com.amazonaws.us-east-1.s3 gateway endpoint on its route table in vpc-1",
    ]


def test_endpoints_serve_their_services_but_not_the_git_repository():
    tables = [table("rtb-1", [], subnets=["subnet-a"])]
    endpoints = [endpoint("sqs"), endpoint("s3", "Gateway", RouteTableIds=["rtb-1"])]
    problems = subnet_problems([subnet("subnet-a", "us-east-1a")], tables, endpoints, SERVICES, REGION, False,
                               "the git repository https://example.com/r.git")
    assert problems == ["subnet subnet-a (us-east-1a) has no route to the internet (the git repository "
                        "https://example.com/r.git): no NAT gateway route"]


def test_endpoints_that_do_not_serve_the_subnet_are_not_a_path():
    tables = [table("rtb-1", [], subnets=["subnet-a"])]
    endpoints = [endpoint("sqs", PrivateDnsEnabled=False), endpoint("s3", "Gateway", RouteTableIds=["rtb-other"]),
                 endpoint("sqs", State="deleted"), endpoint("sqs", VpcId="vpc-2")]
    problems = subnet_problems([subnet("subnet-a", "us-east-1a")], tables, endpoints, SERVICES, REGION, False)
    assert len(problems) == 2


def test_an_internet_gateway_serves_only_workers_with_a_public_ip_and_the_main_table_applies():
    tables = [table("rtb-main", [IGW], main=True)]
    subnets = [subnet("subnet-a", "us-east-1a")]
    assert subnet_problems(subnets, tables, [], SERVICES, REGION, True, "git") == []
    problems = subnet_problems(subnets, tables, [], ["sqs"], REGION, False)
    assert problems == ["subnet subnet-a (us-east-1a) has no route to SQS: no NAT gateway route (an internet gateway "
                        "route, but workers get no public IP) and no com.amazonaws.us-east-1.sqs endpoint in vpc-1"]
