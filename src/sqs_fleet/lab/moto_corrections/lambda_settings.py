"""Lambda's account settings: the concurrency floor, and a function's async invoke configuration.

- Reserved concurrency: PutFunctionConcurrency is refused, with AWS's error, when it would leave the account's
  unreserved concurrency below 100; the account's concurrency limit is SQS_FLEET_LAMBDA_ACCOUNT_CONCURRENCY
  (default 1000, AWS's default quota; new accounts may have 10). GetAccountSettings (not in moto) returns
  AccountLimit and AccountUsage as AWS does.
- PutFunctionEventInvokeConfig replaces a function's async invoke configuration (moto appended it, and Get
  returned the first one ever put); UpdateFunctionEventInvokeConfig changes only the settings it names.
"""

from __future__ import annotations

import json
import os
from typing import Any

from moto.awslambda import urls as lambda_urls
from moto.awslambda.exceptions import InvalidParameterValueException
from moto.awslambda.models import EventInvokeConfig, LambdaBackend
from moto.awslambda.responses import LambdaResponse
from moto.core.utils import iso_8601_datetime_with_nanoseconds

from sqs_fleet.lab.moto_corrections.patch import Patch

# Private names of moto this module reads (tests/unit/test_patched_dependencies.py checks the list).
PRIVATE_NAMES: dict[str, str] = {}

# Lambda: the account's concurrency, and the floor of unreserved concurrency

# AWS's default quota of concurrent executions; a new account may start at 10.
ACCOUNT_CONCURRENCY_VARIABLE = "SQS_FLEET_LAMBDA_ACCOUNT_CONCURRENCY"
UNRESERVED_MINIMUM = 100


def account_concurrency() -> int:
    return int(os.environ.get(ACCOUNT_CONCURRENCY_VARIABLE, "1000"))


def reserved_by_others(backend: LambdaBackend, function_name: str | None) -> int:
    return sum(int(f.reserved_concurrency) for f in backend.list_functions()
               if f.reserved_concurrency is not None and f.function_name != function_name)


_put_function_concurrency = LambdaBackend.put_function_concurrency


def put_function_concurrency(self: LambdaBackend, function_name: str, reserved_concurrency: str) -> str:
    name = self.get_function(function_name).function_name
    unreserved = account_concurrency() - reserved_by_others(self, name) - int(reserved_concurrency)
    if unreserved < UNRESERVED_MINIMUM:
        raise InvalidParameterValueException(
            "Specified ReservedConcurrentExecutions for function decreases account's UnreservedConcurrentExecution "
            f"below its minimum value of [{UNRESERVED_MINIMUM}].")
    return _put_function_concurrency(self, function_name, reserved_concurrency)


def get_account_settings(self: LambdaResponse) -> tuple[int, dict[str, str], str]:
    backend = self.backend
    functions = list(backend.list_functions())
    limit = account_concurrency()
    settings = {
        "AccountLimit": {"TotalCodeSize": 80530636800, "CodeSizeUnzipped": 262144000, "CodeSizeZipped": 52428800,
                         "ConcurrentExecutions": limit,
                         "UnreservedConcurrentExecutions": limit - reserved_by_others(backend, None)},
        "AccountUsage": {"TotalCodeSize": sum(int(getattr(f, "code_size", 0) or 0) for f in functions),
                         "FunctionCount": len(functions)},
    }
    return 200, {}, json.dumps(settings)




# Lambda: PutFunctionEventInvokeConfig replaces, UpdateFunctionEventInvokeConfig merges


def put_function_event_invoke_config(self: LambdaBackend, function_name: str,
                                     config: dict[str, Any]) -> dict[str, Any]:
    function = self.get_function(function_name)
    settings = {k: v for k, v in config.items() if k in ("MaximumRetryAttempts", "MaximumEventAgeInSeconds",
                                                           "DestinationConfig")}
    made = EventInvokeConfig(function.function_arn, iso_8601_datetime_with_nanoseconds(), settings)
    function.event_invoke_config = [made]
    return made.response()


def update_function_event_invoke_config(self: LambdaBackend, function_name: str,
                                        config: dict[str, Any]) -> dict[str, Any]:
    function = self.get_function(function_name)
    current = function.event_invoke_config[0].config if function.event_invoke_config else {}
    return put_function_event_invoke_config(self, function_name, {**current, **config})


PATCHES = [
    Patch(LambdaBackend, "put_function_concurrency", put_function_concurrency),
    Patch(LambdaResponse, "get_account_settings", get_account_settings),
    Patch(lambda_urls.url_paths, r"{0}/(?P<api_version>[^/]+)/account-settings/?$", LambdaResponse.dispatch, item=True),
    Patch(LambdaBackend, "put_function_event_invoke_config", put_function_event_invoke_config),
    Patch(LambdaBackend, "update_function_event_invoke_config", update_function_event_invoke_config),
]
