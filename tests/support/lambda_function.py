"""A Lambda function on the test emulator for the modules that configure one (the emulator stores functions
and runs none)."""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any


def lambda_function(aws: Any, name: str) -> str:
    """The function `name` (and its role of the same name), made unless it exists."""
    client = aws("lambda")
    if name not in {f["FunctionName"] for f in client.list_functions()["Functions"]}:
        iam = aws("iam")
        trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                          "Principal": {"Service": "lambda.amazonaws.com"}}]}
        try:
            role = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
        except iam.exceptions.EntityAlreadyExistsException:
            role = iam.get_role(RoleName=name)["Role"]["Arn"]
        code = io.BytesIO()
        with zipfile.ZipFile(code, "w") as archive:
            archive.writestr("index.py", "def handler(event, context):\n    return event\n")
        client.create_function(FunctionName=name, Runtime="python3.12", Role=role, Handler="index.handler",
                               Code={"ZipFile": code.getvalue()})
    return name
