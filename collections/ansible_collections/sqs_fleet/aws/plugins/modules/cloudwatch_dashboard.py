#!/usr/bin/python
# Why a project module: no collection manages CloudWatch dashboards.
from __future__ import annotations

DOCUMENTATION = r"""
module: cloudwatch_dashboard
short_description: Create, update or delete a CloudWatch dashboard
description:
  - Idempotent PutDashboard; the body is compared as JSON, not as text.
options:
  name: {description: Dashboard name., type: str, required: true}
  state: {description: Present or absent., type: str, default: present, choices: [present, absent]}
  body: {description: The dashboard body (widgets)., type: dict}
extends_documentation_fragment: [amazon.aws.common.modules, amazon.aws.region.modules, amazon.aws.boto3]
"""

RETURN = r"""
arn: {description: The dashboard ARN., returned: when present, type: str}
"""

import json

try:
    import botocore
except ImportError:
    pass  # AnsibleAWSModule reports a missing botocore

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule


def body_errors(body):
    """What PutDashboard would reject: every widget needs a type, a position-free size and properties."""
    errors = []
    for index, widget in enumerate(body.get("widgets", [])):
        if widget.get("type") not in ("metric", "text", "log", "alarm", "explorer", "custom"):
            errors.append(f"widget {index} has no valid type")
        if not widget.get("properties"):
            errors.append(f"widget {index} has no properties")
    return errors


def main():
    module = AnsibleAWSModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            state=dict(type="str", default="present", choices=["present", "absent"]),
            body=dict(type="dict"),
        ),
        required_if=[("state", "present", ["body"])],
        supports_check_mode=True,
    )
    name, body = module.params["name"], module.params["body"]
    client = module.client("cloudwatch")
    try:
        current = client.get_dashboard(DashboardName=name)
    except botocore.exceptions.ClientError as error:
        if error.response["Error"]["Code"] not in ("ResourceNotFound", "ResourceNotFoundException"):
            module.fail_json_aws(error, msg=f"Could not read dashboard {name}")
        current = None
    current_body = json.loads(current["DashboardBody"]) if current else None

    if module.params["state"] == "absent":
        if current and not module.check_mode:
            client.delete_dashboards(DashboardNames=[name])
        module.exit_json(changed=current is not None)

    errors = body_errors(body)
    if errors:
        module.fail_json(msg=f"dashboard {name} is not valid: " + "; ".join(errors))
    changed = current_body != body
    if changed and not module.check_mode:
        try:
            client.put_dashboard(DashboardName=name, DashboardBody=json.dumps(body, sort_keys=True))
            current = client.get_dashboard(DashboardName=name)
        except botocore.exceptions.ClientError as error:
            module.fail_json_aws(error, msg=f"Could not put dashboard {name}")
    module.exit_json(
        changed=changed,
        arn=(current or {}).get("DashboardArn"),
        diff={"before": current_body or {}, "after": body},
    )


if __name__ == "__main__":
    main()
