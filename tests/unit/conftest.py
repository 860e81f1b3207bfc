"""Fixtures of the unit tier."""

from __future__ import annotations

import importlib.util
from types import ModuleType

import pytest

from sqs_fleet import REPO


@pytest.fixture
def strategy_plugin() -> ModuleType:
    """plugins/strategy/mitogen_linear.py, loaded as Ansible's plugin loader would load it."""
    spec = importlib.util.spec_from_file_location("mitogen_linear", REPO / "plugins" / "strategy" / "mitogen_linear.py")
    assert spec and spec.loader
    plugin = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(plugin)
    return plugin
