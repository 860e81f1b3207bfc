"""The stack's names and addresses, read in one place.

site.yml records what it made as one JSON document per environment (group_vars/all/stack.yml's
`stack_output`, completed with what only AWS knows, written to `stack_output_file`). Every tool, test and
benchmark reads names through `Stack`; none rebuilds a name from a prefix. Before anything is deployed,
`Stack.from_inventory` renders the same document from the inventory, without the AWS-only values.
"""

from __future__ import annotations

import json
import os
import subprocess  # nosec B404 - runs the project's own ansible with a fixed argv
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqs_fleet import REPO, RUN_DIR


class StackNotFound(RuntimeError):
    """No stack is recorded (or rendered) for the environment asked for."""


def output_file(environment: str) -> Path:
    """Where site.yml records an environment's stack by default (group_vars/all/stack.yml)."""
    return RUN_DIR / "stacks" / f"{environment}.json"


@dataclass(frozen=True)
class Stack:
    data: Mapping[str, Any]

    @classmethod
    def load(cls, path: Path) -> Stack:
        try:
            return cls(json.loads(path.read_text()))
        except FileNotFoundError:
            raise StackNotFound(f"no stack recorded at {path}: run site.yml for this environment first") from None

    @classmethod
    def from_inventory(cls, environment: str = "local", extra_vars: Mapping[str, Any] | None = None) -> Stack:
        """The stack's names as the inventory defines them, nothing deployed or read from AWS."""
        ansible = Path(sys.executable).with_name("ansible")
        command = [str(ansible), "localhost", "-i", str(REPO / "inventory" / environment),
                   "-m", "ansible.builtin.debug", "-a", "var=stack_output"]
        if extra_vars:
            command += ["-e", json.dumps(dict(extra_vars))]
        # One variable shown on localhost: the plain strategy, as Mitogen's start-up costs more than it saves here.
        run = subprocess.run(  # noqa: S603  # nosec B603 - the project's own ansible
            command, cwd=REPO, capture_output=True, text=True, check=False,
            env={**os.environ, "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1", "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
                 "ANSIBLE_STRATEGY": "linear"})
        if run.returncode != 0:
            raise StackNotFound(f"inventory/{environment} does not render a stack: "
                                f"{run.stdout[-800:]}{run.stderr[-800:]}")
        result = json.loads(run.stdout)["plays"][0]["tasks"][0]["hosts"]["localhost"]
        return cls(result["stack_output"])

    @classmethod
    def for_environment(cls, environment: str = "local") -> Stack:
        """The recorded stack when site.yml has run, else the inventory's names."""
        path = output_file(environment)
        return cls.load(path) if path.exists() else cls.from_inventory(environment)

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    @property
    def environment(self) -> str:
        return str(self.data["environment"])

    @property
    def prefix(self) -> str:
        return str(self.data["prefix"])

    @property
    def region(self) -> str:
        return str(self.data["region"])

    @property
    def queue_name(self) -> str:
        return str(self.data["queue"]["name"])

    @property
    def dead_letter_queue_name(self) -> str:
        return str(self.data["dead_letter_queue"]["name"])

    @property
    def group_name(self) -> str:
        return str(self.data["group"]["name"])

    @property
    def launch_template(self) -> str:
        return str(self.data["launch_template"])

    @property
    def log_group(self) -> str:
        return str(self.data["log_group"])

    @property
    def metric_namespace(self) -> str:
        return str(self.data["metric_namespace"])

    @property
    def lifecycle_hooks(self) -> dict[str, str]:
        """The group's lifecycle hooks by role: launch, drain."""
        return dict(self.data.get("lifecycle_hooks", {}))

    @property
    def alarms(self) -> dict[str, str]:
        return dict(self.data["alarms"])

    @property
    def broker(self) -> dict[str, Any]:
        """kind (sqs or redis); for redis, its group, SSM parameters, Celery queue, dead-letter list, alarms."""
        return dict(self.data.get("broker") or {"kind": "sqs"})

    @property
    def on_redis(self) -> bool:
        return self.broker.get("kind") == "redis"

    @property
    def dashboards(self) -> dict[str, str]:
        return dict(self.data["dashboards"])
