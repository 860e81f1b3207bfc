# Shared by the project's EC2 modules (route_table, security_group, vpc_endpoints): what amazon.aws's
# module_utils do not give. Tags are compared and applied with amazon.aws's tagging and ec2 helpers; its
# waiters test a resource's existence only, where these modules wait for routes, rules or tags as asked.
from __future__ import annotations

import time

from ansible_collections.amazon.aws.plugins.module_utils.tagging import boto3_tag_specifications

# AWS owns these tags (aws:cloudformation:..., aws:ec2launchtemplate:...): never removed, never compared
# (amazon.aws's compare_aws_tags leaves them alone too).
AWS_TAG_PREFIX = "aws:"


def tags_after(current, wanted):
    """The tags a resource ends with: the wanted ones, and AWS's own that it keeps."""
    return {**{key: value for key, value in current.items() if key.startswith(AWS_TAG_PREFIX)}, **wanted}


def tagged_at_creation(resource_type, tags):
    """The TagSpecifications argument of a Create call (amazon.aws's), none when there are no tags."""
    return {"TagSpecifications": boto3_tag_specifications(tags, [resource_type])} if tags else {}


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
