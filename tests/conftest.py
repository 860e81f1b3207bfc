"""Shared fixtures: a private emulator per test session and a way to run the project's playbooks on it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tools"))
sys.path.insert(0, str(REPO / "plugins" / "module_utils"))

from emulator import Emulator, free_port, start_emulator  # noqa: E402


@dataclass
class PlaybookRun:
    returncode: int
    output: str
    stderr: str

    @property
    def report(self) -> dict[str, Any]:
        return json.loads(self.output[self.output.index("{"):])

    @property
    def stats(self) -> dict[str, int]:
        return self.report["stats"]["localhost"]

    def failure_messages(self) -> list[str]:
        messages = []
        for play in self.report.get("plays", []):
            for task in play["tasks"]:
                result = task["hosts"].get("localhost", {})
                if result.get("failed"):
                    messages.append(result.get("msg", ""))
                    messages += [r.get("msg", "") for r in result.get("results", []) if r.get("failed")]
        return messages


@pytest.fixture(scope="session")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    server = start_emulator(free_port(), tmp_path_factory.mktemp("emulator") / "moto.log")
    yield server
    server.stop()


def ansible_env(emulator: Emulator, home: Path) -> dict[str, str]:
    env = {**os.environ, **emulator.environment()}
    env.update(
        ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
        ANSIBLE_HOME=str(home),
        ANSIBLE_DEPRECATION_WARNINGS="false",
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}",
    )
    return env


@pytest.fixture(scope="session")
def run_playbook(emulator: Emulator, tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("ansible-home")
    # The stack output of a test stack stays with the test session, never over a user's own .run/stacks/.
    output = {"stack_output_file": str(tmp_path_factory.mktemp("stacks") / "stack.json")}

    def run(
        playbook: str, *args: str, extra_vars: dict[str, Any] | None = None, env: dict[str, str] | None = None
    ) -> PlaybookRun:
        command: list[str] = ["ansible-playbook", playbook, "-e", json.dumps(output), *args]
        if extra_vars:
            command += ["-e", json.dumps(extra_vars)]
        result = subprocess.run(  # noqa: S603 - the project's own playbooks
            command, cwd=REPO, env={**ansible_env(emulator, home), **(env or {})},
            capture_output=True, text=True, check=False, timeout=900,
        )
        return PlaybookRun(result.returncode, result.stdout, result.stderr)

    return run


@pytest.fixture(scope="session")
def aws(emulator: Emulator):
    """boto3 clients on the emulator: aws('sqs')."""
    env = emulator.environment()

    def client(service: str):
        return boto3.client(
            service,
            endpoint_url=env["AWS_ENDPOINT_URL"],
            region_name=env["AWS_REGION"],
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        )

    return client


def assert_ok(run: PlaybookRun, what: Sequence[str] = ()) -> None:
    assert run.returncode == 0, f"{' '.join(what)} failed: {run.failure_messages() or run.stderr[-3000:]}"


def wait_until(check: Any, timeout: float, what: str) -> Any:
    """check()'s first truthy result, polled each second; an assertion error naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
