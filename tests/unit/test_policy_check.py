"""sqs-fleet-check-policy (sqs_fleet.ops.policy_check and recorded_calls): the evaluator's reading of Allow
statements, what a recorded request needs, and the tool's input, output and exit status."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sqs_fleet.ops.policy_check import Call, allowed, denied, main, parse_call, why_denied
from sqs_fleet.ops.recorded_calls import calls_of, read_recording

ACCOUNT = "123456789012"
QUEUE = f"arn:aws:sqs:eu-west-1:{ACCOUNT}:orders"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/workers"
REGION = (("aws:requestedregion", ("eu-west-1",)),)
POLICY: dict[str, Any] = {"Version": "2012-10-17", "Statement": [
    {"Sid": "UseTheQueue", "Effect": "Allow", "Action": ["sqs:SendMessage", "sqs:Get*"], "Resource": QUEUE},
    {"Sid": "ReadsInTheRegion", "Effect": "Allow", "Action": "ec2:Describe*", "Resource": "*",
     "Condition": {"StringEquals": {"aws:RequestedRegion": "eu-west-1"}}},
    {"Sid": "TagOnlyOurs", "Effect": "Allow", "Action": "ec2:CreateTags", "Resource": "*",
     "Condition": {"StringLike": {"aws:RequestTag/Project": "fleet-*"},
                   "ForAllValues:StringEquals": {"aws:TagKeys": ["Project", "Environment"]}}},
    {"Sid": "PermissionOnlyPassTheWorkersRole", "Effect": "Allow", "Action": "iam:PassRole", "Resource": ROLE,
     "Condition": {"StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}}},
    {"Sid": "AnythingButIamAndSqs", "Effect": "Allow", "NotAction": ["iam:*", "sqs:*"],
     "Resource": "arn:aws:s3:::bucket/*"},
]}


def test_actions_match_without_case_and_resources_with_wildcards() -> None:
    assert allowed(POLICY, Call("SQS:sendmessage", QUEUE))
    assert allowed(POLICY, Call("sqs:GetQueueUrl", QUEUE))
    assert not allowed(POLICY, Call("sqs:DeleteQueue", QUEUE))
    assert not allowed(POLICY, Call("sqs:SendMessage", f"{QUEUE}-dlq"))
    assert allowed(POLICY, Call("sqs:SendMessage", None)), "an action alone is checked on the action"
    assert allowed(POLICY, Call("s3:GetObject", "arn:aws:s3:::bucket/key"))
    assert not allowed(POLICY, Call("iam:GetRole", "arn:aws:s3:::bucket/key")), "NotAction excludes iam and sqs"
    assert not allowed(POLICY, Call("sqs:SendMessage", "arn:aws:s3:::bucket/key"))


def test_conditions_hold_on_the_keys_a_call_sets() -> None:
    assert allowed(POLICY, Call("ec2:DescribeVpcs", "*", REGION))
    assert not allowed(POLICY, Call("ec2:DescribeVpcs", "*", (("aws:requestedregion", ("us-east-1",)),)))
    assert not allowed(POLICY, Call("ec2:DescribeVpcs", "*")), "a key the call does not set fails the statement"
    tagged = (("aws:requesttag/project", ("fleet-prod",)), ("aws:tagkeys", ("Project", "Environment")))
    assert allowed(POLICY, Call("ec2:CreateTags", "*", tagged))
    assert not allowed(POLICY, Call("ec2:CreateTags", "*", (tagged[0], ("aws:tagkeys", ("Project", "Owner")))))
    # ForAllValues holds when the key is absent, as on AWS; the StringLike beside it still needs its key.
    assert allowed(POLICY, Call("ec2:CreateTags", "*", tagged[:1]))
    assert not allowed(POLICY, Call("ec2:CreateTags", "*", tagged[1:]))


def test_a_permission_only_statement_takes_an_absent_key_and_refuses_a_wrong_one() -> None:
    assert allowed(POLICY, Call("iam:PassRole", ROLE))
    assert allowed(POLICY, Call("iam:PassRole", ROLE, (("iam:passedtoservice", ("ec2.amazonaws.com",)),)))
    assert not allowed(POLICY, Call("iam:PassRole", ROLE, (("iam:passedtoservice", ("lambda.amazonaws.com",)),)))


def test_a_denial_says_what_the_policy_misses() -> None:
    assert why_denied(POLICY, Call("iam:DeleteRole", ROLE)) == "no statement allows the action"
    assert why_denied(POLICY, Call("sqs:SendMessage", f"{QUEUE}-dlq")) == (
        "the statements with the action (UseTheQueue) do not name this resource")
    assert why_denied(POLICY, Call("ec2:DescribeVpcs", "*")) == "the conditions of ReadsInTheRegion do not hold"
    calls = [Call("sqs:SendMessage", QUEUE), Call("iam:DeleteRole", ROLE), Call("iam:DeleteRole", ROLE)]
    assert denied(POLICY, calls) == [(Call("iam:DeleteRole", ROLE), "no statement allows the action")]


def test_a_line_of_a_calls_file_is_an_action_a_resource_and_condition_keys() -> None:
    assert parse_call("  # a comment") is None
    assert parse_call("ec2:DescribeVpcs * aws:RequestedRegion=eu-west-1  # reads") == Call(
        "ec2:DescribeVpcs", "*", REGION)
    assert parse_call("ec2:CreateTags - aws:TagKeys=Project aws:TagKeys=Owner") == Call(
        "ec2:CreateTags", None, (("aws:tagkeys", ("Project", "Owner")),))
    with pytest.raises(ValueError, match="expected ACTION RESOURCE"):
        parse_call("DescribeVpcs")
    with pytest.raises(ValueError, match="'region' is not KEY=VALUE"):
        parse_call("ec2:DescribeVpcs * region")


def signed(service: str, region: str = "us-east-1") -> dict[str, str]:
    return {"Authorization": f"AWS4-HMAC-SHA256 Credential=AKID/20250101/{region}/{service}/aws4_request, "
                             "SignedHeaders=host, Signature=0"}


def test_a_recorded_request_needs_its_action_the_tagging_and_what_aws_checks_besides() -> None:
    create = {"method": "POST", "url": "http://127.0.0.1:5000/",
              "headers": {**signed("sqs"), "X-Amz-Target": "AmazonSQS.CreateQueue"},
              "body": json.dumps({"QueueName": "orders", "tags": {"Project": "fleet"}})}
    arn = f"arn:aws:sqs:us-east-1:{ACCOUNT}:orders"
    assert [(c.action, c.resource, c.needed_by) for c in calls_of(create, ACCOUNT)] == [
        ("sqs:CreateQueue", arn, None), ("sqs:TagQueue", arn, "sqs:CreateQueue")]
    batch = {"method": "POST", "url": "http://127.0.0.1:5000/", "headers": signed("sqs"),
             "body": f"Action=SendMessageBatch&QueueUrl=http%3A%2F%2F127.0.0.1%3A5000%2F{ACCOUNT}%2Forders"}
    [send] = calls_of(batch, ACCOUNT)
    assert (send.action, send.resource, dict(send.context)) == (
        "sqs:SendMessage", arn, {"aws:requestedregion": ("us-east-1",)})
    function = {"method": "POST", "url": "http://127.0.0.1:5000/2015-03-31/functions", "headers": signed("lambda"),
                "body": json.dumps({"FunctionName": "publisher", "Role": ROLE})}
    assert [(c.action, c.needed_by) for c in calls_of(function, ACCOUNT)] == [
        ("lambda:CreateFunction", None), ("iam:PassRole", "lambda:CreateFunction")]
    with pytest.raises(ValueError, match="unsigned request"):
        calls_of({**batch, "headers": {}}, ACCOUNT)


def recording(path: Path, *entries: dict[str, Any]) -> Path:
    path.write_text("".join(json.dumps(e) + "\n" for e in entries))
    return path


def test_the_tool_prints_each_denied_call_of_a_recording_once_and_exits_1(tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"Statement": [
        {"Effect": "Allow", "Action": "sqs:CreateQueue", "Resource": f"arn:aws:sqs:*:{ACCOUNT}:orders"}]}))
    create = {"method": "POST", "url": "http://127.0.0.1:5000/",
              "headers": {**signed("sqs"), "X-Amz-Target": "AmazonSQS.CreateQueue"},
              "body": json.dumps({"QueueName": "orders", "tags": {"Project": "fleet"}})}
    probe = {"method": "GET", "url": "http://127.0.0.1:5000/moto-api/data.json", "headers": signed("sqs")}
    record = recording(tmp_path / "requests.jsonl", create, probe, create)
    assert len(read_recording(record)[0]) == 2
    assert main([str(policy), "--recording", str(record)]) == 1
    out = capsys.readouterr()
    assert out.out.splitlines() == [
        f"denied: sqs:TagQueue on arn:aws:sqs:us-east-1:{ACCOUNT}:orders (needed by sqs:CreateQueue): "
        "no statement allows the action"]
    assert "2 distinct calls, 1 denied" in out.err


def test_the_tool_exits_0_when_all_is_allowed_and_2_naming_bad_input(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    policy, calls = tmp_path / "policy.json", tmp_path / "calls.txt"
    policy.write_text(json.dumps(POLICY))
    calls.write_text(f"sqs:SendMessage {QUEUE}\nec2:DescribeVpcs * aws:RequestedRegion=eu-west-1\n")
    assert main([str(policy), "--calls", str(calls)]) == 0
    assert capsys.readouterr().out == ""
    calls.write_text(f"sqs:SendMessage {QUEUE}\nsqs:SendMessage\n")
    assert main([str(policy), "--calls", str(calls)]) == 2
    assert f"{calls}:2: 'sqs:SendMessage': expected ACTION RESOURCE" in capsys.readouterr().err
    assert main([str(policy), "--recording", str(tmp_path / "missing.jsonl")]) == 2
    assert "missing.jsonl: no such recording" in capsys.readouterr().err
    policy.write_text(json.dumps({"Version": "2012-10-17"}))
    assert main([str(policy), "--calls", str(calls)]) == 2
    assert "not an IAM policy document (no Statement)" in capsys.readouterr().err
