# Shared by the project's EC2 modules (route_table, security_group): tags as a dict and the calls that make
# them so, and a bounded wait on a condition AWS makes true eventually (never a fixed sleep).
from __future__ import annotations

import time

# AWS owns these tags (aws:cloudformation:..., aws:ec2launchtemplate:...): never removed, never compared.
AWS_TAG_PREFIX = "aws:"


def tag_dict(tag_list):
    """{key: value} from EC2's [{"Key": ..., "Value": ...}]."""
    return {tag["Key"]: tag["Value"] for tag in tag_list or []}


def tag_changes(current, wanted):
    """(tags to set, keys to remove) to turn the current tags into the wanted ones, AWS's own left alone."""
    to_set = {key: value for key, value in wanted.items() if current.get(key) != value}
    to_remove = sorted(key for key in current if key not in wanted and not key.startswith(AWS_TAG_PREFIX))
    return to_set, to_remove


def tags_after(current, wanted):
    """The tags a resource ends with: the wanted ones, and AWS's own that it keeps."""
    return {**{key: value for key, value in current.items() if key.startswith(AWS_TAG_PREFIX)}, **wanted}


def apply_tags(client, resource_id, to_set, to_remove):
    if to_set:
        client.create_tags(Resources=[resource_id], Tags=[{"Key": k, "Value": v} for k, v in to_set.items()],
                           aws_retry=True)
    if to_remove:
        client.delete_tags(Resources=[resource_id], Tags=[{"Key": k} for k in to_remove], aws_retry=True)


def tagged_at_creation(resource_type, tags):
    """The TagSpecifications argument of a Create call, none when there are no tags."""
    if not tags:
        return {}
    return {"TagSpecifications": [{"ResourceType": resource_type,
                                   "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}]}


def wait_for(read, done, timeout, delay=0.5, max_delay=5.0):
    """(value, True) as soon as done(read()) holds, (last value, False) once timeout seconds have passed.

    The first read happens at once, so a condition that already holds costs one call and no wait; after
    that the delay doubles up to max_delay. read() may return None (not describable yet)."""
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if done(value):
            return value, True
        left = deadline - time.monotonic()
        if left <= 0:
            return value, False
        time.sleep(min(delay, left))
        delay = min(delay * 2, max_delay)
