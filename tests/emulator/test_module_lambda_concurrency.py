"""sqs_fleet.aws.lambda_concurrency on the emulator (which stores functions and runs none): set, rerun without
change, check mode, change, remove."""

from __future__ import annotations

import io
import json
import zipfile

from module_results import ok

NAME = "modules-concurrency"


def function(aws) -> str:
    client = aws("lambda")
    if NAME not in {f["FunctionName"] for f in client.list_functions()["Functions"]}:
        iam = aws("iam")
        trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                          "Principal": {"Service": "lambda.amazonaws.com"}}]}
        try:
            role = iam.create_role(RoleName=NAME, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
        except iam.exceptions.EntityAlreadyExistsException:
            role = iam.get_role(RoleName=NAME)["Role"]["Arn"]
        code = io.BytesIO()
        with zipfile.ZipFile(code, "w") as archive:
            archive.writestr("index.py", "def handler(event, context):\n    return event\n")
        client.create_function(FunctionName=NAME, Runtime="python3.12", Role=role, Handler="index.handler",
                               Code={"ZipFile": code.getvalue()})
    return NAME


def reserved(aws) -> int | None:
    value: int | None = aws("lambda").get_function_concurrency(FunctionName=NAME).get("ReservedConcurrentExecutions")
    return value


def test_reserved_concurrency(run_module, aws):
    one = {"function_name": function(aws), "reserved": 1}
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
    """The emulator's account allows 1000 concurrent executions; Lambda keeps 100 of them unreserved."""
    name = function(aws)
    if reserved(aws) is not None:
        aws("lambda").delete_function_concurrency(FunctionName=NAME)
    too_many = {"function_name": name, "reserved": 901}

    refused = run_module("lambda_concurrency", too_many)
    assert refused.get("failed"), refused
    assert "decreases account's UnreservedConcurrentExecution below its minimum value" in json.dumps(refused)
    assert reserved(aws) is None

    for options in ((), ("--check",)):
        skipped = ok(run_module("lambda_concurrency", dict(too_many, if_account_allows=True), *options))
        assert not skipped["changed"] and skipped["reserved"] is None
        assert skipped["account"] == {"ConcurrentExecutions": 1000, "UnreservedConcurrentExecutions": 1000}
        [warning] = skipped["warnings"]
        assert "No reserved concurrency of 901" in warning and "99 would be left" in warning
    assert reserved(aws) is None

    allowed = ok(run_module("lambda_concurrency", dict(too_many, reserved=900, if_account_allows=True)))
    assert allowed["changed"] and reserved(aws) == 900 and not allowed.get("warnings")
    assert aws("lambda").get_account_settings()["AccountLimit"]["UnreservedConcurrentExecutions"] == 100
    # Its own reservation counts as available to it: 900 -> 901 would leave 99, refused; 900 -> 1 is fine.
    assert not ok(run_module("lambda_concurrency", dict(too_many, if_account_allows=True)))["changed"]
    assert ok(run_module("lambda_concurrency", {"function_name": name, "reserved": 1, "if_account_allows": True}))[
        "changed"] and reserved(aws) == 1
    aws("lambda").delete_function_concurrency(FunctionName=NAME)
