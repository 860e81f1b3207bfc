#!/usr/bin/env python3
"""Tell Auto Scaling when this instance works and when it has drained; stop the consumer at once on a Spot notice.

Examples:
  lifecycle_watcher.py                                   # the node's defaults
  lifecycle_watcher.py --interval 2 --stop-command "systemctl stop sqs-consumer.service"

Every --interval seconds (default 5, what AWS advises for Spot notices) it reads the instance metadata service
with the IMDSv2 token flow, at AWS_EC2_METADATA_SERVICE_ENDPOINT (default http://169.254.169.254):
- while the instance waits in Pending:Wait, once the consumer is active (--active-command) it completes the
  group's launch lifecycle action with CONTINUE: the instance counts as capacity only from then on. (The
  user-data abandons the launch when the bootstrap fails.)
- `autoscaling/target-lifecycle-state` turns `Terminated` when Auto Scaling holds the instance in
  Terminating:Wait. The watcher runs the stop command (systemctl stop: the consumer stops polling, finishes
  the message in hand and releases the rest), then completes the group's termination lifecycle action with
  CONTINUE, by instance id, and exits 0. Should anything fail, the hook's heartbeat timeout still lets the
  instance go: nothing waits for ever.
- `spot/instance-action` appears about two minutes before EC2 reclaims a Spot instance: the watcher runs the
  stop command at once, so the consumer stops receiving and releases what it holds, and keeps watching.
The group and hook names come from the node configuration the user-data wrote (--node-config, keys
lifecycle_watcher_group_name, lifecycle_watcher_hook_name and, optional, lifecycle_watcher_launch_hook_name),
never from user-data secrets; the region from
AWS_REGION or the metadata service; the endpoint from AWS_ENDPOINT_URL where set. One JSON object per log
line on stdout. Configuration errors exit 2.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess  # nosec B404 - runs the configured stop command, no shell
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

# Its modules: the package's when imported as sqs_fleet_workers.lifecycle_watcher (the controller), top-level modules
# beside it when run as a script (a node's install directory, the Lambda's zip). mypy reads the package form.
# Why this way: docs/workers.md.
if TYPE_CHECKING or __package__:
    from .worker_common import aws_client, log
else:
    from worker_common import aws_client, log

DEFAULT_ENDPOINT = "http://169.254.169.254"
TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"
TOKEN_HEADER = "X-aws-ec2-metadata-token"  # noqa: S105  # nosec B105 - a header name
TOKEN_TTL = 300  # seconds a session token lives; renewed a minute before it runs out
COMPLETE_ATTEMPTS = 5


class Metadata:
    """The instance metadata service, IMDSv2 only: a session token first, then items read with it."""

    def __init__(self, endpoint: str, timeout: float = 2.0) -> None:
        self.endpoint, self.timeout = endpoint.rstrip("/"), timeout
        self.token: str | None = None
        self.renew_at = 0.0

    def _token(self) -> str:
        if self.token is None or time.monotonic() >= self.renew_at:
            request = urllib.request.Request(f"{self.endpoint}/latest/api/token", method="PUT",  # noqa: S310
                                             headers={TTL_HEADER: str(TOKEN_TTL)})
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310  # nosec B310
                self.token = response.read().decode()
            self.renew_at = time.monotonic() + TOKEN_TTL - 60
        return self.token

    def get(self, item: str) -> str | None:
        """The item's value, or None when this instance has no such item (404: no Spot notice, no group)."""
        for attempt in (1, 2):
            request = urllib.request.Request(f"{self.endpoint}/latest/meta-data/{item}",  # noqa: S310
                                             headers={TOKEN_HEADER: self._token()})
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310  # nosec B310
                    return str(response.read().decode())
            except urllib.error.HTTPError as error:
                if error.code == 404:
                    return None
                if error.code == 401 and attempt == 1:  # the token expired early (e.g. a clock jump): a new one
                    self.token = None
                    continue
                raise
        return None


def autoscaling_client(region: str) -> Any:
    """An Auto Scaling client from the standard environment (AWS_ENDPOINT_URL_AUTO_SCALING, AWS_ENDPOINT_URL)."""
    return aws_client("autoscaling", region=region, read_timeout=20, user_agent="sqs-fleet-lifecycle-watcher")


class Watcher:
    """One look at the metadata each `check()`; acts once on each change that matters."""

    def __init__(self, metadata: Metadata, group: str, hook: str, stop_command: Sequence[str],
                 client: Callable[[], Any], launch_hook: str | None = None,
                 active_command: Sequence[str] = ()) -> None:
        self.metadata, self.group, self.hook, self.stop_command = metadata, group, hook, list(stop_command)
        self.launch_hook, self.active_command = launch_hook, list(active_command)
        self.launched = not launch_hook  # nothing to complete at launch without a launch hook
        self.client = client  # made on first use: the region may come from the metadata service
        self.state: str | None = None
        self.spot_notice: str | None = None
        self.stopped = False
        self.instance_id: str | None = None

    def check(self) -> bool:
        """True once the termination is completed: nothing is left to do."""
        if self.instance_id is None:
            self.instance_id = self.metadata.get("instance-id")
            log("watcher_started", instance_id=self.instance_id, group=self.group, hook=self.hook)
        notice = self.metadata.get("spot/instance-action")
        if notice and notice != self.spot_notice:
            self.spot_notice = notice
            log("spot_interruption_notice", level="warning", notice=json.loads(notice))
            self.stop_consumer("spot interruption notice")
        state = self.metadata.get("autoscaling/target-lifecycle-state")
        if state != self.state:
            log("target_lifecycle_state", state=state, previous=self.state)
            self.state = state
        if state == "Terminated":
            began = time.monotonic()
            self.stop_consumer("instance terminating")
            self.complete(self.hook, began)
            return True
        if not self.launched and self.launch_hook and self.consumer_active():
            self.complete(self.launch_hook, time.monotonic())
            self.launched = True
        return False

    def consumer_active(self) -> bool:
        result = subprocess.run(self.active_command, capture_output=True, check=False)  # noqa: S603  # nosec B603
        return result.returncode == 0

    def stop_consumer(self, why: str) -> None:
        if self.stopped:
            return
        began = time.monotonic()
        # The stop command waits for the graceful exit (systemd's TimeoutStopSec bounds it).
        result = subprocess.run(self.stop_command, capture_output=True, text=True, check=False)  # noqa: S603  # nosec B603
        self.stopped = result.returncode == 0
        log("consumer_stopped" if self.stopped else "consumer_stop_failed", level="info" if self.stopped else "error",
            reason=why, command=self.stop_command, returncode=result.returncode,
            seconds=round(time.monotonic() - began, 3), stderr=result.stderr.strip()[-500:])

    def complete(self, hook: str, began: float) -> None:
        """CompleteLifecycleAction CONTINUE by instance id; a ValidationError means there is no action to
        complete (it already timed out, or no hook held the instance): nothing more to do then."""
        for attempt in range(1, COMPLETE_ATTEMPTS + 1):
            try:
                self.client().complete_lifecycle_action(
                    AutoScalingGroupName=self.group, LifecycleHookName=hook, InstanceId=self.instance_id,
                    LifecycleActionResult="CONTINUE")
            except Exception as error:  # botocore already retried throttling and 5xx
                code = str((getattr(error, "response", None) or {}).get("Error", {}).get("Code")
                           or type(error).__name__)
                final = code == "ValidationError" or attempt == COMPLETE_ATTEMPTS
                log("lifecycle_action_complete_failed", level="error", hook=hook, code=code, error=str(error),
                    attempt=attempt, retry=not final)
                if final:
                    return
                time.sleep(min(2.0 ** attempt, 10.0))
            else:
                log("lifecycle_action_completed", result="CONTINUE", group=self.group, hook=hook,
                    instance_id=self.instance_id, seconds=round(time.monotonic() - began, 3))
                return


def node_names(path: str) -> tuple[str, str, str | None]:
    """The group, its termination hook and its launch hook (if any), from the node configuration."""
    with open(path, encoding="utf-8") as config:
        node = json.load(config)
    launch = node.get("lifecycle_watcher_launch_hook_name")
    return (str(node["lifecycle_watcher_group_name"]), str(node["lifecycle_watcher_hook_name"]),
            str(launch) if launch else None)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lifecycle_watcher.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--node-config", default="/etc/sqs-fleet/node.json", metavar="PATH",
                        help="the node configuration with the group and hook names (default %(default)s)")
    parser.add_argument("--group", help="the Auto Scaling group (instead of the node configuration's)")
    parser.add_argument("--hook", help="its termination lifecycle hook (with --group)")
    parser.add_argument("--launch-hook", default="", help="its launch lifecycle hook, if it has one (with --group)")
    parser.add_argument("--interval", type=float, default=5.0, metavar="SECONDS",
                        help="seconds between looks at the metadata (default 5), e.g. 1")
    parser.add_argument("--stop-command", default="systemctl stop sqs-consumer.service", metavar="COMMAND",
                        help="how to stop the consumer gracefully (default: %(default)s)")
    parser.add_argument("--active-command", default="systemctl is-active --quiet sqs-consumer.service",
                        metavar="COMMAND", help="exits 0 once the consumer is active (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.group and args.hook:
        group, hook, launch_hook = args.group, args.hook, args.launch_hook or None
    else:
        try:
            group, hook, launch_hook = node_names(args.node_config)
        except (OSError, ValueError, KeyError) as error:
            print(f"error: node configuration {args.node_config}: {error!r}", file=sys.stderr)
            return 2
    if args.interval <= 0 or not args.stop_command.strip():
        print("error: --interval must be above 0 and --stop-command not empty", file=sys.stderr)
        return 2
    metadata = Metadata(os.environ.get("AWS_EC2_METADATA_SERVICE_ENDPOINT") or DEFAULT_ENDPOINT)
    made: list[Any] = []

    def client() -> Any:
        if not made:
            region = (os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
                      or metadata.get("placement/region") or "")
            made.append(autoscaling_client(region))
        return made[0]

    watcher = Watcher(metadata, group, hook, shlex.split(args.stop_command), client, launch_hook,
                      shlex.split(args.active_command))
    try:
        client()  # made now, so that completing the action later costs only the call
    except Exception as error:  # e.g. the metadata service not up yet: made on first use instead
        log("client_deferred", level="warning", error=str(error))
        made.clear()
    while True:
        try:
            if watcher.check():
                return 0
        except (OSError, urllib.error.URLError) as error:  # the metadata service unreachable for a moment
            log("metadata_unavailable", level="warning", error=str(error), retry_in=args.interval)
        time.sleep(args.interval)


if __name__ == "__main__":
    raise SystemExit(main())
