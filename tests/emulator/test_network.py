"""The network role's private mode on the emulator, read back with boto3, and the fleet's preflight of the
workers' subnets: the zones that offer the instance type, a path to every service, named when missing.
(A rerun and check mode of site.yml, network included, report no change: test_stack.py.)"""

from __future__ import annotations

from typing import Any

import pytest

from support.ansible_runs import assert_ok

PREFIX = "sqs-fleet-local"
REGION = "us-east-1"
INTERFACE_SERVICES = {"sqs", "logs", "monitoring", "ssm", "ssmmessages", "ec2messages", "autoscaling", "sts"}
TAGS = {"Project": "sqs-fleet", "Environment": "local"}


@pytest.fixture(scope="module")
def network(emulator, run_playbook, aws) -> dict[str, Any]:
    emulator.reset()
    assert_ok(run_playbook("site.yml"), ["site.yml"])
    ec2 = aws("ec2")
    vpcs = ec2.describe_vpcs(Filters=[{"Name": "tag:Name", "Values": [PREFIX]}])["Vpcs"]
    assert len(vpcs) == 1, vpcs
    vpc = vpcs[0]["VpcId"]
    in_vpc = [{"Name": "vpc-id", "Values": [vpc]}]
    return {
        "vpc": vpcs[0],
        "subnets": {s["SubnetId"]: s for s in ec2.describe_subnets(Filters=in_vpc)["Subnets"]},
        "tables": ec2.describe_route_tables(Filters=in_vpc)["RouteTables"],
        "endpoints": [e for e in ec2.describe_vpc_endpoints(Filters=in_vpc)["VpcEndpoints"]
                      if e["State"] == "available"],
        "nats": [n for n in ec2.describe_nat_gateways(Filters=in_vpc)["NatGateways"] if n["State"] == "available"],
        "groups": {g["GroupName"]: g for g in ec2.describe_security_groups(Filters=in_vpc)["SecurityGroups"]},
    }


def tags(resource: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in resource.get("Tags", [])}


def worker_subnets(aws) -> list[str]:
    group = aws("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[f"{PREFIX}-workers"])
    return sorted(group["AutoScalingGroups"][0]["VPCZoneIdentifier"].split(","))


def test_workers_live_in_private_subnets_of_two_zones_that_offer_their_type(network, aws):
    ec2 = aws("ec2")
    assert tags(network["vpc"]) == {**TAGS, "Name": PREFIX}
    for attribute in ("enableDnsSupport", "enableDnsHostnames"):
        value = ec2.describe_vpc_attribute(VpcId=network["vpc"]["VpcId"], Attribute=attribute)
        assert value[attribute[0].upper() + attribute[1:]]["Value"] is True, attribute
    workers = worker_subnets(aws)
    zones = {network["subnets"][s]["AvailabilityZone"] for s in workers}
    assert len(workers) == 2 and len(zones) == 2
    offered = ec2.describe_instance_type_offerings(
        LocationType="availability-zone", Filters=[{"Name": "instance-type", "Values": ["t3.micro"]}])
    assert zones <= {o["Location"] for o in offered["InstanceTypeOfferings"]}
    for subnet_id in workers:
        subnet = network["subnets"][subnet_id]
        assert subnet["MapPublicIpOnLaunch"] is False
        assert tags(subnet) == {**TAGS, "Name": f"{PREFIX}-private-{subnet['AvailabilityZone']}"}
    template = ec2.describe_launch_template_versions(LaunchTemplateName=f"{PREFIX}-workers", Versions=["$Latest"])
    interface = template["LaunchTemplateVersions"][0]["LaunchTemplateData"]["NetworkInterfaces"][0]
    assert interface["AssociatePublicIpAddress"] is False
    assert interface["Groups"] == [network["groups"][f"{PREFIX}-workers"]["GroupId"]]


def table_of(network: dict[str, Any], subnet_id: str) -> dict[str, Any]:
    return next(t for t in network["tables"] if any(a.get("SubnetId") == subnet_id for a in t["Associations"]))


def test_private_subnets_go_out_through_one_nat_gateway_in_a_public_subnet(network, aws):
    assert len(network["nats"]) == 1
    nat = network["nats"][0]
    assert tags(nat) == {**TAGS, "Name": PREFIX}
    public = network["subnets"][nat["SubnetId"]]
    assert tags(public)["Name"] == f"{PREFIX}-public"
    assert any(r.get("DestinationCidrBlock") == "0.0.0.0/0" and r.get("GatewayId", "").startswith("igw-")
               for r in table_of(network, public["SubnetId"])["Routes"])
    allocation = nat["NatGatewayAddresses"][0]["AllocationId"]
    address = aws("ec2").describe_addresses(AllocationIds=[allocation])["Addresses"][0]
    assert tags(address) == {**TAGS, "Name": f"{PREFIX}-nat"}
    for subnet_id in worker_subnets(aws):
        routes = table_of(network, subnet_id)["Routes"]
        assert [r["NatGatewayId"] for r in routes if r.get("DestinationCidrBlock") == "0.0.0.0/0"] == [
            nat["NatGatewayId"]]


def test_endpoints_serve_the_workers_only(network, aws):
    by_service = {e["ServiceName"].rsplit(".", 1)[-1]: e for e in network["endpoints"]}
    assert set(by_service) == INTERFACE_SERVICES | {"s3"}
    s3 = by_service.pop("s3")
    assert s3["VpcEndpointType"] == "Gateway"
    assert {table_of(network, s)["RouteTableId"] for s in worker_subnets(aws)} == set(s3["RouteTableIds"])
    workers = network["groups"][f"{PREFIX}-workers"]
    endpoints_group = network["groups"][f"{PREFIX}-endpoints"]
    for service, endpoint in by_service.items():
        assert endpoint["VpcEndpointType"] == "Interface" and endpoint["PrivateDnsEnabled"] is True, service
        assert sorted(endpoint["SubnetIds"]) == worker_subnets(aws), service
        assert [g["GroupId"] for g in endpoint["Groups"]] == [endpoints_group["GroupId"]], service
        assert tags(endpoint) == {**TAGS, "Name": f"{PREFIX}-{service}"}
    [rule] = endpoints_group["IpPermissions"]
    assert (rule["IpProtocol"], rule["FromPort"], rule["ToPort"]) == ("tcp", 443, 443)
    assert [p["GroupId"] for p in rule["UserIdGroupPairs"]] == [workers["GroupId"]]
    assert rule["IpRanges"] == [] and rule.get("Ipv6Ranges", []) == []
    assert workers["IpPermissions"] == []


def test_the_stack_subnets_pass_the_preflight(network, run_module, aws):
    result = run_module("subnet_preflight", {"subnet_ids": worker_subnets(aws), "instance_types": ["t3.micro"],
                                             "internet_for": "the git repository"})
    assert not result.get("failed"), result.get("msg")
    assert (result["subnet_ids"], result["dropped"]) == (worker_subnets(aws), [])


def test_default_public_needs_an_internet_route_and_leaves_out_zones_without_the_type(emulator, run_playbook, aws):
    """The emulator's default VPC has no internet gateway (AWS's has): the preflight names what is missing and
    no group is made; with one, the group uses the default subnets whose zone offers t3.micro."""
    emulator.reset()
    public = {"network_mode": "default-public"}
    ec2, autoscaling = aws("ec2"), aws("autoscaling")
    vpc = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
    refused = run_playbook("site.yml", extra_vars=public)
    assert refused.returncode != 0
    messages = " ".join(refused.failure_messages())
    assert "(us-east-1a) has no route to SQS: no NAT gateway route and no com.amazonaws.us-east-1.sqs endpoint in " \
           f"{vpc}" in messages
    assert "us-east-1e" not in messages  # left out before the routes are read
    assert autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[f"{PREFIX}-workers"])[
        "AutoScalingGroups"] == []
    # The preflight runs before the queues are made.
    assert aws("sqs").list_queues(QueueNamePrefix=PREFIX).get("QueueUrls", []) == []

    gateway = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    ec2.attach_internet_gateway(InternetGatewayId=gateway, VpcId=vpc)
    main = ec2.describe_route_tables(Filters=[{"Name": "vpc-id", "Values": [vpc]},
                                              {"Name": "association.main", "Values": ["true"]}])["RouteTables"][0]
    ec2.create_route(RouteTableId=main["RouteTableId"], DestinationCidrBlock="0.0.0.0/0", GatewayId=gateway)
    assert_ok(run_playbook("site.yml", extra_vars=public), ["site.yml default-public"])
    zones = {s["SubnetId"]: s["AvailabilityZone"] for s in ec2.describe_subnets(
        Filters=[{"Name": "vpc-id", "Values": [vpc]}, {"Name": "default-for-az", "Values": ["true"]}])["Subnets"]}
    assert sorted(zones[s] for s in worker_subnets(aws)) == sorted(z for z in zones.values() if z != "us-east-1e")
    template = ec2.describe_launch_template_versions(LaunchTemplateName=f"{PREFIX}-workers", Versions=["$Latest"])
    assert template["LaunchTemplateVersions"][0]["LaunchTemplateData"]["NetworkInterfaces"][0][
        "AssociatePublicIpAddress"] is True
    assert_ok(run_playbook("teardown.yml"), ["teardown.yml"])
    assert ec2.describe_vpcs(VpcIds=[vpc])["Vpcs"], "the default VPC is never removed"
