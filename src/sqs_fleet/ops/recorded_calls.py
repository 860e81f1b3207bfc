"""The IAM actions a recorded run needed: each request the emulator recorded (MOTO_ENABLE_RECORDING) turned
into the action it is authorised by, the resource ARNs it names (of the types the action takes, from the
Service Authorization Reference) and the condition keys it sets, plus what AWS checks besides the call itself:
the tagging action of a create call that carries tags, and dependent actions such as iam:PassRole.

An EC2 resource's tags (aws:ResourceTag/*) and the route table a DisassociateRouteTable leaves are not in the
request: a caller that read them from the emulator passes them in (`tags`, `associations`)."""

from __future__ import annotations

import base64
import json
import re
import urllib.parse
from pathlib import Path
from typing import Any

from sqs_fleet.ops.policy_check import Call, resource_types

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
# The emulator takes no tags at CreateImage: image.yml (image_emulated_builder) tags the image right after, where
# AWS tags it in the CreateImage call. That CreateTags is checked as the tagging at creation it stands for.
EMULATED_TAGS_AT_CREATE = {"ami-": "CreateImage"}


def read_recording(path: Path, start: int = 0) -> tuple[list[dict[str, Any]], int]:
    """The AWS requests of a recording from its line `start` on, and the line to read from next time (a run
    still recording appends). moto's own API and unsigned requests (the server's readiness probe) are no AWS
    calls."""
    lines = path.read_text().splitlines() if path.exists() else []
    try:
        entries = [json.loads(line) for line in lines[start:]]
    except ValueError as error:
        raise ValueError(f"{path}: not a recording of requests (JSON lines): {error}") from None
    return [e for e in entries if "/moto-api/" not in e["url"] and "authorization" in
            {k.lower() for k in e["headers"]}], len(lines)


def request_parts(entry: dict[str, Any]) -> tuple[str, str, str, dict[str, Any]]:
    """(IAM prefix, operation, region, parameters) of one recorded request."""
    headers = {k.lower(): v for k, v in entry["headers"].items()}
    scope = re.search(r"Credential=[^/]+/\d{8}/([^/]+)/([^/]+)/aws4_request", headers.get("authorization", ""))
    if not scope:
        raise ValueError(f"unsigned request: {entry['method']} {entry['url']}")
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
    raise ValueError(f"no operation found in {entry['method']} {entry['url']}: a protocol request_parts does not know")


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
    takes = resource_types().get(action.lower(), frozenset())
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
        if not resource_types().get(name.lower()):
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
