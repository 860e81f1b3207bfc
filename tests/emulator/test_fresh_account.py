"""What a first run on an account meets: a dry run before anything exists, produce.yml without a stack, a
customer managed key for the queues, and no producer principal named."""

from __future__ import annotations

import json

import pytest

from sqs_fleet.stack import Stack
from support.ansible_runs import assert_ok


def made(aws, names: Stack) -> dict[str, list[str]]:
    """What of the project exists on the emulator, by kind (by the local environment's names)."""
    ec2, iam, cloudwatch, prefix = aws("ec2"), aws("iam"), aws("cloudwatch"), names.prefix
    return {
        "queues": aws("sqs").list_queues(QueueNamePrefix=prefix).get("QueueUrls", []),
        "roles": [r["RoleName"] for r in iam.list_roles()["Roles"] if r["RoleName"].startswith(prefix)],
        "policies": [p["PolicyName"] for p in iam.list_policies(Scope="Local")["Policies"]
                     if p["PolicyName"].startswith(prefix)],
        "groups": [g["AutoScalingGroupName"] for g in aws("autoscaling").describe_auto_scaling_groups()[
            "AutoScalingGroups"] if g["AutoScalingGroupName"].startswith(prefix)],
        "templates": [t["LaunchTemplateName"] for t in ec2.describe_launch_templates()["LaunchTemplates"]
                      if t["LaunchTemplateName"].startswith(prefix)],
        "security groups": [g["GroupId"] for g in ec2.describe_security_groups(
            Filters=[{"Name": "tag:Project", "Values": ["sqs-fleet"]}])["SecurityGroups"]],
        "log groups": [g["logGroupName"] for g in aws("logs").describe_log_groups(
            logGroupNamePrefix="/sqs-fleet/")["logGroups"]],
        "alarms": [a["AlarmName"] for a in cloudwatch.describe_alarms(AlarmNamePrefix=prefix)["MetricAlarms"]],
    }


@pytest.mark.parametrize("inventory", ["local", "local-redis"])
def test_a_dry_run_on_an_empty_account_reports_what_it_would_make_and_makes_nothing(emulator, run_playbook, aws,
                                                                                   names, inventory):
    emulator.reset()
    check = run_playbook("site.yml", "-i", f"inventory/{inventory}", "--check")
    assert_ok(check, [f"site.yml -i inventory/{inventory} --check on an empty account"])
    assert check.stats["changed"] > 0
    assert made(aws, names) == {kind: [] for kind in made(aws, names)}
    assert aws("elasticache").describe_replication_groups()["ReplicationGroups"] == []
    assert aws("ssm").describe_parameters()["Parameters"] == []


def test_produce_without_a_stack_says_so_in_one_line(emulator, run_playbook, names):
    emulator.reset()
    run = run_playbook("produce.yml", extra_vars={"count": 3})
    assert run.returncode != 0
    assert run.failure_messages() == [
        f"queue {names.queue_name} does not exist in us-east-1: make the stack first with ansible-playbook site.yml"]


def attached_document(iam, role):
    arns = [p["PolicyArn"] for p in iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"]
            if ":aws:policy/" not in p["PolicyArn"]]
    assert len(arns) == 1, arns
    version = iam.get_policy(PolicyArn=arns[0])["Policy"]["DefaultVersionId"]
    document = iam.get_policy_version(PolicyArn=arns[0], VersionId=version)["PolicyVersion"]["Document"]
    return json.loads(document) if isinstance(document, str) else document


def statement(document, sid):
    return next(s for s in document["Statement"] if s["Sid"] == sid)


def test_a_customer_key_is_granted_through_sqs_only_and_no_principal_means_no_producer_role(
        emulator, run_playbook, aws, stack_file, names):
    consumer_role, producer_role = (names["roles"][role]["name"] for role in ("consumer", "producer"))
    emulator.reset()
    key = aws("kms").create_key(Description="the queues' key")["KeyMetadata"]["Arn"]
    run = run_playbook("site.yml", extra_vars={"stack_queue_kms_key": key})
    assert_ok(run, ["site.yml with a customer key"])

    iam, via_sqs = aws("iam"), {"StringEquals": {"kms:ViaService": "sqs.us-east-1.amazonaws.com"}}
    producer = statement(attached_document(iam, producer_role), "EncryptWithTheQueueKeyViaSqs")
    assert (sorted(producer["Action"]), producer["Resource"], producer["Condition"]) == (
        ["kms:Decrypt", "kms:GenerateDataKey"], key, via_sqs)
    consumer = statement(attached_document(iam, consumer_role), "DecryptTheQueueKeyViaSqs")
    assert (consumer["Action"], consumer["Resource"], consumer["Condition"]) == ("kms:Decrypt", key, via_sqs)
    sqs = aws("sqs")
    for name in (names.queue_name, names.dead_letter_queue_name):
        url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
        assert sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["KmsMasterKeyId"])["Attributes"] == {
            "KmsMasterKeyId": key}

    # No principal named: the producer role made before goes, and the queue grants no producer.
    none = run_playbook("site.yml", extra_vars={"stack_queue_kms_key": key, "stack_producer_trusted_principals": []})
    assert_ok(none, ["site.yml without producer principals"])
    assert [r for r in made(aws, names)["roles"] if r == producer_role] == []
    assert producer_role not in made(aws, names)["policies"]
    url = sqs.get_queue_url(QueueName=names.queue_name)["QueueUrl"]
    policy = json.loads(sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["Policy"])["Attributes"]["Policy"])
    assert [s["Sid"] for s in policy["Statement"]] == ["DenyInsecureTransport", "ConsumerReceives"]
    assert json.loads(stack_file.read_text())["roles"]["producer"]["arn"] is None
    shown = next(t["hosts"]["localhost"]["msg"] for t in none.report["plays"][0]["tasks"]
                 if t["task"]["name"].startswith("Show what"))
    assert shown["producer"].startswith("none: no principal is named")

    again = run_playbook("site.yml", extra_vars={"stack_queue_kms_key": key, "stack_producer_trusted_principals": []})
    assert_ok(again, ["rerun without producer principals"])
    assert again.stats["changed"] == 0
