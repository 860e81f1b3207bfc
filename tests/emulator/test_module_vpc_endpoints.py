"""sqs_fleet.aws.vpc_endpoints on the emulator: a VPC's interface endpoints made in one run, a rerun without
change, check mode, an update (a subnet and a group added, a tag changed), another service's endpoint left
alone, and every endpoint of the VPC removed."""

from __future__ import annotations

from typing import Any

import pytest

from support.ansible_runs import ok

SERVICES = ["com.amazonaws.us-east-1.sqs", "com.amazonaws.us-east-1.logs"]
TAGS = {"Project": "sqs-fleet", "Environment": "modules"}


@pytest.fixture
def vpc(aws) -> dict[str, Any]:
    """A VPC of its own with two subnets and two security groups."""
    ec2 = aws("ec2")
    vpc_id = ec2.create_vpc(CidrBlock="10.91.0.0/16")["Vpc"]["VpcId"]
    subnets = [ec2.create_subnet(VpcId=vpc_id, CidrBlock=f"10.91.{i}.0/24")["Subnet"]["SubnetId"] for i in (1, 2)]
    groups = [ec2.create_security_group(VpcId=vpc_id, GroupName=f"endpoints-{i}", Description="endpoints")["GroupId"]
              for i in (1, 2)]
    return {"id": vpc_id, "subnets": subnets, "groups": groups}


def endpoints_on_emulator(aws, vpc_id: str) -> dict[str, dict[str, Any]]:
    found = aws("ec2").describe_vpc_endpoints(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])["VpcEndpoints"]
    return {e["ServiceName"]: e for e in found if e["State"].lower() not in ("deleted", "deleting")}


def test_endpoints_lifecycle(run_module, aws, vpc):
    present = {"vpc_id": vpc["id"], "services": SERVICES, "subnets": [vpc["subnets"][0]],
               "security_groups": [vpc["groups"][0]], "name_prefix": "modules-", "tags": TAGS}

    planned = ok(run_module("vpc_endpoints", present, "--check"))
    assert planned["changed"] and planned["diff"]["before"] == {s: {} for s in SERVICES}
    assert endpoints_on_emulator(aws, vpc["id"]) == {}, "check mode created endpoints"

    created = ok(run_module("vpc_endpoints", present))
    made = endpoints_on_emulator(aws, vpc["id"])
    assert created["changed"] and sorted(made) == sorted(SERVICES)
    assert sorted(e["VpcEndpointId"] for e in created["vpc_endpoints"]) == sorted(e["VpcEndpointId"]
                                                                                   for e in made.values())
    for service, endpoint in made.items():
        assert endpoint["VpcEndpointType"] == "Interface" and endpoint["PrivateDnsEnabled"]
        assert endpoint["SubnetIds"] == [vpc["subnets"][0]]
        assert [g["GroupId"] for g in endpoint["Groups"]] == [vpc["groups"][0]]
        assert {t["Key"]: t["Value"] for t in endpoint["Tags"]} == {**TAGS, "Name": "modules-" + service.split(".")[-1]}

    assert not ok(run_module("vpc_endpoints", present))["changed"], "a rerun changed the endpoints"
    assert not ok(run_module("vpc_endpoints", present, "--check"))["changed"]

    # Another service's endpoint (a gateway endpoint) is not this call's to change.
    ec2 = aws("ec2")
    gateway = ec2.create_vpc_endpoint(VpcId=vpc["id"], ServiceName="com.amazonaws.us-east-1.s3",
                                      VpcEndpointType="Gateway")["VpcEndpoint"]["VpcEndpointId"]
    update = dict(present, subnets=vpc["subnets"], security_groups=vpc["groups"],
                  tags={**TAGS, "Environment": "modules-2"})
    planned = ok(run_module("vpc_endpoints", update, "--check"))
    assert planned["changed"] and planned["diff"]["after"][SERVICES[0]]["SubnetIds"] == sorted(vpc["subnets"])
    assert ok(run_module("vpc_endpoints", update))["changed"]
    updated = endpoints_on_emulator(aws, vpc["id"])
    for service in SERVICES:
        assert sorted(updated[service]["SubnetIds"]) == sorted(vpc["subnets"])
        assert sorted(g["GroupId"] for g in updated[service]["Groups"]) == sorted(vpc["groups"])
        assert {t["Key"]: t["Value"] for t in updated[service]["Tags"]}["Environment"] == "modules-2"
    assert updated["com.amazonaws.us-east-1.s3"]["VpcEndpointId"] == gateway
    assert not ok(run_module("vpc_endpoints", update))["changed"], "a rerun after the update changed them"

    absent = {"vpc_id": vpc["id"], "state": "absent"}
    planned = ok(run_module("vpc_endpoints", absent, "--check"))
    assert planned["changed"] and len(planned["diff"]["before"]) == 3
    assert len(endpoints_on_emulator(aws, vpc["id"])) == 3, "check mode deleted endpoints"
    assert ok(run_module("vpc_endpoints", absent))["changed"]
    assert endpoints_on_emulator(aws, vpc["id"]) == {}
    assert not ok(run_module("vpc_endpoints", absent))["changed"]


def test_present_needs_the_services_subnets_and_groups(run_module, vpc):
    result = run_module("vpc_endpoints", {"vpc_id": vpc["id"], "services": SERVICES})
    assert result.get("failed") and "subnets" in result["msg"]
