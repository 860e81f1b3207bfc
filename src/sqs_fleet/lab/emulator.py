"""Start, stop and query the embedded AWS emulator (moto server) on 127.0.0.1.

    sqs-fleet-emulator start [--port N]   # idempotent; prints the endpoint URL
    sqs-fleet-emulator stop
    sqs-fleet-emulator status              # exit 0 when it answers
    sqs-fleet-emulator reset               # drop all emulated state

State lives in .run/ (pid file, port file, log) so that every command agrees on one server.
Tests import `start_emulator` to run a private server on a free port.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess  # nosec B404 - starts the emulator with a fixed argv
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sqs_fleet import RUN_DIR

DEFAULT_PORT = 4566
HOST = "127.0.0.1"
# Fake credentials and region every client needs to talk to moto; never real secrets.
EMULATOR_ENV = {  # nosec B105 - moto's placeholder credentials
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@dataclass
class Emulator:
    url: str
    pid: int
    log: Path

    def environment(self) -> dict[str, str]:
        """Variables that point boto3, Ansible modules and lookups at this server."""
        return {**EMULATOR_ENV, "AWS_ENDPOINT_URL": self.url}

    def reset(self) -> None:
        request = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST")  # noqa: S310
        with urllib.request.urlopen(request, timeout=60):  # noqa: S310  # nosec B310 - http://127.0.0.1 only
            pass

    def stop(self) -> None:
        stop_pid(self.pid)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def answers(url: str) -> bool:
    try:
        # The root answers at once; /moto-api/data.json dumps all state and slows as state grows.
        with urllib.request.urlopen(f"{url}/", timeout=5):  # noqa: S310  # nosec B310
            return True
    except (urllib.error.URLError, OSError):
        return False


def start_emulator(port: int, log: Path, wait_seconds: float = 30.0, host: str = HOST) -> Emulator:
    """Start moto's server (with the project's correction, sqs_fleet.lab.moto_server) on host:port (loopback by
    default) and wait until it answers."""
    url = f"http://{host}:{port}"
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "MOTO_IAM_LOAD_MANAGED_POLICIES": "true"}
    with log.open("ab") as out:
        process = subprocess.Popen(  # noqa: S603  # nosec B603 - fixed argv
            [sys.executable, "-m", "sqs_fleet.lab.moto_server", "-H", host, "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"moto_server exited with {process.returncode}; see {log}")
        if answers(url):
            return Emulator(url=url, pid=process.pid, log=log)
        time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"moto_server did not answer on {url} within {wait_seconds} s; see {log}")


def stop_pid(pid: int, wait_seconds: float = 10.0) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        if _ended(pid):
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)


def _ended(pid: int) -> bool:
    """Whether the process has exited. A server this process started stays a zombie, which signal 0 still
    finds, until it is reaped here; one another command started is reaped by its own parent."""
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return True
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _recorded(name: str) -> Emulator | None:
    try:
        pid = int((RUN_DIR / f"{name}.pid").read_text())
        url = (RUN_DIR / f"{name}.url").read_text().strip()
    except (OSError, ValueError):
        return None
    return Emulator(url=url, pid=pid, log=RUN_DIR / f"{name}.log")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["start", "stop", "status", "reset"])
    parser.add_argument("--port", type=int, default=int(os.environ.get("EMULATOR_PORT", DEFAULT_PORT)))
    parser.add_argument("--host", default=HOST, help="address to listen on (a test network's host end)")
    parser.add_argument("--name", default="emulator", help="several emulators keep their state apart by name")
    args = parser.parse_args(argv)
    current = _recorded(args.name)
    alive = current is not None and answers(current.url)

    if args.command == "start":
        if current is not None and alive:
            print(current.url)
            return 0
        emulator = start_emulator(args.port, RUN_DIR / f"{args.name}.log", host=args.host)
        (RUN_DIR / f"{args.name}.pid").write_text(str(emulator.pid))
        (RUN_DIR / f"{args.name}.url").write_text(emulator.url)
        print(emulator.url)
        return 0
    if args.command == "stop":
        if current is not None:
            current.stop()
            for suffix in ("pid", "url"):
                (RUN_DIR / f"{args.name}.{suffix}").unlink(missing_ok=True)
        return 0
    if current is None or not alive:
        print("emulator: not running (start it with `make emulator`)", file=sys.stderr)
        return 1
    if args.command == "reset":
        current.reset()
    print(current.url)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
