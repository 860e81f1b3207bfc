"""sqs_fleet.aws.elasticache_replication_group on the emulator: create, rerun, check mode, update, delete.

The emulator keeps a deleted group in "deleting" for ever, so the delete runs with wait=false and the module
treats "deleting" as absent; on AWS the delete waits until the group is gone."""

from __future__ import annotations

from typing import Any

import pytest

from support.ansible_runs import ok

GROUP = "modules-broker"
TOKEN = "a-token-of-thirty-two-characters"


def on_emulator(aws) -> dict[str, Any] | None:
    client = aws("elasticache")
    try:
        group: dict[str, Any] = client.describe_replication_groups(ReplicationGroupId=GROUP)["ReplicationGroups"][0]
    except client.exceptions.ReplicationGroupNotFoundFault:
        return None
    return group


@pytest.fixture
def present(aws) -> dict[str, Any]:
    assert on_emulator(aws) is None or on_emulator(aws)["Status"] == "deleting"
    return {"id": GROUP, "description": "Celery broker", "node_type": "cache.t4g.micro", "engine_version": "7.1",
            "replicas": 1, "auth_token": TOKEN, "tags": {"Project": "modules"}}


def test_replication_group_lifecycle(run_module, aws, present):
    planned = ok(run_module("elasticache_replication_group", present, "--check"))
    assert planned["changed"] and planned["diff"]["before"] == {} and planned["diff"]["after"]["replicas"] == 1
    assert on_emulator(aws) is None, "check mode created the group"

    created = ok(run_module("elasticache_replication_group", present))
    assert created["changed"]
    group = on_emulator(aws)
    assert group is not None and group["Status"] == "available"
    # A primary and one replica, failover across AZs, TLS, encryption at rest, AUTH.
    members = group["NodeGroups"][0]["NodeGroupMembers"]
    assert sorted(m["CurrentRole"] for m in members) == ["primary", "replica"]
    assert len({m["PreferredAvailabilityZone"] for m in members}) == 2
    assert (group["AutomaticFailover"], group["MultiAZ"]) == ("enabled", "enabled")
    assert group["TransitEncryptionEnabled"] and group["AtRestEncryptionEnabled"] and group["AuthTokenEnabled"]
    returned = created["replication_group"]
    assert returned["member_clusters"] == [f"{GROUP}-001", f"{GROUP}-002"]
    assert returned["primary_endpoint"]["port"] == 6379 and returned["primary_endpoint"]["address"]
    assert TOKEN not in str(created), "the AUTH token appears in the module's result"

    assert not ok(run_module("elasticache_replication_group", present))["changed"], "a rerun changed the group"
    assert not ok(run_module("elasticache_replication_group", present, "--check"))["changed"]

    update = {**present, "description": "Celery broker (jobs)", "tags": {"Project": "modules", "Team": "a"}}
    planned = ok(run_module("elasticache_replication_group", update, "--check"))
    assert planned["changed"] and planned["diff"]["after"]["description"] == "Celery broker (jobs)"
    assert on_emulator(aws)["Description"] == "Celery broker", "check mode changed the group"
    assert ok(run_module("elasticache_replication_group", update))["changed"]
    assert on_emulator(aws)["Description"] == "Celery broker (jobs)"
    tags = aws("elasticache").list_tags_for_resource(ResourceName=on_emulator(aws)["ARN"])["TagList"]
    assert {t["Key"]: t["Value"] for t in tags} == {"Project": "modules", "Team": "a"}
    assert not ok(run_module("elasticache_replication_group", update))["changed"]

    fixed = run_module("elasticache_replication_group", {**update, "port": 6380})
    assert fixed.get("failed") and "port cannot change in place" in fixed["msg"]

    absent = {"id": GROUP, "state": "absent", "wait": False}
    planned = ok(run_module("elasticache_replication_group", absent, "--check"))
    assert planned["changed"] and planned["diff"]["after"] == {}
    assert on_emulator(aws)["Status"] == "available", "check mode deleted the group"
    assert ok(run_module("elasticache_replication_group", absent))["changed"]
    assert on_emulator(aws) is None or on_emulator(aws)["Status"] == "deleting"
    assert not ok(run_module("elasticache_replication_group", absent))["changed"], "a second delete changed it"
    # A run that waits, after a delete another run started (without waiting), waits for it too: the emulator
    # never finishes a delete, so the wait runs out.
    waiting = run_module("elasticache_replication_group", {**absent, "wait": True, "wait_timeout": 1})
    assert waiting.get("failed") and f"replication group {GROUP} not gone after 1 s" in waiting["msg"]


def test_bad_input_fails_before_any_call_and_hides_the_token(run_module, aws):
    bad = {"id": "Broker--1", "node_type": "cache.t4g.micro", "auth_token": 'short"@', "replicas": 0}
    result = run_module("elasticache_replication_group", bad)
    assert result.get("failed")
    assert "id 'Broker--1'" in result["msg"] and "automatic_failover needs replicas >= 1" in result["msg"]
    assert "auth_token: the AUTH token must have 16 to 128 characters" in result["msg"]
    assert 'short"@' not in str(result)
    assert not aws("elasticache").describe_replication_groups()["ReplicationGroups"] or all(
        g["ReplicationGroupId"] != "Broker--1" for g in aws("elasticache").describe_replication_groups()[
            "ReplicationGroups"])


# No server listens here: a module that called AWS before checking its input would fail with "Could not ...".
UNREACHABLE = "http://127.0.0.1:9"


@pytest.mark.parametrize("token", [
    "percent-sign-%-in-a-token",  # printable, yet not one of the special characters CreateReplicationGroup allows
    "a token with spaces",
    "fifteen-chars!!",
    "x" * 129,
])
def test_a_token_elasticache_would_refuse_fails_before_any_call_naming_the_rule(run_module, token):
    group = {"id": GROUP, "node_type": "cache.t4g.micro", "auth_token": token, "endpoint_url": UNREACHABLE}
    result = run_module("elasticache_replication_group", group)
    assert result.get("failed")
    assert result["msg"].startswith(
        f"replication group {GROUP}: auth_token: the AUTH token must have 16 to 128 characters, only ASCII letters, "
        "digits and ! & # $ ^ < > - (ElastiCache's AUTH token rules); it has ")
    assert token not in str(result)


def test_a_token_needs_tls_in_transit(run_module):
    group = {"id": GROUP, "node_type": "cache.t4g.micro", "auth_token": TOKEN, "transit_encryption": False,
             "endpoint_url": UNREACHABLE}
    result = run_module("elasticache_replication_group", group)
    assert result["msg"] == (f"replication group {GROUP}: auth_token: an AUTH token needs TLS in transit "
                             "(transit_encryption)")
