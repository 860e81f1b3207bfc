"""sqs_fleet.aws.lambda_concurrency on the emulator (which stores functions and runs none): set, rerun without
change, check mode, change, remove."""

from __future__ import annotations

import json

from support.ansible_runs import ok
from support.lambda_function import lambda_function

NAME = "modules-concurrency"


def reserved(aws) -> int | None:
    value: int | None = aws("lambda").get_function_concurrency(FunctionName=NAME).get("ReservedConcurrentExecutions")
    return value


def test_reserved_concurrency(run_module, aws):
    one = {"function_name": lambda_function(aws, NAME), "reserved": 1}
    if reserved(aws) is not None:
        aws("lambda").delete_function_concurrency(FunctionName=NAME)

    planned = ok(run_module("lambda_concurrency", one, "--check"))
    assert planned["changed"] and planned["diff"] == {"before": {"reserved": None}, "after": {"reserved": 1}}
    assert reserved(aws) is None, "check mode set it"
    assert ok(run_module("lambda_concurrency", one))["changed"] and reserved(aws) == 1
    assert not ok(run_module("lambda_concurrency", one))["changed"]
    assert not ok(run_module("lambda_concurrency", one, "--check"))["changed"]

    assert ok(run_module("lambda_concurrency", dict(one, reserved=2)))["changed"] and reserved(aws) == 2
    assert ok(run_module("lambda_concurrency", {"function_name": NAME}))["changed"] and reserved(aws) is None
    assert not ok(run_module("lambda_concurrency", {"function_name": NAME}))["changed"]


def test_a_reservation_the_account_cannot_give_is_refused_or_skipped_with_a_warning(run_module, aws):
    """Lambda keeps 100 of the account's concurrent executions unreserved (the emulator's account allows 1000;
    a stack another test left may hold some already)."""
    name = lambda_function(aws, NAME)
    if reserved(aws) is not None:
        aws("lambda").delete_function_concurrency(FunctionName=NAME)
    account = aws("lambda").get_account_settings()["AccountLimit"]
    account = {key: account[key] for key in ("ConcurrentExecutions", "UnreservedConcurrentExecutions")}
    asked = account["UnreservedConcurrentExecutions"] - 99
    too_many = {"function_name": name, "reserved": asked}

    refused = run_module("lambda_concurrency", too_many)
    assert refused.get("failed"), refused
    assert "decreases account's UnreservedConcurrentExecution below its minimum value" in json.dumps(refused)
    assert reserved(aws) is None

    for options in ((), ("--check",)):
        skipped = ok(run_module("lambda_concurrency", dict(too_many, if_account_allows=True), *options))
        assert not skipped["changed"] and skipped["reserved"] is None
        assert skipped["account"] == account
        [warning] = skipped["warnings"]
        assert f"No reserved concurrency of {asked}" in warning and "99 would be left" in warning
    assert reserved(aws) is None

    allowed = ok(run_module("lambda_concurrency", dict(too_many, reserved=900, if_account_allows=True)))
    assert allowed["changed"] and reserved(aws) == 900 and not allowed.get("warnings")
    assert aws("lambda").get_account_settings()["AccountLimit"]["UnreservedConcurrentExecutions"] == 100
    # Its own reservation counts as available to it: 900 -> 901 would leave 99, refused; 900 -> 1 is fine.
    assert not ok(run_module("lambda_concurrency", dict(too_many, if_account_allows=True)))["changed"]
    assert ok(run_module("lambda_concurrency", {"function_name": name, "reserved": 1, "if_account_allows": True}))[
        "changed"] and reserved(aws) == 1
    aws("lambda").delete_function_concurrency(FunctionName=NAME)
