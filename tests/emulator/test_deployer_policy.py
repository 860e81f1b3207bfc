"""The deployer's IAM policy (policies/deployer-policy.json.j2, rendered by playbooks/deployer_policy.yml)
allows every call the playbooks make: each request is recorded by a private emulator, turned into the IAM
action, the resource ARN where one can be derived and the condition keys the request sets, and checked
against the rendered policy by a small evaluator.

The evaluator reads Allow statements only (the policy has no Deny): Action/NotAction matched without case,
Resource/NotResource with wildcards, conditions with the String/Arn operators (IfExists, ForAllValues,
ForAnyValue). A condition key the request does not set counts as satisfied only in a statement whose Sid
starts with "PermissionOnly" (needs AWS checks at launch time that no recorded call shows, such as
iam:PassedToService); anywhere else it fails the statement. Which resource types an action takes comes from
the Service Authorization Reference data parliament ships: an action that takes none must be allowed on "*".
"""

from __future__ import annotations

import base64
import datetime
import json
import re
import subprocess
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import parliament
import pytest

from sqs_fleet import REPO
from sqs_fleet.aws import clients
from sqs_fleet.lab.emulator import Emulator, free_port, start_emulator
from sqs_fleet.scaletest import plan
from sqs_fleet.sim.loop import AwsScaling, Fleet, FleetWatch
from sqs_fleet.stack import Stack
from support.ansible_runs import PlaybookRun, ansible_env, assert_ok

PARTITION = "aws"
# SigV4 signing names that differ from the IAM prefix.
IAM_PREFIX = {"monitoring": "cloudwatch"}
# Operations authorised by another action (batch calls by the single one).
ACTION_OF = {"sqs:SendMessageBatch": "sqs:SendMessage", "sqs:DeleteMessageBatch": "sqs:DeleteMessage",
             "sqs:ChangeMessageVisibilityBatch": "sqs:ChangeMessageVisibility"}
# A create call that carries tags needs the tagging action too (Service Authorization Reference).
TAG_ON_CREATE = {"iam:CreateRole": "iam:TagRole", "iam:CreatePolicy": "iam:TagPolicy",
                 "iam:CreateInstanceProfile": "iam:TagInstanceProfile", "sqs:CreateQueue": "sqs:TagQueue",
                 "logs:CreateLogGroup": "logs:TagResource", "cloudwatch:PutMetricAlarm": "cloudwatch:TagResource",
                 "autoscaling:CreateAutoScalingGroup": "autoscaling:CreateOrUpdateTags",
                 "ec2:CreateSecurityGroup": "ec2:CreateTags", "ec2:CreateVpc": "ec2:CreateTags",
                 "ec2:CreateSubnet": "ec2:CreateTags", "ec2:CreateInternetGateway": "ec2:CreateTags",
                 "ec2:CreateRouteTable": "ec2:CreateTags", "ec2:AllocateAddress": "ec2:CreateTags",
                 "ec2:CreateNatGateway": "ec2:CreateTags", "ec2:CreateVpcEndpoint": "ec2:CreateTags",
                 "ssm:PutParameter": "ssm:AddTagsToResource",
                 "elasticache:CreateReplicationGroup": "elasticache:AddTagsToResource",
                 "elasticache:CreateCacheSubnetGroup": "elasticache:AddTagsToResource",
                 "ec2:RunInstances": "ec2:CreateTags", "ec2:CreateImage": "ec2:CreateTags"}
# What each EC2 create call makes (no id yet: one stands for it), by the resource types the action takes.
EC2_CREATED = {"ec2:RunInstances": {"instance": "i-00000000000000000", "volume": "vol-00000000000000000",
                                    "network-interface": "eni-00000000000000000"},
               "ec2:CreateImage": {"image": "ami-00000000000000000", "snapshot": "snap-00000000000000000"}}
# Dependent actions AWS checks during a call that never appear as calls.
DEPENDENT = {"iam:AddRoleToInstanceProfile": "iam:PassRole", "lambda:CreateFunction": "iam:PassRole",
             "lambda:UpdateFunctionConfiguration": "iam:PassRole", "scheduler:CreateSchedule": "iam:PassRole",
             "scheduler:UpdateSchedule": "iam:PassRole"}
# REST protocols (Lambda, EventBridge Scheduler): (signing name, method, path) -> operation and the path's names.
REST = [
    ("lambda", "POST", r"/2015-03-31/functions/?", "CreateFunction"),
    ("lambda", "GET", r"/2015-03-31/functions/(?P<FunctionName>[^/]+)", "GetFunction"),
    ("lambda", "DELETE", r"/2015-03-31/functions/(?P<FunctionName>[^/]+)", "DeleteFunction"),
    ("lambda", "GET", r"/2015-03-31/functions/(?P<FunctionName>[^/]+)/configuration", "GetFunctionConfiguration"),
    ("lambda", "PUT", r"/2015-03-31/functions/(?P<FunctionName>[^/]+)/configuration", "UpdateFunctionConfiguration"),
    ("lambda", "PUT", r"/2015-03-31/functions/(?P<FunctionName>[^/]+)/code", "UpdateFunctionCode"),
    ("lambda", "GET", r"/2017-03-31/tags/(?P<Resource>.+)", "ListTags"),
    ("lambda", "POST", r"/2017-03-31/tags/(?P<Resource>.+)", "TagResource"),
    ("lambda", "DELETE", r"/2017-03-31/tags/(?P<Resource>.+)", "UntagResource"),
    ("lambda", "PUT", r"/2017-10-31/functions/(?P<FunctionName>[^/]+)/concurrency", "PutFunctionConcurrency"),
    ("lambda", "DELETE", r"/2017-10-31/functions/(?P<FunctionName>[^/]+)/concurrency", "DeleteFunctionConcurrency"),
    ("lambda", "GET", r"/2019-09-30/functions/(?P<FunctionName>[^/]+)/concurrency", "GetFunctionConcurrency"),
    ("lambda", "GET", r"/2016-08-19/account-settings/?", "GetAccountSettings"),
    ("lambda", "PUT", r"/2019-09-25/functions/(?P<FunctionName>[^/]+)/event-invoke-config",
     "PutFunctionEventInvokeConfig"),
    ("lambda", "GET", r"/2019-09-25/functions/(?P<FunctionName>[^/]+)/event-invoke-config",
     "GetFunctionEventInvokeConfig"),
    ("lambda", "DELETE", r"/2019-09-25/functions/(?P<FunctionName>[^/]+)/event-invoke-config",
     "DeleteFunctionEventInvokeConfig"),
    ("scheduler", "POST", r"/schedules/(?P<Name>[^/]+)", "CreateSchedule"),
    ("scheduler", "GET", r"/schedules/(?P<Name>[^/]+)", "GetSchedule"),
    ("scheduler", "PUT", r"/schedules/(?P<Name>[^/]+)", "UpdateSchedule"),
    ("scheduler", "DELETE", r"/schedules/(?P<Name>[^/]+)", "DeleteSchedule"),
]
PERMISSION_ONLY = "PermissionOnly"
# The emulator takes no tags at CreateImage: image.yml (image_emulated_builder) tags the image right after, where
# AWS tags it in the CreateImage call. That CreateTags is checked as the tagging at creation it stands for.
EMULATED_TAGS_AT_CREATE = {"ami-": "CreateImage"}
NO_RESOURCE_LEVEL = "NoResourceLevelPermissions"


def sar_resource_types() -> dict[str, set[str]]:
    """'service:action' (lower case) -> the resource types it takes, from the reference parliament ships."""
    path = Path(parliament.__file__).with_name("iam_definition.json")
    types = {}
    for service in json.loads(path.read_text()):
        for privilege in service["privileges"]:
            types[f"{service['prefix']}:{privilege['privilege']}".lower()] = {
                r["resource_type"].rstrip("*") for r in privilege["resource_types"] if r["resource_type"]}
    return types


SAR = sar_resource_types()


@dataclass(frozen=True)
class Call:
    action: str
    resource: str | None  # None: no resource derived, the action alone is checked
    context: tuple[tuple[str, tuple[str, ...]], ...] = ()
    needed_by: str | None = None  # the call that needs this action without making it

    def describe(self) -> str:
        keys = ", ".join(f"{k}={list(v)}" for k, v in self.context if k != "aws:requestedregion")
        return (f"{self.action} on {self.resource or '(action alone)'}{f' with {keys}' if keys else ''}"
                f"{f' (needed by {self.needed_by})' if self.needed_by else ''}")


@dataclass
class Recording:
    policy: dict[str, Any]
    account: str
    stack: Stack
    phases: dict[str, list[Call]] = field(default_factory=dict)
    requests: dict[str, int] = field(default_factory=dict)
    # EC2 resource id -> its tags, as last seen after a phase (aws:ResourceTag/* of the calls on it)
    tags: dict[str, dict[str, str]] = field(default_factory=dict)
    # Route table association id -> the route table and subnet it joins (DisassociateRouteTable names only it)
    associations: dict[str, dict[str, str]] = field(default_factory=dict)


# ---- from a recorded request to calls ---------------------------------------------------------------------

def request_parts(entry: dict[str, Any]) -> tuple[str, str, str, dict[str, Any]]:
    """(IAM prefix, operation, region, parameters) of one recorded request."""
    headers = {k.lower(): v for k, v in entry["headers"].items()}
    scope = re.search(r"Credential=[^/]+/\d{8}/([^/]+)/([^/]+)/aws4_request", headers.get("authorization", ""))
    assert scope, f"unsigned request: {entry['method']} {entry['url']}"
    region, service = scope.groups()
    body = entry.get("body") or ""
    if entry.get("body_encoded"):
        body = base64.b64decode(body).decode("utf-8", "replace")
    if "x-amz-target" in headers:
        return IAM_PREFIX.get(service, service), headers["x-amz-target"].rsplit(".", 1)[-1], region, json.loads(
            body or "{}")
    url = urllib.parse.urlsplit(entry["url"])
    for signing, method, pattern, operation in REST:
        found = re.fullmatch(pattern, urllib.parse.unquote(url.path))
        if signing == service and method == entry["method"] and found:
            params = {**json.loads(body or "{}"), **{k: v[0] for k, v in urllib.parse.parse_qs(url.query).items()},
                      **found.groupdict()}
            if "Resource" in params and ":function:" in params["Resource"]:
                params["FunctionName"] = params["Resource"].rsplit(":", 1)[-1]
            if service == "scheduler":
                params["GroupName"] = params.get("GroupName") or params.get("groupName") or "default"
            return service, operation, region, params
    form = {k: v[0] for k, v in urllib.parse.parse_qs(body).items()}
    if "Action" in form:
        return IAM_PREFIX.get(service, service), form.pop("Action"), region, form
    raise AssertionError(f"no operation found in {entry['method']} {entry['url']}: teach request_parts this protocol")


def listed(params: dict[str, Any], name: str) -> list[str]:
    """A parameter as a list, from JSON (name: [..] or name: ..) or from a query form (name.member.N, name.N)."""
    if name in params:
        value = params[name]
        return [str(v) for v in value] if isinstance(value, list) else [str(value)]
    pattern = re.compile(rf"^{re.escape(name)}(\.member)?\.\d+$")
    return [v for k, v in sorted(params.items()) if pattern.match(k)]


def derived_resources(action: str, region: str, account: str, params: dict[str, Any]) -> list[str]:
    """The ARNs a call names, of the resource types the action takes."""
    service = action.split(":")[0]
    regional = f"arn:{PARTITION}:{service}:{region}:{account}"
    iam = f"arn:{PARTITION}:iam::{account}"
    # Images and snapshots have no account in their ARN (Service Authorization Reference), nor has a public
    # parameter (/aws/service/...).
    unowned = f"arn:{PARTITION}:{service}:{region}::"
    # RunInstances names the subnet and security groups in its network interfaces.
    interface = re.compile(r"^NetworkInterface\.\d+\.(SubnetId|SecurityGroupId\.\d+)$")
    interfaces = [(k.split(".")[2], v) for k, v in sorted(params.items()) if interface.match(k)]
    created = {kind: [f"{unowned if kind in ('image', 'snapshot') else regional + ':'}{kind}/{i}"]
               for kind, i in EC2_CREATED.get(action, {}).items()}
    arns: dict[str, list[str]] = {
        "queue": [f"{regional}:{n}" for n in listed(params, "QueueName")]
        + [f"{regional}:{u.rstrip('/').rsplit('/', 1)[-1]}" for u in listed(params, "QueueUrl")],
        "role": [f"{iam}:role/{n}" for n in listed(params, "RoleName")],
        "policy": listed(params, "PolicyArn") + [f"{iam}:policy/{n}" for n in listed(params, "PolicyName")],
        "instance-profile": [f"{iam}:instance-profile/{n}" for n in listed(params, "InstanceProfileName")],
        "log-group": [f"{regional}:log-group:{n}" for n in listed(params, "logGroupName")],
        "alarm": [f"{regional}:alarm:{n}" for n in listed(params, "AlarmNames") + listed(params, "AlarmName")]
        + [a for a in listed(params, "ResourceARN") if ":alarm:" in a],
        "dashboard": [f"arn:{PARTITION}:cloudwatch::{account}:dashboard/{n}"
                      for n in listed(params, "DashboardNames") + listed(params, "DashboardName")],
        # The group's id is unknown from a request; any id stands for it.
        "autoScalingGroup": [f"{regional}:autoScalingGroup:00000000-0000-0000-0000-000000000000:"
                             f"autoScalingGroupName/{n}" for n in listed(params, "AutoScalingGroupNames")
                             + listed(params, "AutoScalingGroupName")],
        "vpc": [f"{regional}:vpc/{v}" for v in listed(params, "VpcId")],
        "security-group": [f"{regional}:security-group/{g}" for g in listed(params, "GroupId")]
        + [f"{regional}:security-group/{r}" for r in listed(params, "ResourceId") if r.startswith("sg-")]
        + [f"{regional}:security-group/{g}" for k, g in interfaces if k == "SecurityGroupId"],
        "instance": [f"{regional}:instance/{i}" for i in listed(params, "InstanceId")]
        + [f"{regional}:instance/{r}" for r in listed(params, "ResourceId") if r.startswith("i-")]
        + created.get("instance", []),
        "volume": created.get("volume", []),
        "network-interface": created.get("network-interface", []),
        "image": [f"{unowned}image/{i}" for i in listed(params, "ImageId")]
        + [f"{unowned}image/{r}" for r in listed(params, "ResourceId") if r.startswith("ami-")]
        + created.get("image", []),
        "snapshot": [f"{unowned}snapshot/{i}" for i in listed(params, "SnapshotId")]
        + [f"{unowned}snapshot/{r}" for r in listed(params, "ResourceId") if r.startswith("snap-")]
        + created.get("snapshot", []),
        "launch-template": [f"{regional}:launch-template/{t}" for t in listed(params, "LaunchTemplateId")]
        + [f"{regional}:launch-template/{r}" for r in listed(params, "ResourceId") if r.startswith("lt-")],
        "function": [f"{regional}:function:{n}" for n in listed(params, "FunctionName")],
        "schedule": [f"{regional}:schedule/{params.get('GroupName', 'default')}/{n}"
                     for n in listed(params, "Name") if service == "scheduler"],
        "subnet": [f"{regional}:subnet/{v}" for v in listed(params, "SubnetId")]
        + [f"{regional}:subnet/{v}" for k, v in interfaces if k == "SubnetId"],
        "route-table": [f"{regional}:route-table/{v}" for v in listed(params, "RouteTableId")],
        "internet-gateway": [f"{regional}:internet-gateway/{v}" for v in listed(params, "InternetGatewayId")],
        "natgateway": [f"{regional}:natgateway/{v}" for v in listed(params, "NatGatewayId")],
        "elastic-ip": [f"{regional}:elastic-ip/{v}" for v in listed(params, "AllocationId")],
        "vpc-endpoint": [f"{regional}:vpc-endpoint/{v}" for v in listed(params, "VpcEndpointId")],
        "parameter": [f"{unowned if n.startswith('/aws/service/') else regional + ':'}parameter/{n.lstrip('/')}"
                      for n in listed(params, "Name") + listed(params, "Names") if service == "ssm"]
        + [f"{regional}:parameter/{n.lstrip('/')}" for n in listed(params, "ResourceId") if service == "ssm"],
        "replicationgroup": [f"{regional}:replicationgroup:{n}" for n in listed(params, "ReplicationGroupId")]
        + [a for a in listed(params, "ResourceName") if ":replicationgroup:" in a],
        "cluster": [f"{regional}:cluster:{n}" for n in listed(params, "CacheClusterId")],
        "subnetgroup": [f"{regional}:subnetgroup:{n}" for n in listed(params, "CacheSubnetGroupName")]
        + [a for a in listed(params, "ResourceName") if ":subnetgroup:" in a],
    }
    takes = SAR.get(action.lower(), set())
    return [arn for kind, found in arns.items() if kind in takes for arn in found]


def request_tags(params: dict[str, Any]) -> dict[str, list[str]]:
    """aws:RequestTag/<key> of an EC2 query request's TagSpecification.N.Tag.M.Key/Value (CreateTags: Tag.N)."""
    pattern = re.compile(r"^(TagSpecification\.\d+\.)?Tag\.\d+\.Key$")
    keys = {k.removesuffix(".Key"): v for k, v in params.items() if pattern.match(k)}
    return {f"aws:requesttag/{v.lower()}": [params[f"{k}.Value"]] for k, v in keys.items() if f"{k}.Value" in params}


def resource_tags(arn: str, tags: dict[str, dict[str, str]]) -> dict[str, list[str]]:
    """aws:ResourceTag/<key> of an EC2 resource named by its ARN, from the tags seen on the emulator."""
    found = tags.get(arn.rsplit("/", 1)[-1], {}) if ":ec2:" in arn else {}
    return {f"aws:resourcetag/{k.lower()}": [v] for k, v in found.items()}


def calls_of(entry: dict[str, Any], account: str, tags: dict[str, dict[str, str]] | None = None,
             associations: dict[str, dict[str, str]] | None = None) -> list[Call]:
    service, operation, region, params = request_parts(entry)
    # AWS authorizes a call by association id on the route table and subnet it joins.
    params = {**(associations or {}).get(str(params.get("AssociationId")), {}), **params}
    action = ACTION_OF.get(f"{service}:{operation}", f"{service}:{operation}")
    context: dict[str, list[str]] = {"aws:requestedregion": [region]}
    if service == "ec2":
        context.update(request_tags(params))
    if action in ("iam:AttachRolePolicy", "iam:DetachRolePolicy"):
        context["iam:policyarn"] = listed(params, "PolicyArn")
    if action == "cloudwatch:PutMetricAlarm":
        context["cloudwatch:alarmactions"] = listed(params, "AlarmActions")
    needed: list[tuple[str, dict[str, list[str]], str | None]] = [(action, context, None)]
    tagged = any(k.lower().startswith(("tags", "tagspecification")) for k in params)
    if action in TAG_ON_CREATE and tagged:
        extra = {"ec2:createaction": [operation]} if service == "ec2" else {}
        needed.append((TAG_ON_CREATE[action], {**context, **extra}, action))
    made_by = {c for r in listed(params, "ResourceId") for p, c in EMULATED_TAGS_AT_CREATE.items() if r.startswith(p)}
    if action == "ec2:CreateTags" and len(made_by) == 1 and len(listed(params, "ResourceId")) == 1:
        creator = made_by.pop()
        needed = [(action, {**context, "ec2:createaction": [creator]}, f"ec2:{creator}")]
    if action in DEPENDENT:
        needed.append((DEPENDENT[action], {"aws:requestedregion": [region]}, action))
    calls = []
    for name, keys, needed_by in needed:
        frozen = tuple(sorted((k, tuple(v)) for k, v in keys.items()))
        if not SAR.get(name.lower()):
            calls.append(Call(name, "*", frozen, needed_by))  # AWS allows it on "*" only
            continue
        # A resource an EC2 call creates has no id yet: its tagging is checked on the action alone.
        created = needed_by is not None and service == "ec2"
        resources = [] if created else derived_resources(name, region, account, params)
        calls += [Call(name, arn, tuple(sorted((k, tuple(v)) for k, v in {**keys, **resource_tags(arn, tags or {})}
                                               .items())), needed_by)
                  for arn in resources] or [Call(name, None, frozen, needed_by)]
    return calls


# ---- the evaluator ----------------------------------------------------------------------------------------

def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def wildcard(pattern: str, value: str, ignore_case: bool = False) -> bool:
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, re.IGNORECASE if ignore_case else 0) is not None


def operator_matches(operator: str, wanted: list[str], value: str) -> bool | None:
    if operator in ("StringEquals", "ArnEquals"):
        return value in wanted
    if operator in ("StringLike", "ArnLike"):
        return any(wildcard(w, value) for w in wanted)
    return None  # an operator this evaluator does not know


def condition_holds(condition: dict[str, dict[str, Any]], context: dict[str, tuple[str, ...]],
                    permission_only: bool) -> bool:
    for qualified, keys in condition.items():
        quantifier, _, operator = qualified.rpartition(":")
        if_exists = operator.endswith("IfExists")
        operator = operator.removesuffix("IfExists")
        for key, wanted in keys.items():
            values = context.get(key.lower())
            if values is None:
                if quantifier == "ForAllValues" or if_exists:
                    continue  # AWS: an absent key satisfies these
                if permission_only:
                    continue  # set by AWS at launch time, not by any recorded call
                return False
            results = [operator_matches(operator, as_list(wanted), v) for v in values]
            if None in results:
                if permission_only:
                    continue
                return False
            if quantifier == "ForAllValues":
                ok = all(results)
            elif quantifier == "ForAnyValue":
                ok = any(results)
            else:
                ok = bool(results) and all(results)
            if not ok:
                return False
    return True


def statement_allows(statement: dict[str, Any], call: Call) -> bool:
    if statement["Effect"] != "Allow":
        return False
    if "Action" in statement:
        if not any(wildcard(a, call.action, ignore_case=True) for a in as_list(statement["Action"])):
            return False
    elif any(wildcard(a, call.action, ignore_case=True) for a in as_list(statement["NotAction"])):
        return False
    if call.resource is not None:
        if "Resource" in statement:
            if not any(wildcard(r, call.resource) for r in as_list(statement["Resource"])):
                return False
        elif any(wildcard(r, call.resource) for r in as_list(statement["NotResource"])):
            return False
    permission_only = statement.get("Sid", "").startswith(PERMISSION_ONLY)
    return condition_holds(statement.get("Condition", {}), dict(call.context), permission_only)


def allowed(policy: dict[str, Any], call: Call) -> bool:
    return any(statement_allows(s, call) for s in as_list(policy["Statement"]))


# ---- the recorded runs ------------------------------------------------------------------------------------

def recorded_emulator(tmp_path_factory: pytest.TempPathFactory, name: str,
                      runs: Any) -> Iterator[Recording]:
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
def recording(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recording]:
    yield from recorded_emulator(tmp_path_factory, "deployer", record_runs)


@pytest.fixture(scope="module")
def redis_recording(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recording]:
    """An environment with `broker: redis` (inventory/local-redis): its own policy, site.yml and teardown."""
    def runs(server: Emulator, work: Path, record: Path) -> Recording:
        return record_runs(server, work, record, inventory="inventory/local-redis",
                           plays=(("site.yml cold", ["site.yml"]),), scale_test=False)

    yield from recorded_emulator(tmp_path_factory, "deployer-redis", runs)


def recorded(record: Path, start: int) -> tuple[list[dict[str, Any]], int]:
    lines = record.read_text().splitlines() if record.exists() else []
    entries = [json.loads(line) for line in lines[start:]]
    # moto's own API and the readiness probe of the server's root are no AWS calls.
    return [e for e in entries if "/moto-api/" not in e["url"] and "authorization" in
            {k.lower() for k in e["headers"]}], len(lines)


# A commit of no repository: the emulator bakes nothing (image.yml stops the builder itself there).
BAKED_COMMIT = "0123456789abcdef0123456789abcdef01234567"
SQS_PLAYS = (("site.yml cold", ["site.yml"]), ("site.yml rerun", ["site.yml"]),
             ("produce.yml", ["produce.yml", "-e", "count=5"]),
             ("image.yml", ["image.yml", "-e", f"fleet_repo_version={BAKED_COMMIT}"]),
             ("site.yml baked", ["site.yml", "-e", "fleet_image=baked", "-e", f"fleet_repo_version={BAKED_COMMIT}"]))


def record_runs(server: Emulator, work: Path, record: Path, inventory: str = "inventory/local",
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
    recording = Recording(policy=policy, account=account,
                          stack=Stack.from_inventory(inventory.rsplit("/", 1)[-1]))
    _, position = recorded(record, 0)

    ec2 = clients(server.environment())("ec2")

    def phase(name: str) -> None:
        nonlocal position
        entries, position = recorded(record, position)
        # The tags of what exists now; kept for what a later phase removes. These reads are not the playbooks'.
        for page in ec2.get_paginator("describe_tags").paginate():
            for tag in page["Tags"]:
                recording.tags.setdefault(tag["ResourceId"], {})[tag["Key"]] = tag["Value"]
        for page in ec2.get_paginator("describe_route_tables").paginate():
            for table in page["RouteTables"]:
                recording.associations |= {a["RouteTableAssociationId"]: {
                    "RouteTableId": a["RouteTableId"], **({"SubnetId": a["SubnetId"]} if "SubnetId" in a else {})}
                    for a in table.get("Associations", [])}
        _, position = recorded(record, position)
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
    assert set(plan.dashboards(fleet.cloudwatch, list(stack.dashboards.values()))) == set(stack.dashboards.values())
    plan.metric_evidence(fleet.cloudwatch, fleet.queue_name, fleet.dlq_name, fleet.group_name,
                         now - datetime.timedelta(minutes=5), now)
    assert plan.dead_letter_sample(fleet.sqs, fleet.queues[fleet.dlq_name]) == []
    plan.cloudwatch_log_events(client("logs"), stack.log_group, now - datetime.timedelta(minutes=5))


# ---- the tests --------------------------------------------------------------------------------------------

def test_the_policy_allows_every_call_the_playbooks_make(recording: Recording,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    denied = []
    for name, calls in recording.phases.items():
        made = {c.action for c in calls if c.needed_by is None}
        needed = {c.action for c in calls if c.needed_by is not None} - made
        with capsys.disabled():
            print(json.dumps({"event": "deployer_calls", "phase": name, "requests": recording.requests[name],
                              "distinct_actions": len(made), "needed_without_a_call": sorted(needed)}))
        denied += [f"{name}: {c.describe()}" for c in sorted(set(calls), key=Call.describe)
                   if not allowed(recording.policy, c)]
    assert not denied, "the deployer policy does not allow:\n" + "\n".join(denied)
    # Each phase was recorded, and the calls README once missed are among them.
    assert all(recording.phases.values()), recording.requests
    everything = {c.action for calls in recording.phases.values() for c in calls}
    assert {"ec2:DescribeVpcAttribute", "ec2:DescribeTags", "iam:ListEntitiesForPolicy",
            "logs:ListTagsLogGroup", "sqs:SendMessage", "logs:FilterLogEvents"} <= everything


def test_the_policy_allows_every_call_of_a_stack_on_redis(redis_recording: Recording) -> None:
    denied = sorted({f"{phase}: {call.describe()}" for phase, calls in redis_recording.phases.items()
                     for call in calls if not allowed(redis_recording.policy, call)})
    assert not denied, "\n".join(denied)
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
        scoped = [a for a in as_list(statement["Action"]) if SAR[a.lower()]]
        assert not scoped, f"{statement['Sid']}: these take resource ARNs: {scoped}"
