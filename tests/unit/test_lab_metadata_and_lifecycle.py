"""The lab's stand-ins for what the emulator lacks, held to AWS's documented behaviour: IMDSv2's token flow
and items (read through botocore's own metadata client, as a node's tools read it), and lifecycle actions
(completed by token or instance id, heartbeats, default results on timeout)."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest
from botocore.utils import IMDSFetcher

from sqs_fleet.lab.lifecycle import LifecycleActions, LifecycleError
from sqs_fleet.lab.metadata import Instance, MetadataService

HOOK = {"LifecycleHookName": "drain", "LifecycleTransition": "autoscaling:EC2_INSTANCE_TERMINATING",
        "HeartbeatTimeout": 300, "DefaultResult": "CONTINUE"}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def imds():
    clock = Clock()
    service = MetadataService("127.0.0.1", clock=clock).start()
    service.register("127.0.0.1", Instance("i-0123456789abcdef0"))
    yield service, clock
    service.stop()


def call(url: str, method: str = "GET", headers: dict[str, str] | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, method=method, headers=headers or {})  # noqa: S310 - loopback
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - loopback
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, ""


def test_imds_v2_token_flow_as_ec2_documents_it(imds):
    service, clock = imds
    token_url, item = f"{service.url}/latest/api/token", f"{service.url}/latest/meta-data/instance-id"
    assert call(token_url, "PUT")[0] == 400  # no TTL
    assert call(token_url, "PUT", {"X-aws-ec2-metadata-token-ttl-seconds": "21601"})[0] == 400
    proxied = {"X-aws-ec2-metadata-token-ttl-seconds": "60", "X-Forwarded-For": "1.2.3.4"}
    assert call(token_url, "PUT", proxied)[0] == 403
    status, token = call(token_url, "PUT", {"X-aws-ec2-metadata-token-ttl-seconds": "60"})
    assert status == 200 and token
    assert call(item)[0] == 401  # IMDSv1 refused
    assert call(item, headers={"X-aws-ec2-metadata-token": "forged"})[0] == 401
    assert call(item, headers={"X-aws-ec2-metadata-token": token}) == (200, "i-0123456789abcdef0")
    assert call(f"{service.url}/latest/meta-data/spot/instance-action",
                headers={"X-aws-ec2-metadata-token": token})[0] == 404  # no interruption noticed
    clock.now = 61
    assert call(item, headers={"X-aws-ec2-metadata-token": token})[0] == 401  # expired


def test_botocore_reads_the_lifecycle_state_and_spot_notice_through_the_standard_endpoint_setting(imds):
    service, _ = imds
    fetcher = IMDSFetcher(config={"ec2_metadata_service_endpoint": service.url})
    token = fetcher._fetch_metadata_token()

    def item(path: str) -> str:
        return fetcher._get_request(f"/latest/meta-data/{path}", None, token).text

    assert item("autoscaling/target-lifecycle-state") == "InService"
    service.set_target_lifecycle_state("i-0123456789abcdef0", "Terminated")
    assert item("autoscaling/target-lifecycle-state") == "Terminated"
    service.notice_spot_interruption("i-0123456789abcdef0")
    assert '"action": "terminate"' in item("spot/instance-action")


def test_lifecycle_actions_complete_by_token_or_instance_and_time_out_to_the_default():
    clock = Clock()
    actions = LifecycleActions(clock)
    first = actions.begin("i-1", "workers", HOOK)
    actions.begin("i-2", "workers", HOOK)
    actions.begin("i-3", "workers", HOOK)

    with pytest.raises(LifecycleError, match="No active Lifecycle Action"):
        actions.complete("workers", "other-hook", "CONTINUE", instance_id="i-1")
    with pytest.raises(LifecycleError, match="CONTINUE, ABANDON"):
        actions.complete("workers", "drain", "MAYBE", instance_id="i-1")
    assert actions.complete("workers", "drain", "CONTINUE", token=first.token).instance_id == "i-1"
    with pytest.raises(LifecycleError, match="No active Lifecycle Action"):  # completed once only
        actions.complete("workers", "drain", "CONTINUE", instance_id="i-1")
    assert actions.complete("workers", "drain", "ABANDON", instance_id="i-2").result == "ABANDON"

    clock.now = 200
    actions.heartbeat("workers", "drain", instance_id="i-3")  # restarts the 300 s timeout: due at 500
    clock.now = 400
    assert actions.expire() == []
    clock.now = 500
    expired = actions.expire()
    assert [(a.instance_id, a.result, a.timed_out) for a in expired] == [("i-3", "CONTINUE", True)]
    assert actions.waiting("i-3") is None and actions.settled("i-3").timed_out
