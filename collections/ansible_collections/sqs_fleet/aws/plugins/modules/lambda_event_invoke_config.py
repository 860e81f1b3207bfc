#!/usr/bin/python
# Why a project module: amazon.aws.lambda has no option for a function's asynchronous invocation settings, and no
# collection has a module for PutFunctionEventInvokeConfig.
from __future__ import annotations

DOCUMENTATION = r"""
module: lambda_event_invoke_config
short_description: Set or remove how Lambda retries and keeps a function's asynchronous invocations
version_added: 1.6.0
author: The sqs-fleet authors
description:
  - Idempotent PutFunctionEventInvokeConfig / DeleteFunctionEventInvokeConfig of the unqualified function,
    compared with GetFunctionEventInvokeConfig.
  - Without it Lambda retries a failed asynchronous invocation twice and keeps an event it cannot run yet (a
    throttled one) up to 6 hours. A scheduled function whose next invocation supersedes this one wants neither.
options:
  function_name:
    description: Name or ARN of the function.
    type: str
    required: true
  maximum_retry_attempts:
    description: Retries of a failed asynchronous invocation (0 to 2); omitted, Lambda's default (2).
    type: int
  maximum_event_age:
    description: Seconds Lambda keeps an event before it discards it (60 to 21600); omitted, Lambda's default (6 h).
    type: int
  state:
    description: C(present) sets exactly these settings (no destinations); C(absent) removes the configuration.
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
- name: No retry, and an event older than a minute is dropped (the next scheduled invocation replaces it)
  sqs_fleet.aws.lambda_event_invoke_config:
    function_name: backlog-publisher
    maximum_retry_attempts: 0
    maximum_event_age: 60
"""

RETURN = r"""
config:
  description: The settings after the run (empty when there is no configuration).
  returned: always
  type: dict
  sample: {"MaximumRetryAttempts": 0, "MaximumEventAgeInSeconds": 60}
"""

try:
    from botocore.exceptions import BotoCoreError, ClientError
except ImportError:
    pass  # AnsibleAWSModule reports a missing botocore

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
from ansible_collections.amazon.aws.plugins.module_utils.retries import AWSRetry

# The settings this module manages, and what each is called in the API.
SETTINGS = {"maximum_retry_attempts": "MaximumRetryAttempts", "maximum_event_age": "MaximumEventAgeInSeconds"}
BOUNDS = {"maximum_retry_attempts": (0, 2), "maximum_event_age": (60, 21600)}


def current_config(client, name):
    try:
        found = client.get_function_event_invoke_config(FunctionName=name, aws_retry=True)
    except ClientError as error:
        if error.response["Error"]["Code"] != "ResourceNotFoundException":
            raise
        # No configuration, or no function (None): GetFunctionConfiguration tells the two apart.
        try:
            client.get_function_configuration(FunctionName=name, aws_retry=True)
        except ClientError as missing:
            if missing.response["Error"]["Code"] == "ResourceNotFoundException":
                return None
            raise
        return {}
    current = {key: found[key] for key in SETTINGS.values() if key in found}
    destinations = found.get("DestinationConfig") or {}
    if any((destinations.get(kind) or {}).get("Destination") for kind in ("OnSuccess", "OnFailure")):
        current["DestinationConfig"] = destinations
    return current


def main():
    module = AnsibleAWSModule(
        argument_spec=dict(function_name=dict(type="str", required=True),
                           maximum_retry_attempts=dict(type="int"), maximum_event_age=dict(type="int"),
                           state=dict(type="str", choices=["present", "absent"], default="present")),
        supports_check_mode=True,
    )
    name, state = module.params["function_name"], module.params["state"]
    for option, (lowest, highest) in BOUNDS.items():
        value = module.params[option]
        if value is not None and not lowest <= value <= highest:
            module.fail_json(msg=f"{option} {value}: Lambda allows {lowest} to {highest}")
    wanted = {} if state == "absent" else {
        SETTINGS[option]: module.params[option] for option in SETTINGS if module.params[option] is not None}

    client = module.client("lambda", retry_decorator=AWSRetry.jittered_backoff())
    try:
        current = current_config(client, name)
    except (ClientError, BotoCoreError) as error:
        module.fail_json_aws(error, msg=f"Could not read the asynchronous invocation settings of function {name}")
    if current is None:
        if state == "present":
            module.fail_json(msg=f"Function {name} does not exist")
        module.exit_json(changed=False, config={})
    changed = current != wanted
    if changed and not module.check_mode:
        try:
            if state == "absent":
                client.delete_function_event_invoke_config(FunctionName=name, aws_retry=True)
            else:
                client.put_function_event_invoke_config(FunctionName=name, aws_retry=True, **wanted)
        except (ClientError, BotoCoreError) as error:
            module.fail_json_aws(error, msg=f"Could not set the asynchronous invocation settings of function {name}")
    module.exit_json(changed=changed, config=wanted if changed and not module.check_mode else current,
                     diff={"before": current, "after": wanted})


if __name__ == "__main__":
    main()
