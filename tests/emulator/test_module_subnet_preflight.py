"""sqs_fleet.aws.subnet_preflight on the emulator: the subnets whose zone offers the instance type are kept
(the emulator's us-east-1e offers no t3 type, as on AWS), and a subnet with no path to a service is named
with the service and what is missing."""

from __future__ import annotations

from typing import Any


def preflight(run_module, subnets: list[str], **options: Any) -> dict[str, Any]:
    return run_module("subnet_preflight", {"subnet_ids": subnets, "instance_types": ["t3.micro"], **options})


def test_preflight_names_the_service_a_subnet_has_no_route_to(run_module, aws):
    # A VPC of its own, left behind: the tests that need a clean emulator reset it.
    ec2 = aws("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.90.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.90.0.0/24", AvailabilityZone="us-east-1a")["Subnet"]["SubnetId"]
    result = preflight(run_module, [subnet], internet_for="the git repository https://example.com/r.git")
    assert result.get("failed")
    assert (f"subnet {subnet} (us-east-1a) has no route to SQS: no NAT gateway route and no "
            f"com.amazonaws.us-east-1.sqs endpoint in {vpc}") in result["problems"]
    assert len(result["problems"]) == 10  # nine services and the internet
    assert (f"subnet {subnet} (us-east-1a) has no route to the internet (the git repository "
            "https://example.com/r.git): no NAT gateway route") in result["problems"]
    # A NAT gateway route serves every service and the repository.
    public = ec2.create_subnet(VpcId=vpc, CidrBlock="10.90.1.0/24", AvailabilityZone="us-east-1a")["Subnet"]
    address = ec2.allocate_address(Domain="vpc")["AllocationId"]
    nat = ec2.create_nat_gateway(SubnetId=public["SubnetId"], AllocationId=address)["NatGateway"]["NatGatewayId"]
    table = ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
    ec2.create_route(RouteTableId=table, DestinationCidrBlock="0.0.0.0/0", NatGatewayId=nat)
    ec2.associate_route_table(RouteTableId=table, SubnetId=subnet)
    served = preflight(run_module, [subnet], internet_for="the git repository")
    assert not served.get("failed"), served.get("msg")
    assert served["subnet_ids"] == [subnet]


def test_preflight_keeps_subnets_whose_zone_offers_the_type_and_names_it_when_none_does(run_module, aws):
    subnets = {s["AvailabilityZone"]: s["SubnetId"] for s in aws("ec2").describe_subnets(
        Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"]}
    # The emulator's us-east-1e offers no t3 type, as on AWS.
    kept = preflight(run_module, [subnets["us-east-1a"], subnets["us-east-1e"]], services=[])
    assert not kept.get("failed"), kept.get("msg")
    assert kept["subnet_ids"] == [subnets["us-east-1a"]]
    assert kept["dropped"] == [{"subnet_id": subnets["us-east-1e"], "availability_zone": "us-east-1e",
                                "reason": "t3.micro not offered in us-east-1e"}]
    none = preflight(run_module, [subnets["us-east-1e"]], services=[])
    assert none.get("failed")
    assert none["msg"] == (f"instance type t3.micro is not offered in the Availability Zone of any chosen subnet: "
                           f"{subnets['us-east-1e']} (us-east-1e)")
