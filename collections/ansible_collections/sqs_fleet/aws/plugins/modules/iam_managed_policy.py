#!/usr/bin/python
# Why a project module: amazon.aws.iam_managed_policy finds a policy by listing every policy the account can
# see, AWS managed ones included (about 1,500), on every run and for every policy; this one reads the one
# policy by its ARN (GetPolicy), which IAM derives from the account, the path and the name.
from __future__ import annotations

DOCUMENTATION = r"""
module: iam_managed_policy
short_description: Create, update or delete a customer managed IAM policy, found by its ARN
version_added: 1.2.0
author: The sqs-fleet authors
description:
  - Reads the policy with GetPolicy at C(arn:<partition>:iam::<account>:policy<path><name>), the account read
    with STS GetCallerIdentity, instead of listing every policy in the account.
  - A changed document becomes a new default version; when the policy already has the five versions IAM
    allows, the oldest non-default one is deleted first.
  - Tags are set to exactly O(tags). The description is fixed at creation (IAM cannot change it).
  - On deletion the policy is detached from every role, user and group first, and its other versions deleted.
options:
  name:
    description: Name of the policy.
    type: str
    required: true
  path:
    description: Path of the policy.
    type: str
    default: /
  policy:
    description: The policy document (JSON string or dict); required when O(state=present).
    type: json
  description:
    description: Description given at creation.
    type: str
    default: ""
  tags:
    description: Tags of the policy (all of them).
    type: dict
    default: {}
  state:
    description: Whether the policy exists.
    type: str
    choices: [present, absent]
    default: present
notes:
  - Supports check mode and diff mode.
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: The workers' policy
  sqs_fleet.aws.iam_managed_policy:
    name: sqs-fleet-prod-consumer
    description: Receive from the queue
    policy: "{{ lookup('ansible.builtin.template', 'consumer-policy.json.j2') }}"
    tags: {Project: sqs-fleet}

- name: Gone
  sqs_fleet.aws.iam_managed_policy:
    name: sqs-fleet-prod-consumer
    state: absent
"""

RETURN = r"""
policy:
  description: The policy after the run (GetPolicy's fields, snake_cased); absent when there is none, or in a
    dry run that would create it.
  returned: when the policy exists
  type: dict
  sample: {"arn": "arn:aws:iam::123456789012:policy/sqs-fleet-prod-consumer", "policy_name": "sqs-fleet-prod-consumer",
           "default_version_id": "v2"}
"""

import json
import urllib.parse

try:
    from botocore.exceptions import BotoCoreError, ClientError
except ImportError:
    pass  # AnsibleAWSModule reports a missing botocore

from ansible.module_utils.common.dict_transformations import camel_dict_to_snake_dict
from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
from ansible_collections.amazon.aws.plugins.module_utils.retries import AWSRetry

MAX_VERSIONS = 5  # IAM keeps at most five versions of a managed policy


def document_of(value):
    """A policy document as a dict, from a JSON string, a URL-encoded one (as IAM returns it) or a dict."""
    if isinstance(value, dict):
        return value
    text = urllib.parse.unquote(value) if value.lstrip().startswith("%7B") else value
    return json.loads(text)


def tags_of(items):
    return {t["Key"]: t["Value"] for t in items or []}


class Policies:
    def __init__(self, module):
        self.module = module
        self.iam = module.client("iam", retry_decorator=AWSRetry.jittered_backoff())

    def call(self, what, method, **params):
        try:
            return getattr(self.iam, method)(aws_retry=True, **params)
        except (ClientError, BotoCoreError) as error:
            self.module.fail_json_aws(error, msg=f"Could not {what}")

    def arn(self, name, path):
        sts = self.module.client("sts", retry_decorator=AWSRetry.jittered_backoff())
        try:
            caller = sts.get_caller_identity(aws_retry=True)["Arn"]
        except (ClientError, BotoCoreError) as error:
            self.module.fail_json_aws(error, msg="Could not read the account (sts:GetCallerIdentity)")
        partition, account = caller.split(":")[1], caller.split(":")[4]
        return f"arn:{partition}:iam::{account}:policy{path}{name}"

    def get(self, arn):
        try:
            return self.iam.get_policy(aws_retry=True, PolicyArn=arn)["Policy"]
        except self.iam.exceptions.NoSuchEntityException:
            return None
        except (ClientError, BotoCoreError) as error:
            self.module.fail_json_aws(error, msg=f"Could not read policy {arn}")

    def document(self, policy):
        version = self.call(f"read the document of {policy['Arn']}", "get_policy_version",
                            PolicyArn=policy["Arn"], VersionId=policy["DefaultVersionId"])
        return document_of(version["PolicyVersion"]["Document"])

    def tags(self, arn):
        return tags_of(self.call(f"read the tags of {arn}", "list_policy_tags", PolicyArn=arn).get("Tags"))

    def new_version(self, arn, document):
        versions = self.call(f"list the versions of {arn}", "list_policy_versions", PolicyArn=arn)["Versions"]
        old = sorted((v for v in versions if not v["IsDefaultVersion"]), key=lambda v: v["CreateDate"])
        if len(versions) >= MAX_VERSIONS and old:
            self.call(f"delete the oldest version of {arn}", "delete_policy_version", PolicyArn=arn,
                      VersionId=old[0]["VersionId"])
        self.call(f"update {arn}", "create_policy_version", PolicyArn=arn, PolicyDocument=json.dumps(document),
                  SetAsDefault=True)

    def retag(self, arn, have, want):
        gone = [key for key in have if key not in want]
        if gone:
            self.call(f"untag {arn}", "untag_policy", PolicyArn=arn, TagKeys=gone)
        changed = {k: v for k, v in want.items() if have.get(k) != v}
        if changed:
            self.call(f"tag {arn}", "tag_policy", PolicyArn=arn,
                      Tags=[{"Key": k, "Value": v} for k, v in changed.items()])

    def delete(self, arn):
        entities = self.call(f"list what {arn} is attached to", "list_entities_for_policy", PolicyArn=arn)
        for role in entities.get("PolicyRoles", []):
            self.call(f"detach {arn}", "detach_role_policy", PolicyArn=arn, RoleName=role["RoleName"])
        for user in entities.get("PolicyUsers", []):
            self.call(f"detach {arn}", "detach_user_policy", PolicyArn=arn, UserName=user["UserName"])
        for group in entities.get("PolicyGroups", []):
            self.call(f"detach {arn}", "detach_group_policy", PolicyArn=arn, GroupName=group["GroupName"])
        for version in self.call(f"list the versions of {arn}", "list_policy_versions", PolicyArn=arn)["Versions"]:
            if not version["IsDefaultVersion"]:
                self.call(f"delete a version of {arn}", "delete_policy_version", PolicyArn=arn,
                          VersionId=version["VersionId"])
        self.call(f"delete {arn}", "delete_policy", PolicyArn=arn)


def main():
    module = AnsibleAWSModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            path=dict(type="str", default="/"),
            policy=dict(type="json"),
            description=dict(type="str", default=""),
            tags=dict(type="dict", default={}),
            state=dict(type="str", choices=["present", "absent"], default="present"),
        ),
        required_if=[("state", "present", ["policy"])],
        supports_check_mode=True,
    )
    params = module.params
    path = params["path"] if params["path"].endswith("/") else params["path"] + "/"
    if not path.startswith("/"):
        module.fail_json(msg=f"path {params['path']!r}: must begin with /")
    policies = Policies(module)
    arn = policies.arn(params["name"], path)
    existing = policies.get(arn)
    want_tags = {str(k): str(v) for k, v in params["tags"].items()}

    if params["state"] == "absent":
        if existing and not module.check_mode:
            policies.delete(arn)
        module.exit_json(changed=existing is not None,
                         diff={"before": {"arn": arn} if existing else {}, "after": {}})

    try:
        document = document_of(params["policy"])
    except ValueError as error:
        module.fail_json(msg=f"policy of {params['name']}: not a JSON document ({error})")
    if existing is None:
        if not module.check_mode:
            # CreatePolicy returns the policy as GetPolicy would: no second read.
            existing = policies.call(f"create policy {params['name']}", "create_policy", PolicyName=params["name"],
                                     Path=path, PolicyDocument=json.dumps(document), Description=params["description"],
                                     **({"Tags": [{"Key": k, "Value": v} for k, v in want_tags.items()]}
                                        if want_tags else {}))["Policy"]
        result = {"changed": True, "diff": {"before": {}, "after": {"document": document, "tags": want_tags}}}
        if existing:
            result["policy"] = camel_dict_to_snake_dict(existing, ignore_list=["Tags"])
        module.exit_json(**result)

    have_document, have_tags = policies.document(existing), policies.tags(arn)
    new_document, new_tags = have_document != document, have_tags != want_tags
    if not module.check_mode:
        if new_document:
            policies.new_version(arn, document)
        if new_tags:
            policies.retag(arn, have_tags, want_tags)
        if new_document or new_tags:
            existing = policies.get(arn)
    module.exit_json(changed=new_document or new_tags, policy=camel_dict_to_snake_dict(existing, ignore_list=["Tags"]),
                     diff={"before": {"document": have_document, "tags": have_tags},
                           "after": {"document": document, "tags": want_tags}})


if __name__ == "__main__":
    main()
