#!/usr/bin/python
# Why a project module: no collection makes a replication group. community.aws.elasticache makes single cache
# clusters only (a rerun fails with KeyError 'CacheNodes', state=absent with wait hangs), and amazon.aws has
# no ElastiCache module at all.
from __future__ import annotations

DOCUMENTATION = r"""
module: elasticache_replication_group
short_description: Create, update or delete an ElastiCache (Redis OSS / Valkey) replication group
version_added: 1.1.0
author: The sqs-fleet authors
description:
  - A cluster-mode-disabled replication group of one primary and I(replicas) read replicas, with Multi-AZ
    automatic failover, encryption in transit and at rest and an AUTH token.
  - Idempotent; in-place changes (description, node type, engine version, security groups, failover, Multi-AZ,
    tags) are applied with ModifyReplicationGroup and ApplyImmediately.
  - Settings that AWS cannot change in place (port, subnet group, encryption at rest, replica count) fail with a
    message instead of being ignored.
  - The AUTH token is used at creation only; AWS never returns it, so it is not compared (rotate it with the
    console or ModifyReplicationGroup's AuthTokenUpdateStrategy).
options:
  id:
    description: Replication group id (1-40 lower-case letters, digits and single hyphens, starting with a letter).
    type: str
    required: true
  state:
    description: Whether the group should exist. A group that is being deleted counts as absent.
    type: str
    default: present
    choices: [present, absent]
  description:
    description: Description of the group.
    type: str
    default: ""
  engine:
    description: C(redis) or C(valkey).
    type: str
    default: redis
    choices: [redis, valkey]
  engine_version:
    description: Engine version, e.g. C(7.1); the service's default when omitted.
    type: str
  node_type:
    description: Node type of every member, e.g. C(cache.t4g.micro). Required when I(state=present).
    type: str
  port:
    description: Port the nodes listen on.
    type: int
    default: 6379
  replicas:
    description: Read replicas beside the primary (1 gives two nodes).
    type: int
    default: 1
  automatic_failover:
    description: Promote a replica when the primary fails (needs I(replicas) >= 1).
    type: bool
    default: true
  multi_az:
    description: Place the replica in another Availability Zone than the primary (needs I(automatic_failover)).
    type: bool
    default: true
  transit_encryption:
    description: TLS between clients and nodes (and between nodes).
    type: bool
    default: true
  at_rest_encryption:
    description: Encrypt the nodes' disks and backups.
    type: bool
    default: true
  auth_token:
    description:
      - AUTH token; needs I(transit_encryption). 16 to 128 characters, ASCII letters, digits and only these
        special characters C(!&#$^<>-) (CreateReplicationGroup's rules). Checked before any call; the error
        never quotes the token.
      - Used when the group is created; never logged, never compared.
    type: str
  subnet_group:
    description: Cache subnet group the nodes are placed in.
    type: str
  security_group_ids:
    description: VPC security groups of the nodes.
    type: list
    elements: str
    default: []
  tags:
    description: Tags of the group.
    type: dict
    default: {}
  wait:
    description:
      - Wait for the group to be C(available) after a create or modify, and to be gone after a delete (also one
        another run started).
      - ElastiCache changes or deletes a group only once it is C(available). A group still being created or
        modified is waited for before it is compared, changed or deleted; with I(wait=false) it is left as it is
        (unchanged, with a message), for a later run that waits.
    type: bool
    default: true
  wait_timeout:
    description: Seconds to wait.
    type: int
    default: 2400
notes:
  - Supports check mode and diff mode.
  - Delete waits end when the group is gone. An emulator that never finishes a delete (moto) needs I(wait=false)
    for state=absent; the group then stays in C(deleting), which this module treats as absent.
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: A primary and one replica, Multi-AZ, TLS and AUTH
  sqs_fleet.aws.elasticache_replication_group:
    id: jobs-broker
    description: Celery broker
    node_type: cache.t4g.micro
    engine_version: "7.1"
    replicas: 1
    subnet_group: jobs-broker
    security_group_ids: [sg-0123456789abcdef0]
    auth_token: "{{ broker_token }}"
    tags: {Project: jobs}
  no_log: true

- name: Remove it, waiting until it is gone
  sqs_fleet.aws.elasticache_replication_group:
    id: jobs-broker
    state: absent
"""

RETURN = r"""
replication_group:
  description: The group as this module compares it (empty when absent, or in check mode before it exists).
  returned: always
  type: dict
  contains:
    id: {description: Replication group id., type: str, returned: when present}
    arn: {description: Its ARN., type: str, returned: when present}
    status: {description: Its status (creating, available, modifying, deleting...)., type: str, returned: when present}
    primary_endpoint:
      description: Address and port of the primary (clients write there; it follows a failover).
      type: dict
      returned: when present
      sample: {address: master.jobs-broker.abc123.euw1.cache.amazonaws.com, port: 6379}
    member_clusters:
      description: The cache cluster ids of the members (the CacheClusterId dimension of their metrics).
      type: list
      returned: when present
      sample: [jobs-broker-001, jobs-broker-002]
"""

import time

try:
    from botocore.exceptions import BotoCoreError, ClientError
except ImportError:
    pass  # AnsibleAWSModule reports a missing botocore

from ansible_collections.amazon.aws.plugins.module_utils.botocore import is_boto3_error_code
from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
from ansible_collections.amazon.aws.plugins.module_utils.retries import AWSRetry
from ansible_collections.amazon.aws.plugins.module_utils.tagging import (
    ansible_dict_to_boto3_tag_list,
    boto3_tag_list_to_ansible_dict,
    compare_aws_tags,
)
from ansible_collections.sqs_fleet.aws.plugins.module_utils.replication_group import (
    FIXED,
    MODIFIABLE,
    changes,
    input_errors,
    wanted,
)

NOT_FOUND = ["ReplicationGroupNotFoundFault"]
GONE = ("deleting",)
# ElastiCache modifies or deletes a group only once it is available.
BUSY = ("creating", "modifying", "snapshotting")


def describe(module, client, group_id):
    try:
        groups = client.describe_replication_groups(ReplicationGroupId=group_id, aws_retry=True)["ReplicationGroups"]
    except is_boto3_error_code(NOT_FOUND):
        return None
    except (ClientError, BotoCoreError) as error:  # pylint: disable=duplicate-except
        module.fail_json_aws(error, msg=f"Could not read replication group {group_id}")
    return groups[0] if groups else None


def security_groups_of(module, client, group):
    """The security groups of the group's first member (the API returns them per cache cluster only)."""
    members = group.get("MemberClusters") or []
    if not members:
        return None
    try:
        clusters = client.describe_cache_clusters(CacheClusterId=members[0], aws_retry=True)["CacheClusters"]
    except is_boto3_error_code(["CacheClusterNotFound"]):
        return None  # moto lists no members of a replication group
    except (ClientError, BotoCoreError) as error:  # pylint: disable=duplicate-except
        module.fail_json_aws(error, msg=f"Could not read cache cluster {members[0]}")
    return sorted(g["SecurityGroupId"] for g in clusters[0].get("SecurityGroups", [])) if clusters else None


def current_tags(module, client, arn):
    try:
        tags = client.list_tags_for_resource(ResourceName=arn, aws_retry=True)["TagList"]
    except (ClientError, BotoCoreError) as error:
        module.fail_json_aws(error, msg=f"Could not read the tags of {arn}")
    return boto3_tag_list_to_ansible_dict(tags)


def comparable(module, client, group):
    """The group in this module's option names, for the diff and the comparison."""
    if group is None:
        return {}
    node_groups = group.get("NodeGroups") or [{}]
    members = node_groups[0].get("NodeGroupMembers") or []
    endpoint = node_groups[0].get("PrimaryEndpoint") or group.get("ConfigurationEndpoint") or {}
    result = {
        "id": group["ReplicationGroupId"],
        "arn": group.get("ARN"),
        "status": group.get("Status"),
        "description": group.get("Description", ""),
        "engine": group.get("Engine", "redis"),
        "node_type": group.get("CacheNodeType"),
        "replicas": max(len(members) or len(group.get("MemberClusters", [])), 1) - 1,
        "automatic_failover": group.get("AutomaticFailover") in ("enabled", "enabling"),
        "multi_az": group.get("MultiAZ") == "enabled",
        "transit_encryption": bool(group.get("TransitEncryptionEnabled")),
        "at_rest_encryption": bool(group.get("AtRestEncryptionEnabled")),
        "auth_token_enabled": bool(group.get("AuthTokenEnabled")),
        "port": endpoint.get("Port"),
        "primary_endpoint": {"address": endpoint.get("Address"), "port": endpoint.get("Port")},
        "member_clusters": list(group.get("MemberClusters", [])),
        "tags": current_tags(module, client, group["ARN"]) if group.get("ARN") else {},
    }
    security_groups = security_groups_of(module, client, group)
    if security_groups is not None:
        result["security_group_ids"] = security_groups
    return result


def wait_for(module, client, group_id, gone):
    deadline = time.monotonic() + module.params["wait_timeout"]
    while time.monotonic() < deadline:
        group = describe(module, client, group_id)
        if gone and group is None:
            return None
        if not gone and group is not None and group.get("Status") == "available":
            return group
        time.sleep(5)
    module.fail_json(msg=f"replication group {group_id} not {'gone' if gone else 'available'} after "
                         f"{module.params['wait_timeout']} s")


def create(module, client, params):
    request = {
        "ReplicationGroupId": params["id"],
        "ReplicationGroupDescription": params["description"] or params["id"],
        "Engine": params["engine"],
        "CacheNodeType": params["node_type"],
        "Port": params["port"],
        # One node group with ReplicasPerNodeGroup, not NumCacheClusters: the same group either way on AWS, and
        # moto makes one member only for NumCacheClusters=2.
        "NumNodeGroups": 1,
        "ReplicasPerNodeGroup": params["replicas"],
        "AutomaticFailoverEnabled": params["automatic_failover"],
        "MultiAZEnabled": params["multi_az"],
        "TransitEncryptionEnabled": params["transit_encryption"],
        "AtRestEncryptionEnabled": params["at_rest_encryption"],
        "SecurityGroupIds": params["security_group_ids"],
        "Tags": ansible_dict_to_boto3_tag_list(params["tags"]),
    }
    for option, key in (("engine_version", "EngineVersion"), ("subnet_group", "CacheSubnetGroupName"),
                        ("auth_token", "AuthToken")):
        if params[option]:
            request[key] = params[option]
    try:
        return client.create_replication_group(aws_retry=True, **request)["ReplicationGroup"]
    except (ClientError, BotoCoreError) as error:
        module.fail_json_aws(error, msg=f"Could not create replication group {params['id']}")


def modify(module, client, params, before):
    request = {"ReplicationGroupId": params["id"], "ApplyImmediately": True}
    after = wanted(params)
    keys = {"description": "ReplicationGroupDescription", "node_type": "CacheNodeType",
            "security_group_ids": "SecurityGroupIds",
            "automatic_failover": "AutomaticFailoverEnabled", "multi_az": "MultiAZEnabled"}
    for option in MODIFIABLE:
        if option in after and option in before and after[option] != before[option]:
            request[keys[option]] = after[option]
    if len(request) == 2:
        return
    try:
        client.modify_replication_group(aws_retry=True, **request)
    except (ClientError, BotoCoreError) as error:
        module.fail_json_aws(error, msg=f"Could not modify replication group {params['id']}")


def retag(module, client, arn, before_tags, tags):
    to_add, to_remove = compare_aws_tags(before_tags, tags, purge_tags=True)
    try:
        if to_remove:
            client.remove_tags_from_resource(ResourceName=arn, TagKeys=to_remove, aws_retry=True)
        if to_add:
            client.add_tags_to_resource(ResourceName=arn, Tags=ansible_dict_to_boto3_tag_list(to_add), aws_retry=True)
    except (ClientError, BotoCoreError) as error:
        module.fail_json_aws(error, msg=f"Could not tag {arn}")


def main():
    module = AnsibleAWSModule(
        argument_spec=dict(
            id=dict(type="str", required=True),
            state=dict(type="str", default="present", choices=["present", "absent"]),
            description=dict(type="str", default=""),
            engine=dict(type="str", default="redis", choices=["redis", "valkey"]),
            engine_version=dict(type="str"),
            node_type=dict(type="str"),
            port=dict(type="int", default=6379),
            replicas=dict(type="int", default=1),
            automatic_failover=dict(type="bool", default=True),
            multi_az=dict(type="bool", default=True),
            transit_encryption=dict(type="bool", default=True),
            at_rest_encryption=dict(type="bool", default=True),
            auth_token=dict(type="str", no_log=True),
            subnet_group=dict(type="str"),
            security_group_ids=dict(type="list", elements="str", default=[]),
            tags=dict(type="dict", default={}),
            wait=dict(type="bool", default=True),
            wait_timeout=dict(type="int", default=2400),
        ),
        supports_check_mode=True,
    )
    params = module.params
    errors = input_errors(params)
    if errors:
        module.fail_json(msg=f"replication group {params['id']}: " + "; ".join(errors))
    client = module.client("elasticache", retry_decorator=AWSRetry.jittered_backoff())
    found = describe(module, client, params["id"])
    leaving = found is not None and found.get("Status") in GONE
    group = None if leaving else found  # on its way out: absent for this module (a create waits until it is gone)
    if group is not None and group.get("Status") in BUSY and not module.check_mode:
        if not params["wait"]:
            # ElastiCache changes and deletes only an available group: left for a run that waits.
            module.exit_json(changed=False, replication_group=comparable(module, client, group),
                             msg=f"replication group {params['id']} is {group['Status']}: left for a run that waits")
        group = wait_for(module, client, params["id"], gone=False)
    before = comparable(module, client, group)

    if params["state"] == "absent":
        if group is not None and not module.check_mode:
            try:
                client.delete_replication_group(ReplicationGroupId=params["id"], aws_retry=True)
            except is_boto3_error_code(NOT_FOUND):
                pass  # removed meanwhile: the end state is the one asked for
            except (ClientError, BotoCoreError) as error:  # pylint: disable=duplicate-except
                module.fail_json_aws(error, msg=f"Could not delete replication group {params['id']}")
        if params["wait"] and (group is not None or leaving) and not module.check_mode:
            wait_for(module, client, params["id"], gone=True)  # also for a delete another run started
        module.exit_json(changed=group is not None, replication_group={}, diff={"before": before, "after": {}})

    after = wanted(params)
    if group is None:
        if module.check_mode:
            module.exit_json(changed=True, replication_group={}, diff={"before": {}, "after": after})
        if describe(module, client, params["id"]) is not None:
            wait_for(module, client, params["id"], gone=True)  # a group of this id is still being deleted
        create(module, client, params)
        created = wait_for(module, client, params["id"], gone=False) if params["wait"] else describe(
            module, client, params["id"])
        module.exit_json(changed=True, replication_group=comparable(module, client, created),
                         diff={"before": {}, "after": after})

    fixed = [key for key in changes(before, after) if key in FIXED]
    if fixed:
        module.fail_json(msg=f"replication group {params['id']}: {', '.join(fixed)} cannot change in place; "
                             "make a new group (or remove this one first)", replication_group=before)
    changed_keys = changes(before, after)
    if changed_keys and not module.check_mode:
        modify(module, client, params, before)
        if before["tags"] != after["tags"]:
            retag(module, client, before["arn"], before["tags"], after["tags"])
        if params["wait"]:
            wait_for(module, client, params["id"], gone=False)
    result = comparable(module, client, describe(module, client, params["id"])) if changed_keys and not \
        module.check_mode else before
    diff_before = {k: v for k, v in before.items() if k in after}
    module.exit_json(changed=bool(changed_keys), replication_group=result,
                     diff={"before": diff_before, "after": {k: v for k, v in after.items() if k in before}})


if __name__ == "__main__":
    main()
