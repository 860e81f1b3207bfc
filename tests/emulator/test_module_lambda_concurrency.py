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
