"""The consumer's systemd unit, rendered by Ansible with the role's defaults: the consumer is told the same stop
timeout systemd allows it, and consumer.py accepts the command line the unit runs."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

from sqs_fleet import REPO

TEMPLATE = "roles/consumer/templates/sqs-consumer.service.j2"


def render_unit(**overrides: object) -> dict[str, str]:
    """The unit's [Service] settings, as rendered from the role's defaults (and overrides)."""
    values = {"consumer_queue": "sqs-fleet-prod-vehicles", **overrides}
    result = subprocess.run(  # noqa: S603 - the project's own template
        [str(Path(sys.executable).parent / "ansible"), "localhost", "-m", "ansible.builtin.debug",
         "-a", f"msg={{{{ lookup('ansible.builtin.template', '{TEMPLATE}') }}}}",
         "-e", "@roles/consumer/defaults/main.yml", "-e", json.dumps(values)],
        cwd=REPO, capture_output=True, text=True, check=True,
        env={"ANSIBLE_LOAD_CALLBACK_PLUGINS": "1", "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
             "PATH": "/usr/bin:/bin", "ANSIBLE_HOME": str(REPO / ".run" / "ansible-home")},
    )
    text = json.loads(result.stdout)["plays"][0]["tasks"][0]["hosts"]["localhost"]["msg"]
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#"))


def test_the_consumer_gets_the_stop_timeout_systemd_allows() -> None:
    for timeout in (60, 95):
        unit = render_unit(consumer_stop_timeout=timeout)
        argv = shlex.split(unit["ExecStart"])
        assert unit["TimeoutStopSec"] == str(timeout)
        assert argv[argv.index("--stop-timeout") + 1] == str(timeout), unit["ExecStart"]


def test_consumer_accepts_the_command_line_the_unit_runs() -> None:
    argv = shlex.split(render_unit(consumer_stop_timeout=95)["ExecStart"].replace("${CONSUMER_POLL_INTERVAL}", "60"))
    # The unit runs the installed copy of files/consumer.py: its own parser reads the options.
    code = ("import json, sys; from consumer import parse_args; "
            "print(json.dumps(vars(parse_args(sys.argv[1:]))))")
    result = subprocess.run([sys.executable, "-c", code, *argv[2:]],  # noqa: S603
                            cwd=REPO / "files", capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    parsed = json.loads(result.stdout)
    assert (parsed["stop_timeout"], parsed["poll_interval"]) == (95, 60)
