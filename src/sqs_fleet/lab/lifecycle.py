"""Auto Scaling lifecycle actions, which the emulator does not implement (moto has no CompleteLifecycleAction
nor RecordLifecycleActionHeartbeat): the lab's own, faithful to the EC2 Auto Scaling API reference.

`LifecycleActions` holds every action in progress (an instance in Pending:Wait or Terminating:Wait) with
its token, its heartbeat deadline and the hook's default result. `AutoScalingFront` is an HTTP front for the
emulator that the lab's nodes use as their AWS endpoint: it answers the two lifecycle calls itself, from
`LifecycleActions`, and passes every other request to the emulator unchanged. Labelled as emulation
wherever its results are reported.

AWS's rules played here: an action is completed by its token or by the instance id with the group and hook
names; only CONTINUE or ABANDON; a completed or unknown action is a ValidationError ("No active Lifecycle
Action found ..."); a heartbeat restarts the hook's heartbeat timeout; an action that times out takes the
hook's default result.
"""

from __future__ import annotations

import http.client
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

RESULTS = ("CONTINUE", "ABANDON")
XMLNS = "http://autoscaling.amazonaws.com/doc/2011-01-01/"


class LifecycleError(ValueError):
    """What AWS answers with a ValidationError."""


@dataclass
class Action:
    instance_id: str
    group: str
    hook: str
    transition: str
    token: str
    heartbeat_timeout: float  # seconds of AWS time
    default_result: str
    deadline: float
    result: str | None = None
    timed_out: bool = False


class LifecycleActions:
    """Lifecycle actions in progress and their outcomes. `clock` gives AWS time in seconds: the local loop
    runs faster than AWS, so it passes a scaled clock and a 300 s heartbeat lasts 5 of its periods."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.lock = threading.Lock()
        self.actions: dict[str, Action] = {}  # instance id -> its action in progress
        self.history: list[Action] = []  # settled actions, oldest first

    def begin(self, instance_id: str, group: str, hook: dict[str, Any]) -> Action:
        """The instance enters the hook's wait state (hook as DescribeLifecycleHooks returns it)."""
        timeout = float(hook.get("HeartbeatTimeout", 3600))
        action = Action(instance_id, group, hook["LifecycleHookName"], hook["LifecycleTransition"],
                        str(uuid.uuid4()), timeout, hook.get("DefaultResult", "ABANDON"), self.clock() + timeout)
        with self.lock:
            self.actions[instance_id] = action
        return action

    def _find(self, group: str, hook: str, instance_id: str | None, token: str | None) -> Action:
        found = self.actions.get(instance_id or "") if instance_id else next(
            (a for a in self.actions.values() if a.token == token), None)
        if found is None or found.group != group or found.hook != hook or (token and found.token != token):
            which = f"instance ID {instance_id}" if instance_id else f"token {token}"
            raise LifecycleError(f"No active Lifecycle Action found with {which}")
        return found

    def complete(self, group: str, hook: str, result: str, instance_id: str | None = None,
                 token: str | None = None) -> Action:
        if result not in RESULTS:
            raise LifecycleError(f"Lifecycle action result {result!r} is not one of {', '.join(RESULTS)}")
        if not instance_id and not token:
            raise LifecycleError("Either an instance ID or a lifecycle action token is required")
        with self.lock:
            action = self._find(group, hook, instance_id, token)
            action.result = result
            del self.actions[action.instance_id]
            self.history.append(action)
        return action

    def heartbeat(self, group: str, hook: str, instance_id: str | None = None, token: str | None = None) -> None:
        with self.lock:
            action = self._find(group, hook, instance_id, token)
            action.deadline = self.clock() + action.heartbeat_timeout

    def expire(self) -> list[Action]:
        """The actions whose heartbeat ran out: they take the hook's default result."""
        now, expired = self.clock(), []
        with self.lock:
            for action in [a for a in self.actions.values() if a.deadline <= now]:
                action.result, action.timed_out = action.default_result, True
                del self.actions[action.instance_id]
                self.history.append(action)
                expired.append(action)
        return expired

    def waiting(self, instance_id: str) -> Action | None:
        with self.lock:
            return self.actions.get(instance_id)

    def settled(self, instance_id: str) -> Action | None:
        """The instance's last settled action, if any."""
        with self.lock:
            return next((a for a in reversed(self.history) if a.instance_id == instance_id), None)


class AutoScalingFront:
    """An HTTP endpoint for the lab's nodes: lifecycle calls answered from `actions`, the rest passed to the
    emulator. Serve it with `start()`; `url` is what the nodes get as AWS_ENDPOINT_URL."""

    def __init__(self, actions: LifecycleActions, emulator_url: str, host: str, port: int) -> None:
        self.actions, self.backend = actions, urllib.parse.urlsplit(emulator_url)
        front = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                form = dict(urllib.parse.parse_qsl(body.decode(errors="replace")))
                if form.get("Action") in ("CompleteLifecycleAction", "RecordLifecycleActionHeartbeat"):
                    self.reply(*front.lifecycle_call(form))
                else:
                    self.reply(*front.forward("POST", self.path, dict(self.headers), body))

            def do_GET(self) -> None:  # noqa: N802
                self.reply(*front.forward("GET", self.path, dict(self.headers), b""))

            def reply(self, status: int, headers: dict[str, str], body: bytes) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    if name.lower() not in ("content-length", "transfer-encoding", "connection", "server", "date"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet: the lab logs its own
                pass

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.url = f"http://{host}:{self.server.server_address[1]}"

    def lifecycle_call(self, form: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        action = form["Action"]
        try:
            if action == "CompleteLifecycleAction":
                self.actions.complete(form.get("AutoScalingGroupName", ""), form.get("LifecycleHookName", ""),
                                      form.get("LifecycleActionResult", ""), form.get("InstanceId"),
                                      form.get("LifecycleActionToken"))
            else:
                self.actions.heartbeat(form.get("AutoScalingGroupName", ""), form.get("LifecycleHookName", ""),
                                       form.get("InstanceId"), form.get("LifecycleActionToken"))
        except LifecycleError as error:
            body = (f'<ErrorResponse xmlns="{XMLNS}"><Error><Type>Sender</Type><Code>ValidationError</Code>'
                    f"<Message>{error}</Message></Error><RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>")
            return 400, {"Content-Type": "text/xml"}, body.encode()
        body = (f'<{action}Response xmlns="{XMLNS}"><{action}Result/><ResponseMetadata><RequestId>{uuid.uuid4()}'
                f"</RequestId></ResponseMetadata></{action}Response>")
        return 200, {"Content-Type": "text/xml"}, body.encode()

    def forward(self, method: str, path: str, headers: dict[str, str], body: bytes
                ) -> tuple[int, dict[str, str], bytes]:
        connection = http.client.HTTPConnection(self.backend.hostname or "127.0.0.1", self.backend.port, timeout=60)
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            connection.close()

    def start(self) -> AutoScalingFront:
        threading.Thread(target=self.server.serve_forever, name="autoscaling-front", daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
