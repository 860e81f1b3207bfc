#!/usr/bin/python
# Why a project module: amazon.aws.lambda has no option for a function's reserved concurrency, and no
# collection has a module for PutFunctionConcurrency.
from __future__ import annotations

DOCUMENTATION = r"""
module: lambda_concurrency
short_description: Set or remove a Lambda function's reserved concurrency
version_added: 1.1.0
author: The sqs-fleet authors
description:
  - Idempotent PutFunctionConcurrency / DeleteFunctionConcurrency, compared with GetFunctionConcurrency.
  - A reserved concurrency of 1 keeps a scheduled function from ever running twice at once.
  - Lambda refuses a reservation that would leave the account fewer than 100 unreserved concurrent executions
    (see O(if_account_allows)).
options:
  function_name:
    description: Name or ARN of the function.
    type: str
    required: true
  reserved:
    description: Concurrent executions reserved for (and the most allowed to) the function; omit to remove the limit.
    type: int
  if_account_allows:
    description:
      - Reserve only where the account allows it. Lambda refuses a reservation that leaves the account fewer than
        100 unreserved concurrent executions (and a new account's quota can be 10). With this set, the account's
        settings (GetAccountSettings) are read first; a reservation that would leave fewer is not made, with a
        warning, and the function's reservation stays as it is.
    type: bool
    default: false
    version_added: 1.6.0
notes:
  - Supports check mode and diff mode.
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: One execution at a time
  sqs_fleet.aws.lambda_concurrency:
    function_name: backlog-publisher
    reserved: 1

- name: One execution at a time where the account's quota allows a reservation, else a warning
  sqs_fleet.aws.lambda_concurrency:
    function_name: backlog-publisher
    reserved: 1
    if_account_allows: true

- name: No reservation
  sqs_fleet.aws.lambda_concurrency:
    function_name: backlog-publisher
"""

RETURN = r"""
reserved:
  description: The reserved concurrency after the run (null when none).
  returned: always
  type: int
  sample: 1
account:
  description: The account's concurrency (AccountLimit of GetAccountSettings) as read.
  returned: when O(if_account_allows) is set and a reservation was asked for
  type: dict
  sample: {"ConcurrentExecutions": 1000, "UnreservedConcurrentExecutions": 1000}
"""

# Lambda keeps at least this many concurrent executions unreserved in an account (PutFunctionConcurrency).
UNRESERVED_MINIMUM = 100

try:
    from botocore.exceptions import BotoCoreError, ClientError
except ImportError:
    pass  # AnsibleAWSModule reports a missing botocore

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
from ansible_collections.amazon.aws.plugins.module_utils.retries import AWSRetry


def main():
    module = AnsibleAWSModule(
        argument_spec=dict(function_name=dict(type="str", required=True), reserved=dict(type="int"),
                           if_account_allows=dict(type="bool", default=False)),
        supports_check_mode=True,
    )
    name, reserved = module.params["function_name"], module.params["reserved"]
    if reserved is not None and reserved < 0:
        module.fail_json(msg=f"reserved {reserved}: must be 0 or more")
    client = module.client("lambda", retry_decorator=AWSRetry.jittered_backoff())
    try:
        current = client.get_function_concurrency(FunctionName=name, aws_retry=True).get(
            "ReservedConcurrentExecutions")
    except (ClientError, BotoCoreError) as error:
        module.fail_json_aws(error, msg=f"Could not read the concurrency of function {name}")
    changed = current != reserved
    extra = {}
    if changed and reserved is not None and module.params["if_account_allows"]:
        try:
            limits = client.get_account_settings(aws_retry=True)["AccountLimit"]
        except (ClientError, BotoCoreError) as error:
            module.fail_json_aws(error, msg="Could not read the account's Lambda settings")
        extra["account"] = {k: limits.get(k) for k in ("ConcurrentExecutions", "UnreservedConcurrentExecutions")}
        left = limits["UnreservedConcurrentExecutions"] + (current or 0) - reserved
        if left < UNRESERVED_MINIMUM:
            module.warn(
                f"No reserved concurrency of {reserved} for function {name}: the account allows "
                f"{limits['ConcurrentExecutions']} concurrent executions, {limits['UnreservedConcurrentExecutions']} "
                f"of them unreserved, and Lambda keeps at least {UNRESERVED_MINIMUM} unreserved ({left} would be "
                "left). Invocations of the function may overlap; a higher quota of Lambda concurrent executions "
                "(Service Quotas) allows the reservation.")
            module.exit_json(changed=False, reserved=current, **extra)
    if changed and not module.check_mode:
        try:
            if reserved is None:
                client.delete_function_concurrency(FunctionName=name, aws_retry=True)
            else:
                client.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=reserved,
                                                aws_retry=True)
        except (ClientError, BotoCoreError) as error:
            module.fail_json_aws(error, msg=f"Could not set the concurrency of function {name}")
    module.exit_json(changed=changed, reserved=reserved if changed and not module.check_mode else current, **extra,
                     diff={"before": {"reserved": current}, "after": {"reserved": reserved}})


if __name__ == "__main__":
    main()
