"""An instance metadata service for the lab's nodes (the emulator has none), IMDSv2 only, as EC2 documents it.

- PUT /latest/api/token with X-aws-ec2-metadata-token-ttl-seconds (1 to 21600) returns a session token;
  a missing or out-of-range TTL is 400, a request carrying X-Forwarded-For is 403 (IMDS refuses proxied
  token requests).
- GET /latest/meta-data/<item> needs a live token in X-aws-ec2-metadata-token (HttpTokens=required):
  none, unknown or expired is 401. An item the instance does not have is 404 (spot/instance-action until
  an interruption is noticed).
- Items: instance-id, instance-type, placement/availability-zone, placement/region,
  autoscaling/target-lifecycle-state (InService, then Terminated once the instance enters Terminating:Wait),
  spot/instance-action (JSON {"action": "terminate", "time": ...}).

Each node is told apart by its address on the lab's bridge, as each instance reaches its own IMDS; it
listens on the lab's own address only (never link-local), and the nodes find it through
AWS_EC2_METADATA_SERVICE_ENDPOINT, which botocore and the AWS CLI honour.
"""

from __future__ import annotations

import datetime
import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"
TOKEN_HEADER = "X-aws-ec2-metadata-token"  # noqa: S105  # nosec B105 - a header name
MAX_TTL = 21600


@dataclass
class Instance:
    instance_id: str
    instance_type: str = "t3.micro"
    availability_zone: str = "us-east-1a"
    target_lifecycle_state: str = "InService"
    spot_action: dict[str, str] | None = None
    tokens: dict[str, float] = field(default_factory=dict)  # token -> expiry (monotonic)

    def items(self) -> dict[str, str]:
        found = {"instance-id": self.instance_id, "instance-type": self.instance_type,
                 "placement/availability-zone": self.availability_zone,
                 "placement/region": self.availability_zone[:-1],
                 "autoscaling/target-lifecycle-state": self.target_lifecycle_state}
        if self.spot_action:
            found["spot/instance-action"] = json.dumps(self.spot_action)
        return found


class MetadataService:
    """IMDSv2 for the instances registered by address; `start()` serves it on host:port."""

    def __init__(self, host: str, port: int = 0, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.lock = threading.Lock()
        self.instances: dict[str, Instance] = {}  # node address -> its instance
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_PUT(self) -> None:  # noqa: N802 - the http.server API
                status, headers, body = service.token(self.client_address[0], dict(self.headers), self.path)
                self.reply(status, headers, body)

            def do_GET(self) -> None:  # noqa: N802
                status, headers, body = service.read(self.client_address[0], dict(self.headers), self.path)
                self.reply(status, headers, body)

            def reply(self, status: int, headers: dict[str, str], body: str) -> None:
                data = body.encode()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.url = f"http://{host}:{self.server.server_address[1]}"

    def register(self, address: str, instance: Instance) -> None:
        with self.lock:
            self.instances[address] = instance

    def forget(self, address: str) -> None:
        with self.lock:
            self.instances.pop(address, None)

    def instance(self, instance_id: str) -> Instance | None:
        with self.lock:
            return next((i for i in self.instances.values() if i.instance_id == instance_id), None)

    def set_target_lifecycle_state(self, instance_id: str, state: str) -> None:
        found = self.instance(instance_id)
        if found:
            found.target_lifecycle_state = state

    def notice_spot_interruption(self, instance_id: str, seconds_ahead: int = 120) -> None:
        """What EC2 shows about two minutes before it interrupts a Spot instance."""
        found = self.instance(instance_id)
        if found:
            when = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=seconds_ahead)
            found.spot_action = {"action": "terminate", "time": when.strftime("%Y-%m-%dT%H:%M:%SZ")}

    def token(self, address: str, headers: dict[str, str], path: str) -> tuple[int, dict[str, str], str]:
        if path != "/latest/api/token":
            return 404, {}, "Not Found"
        if any(name.lower() == "x-forwarded-for" for name in headers):
            return 403, {}, "Forbidden"
        ttl = next((value for name, value in headers.items() if name.lower() == TTL_HEADER.lower()), "")
        if not ttl.isdigit() or not 1 <= int(ttl) <= MAX_TTL:
            return 400, {}, "Bad Request"
        instance = self.instances.get(address)
        if instance is None:
            return 404, {}, "Not Found"
        token = secrets.token_urlsafe(32)
        instance.tokens[token] = self.clock() + int(ttl)
        return 200, {TTL_HEADER: ttl}, token

    def read(self, address: str, headers: dict[str, str], path: str) -> tuple[int, dict[str, str], str]:
        instance = self.instances.get(address)
        token = next((value for name, value in headers.items() if name.lower() == TOKEN_HEADER.lower()), "")
        expiry = instance.tokens.get(token) if instance else None
        if expiry is None or expiry <= self.clock():
            return 401, {}, "Unauthorized"
        remaining = {TTL_HEADER: str(max(0, int(expiry - self.clock())))}
        prefix = "/latest/meta-data/"
        if not path.startswith(prefix):
            return 404, remaining, "Not Found"
        item = path[len(prefix):].rstrip("/")
        items = instance.items() if instance else {}
        if item == "":
            return 200, remaining, "\n".join(sorted({name.split("/")[0] + ("/" if "/" in name else "")
                                                     for name in items}))
        if item in items:
            return 200, remaining, items[item]
        return 404, remaining, "Not Found"

    def start(self) -> MetadataService:
        threading.Thread(target=self.server.serve_forever, name="metadata", daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
