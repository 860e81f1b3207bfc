# The elasticache_replication_group module's pure decisions: what the options ask for, which input ElastiCache
# refuses (before any call), and what differs from the group AWS describes.
from __future__ import annotations

import re

from ansible_collections.sqs_fleet.aws.plugins.module_utils.aws_rules import auth_token_errors

ID_PATTERN = re.compile(r"^[a-z](?!.*--)[a-z0-9-]{0,39}(?<!-)$")
# What ModifyReplicationGroup changes in place, by this module's option name.
# (No engine version: DescribeReplicationGroups does not return it; it is set at creation.)
MODIFIABLE = ("description", "node_type", "security_group_ids", "automatic_failover", "multi_az")
FIXED = ("port", "subnet_group", "at_rest_encryption", "transit_encryption", "replicas", "engine")


def wanted(params):
    result = {
        "id": params["id"],
        "description": params["description"],
        "engine": params["engine"],
        "node_type": params["node_type"],
        "replicas": params["replicas"],
        "automatic_failover": params["automatic_failover"],
        "multi_az": params["multi_az"],
        "transit_encryption": params["transit_encryption"],
        "at_rest_encryption": params["at_rest_encryption"],
        "auth_token_enabled": bool(params["auth_token"]),
        "port": params["port"],
        "security_group_ids": sorted(params["security_group_ids"]),
        "tags": params["tags"],
    }
    if params["subnet_group"]:
        result["subnet_group"] = params["subnet_group"]
    return result


def input_errors(params):
    errors = []
    if not ID_PATTERN.match(params["id"]):
        errors.append(f"id {params['id']!r}: 1-40 lower-case letters, digits and single hyphens, starting with a "
                      "letter and not ending with a hyphen")
    if params["state"] == "absent":
        return errors
    if not params["node_type"]:
        errors.append("node_type is required with state=present")
    if not 0 <= params["replicas"] <= 5:
        errors.append(f"replicas {params['replicas']}: 0 to 5")
    if params["automatic_failover"] and params["replicas"] < 1:
        errors.append("automatic_failover needs replicas >= 1")
    if params["multi_az"] and not params["automatic_failover"]:
        errors.append("multi_az needs automatic_failover")
    if params["auth_token"] is not None:
        errors += [f"auth_token: {error}" for error in auth_token_errors(params["auth_token"],
                                                                          params["transit_encryption"])]
    return errors


def changes(before, after):
    """Option names whose wanted value differs from the group's (those AWS reports)."""
    return [key for key, value in after.items() if key in before and before[key] != value]
