"""sqs_fleet.aws.iam_managed_policy on the emulator (which holds AWS's managed policies too): create, rerun
without change, check mode, a new document as a new default version (never more than five), retag, delete while
attached."""

from __future__ import annotations

import json
import urllib.parse
from typing import Any

from support.ansible_runs import ok

NAME = "modules-managed-policy"


def document(action: str) -> dict[str, Any]:
    return {"Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": action, "Resource": "arn:aws:sqs:us-east-1:*:modules"}]}


def stored(aws, arn: str) -> tuple[dict[str, Any], dict[str, str], int]:
    """The default document, the tags and the number of versions IAM holds."""
    iam = aws("iam")
    policy = iam.get_policy(PolicyArn=arn)["Policy"]
    body = iam.get_policy_version(PolicyArn=arn, VersionId=policy["DefaultVersionId"])["PolicyVersion"]["Document"]
    body = json.loads(urllib.parse.unquote(body)) if isinstance(body, str) else body
    tags = {t["Key"]: t["Value"] for t in iam.list_policy_tags(PolicyArn=arn)["Tags"]}
    return body, tags, len(iam.list_policy_versions(PolicyArn=arn)["Versions"])


def test_policy_lifecycle(run_module, aws):
    account = aws("sts").get_caller_identity()["Account"]
    arn = f"arn:aws:iam::{account}:policy/{NAME}"
    first = {"name": NAME, "description": "modules", "policy": json.dumps(document("sqs:SendMessage")),
             "tags": {"Project": "modules"}}
    ok(run_module("iam_managed_policy", {"name": NAME, "state": "absent"}))

    planned = ok(run_module("iam_managed_policy", first, "--check"))
    assert planned["changed"] and "policy" not in planned  # nothing to name yet
    made = ok(run_module("iam_managed_policy", first))
    assert made["changed"] and made["policy"]["arn"] == arn
    assert stored(aws, arn) == (document("sqs:SendMessage"), {"Project": "modules"}, 1)
    assert not ok(run_module("iam_managed_policy", first))["changed"]
    assert not ok(run_module("iam_managed_policy", first, "--check"))["changed"]

    # Six changes of the document: each a new default version, the oldest deleted to stay within five.
    for n in range(6):
        changed = ok(run_module("iam_managed_policy", dict(first, policy=json.dumps(document(f"sqs:Action{n}")))))
        assert changed["changed"]
    assert stored(aws, arn) == (document("sqs:Action5"), {"Project": "modules"}, 5)

    retagged = dict(first, policy=json.dumps(document("sqs:Action5")), tags={"Environment": "modules"})
    assert ok(run_module("iam_managed_policy", retagged))["changed"]
    assert stored(aws, arn)[1] == {"Environment": "modules"}

    iam = aws("iam")
    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                      "Principal": {"Service": "ec2.amazonaws.com"}}]}
    iam.create_role(RoleName=NAME, AssumeRolePolicyDocument=json.dumps(trust))
    iam.attach_role_policy(RoleName=NAME, PolicyArn=arn)
    try:
        assert ok(run_module("iam_managed_policy", {"name": NAME, "state": "absent"}))["changed"]
        assert iam.list_attached_role_policies(RoleName=NAME)["AttachedPolicies"] == []
        assert not ok(run_module("iam_managed_policy", {"name": NAME, "state": "absent"}))["changed"]
    finally:
        iam.delete_role(RoleName=NAME)

    bad = run_module("iam_managed_policy", dict(first, policy="{not json"))
    assert bad.get("failed") and "not a JSON document" in bad["msg"]
