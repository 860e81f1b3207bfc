"""The one way the controller-side tools make AWS clients, on AWS or on an emulator.

Region, endpoint and credentials come from an environment mapping (the process's own by default), so a
test or the lab passes an emulator's environment and gets clients for it. There is no default region: on
AWS a missing region is an error, never a silent us-east-1.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

import boto3
from botocore.config import Config

# Pinned retry behaviour: standard mode, 5 attempts in all (throttling and transient errors only).
RETRIES = Config(retries={"mode": "standard", "total_max_attempts": 5})


class MissingRegion(RuntimeError):
    """Neither AWS_REGION nor AWS_DEFAULT_REGION is set."""


def region(environment: Mapping[str, str] | None = None) -> str:
    env = os.environ if environment is None else environment
    value = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    if not value:
        raise MissingRegion("no AWS region: set AWS_REGION (or AWS_DEFAULT_REGION)")
    return value


def client(service: str, environment: Mapping[str, str] | None = None) -> Any:
    """A boto3 client for `service`, configured from `environment` (default: this process's)."""
    env = os.environ if environment is None else environment
    return boto3.client(
        service,
        region_name=region(env),
        endpoint_url=env.get("AWS_ENDPOINT_URL") or None,
        # Explicit keys only when the caller gave an environment (an emulator's); else the standard chain.
        aws_access_key_id=None if environment is None else env.get("AWS_ACCESS_KEY_ID"),
        aws_secret_access_key=None if environment is None else env.get("AWS_SECRET_ACCESS_KEY"),
        config=RETRIES,
    )


def clients(environment: Mapping[str, str] | None = None) -> Callable[[str], Any]:
    """A factory bound to one environment: clients('sqs'), clients('autoscaling') ..."""
    frozen = None if environment is None else dict(environment)
    return lambda service: client(service, frozen)
