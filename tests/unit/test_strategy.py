"""The controller's plays run under Mitogen by default, ANSIBLE_STRATEGY=linear switches back, and the node
playbook (ansible-pull on workers, which have no Mitogen) keeps the plain linear strategy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import ansible_mitogen.strategy
import pytest
import yaml
from ansible.plugins.strategy.linear import StrategyModule as Linear

from sqs_fleet import REPO


def configured_strategy(**env: str) -> str:
    """The default strategy ansible-playbook would use from the repository, as ansible-config reports it."""
    result = subprocess.run(  # noqa: S603 - Ansible's own tool
        [str(Path(sys.executable).parent / "ansible-config"), "dump", "--format", "json"],
        cwd=REPO, capture_output=True, text=True, check=True,
        env={"PATH": os.environ["PATH"], "ANSIBLE_HOME": str(REPO / ".run" / "ansible-home"), **env},
    )
    # The general settings; the plugins' own follow, without a name.
    settings = {s["name"]: s["value"] for s in json.loads(result.stdout) if "name" in s}
    assert str(REPO / "plugins" / "strategy") in settings["DEFAULT_STRATEGY_PLUGIN_PATH"]
    return str(settings["DEFAULT_STRATEGY"])


def test_the_default_strategy_is_linear_run_by_mitogen_and_the_plain_one_a_switch(strategy_plugin):
    assert configured_strategy() == "mitogen_linear"
    assert configured_strategy(ANSIBLE_STRATEGY="linear") == "linear"
    assert issubclass(strategy_plugin.StrategyModule, ansible_mitogen.strategy.StrategyMixin)
    assert issubclass(strategy_plugin.StrategyModule, Linear)


@pytest.mark.parametrize("playbook", ["playbooks/node.yml"])
def test_node_plays_keep_the_plain_strategy(playbook):
    plays = yaml.safe_load((REPO / playbook).read_text())
    assert [play.get("strategy") for play in plays] == ["linear"] * len(plays)
