"""The deployer's IAM policy (policies/deployer-policy.json.j2, rendered by playbooks/deployer_policy.yml)
allows every call the playbooks make: each request is recorded by a private emulator, turned into the IAM
actions it needs (sqs_fleet.ops.recorded_calls) and checked against the rendered policy by the project's
evaluator (sqs_fleet.ops.policy_check, the sqs-fleet-check-policy tool)."""

from __future__ import annotations

import datetime
import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from sqs_fleet import REPO
from sqs_fleet.aws import clients
from sqs_fleet.lab.emulator import Emulator, free_port, start_emulator
from sqs_fleet.ops.policy_check import (
    NO_RESOURCE_LEVEL,
    Call,
    allowed,
    as_list,
    denied,
    resource_types,
    statement_allows,
)
from sqs_fleet.ops.recorded_calls import calls_of, read_recording
from sqs_fleet.scaletest import evidence, targets
from sqs_fleet.sim.fleet import Fleet
from sqs_fleet.sim.loop import FleetWatch
from sqs_fleet.sim.scaling import AwsScaling
from sqs_fleet.stack import Stack
from support.ansible_runs import PlaybookRun, ansible_env, assert_ok


@dataclass
class Recording:
    policy: dict[str, Any]
    account: str
    stack: Stack  # the inventory's names until site.yml has recorded the stack
    phases: dict[str, list[Call]] = field(default_factory=dict)
    requests: dict[str, int] = field(default_factory=dict)
    # EC2 resource id -> its tags, as last seen after a phase (aws:ResourceTag/* of the calls on it)
    tags: dict[str, dict[str, str]] = field(default_factory=dict)
    # Route table association id -> the route table and subnet it joins (DisassociateRouteTable names only it)
    associations: dict[str, dict[str, str]] = field(default_factory=dict)


# ---- the recorded runs ------------------------------------------------------------------------------------

def recorded_emulator(tmp_path_factory: pytest.TempPathFactory, name: str,
                      runs: Any) -> Iterator[Recording]:
    """runs(server, work, record) on an emulator of its own that records every request in `record`."""
    work = tmp_path_factory.mktemp(name)
    record = work / "requests.jsonl"
    with pytest.MonkeyPatch.context() as patch:  # the server inherits these; nothing else sees them
        patch.setenv("MOTO_ENABLE_RECORDING", "true")
        patch.setenv("MOTO_RECORDER_FILEPATH", str(record))
        server = start_emulator(free_port(), work / "moto.log")
    try:
        yield runs(server, work, record)
    finally:
        server.stop()


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory, names: Stack) -> Iterator[Recording]:
    def runs(server: Emulator, work: Path, record: Path) -> Recording:
        return record_runs(server, work, record, names)

    yield from recorded_emulator(tmp_path_factory, "deployer", runs)


@pytest.fixture(scope="module")
def redis_recording(tmp_path_factory: pytest.TempPathFactory, names_of) -> Iterator[Recording]:
    """An environment with `broker: redis` (inventory/local-redis): its own policy, site.yml and teardown."""
    def runs(server: Emulator, work: Path, record: Path) -> Recording:
        return record_runs(server, work, record, names_of("local-redis"), inventory="inventory/local-redis",
                           plays=(("site.yml cold", ["site.yml"]),), scale_test=False)

    yield from recorded_emulator(tmp_path_factory, "deployer-redis", runs)


# A commit of no repository: the emulator bakes nothing (image.yml stops the builder itself there).
BAKED_COMMIT = "0123456789abcdef0123456789abcdef01234567"
SQS_PLAYS = (("site.yml cold", ["site.yml"]), ("site.yml rerun", ["site.yml"]),
             ("produce.yml", ["produce.yml", "-e", "count=5"]),
             ("image.yml", ["image.yml", "-e", f"fleet_repo_version={BAKED_COMMIT}"]),
             ("site.yml baked", ["site.yml", "-e", "fleet_image=baked", "-e", f"fleet_repo_version={BAKED_COMMIT}"]))


def record_runs(server: Emulator, work: Path, record: Path, names: Stack, inventory: str = "inventory/local",
                plays: tuple[tuple[str, list[str]], ...] = SQS_PLAYS, scale_test: bool = True) -> Recording:
    env = ansible_env(server, work / "ansible-home")

    stack_file = work / "stack.json"

    def playbook(*args: str) -> PlaybookRun:
        result = subprocess.run(["ansible-playbook", "-i", inventory, *args,  # noqa: S603, S607
                                 "-e", f"stack_output_file={stack_file}"],
                                cwd=REPO, env=env, capture_output=True, text=True, check=False, timeout=900)
        return PlaybookRun(result.returncode, result.stdout, result.stderr)

    policy_file = work / "deployer-policy.json"
    rendered = playbook("playbooks/deployer_policy.yml", "-e", json.dumps({"deployer_policy_path": str(policy_file)}))
    assert_ok(rendered, ["playbooks/deployer_policy.yml"])
    again = playbook("playbooks/deployer_policy.yml", "-e", json.dumps({"deployer_policy_path": str(policy_file)}))
    assert_ok(again, ["playbooks/deployer_policy.yml"])
    assert again.stats["changed"] == 0, "rendering the same policy again changed it"
    policy = json.loads(policy_file.read_text())
    account = clients(server.environment())("sts").get_caller_identity()["Account"]
    recording = Recording(policy=policy, account=account, stack=names)
    _, position = read_recording(record)

    ec2 = clients(server.environment())("ec2")

    def phase(name: str) -> None:
        nonlocal position
        entries, position = read_recording(record, position)
        # The tags of what exists now; kept for what a later phase removes. These reads are not the playbooks'.
        for page in ec2.get_paginator("describe_tags").paginate():
            for tag in page["Tags"]:
                recording.tags.setdefault(tag["ResourceId"], {})[tag["Key"]] = tag["Value"]
        for page in ec2.get_paginator("describe_route_tables").paginate():
            for table in page["RouteTables"]:
                recording.associations |= {a["RouteTableAssociationId"]: {
                    "RouteTableId": a["RouteTableId"], **({"SubnetId": a["SubnetId"]} if "SubnetId" in a else {})}
                    for a in table.get("Associations", [])}
        _, position = read_recording(record, position)
        recording.requests[name] = len(entries)
        recording.phases[name] = [c for e in entries
                                  for c in calls_of(e, account, recording.tags, recording.associations)]

    for name, args in plays:
        run = playbook(*args)
        assert_ok(run, [name])
        if name == "site.yml rerun":
            assert run.stats["changed"] == 0, "site.yml rerun changed something"
        phase(name)
    recording.stack = Stack.load(stack_file)

    if scale_test:
        scale_test_reads(server, recording.stack)
        phase("scale test reads (AWS mode)")
    assert_ok(playbook("teardown.yml"), ["teardown.yml"])
    phase("teardown.yml")
    return recording


def scale_test_reads(server: Emulator, stack: Stack) -> None:
    """What the scale test (sqs_fleet.scaletest.plan) reads from AWS with --target aws: one watch period and the
    evidence."""
    client = clients(server.environment())
    fleet = Fleet(stack, client)
    watch = FleetWatch(fleet, AwsScaling(fleet))
    assert watch.step().visible == 5
    now = datetime.datetime.now(datetime.timezone.utc)
    dashboards = list(stack.dashboards.values())
    assert set(evidence.dashboards(fleet.cloudwatch, dashboards)) == set(dashboards)
    evidence.metric_evidence(fleet.cloudwatch, fleet.queue_name, fleet.dlq_name, fleet.group_name,
                             now - datetime.timedelta(minutes=5), now)
    assert evidence.dead_letter_sample(fleet.sqs, fleet.queues[fleet.dlq_name]) == []
    targets.cloudwatch_log_events(client("logs"), stack.log_group, now - datetime.timedelta(minutes=5))


# ---- the tests --------------------------------------------------------------------------------------------

def test_the_policy_allows_every_call_the_playbooks_make(recording: Recording,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    refused = []
    for name, calls in recording.phases.items():
        made = {c.action for c in calls if c.needed_by is None}
        needed = {c.action for c in calls if c.needed_by is not None} - made
        with capsys.disabled():
            print(json.dumps({"event": "deployer_calls", "phase": name, "requests": recording.requests[name],
                              "distinct_actions": len(made), "needed_without_a_call": sorted(needed)}))
        refused += [f"{name}: {call.describe()}: {why}" for call, why in denied(recording.policy, calls)]
    assert not refused, "the deployer policy does not allow:\n" + "\n".join(refused)
    # Each phase was recorded, and the calls README once missed are among them.
    assert all(recording.phases.values()), recording.requests
    everything = {c.action for calls in recording.phases.values() for c in calls}
    assert {"ec2:DescribeVpcAttribute", "ec2:DescribeTags", "iam:ListEntitiesForPolicy",
            "logs:ListTagsLogGroup", "sqs:SendMessage", "logs:FilterLogEvents"} <= everything


def test_the_policy_allows_every_call_of_a_stack_on_redis(redis_recording: Recording) -> None:
    refused = [f"{phase}: {call.describe()}: {why}" for phase, calls in redis_recording.phases.items()
               for call, why in denied(redis_recording.policy, calls)]
    assert not refused, "\n".join(refused)
    everything = {call.action for calls in redis_recording.phases.values() for call in calls}
    assert {"elasticache:CreateReplicationGroup", "elasticache:DeleteReplicationGroup", "ssm:PutParameter",
            "ssm:DeleteParameter", "lambda:CreateFunction", "lambda:GetAccountSettings",
            "lambda:PutFunctionEventInvokeConfig", "ec2:DescribeNetworkInterfaces"} <= everything
    resources = {c.resource for calls in redis_recording.phases.values() for c in calls}
    broker = redis_recording.stack.broker
    assert any(str(r).endswith(f":replicationgroup:{broker['group_id']}") for r in resources)
    assert any(str(r).endswith(f":parameter{broker['auth_parameter']}") for r in resources)


def test_resources_are_derived_for_the_stack(recording: Recording) -> None:
    resources = {c.resource for calls in recording.phases.values() for c in calls if c.resource not in (None, "*")}
    stack = recording.stack
    for expected in (stack["queue"]["arn"], stack["dead_letter_queue"]["arn"], stack["roles"]["consumer"]["arn"]):
        assert expected in resources, expected
    # What has no ARN in the record: the resource named as the stack names it, in any ARN of its type.
    named = ((":policy/", stack["roles"]["producer"]["name"]), (":instance-profile/", stack["instance_profile"]),
             (":log-group:", stack.log_group), (":alarm:", stack.alarms["scale_out"]),
             (":dashboard/", stack.dashboards["sqs"]), (":autoScalingGroupName/", stack.group_name))
    for kind, name in named:
        assert any(r.endswith(f"{kind}{name}") for r in resources), f"{kind}{name}"


def test_the_evaluator_denies_what_the_policy_does_not_grant(recording: Recording) -> None:
    policy, account, stack = recording.policy, recording.account, recording.stack
    region = (("aws:requestedregion", ("us-east-1",)),)
    assert not allowed(policy, Call("sqs:DeleteQueue", f"arn:aws:sqs:us-east-1:{account}:another-queue", region))
    assert not allowed(policy, Call("sqs:SendMessage", stack["dead_letter_queue"]["arn"], region))
    assert not allowed(policy, Call("iam:DeleteRole", f"arn:aws:iam::{account}:role/admin", region))
    assert not allowed(policy, Call("ec2:TerminateInstances", None, region))
    assert not allowed(policy, Call("ec2:DescribeVpcs", "*", (("aws:requestedregion", ("eu-west-1",)),)))
    attach = Call("iam:AttachRolePolicy", stack["roles"]["consumer"]["arn"],
                  (*region, ("iam:policyarn", ("arn:aws:iam::aws:policy/AdministratorAccess",))))
    assert not allowed(policy, attach), "the workers' role could be given any policy"
    alarm = Call("cloudwatch:PutMetricAlarm", f"arn:aws:cloudwatch:us-east-1:{account}:alarm:{stack.prefix}-x",
                 (*region, ("cloudwatch:alarmactions", ("arn:aws:automate:us-east-1:ec2:terminate",))))
    assert not allowed(policy, alarm), "an alarm could terminate instances"


def test_the_image_builder_acts_only_on_builders_and_the_stack_images(recording: Recording) -> None:
    policy, account = recording.policy, recording.account
    region = (("aws:requestedregion", ("us-east-1",)),)
    stack_tags = (("aws:resourcetag/environment", ("local",)), ("aws:resourcetag/project", ("sqs-fleet",)))
    builder = (*stack_tags, ("aws:resourcetag/sqs-fleet:builder", ("0" * 40,)))
    instance = f"arn:aws:ec2:us-east-1:{account}:instance/i-0"
    for action in ("ec2:StopInstances", "ec2:TerminateInstances", "ec2:CreateImage"):
        assert allowed(policy, Call(action, instance, (*region, *builder))), action
        assert not allowed(policy, Call(action, instance, (*region, *stack_tags))), f"{action} on a worker"
    launch = (*region, ("aws:requesttag/environment", ("local",)), ("aws:requesttag/project", ("sqs-fleet",)))
    # (The launch template's permission-only statement is not scoped by tags: AWS checks it at launch.)
    [builders] = [s for s in policy["Statement"] if s["Sid"] == "ImageBuilderLaunchOnlyTaggedBuilders"]
    tagged = (*launch, ("aws:requesttag/sqs-fleet:builder", ("0" * 40,)))
    assert statement_allows(builders, Call("ec2:RunInstances", instance, tagged))
    assert not statement_allows(builders, Call("ec2:RunInstances", instance, launch)), "an untagged builder"
    image = "arn:aws:ec2:us-east-1::image/ami-0"
    ours = (*region, ("aws:resourcetag/sqs-fleet:image", ("sqs-fleet-worker",)))
    assert allowed(policy, Call("ec2:DeregisterImage", image, ours))
    assert not allowed(policy, Call("ec2:DeregisterImage", image, region)), "an image not the stack's"
    assert not allowed(policy, Call("ec2:DeleteSnapshot", "arn:aws:ec2:us-east-1::snapshot/snap-0", region))
    assert not allowed(policy, Call("ec2:CreateTags", image, (*region, ("aws:requesttag/sqs-fleet:image",
                                                                         ("sqs-fleet-worker",))))), "tags any image"


def test_permission_only_needs_are_granted_and_no_wider(recording: Recording) -> None:
    policy, account, stack = recording.policy, recording.account, recording.stack
    ec2 = f"arn:aws:ec2:us-east-1:{account}"
    consumer, producer = (stack["roles"][r]["arn"] for r in ("consumer", "producer"))
    to_ec2 = (("iam:passedtoservice", ("ec2.amazonaws.com",)),)
    assert allowed(policy, Call("iam:PassRole", consumer, to_ec2))
    assert not allowed(policy, Call("iam:PassRole", producer, to_ec2))
    assert not allowed(policy, Call("iam:PassRole", consumer, (("iam:passedtoservice", ("lambda.amazonaws.com",)),)))
    linked = f"arn:aws:iam::{account}:role/aws-service-role/autoscaling.amazonaws.com/AWSServiceRoleForAutoScaling"
    assert allowed(policy, Call("iam:CreateServiceLinkedRole", linked,
                                (("iam:awsservicename", ("autoscaling.amazonaws.com",)),)))
    assert not allowed(policy, Call("iam:CreateServiceLinkedRole", linked,
                                    (("iam:awsservicename", ("elasticloadbalancing.amazonaws.com",)),)))
    for resource in (f"{ec2}:instance/i-0", f"{ec2}:volume/vol-0", f"{ec2}:network-interface/eni-0",
                     f"{ec2}:subnet/subnet-0", f"{ec2}:security-group/sg-0", f"{ec2}:launch-template/lt-0",
                     "arn:aws:ec2:us-east-1::image/ami-0"):
        assert allowed(policy, Call("ec2:RunInstances", resource)), resource
    on_launch = (("ec2:createaction", ("RunInstances",)),)
    assert allowed(policy, Call("ec2:CreateTags", f"{ec2}:instance/i-0", on_launch))
    assert not allowed(policy, Call("ec2:CreateTags", f"{ec2}:instance/i-0", (("ec2:createaction", ("x",)),)))
    assert allowed(policy, Call("ssm:GetParameters", "arn:aws:ssm:us-east-1::parameter/aws/service/"
                                "ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"))
    # cloudwatchlogs_log_group tags a group it finds untagged (not seen here: the group is tagged on create).
    group = f"arn:aws:logs:us-east-1:{account}:log-group:{stack.log_group}"
    assert allowed(policy, Call("logs:TagLogGroup", group, (("aws:requestedregion", ("us-east-1",)),)))


def test_wildcard_resources_only_where_aws_offers_no_resource_level_permissions(recording: Recording) -> None:
    for statement in recording.policy["Statement"]:
        if "*" not in as_list(statement.get("Resource", [])):
            continue
        assert statement["Sid"].startswith(NO_RESOURCE_LEVEL), statement["Sid"]
        scoped = [a for a in as_list(statement["Action"]) if resource_types()[a.lower()]]
        assert not scoped, f"{statement['Sid']}: these take resource ARNs: {scoped}"
