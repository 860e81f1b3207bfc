#!/usr/bin/python
# Why a project module: no collection manages CloudWatch dashboards.
from __future__ import annotations

DOCUMENTATION = r"""
module: cloudwatch_dashboard
short_description: Create, update or delete a CloudWatch dashboard
version_added: 1.0.0
author: The sqs-fleet authors
description:
  - Idempotent PutDashboard; the body is compared as JSON, not as text.
  - Checks that every widget has a valid type and properties before any call.
options:
  name:
    description: Dashboard name.
    type: str
    required: true
  state:
    description: Whether the dashboard should exist.
    type: str
    default: present
    choices: [present, absent]
  body:
    description:
      - The dashboard body (C(widgets), optionally C(start), C(periodOverride)...).
      - Required when I(state=present).
    type: dict
notes:
  - Supports check mode and diff mode.
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: A dashboard with the depth of a queue
  sqs_fleet.aws.cloudwatch_dashboard:
    name: jobs
    body:
      widgets:
        - type: metric
          x: 0
          y: 0
          width: 12
          height: 6
          properties:
            title: Messages visible
            region: eu-west-1
            metrics: [[AWS/SQS, ApproximateNumberOfMessagesVisible, QueueName, jobs]]

- name: Remove a dashboard
  sqs_fleet.aws.cloudwatch_dashboard:
    name: jobs
    state: absent
"""

RETURN = r"""
arn:
  description: The dashboard ARN.
  returned: when I(state=present), null in check mode before the dashboard exists
  type: str
  sample: arn:aws:cloudwatch::123456789012:dashboard/jobs
"""

import json

try:
    from botocore.exceptions import BotoCoreError, ClientError
except ImportError:
    pass  # AnsibleAWSModule reports a missing botocore

from ansible_collections.amazon.aws.plugins.module_utils.botocore import is_boto3_error_code
from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
from ansible_collections.amazon.aws.plugins.module_utils.retries import AWSRetry


def body_errors(body):
    """What PutDashboard would reject: every widget needs a type, a position-free size and properties."""
    errors = []
    for index, widget in enumerate(body.get("widgets", [])):
        if widget.get("type") not in ("metric", "text", "log", "alarm", "explorer", "custom"):
            errors.append(f"widget {index} has no valid type")
        if not widget.get("properties"):
            errors.append(f"widget {index} has no properties")
    return errors


def describe(module, client, name):
    try:
        return client.get_dashboard(DashboardName=name, aws_retry=True)
    except is_boto3_error_code(["ResourceNotFound", "ResourceNotFoundException"]):
        return None
    except (ClientError, BotoCoreError) as error:  # pylint: disable=duplicate-except
        module.fail_json_aws(error, msg=f"Could not read dashboard {name}")


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
    client = module.client("cloudwatch", retry_decorator=AWSRetry.jittered_backoff())
    current = describe(module, client, name)
    current_body = json.loads(current["DashboardBody"]) if current else None

    if module.params["state"] == "absent":
        if current and not module.check_mode:
            try:
                client.delete_dashboards(DashboardNames=[name], aws_retry=True)
            except is_boto3_error_code(["ResourceNotFound", "ResourceNotFoundException"]):
                pass  # removed meanwhile: the end state is the one asked for
            except (ClientError, BotoCoreError) as error:  # pylint: disable=duplicate-except
                module.fail_json_aws(error, msg=f"Could not delete dashboard {name}")
        module.exit_json(changed=current is not None, diff={"before": current_body or {}, "after": {}})

    errors = body_errors(body)
    if errors:
        module.fail_json(msg=f"dashboard {name} is not valid: " + "; ".join(errors))
    changed = current_body != body
    if changed and not module.check_mode:
        try:
            client.put_dashboard(DashboardName=name, DashboardBody=json.dumps(body, sort_keys=True), aws_retry=True)
        except (ClientError, BotoCoreError) as error:
            module.fail_json_aws(error, msg=f"Could not put dashboard {name}")
        current = describe(module, client, name)
    module.exit_json(
        changed=changed,
        arn=(current or {}).get("DashboardArn"),
        diff={"before": current_body or {}, "after": body},
    )


if __name__ == "__main__":
    main()
