"""sqs_fleet.aws.security_group on the emulator: create with exactly the given rules (AWS's default egress rule
gone), rerun without change, check mode, update of rules, descriptions and tags, a rule naming another group,
delete."""

from __future__ import annotations

from typing import Any

from support.ansible_runs import ok

NAME = "modules-group"
CLIENT = "modules-group-client"
TAGS = {"Project": "sqs-fleet", "Environment": "modules"}


def default_vpc(aws) -> str:
    vpc: str = aws("ec2").describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
    return vpc


def group_on_emulator(aws, name: str = NAME) -> dict[str, Any] | None:
    groups = aws("ec2").describe_security_groups(Filters=[{"Name": "group-name", "Values": [name]}])["SecurityGroups"]
    return groups[0] if groups else None


def rules(permissions: list[dict[str, Any]]) -> set[tuple[Any, ...]]:
    """(protocol, from, to, target, description) of each target of each permission."""
    found = set()
    for p in permissions:
        ports = (None, None) if p["IpProtocol"] == "-1" else (p.get("FromPort"), p.get("ToPort"))
        for r in p.get("IpRanges", []):
            found.add((p["IpProtocol"], *ports, r["CidrIp"], r.get("Description")))
        for g in p.get("UserIdGroupPairs", []):
            found.add((p["IpProtocol"], *ports, g["GroupId"], g.get("Description")))
    return found


def tags(group: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in group.get("Tags", [])}


def test_group_lifecycle(run_module, aws):
    ec2 = aws("ec2")
    for name in (NAME, CLIENT):
        if group := group_on_emulator(aws, name):
            ec2.delete_security_group(GroupId=group["GroupId"])
    vpc = default_vpc(aws)
    present = {
        "name": NAME, "description": "Workers; no inbound access", "vpc_id": vpc, "rules": [],
        "rules_egress": [{"proto": "tcp", "ports": [443], "cidr_ip": "0.0.0.0/0", "rule_desc": "HTTPS out"}],
        "tags": TAGS,
    }

    planned = ok(run_module("security_group", present, "--check"))
    assert planned["changed"] and planned["group_id"] is None and planned["diff"]["before"] == {}
    assert planned["diff"]["after"]["Egress"] == [
        {"proto": "tcp", "ports": "443", "target": "0.0.0.0/0", "description": "HTTPS out"}]
    assert group_on_emulator(aws) is None, "check mode created the group"

    created = ok(run_module("security_group", present))
    group = group_on_emulator(aws)
    assert created["changed"] and group and created["group_id"] == group["GroupId"]
    assert group["VpcId"] == vpc and group["Description"] == "Workers; no inbound access"
    assert group["IpPermissions"] == []
    # AWS's allow-all egress rule is gone: HTTPS out only.
    assert rules(group["IpPermissionsEgress"]) == {("tcp", 443, 443, "0.0.0.0/0", "HTTPS out")}
    assert tags(group) == TAGS

    assert not ok(run_module("security_group", present))["changed"], "a rerun changed the group"
    assert not ok(run_module("security_group", present, "--check"))["changed"]

    # A client group named in an ingress rule; another egress rule, a new description, a tag changed.
    client = ok(run_module("security_group", {"name": CLIENT, "description": "A client", "vpc_id": vpc}))
    assert rules(group_on_emulator(aws, CLIENT)["IpPermissionsEgress"]) == set(), "no rules given: none kept"
    update = dict(
        present,
        rules=[{"proto": "tcp", "ports": ["6379"], "group_name": [CLIENT], "rule_desc": "Redis from the client"}],
        rules_egress=[{"proto": "tcp", "ports": [443], "cidr_ip": "0.0.0.0/0", "rule_desc": "AWS APIs over TLS"},
                      {"proto": "tcp", "ports": ["6379"], "cidr_ip": ["10.0.1.0/24", "10.0.2.0/24"]}],
        tags={**TAGS, "Environment": "modules-2"},
    )
    planned = ok(run_module("security_group", update, "--check"))
    assert planned["changed"]
    assert planned["diff"]["before"]["Tags"] == TAGS and planned["diff"]["after"]["Tags"]["Environment"] == "modules-2"
    assert planned["diff"]["after"]["Ingress"] == [
        {"proto": "tcp", "ports": "6379", "target": client["group_id"], "description": "Redis from the client"}]
    assert rules(group_on_emulator(aws)["IpPermissionsEgress"]) == {("tcp", 443, 443, "0.0.0.0/0", "HTTPS out")}, \
        "check mode changed the group"
    assert ok(run_module("security_group", update))["changed"]
    group = group_on_emulator(aws)
    assert rules(group["IpPermissions"]) == {("tcp", 6379, 6379, client["group_id"], "Redis from the client")}
    assert rules(group["IpPermissionsEgress"]) == {
        ("tcp", 443, 443, "0.0.0.0/0", "AWS APIs over TLS"),
        ("tcp", 6379, 6379, "10.0.1.0/24", None), ("tcp", 6379, 6379, "10.0.2.0/24", None)}
    assert tags(group) == {**TAGS, "Environment": "modules-2"}
    assert not ok(run_module("security_group", update))["changed"], "a rerun after the update changed the group"
    assert not ok(run_module("security_group", update, "--check"))["changed"]

    absent = {"name": NAME, "vpc_id": vpc, "state": "absent"}
    planned = ok(run_module("security_group", absent, "--check"))
    assert planned["changed"] and planned["diff"]["before"]["GroupName"] == NAME and planned["diff"]["after"] == {}
    assert group_on_emulator(aws), "check mode deleted the group"
    assert ok(run_module("security_group", absent))["changed"]
    assert group_on_emulator(aws) is None
    assert not ok(run_module("security_group", absent))["changed"], "deleting a missing group changed it"
    ok(run_module("security_group", {"name": CLIENT, "vpc_id": vpc, "state": "absent"}))


def test_a_rule_naming_a_missing_group_fails_and_makes_nothing(run_module, aws):
    vpc = default_vpc(aws)
    args = {"name": f"{NAME}-orphan", "description": "Orphan", "vpc_id": vpc,
            "rules": [{"proto": "tcp", "ports": [443], "group_name": "modules-no-such-group"}]}
    result = run_module("security_group", args)
    assert result.get("failed") and "modules-no-such-group" in result["msg"]
    assert group_on_emulator(aws, f"{NAME}-orphan") is None
    # Check mode of a new stack: the named group is not made yet either; the plan says so.
    planned = ok(run_module("security_group", args, "--check"))
    assert planned["changed"] and "modules-no-such-group" in planned["diff"]["after"]["Ingress"][0]["target"]
