"""What the tests of the project's modules (run_module in tests/conftest.py) share."""

from __future__ import annotations

from typing import Any


def ok(result: dict[str, Any]) -> dict[str, Any]:
    """The module's result, once it is known not to have failed (its message otherwise)."""
    assert not result.get("failed"), result.get("msg")
    return result
