"""Fixtures of the unit tier."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType

import pytest

from sqs_fleet import REPO


@pytest.fixture
def load_strategy_plugin() -> Callable[[], ModuleType]:
    """Loads plugins/strategy/mitogen_linear.py as Ansible's plugin loader would load it, a new module each call
    (it reads which releases are installed as it loads)."""

    def load() -> ModuleType:
        path = REPO / "plugins" / "strategy" / "mitogen_linear.py"
        spec = importlib.util.spec_from_file_location("mitogen_linear", path)
        assert spec and spec.loader
        plugin = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(plugin)
        return plugin

    return load


@pytest.fixture
def strategy_plugin(load_strategy_plugin: Callable[[], ModuleType]) -> ModuleType:
    """plugins/strategy/mitogen_linear.py, loaded as Ansible's plugin loader would load it."""
    return load_strategy_plugin()


PlayRunner = Callable[..., tuple[int, str]]


@pytest.fixture
def run_play(tmp_path: Path) -> PlayRunner:
    """Run a playbook's text with ansible-playbook from the repository under a strategy: (the controller's pid,
    its output), the run having succeeded."""

    def run(text: str, strategy: str, *args: str, environ: Mapping[str, str] = os.environ) -> tuple[int, str]:
        (tmp_path / "play.yml").write_text(text)
        controller = subprocess.Popen(  # noqa: S603 - Ansible's own tool
            [str(Path(sys.executable).parent / "ansible-playbook"), *args, str(tmp_path / "play.yml")],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**environ, "ANSIBLE_STRATEGY": strategy, "ANSIBLE_HOME": str(tmp_path / "ansible-home")})
        output, _ = controller.communicate(timeout=300)
        assert controller.returncode == 0, output
        return controller.pid, output

    return run
