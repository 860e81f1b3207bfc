"""sqs_fleet.aws.lambda_network_interfaces on the emulator, whose Lambda makes a VPC function's interfaces with the
execution role and releases them with it seconds after the function leaves its VPC or is deleted: the function
taken out of its VPC and its interfaces waited for (check mode changes nothing, a rerun nothing); and a role
deleted before the release leaves them, which the module reports by their ids once its wait is over."""

from __future__ import annotations

import io
import json
import zipfile

import pytest

from support.ansible_runs import ok

TRUST = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                  "Principal": {"Service": "lambda.amazonaws.com"}}]}
INTERFACES = {"Version": "2012-10-17", "Statement": [{
    "Effect": "Allow", "Resource": "*",
    "Action": ["ec2:CreateNetworkInterface", "ec2:DescribeNetworkInterfaces", "ec2:DeleteNetworkInterface"]}]}


@pytest.fixture
def network(aws):
    ec2 = aws("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.42.0.0/16")["Vpc"]["VpcId"]
    subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.42.{n}.0/24", AvailabilityZone=f"us-east-1{z}")["Subnet"][
        "SubnetId"] for n, z in ((1, "a"), (2, "b"))]
    group = ec2.create_security_group(GroupName="interfaces-check", Description="check", VpcId=vpc)["GroupId"]
    yield {"vpc": vpc, "subnets": subnets, "group": group}
    for interface in ec2.describe_network_interfaces(Filters=[{"Name": "vpc-id", "Values": [vpc]}])[
            "NetworkInterfaces"]:
        ec2.delete_network_interface(NetworkInterfaceId=interface["NetworkInterfaceId"])
    ec2.delete_security_group(GroupId=group)
    for subnet in subnets:
        ec2.delete_subnet(SubnetId=subnet)
    ec2.delete_vpc(VpcId=vpc)


def vpc_function(aws, name: str, network: dict) -> str:
    iam = aws("iam")
    role = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(TRUST))["Role"]["Arn"]
    iam.put_role_policy(RoleName=name, PolicyName=name, PolicyDocument=json.dumps(INTERFACES))
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("index.py", "def handler(event, context):\n    return event\n")
    aws("lambda").create_function(
        FunctionName=name, Runtime="python3.12", Role=role, Handler="index.handler", Code={"ZipFile": code.getvalue()},
        VpcConfig={"SubnetIds": network["subnets"], "SecurityGroupIds": [network["group"]]})
    return name


def lambda_interfaces(aws, vpc: str) -> list[dict]:
    return aws("ec2").describe_network_interfaces(Filters=[
        {"Name": "vpc-id", "Values": [vpc]}, {"Name": "interface-type", "Values": ["lambda"]}])["NetworkInterfaces"]


def remove_role(aws, name: str) -> None:
    aws("iam").delete_role_policy(RoleName=name, PolicyName=name)
    aws("iam").delete_role(RoleName=name)


def test_a_function_leaves_its_vpc_and_lambda_releases_its_interfaces(run_module, aws, network):
    name = vpc_function(aws, "interfaces-detach", network)
    made = lambda_interfaces(aws, network["vpc"])
    assert sorted(i["SubnetId"] for i in made) == sorted(network["subnets"])
    assert all(i["Description"].startswith(f"AWS Lambda VPC ENI-{name}-") and i["Status"] == "in-use" for i in made)
    args = {"function_name": name, "detach": True, "wait_timeout": 60, "poll_interval": 1}

    planned = ok(run_module("lambda_network_interfaces", args, "--check"))
    assert planned["changed"] and planned["detached"] and len(planned["interfaces"]) == 2
    assert planned["diff"]["before"]["vpc"]["subnet_ids"] == network["subnets"]
    assert aws("lambda").get_function_configuration(FunctionName=name)["VpcConfig"]["SubnetIds"], "check mode"

    done = ok(run_module("lambda_network_interfaces", args))
    assert done["changed"] and done["interfaces"] == [] and done["waited"] >= 1
    configuration = aws("lambda").get_function_configuration(FunctionName=name)
    assert configuration["VpcConfig"]["SubnetIds"] == [] and configuration["LastUpdateStatus"] == "Successful"
    assert lambda_interfaces(aws, network["vpc"]) == []
    assert not ok(run_module("lambda_network_interfaces", args))["changed"]
    aws("lambda").delete_function(FunctionName=name)
    remove_role(aws, name)


def test_a_role_deleted_before_the_release_leaves_the_interfaces_and_blocks_the_network(run_module, aws, network):
    name = vpc_function(aws, "interfaces-role-first", network)
    aws("lambda").delete_function(FunctionName=name)
    remove_role(aws, name)  # the wrong order: Lambda has nothing to release the interfaces with

    left = run_module("lambda_network_interfaces", {"function_name": name, "wait_timeout": 5, "poll_interval": 1})
    assert left.get("failed") and left["waited"] >= 5
    ids = sorted(i["NetworkInterfaceId"] for i in lambda_interfaces(aws, network["vpc"]))
    assert len(ids) == 2 and [i["id"] for i in left["interfaces"]] == ids
    assert all(i in left["msg"] for i in ids) and "ec2:DeleteNetworkInterface" in left["msg"]
    ec2 = aws("ec2")
    for delete, what in ((lambda: ec2.delete_subnet(SubnetId=network["subnets"][0]), "subnet"),
                         (lambda: ec2.delete_security_group(GroupId=network["group"]), "security group")):
        with pytest.raises(ec2.exceptions.ClientError) as refused:
            delete()
        assert refused.value.response["Error"]["Code"] == "DependencyViolation", what
