"""sqs_fleet.aws.lambda_event_invoke_config on the emulator: set, read back with GetFunctionEventInvokeConfig,
rerun without change, check mode, change (a put replaces the whole configuration), remove; Lambda's bounds."""

from __future__ import annotations

from support.ansible_runs import ok
from support.lambda_function import lambda_function

NAME = "modules-event-invoke-config"
KEYS = ("MaximumRetryAttempts", "MaximumEventAgeInSeconds")


def settings(aws, name: str) -> dict[str, int] | None:
    client = aws("lambda")
    try:
        found = client.get_function_event_invoke_config(FunctionName=name)
    except client.exceptions.ResourceNotFoundException:
        return None
    return {k: found[k] for k in KEYS if k in found}


def test_async_invoke_settings(run_module, aws):
    name = lambda_function(aws, NAME)
    ok(run_module("lambda_event_invoke_config", {"function_name": name, "state": "absent"}))
    wanted = {"function_name": name, "maximum_retry_attempts": 0, "maximum_event_age": 60}

    planned = ok(run_module("lambda_event_invoke_config", wanted, "--check"))
    assert planned["changed"] and planned["diff"] == {
        "before": {}, "after": {"MaximumRetryAttempts": 0, "MaximumEventAgeInSeconds": 60}}
    assert settings(aws, name) is None, "check mode set it"
    assert ok(run_module("lambda_event_invoke_config", wanted))["changed"]
    assert settings(aws, name) == {"MaximumRetryAttempts": 0, "MaximumEventAgeInSeconds": 60}
    assert not ok(run_module("lambda_event_invoke_config", wanted))["changed"]
    assert not ok(run_module("lambda_event_invoke_config", wanted, "--check"))["changed"]

    # A put replaces: the event age not named any more goes back to Lambda's default (absent from the settings).
    assert ok(run_module("lambda_event_invoke_config", {"function_name": name, "maximum_retry_attempts": 1}))["changed"]
    assert settings(aws, name) == {"MaximumRetryAttempts": 1}

    for bad, why in ((dict(wanted, maximum_retry_attempts=3), "maximum_retry_attempts 3: Lambda allows 0 to 2"),
                     (dict(wanted, maximum_event_age=30), "maximum_event_age 30: Lambda allows 60 to 21600")):
        failed = run_module("lambda_event_invoke_config", bad)
        assert failed.get("failed") and why in failed["msg"]
    assert settings(aws, name) == {"MaximumRetryAttempts": 1}

    assert ok(run_module("lambda_event_invoke_config", {"function_name": name, "state": "absent"}))["changed"]
    assert settings(aws, name) is None
    assert not ok(run_module("lambda_event_invoke_config", {"function_name": name, "state": "absent"}))["changed"]
    missing = run_module("lambda_event_invoke_config", dict(wanted, function_name="no-such-function"))
    assert missing.get("failed") and "does not exist" in missing["msg"]
