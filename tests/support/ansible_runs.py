"""Ansible as the tests run it: the environment that points it at an emulator, and what a run reports (the
ansible.posix.json callback's output)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqs_fleet.lab.emulator import Emulator


@dataclass
class PlaybookRun:
    """One ansible-playbook (or ad-hoc ansible) run: its exit code, its JSON report on stdout, its stderr."""

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


def ansible_env(emulator: Emulator, home: Path) -> dict[str, str]:
    """The environment of an ansible run on `emulator`, with its own ANSIBLE_HOME and a JSON report."""
    env = {**os.environ, **emulator.environment()}
    env.update(
        ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
        ANSIBLE_HOME=str(home),
        ANSIBLE_DEPRECATION_WARNINGS="false",
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}",
    )
    return env


def assert_ok(run: PlaybookRun, what: Sequence[str] = ()) -> None:
    assert run.returncode == 0, f"{' '.join(what)} failed: {run.failure_messages() or run.stderr[-3000:]}"


def ok(result: dict[str, Any]) -> dict[str, Any]:
    """A project module's result (the run_module fixture), once it is known not to have failed (its message
    otherwise)."""
    assert not result.get("failed"), result.get("msg")
    return result
