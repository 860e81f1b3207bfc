"""The test modules themselves: importing one (what collecting tests does) starts no process, as whatever
needs Ansible or a server is asked of a fixture; and none imports from a conftest, as the code they share
lives in tests/support."""

from __future__ import annotations

import ast
import importlib.util
import inspect
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from sqs_fleet import REPO

TESTS = Path(__file__).resolve().parents[1]
MODULES = sorted([*TESTS.glob("*/test_*.py"), *TESTS.glob("**/conftest.py")])


class ProcessStarted(AssertionError):
    pass


def started_by_the_project() -> bool:
    """Whether the code that asked for a process (the first caller outside subprocess and os) is the project's
    own: a library that starts one of its own when first imported (ansible's display asks ldconfig where libc
    is) does so whatever the tests do."""
    for frame in inspect.stack()[2:]:
        path = Path(frame.filename).resolve()
        if path.name in ("subprocess.py", "os.py"):
            continue
        return path.is_relative_to(REPO) and "site-packages" not in path.parts
    return False


@pytest.fixture
def no_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every way the project's code could start a process raises ProcessStarted, naming what it would have run."""

    def guard(original: Callable[..., Any]) -> Callable[..., Any]:
        def refuse(*args: Any, **kwargs: Any) -> Any:
            if not started_by_the_project():
                return original(*args, **kwargs)
            command = next((a for a in args if isinstance(a, (list, tuple, str, bytes))), args)
            raise ProcessStarted(f"a process started while the module was imported: {command}")

        return refuse

    # Popen's one way to a child (run, call, check_output all pass through it).
    monkeypatch.setattr(subprocess.Popen, "_execute_child", guard(subprocess.Popen._execute_child))
    for name in ("system", "posix_spawn", "posix_spawnp", "fork", "forkpty"):
        if hasattr(os, name):
            monkeypatch.setattr(os, name, guard(getattr(os, name)))


def import_anew(path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The module at `path`, executed under a name of its own (the copy pytest imports stays as it is), listed
    in sys.modules while the test runs (dataclasses look their module up there)."""
    name = f"imported_{path.parent.name}_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("path", MODULES, ids=lambda path: str(path.relative_to(TESTS)))
def test_importing_a_test_module_starts_no_process(path: Path, no_processes: None,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    try:
        import_anew(path, monkeypatch)
    except pytest.skip.Exception:
        pass  # an optional dependency is missing: the module's tests are skipped, saying why


def test_a_module_that_renders_names_when_imported_is_caught(tmp_path: Path, no_processes: None,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    module = tmp_path / "test_renders_at_import.py"
    module.write_text("from sqs_fleet.stack import Stack\nNAMES = Stack.from_inventory('local')\n")
    with pytest.raises(ProcessStarted, match="ansible"):
        import_anew(module, monkeypatch)


def test_no_test_module_imports_from_a_conftest() -> None:
    importing = []
    for path in sorted(TESTS.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = ([node.module or ""] if isinstance(node, ast.ImportFrom)
                     else [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            if any(name.split(".")[-1] == "conftest" for name in names):
                importing.append(f"{path.relative_to(TESTS)}:{node.lineno}")
    assert importing == [], "shared code belongs in tests/support, fixtures in conftest.py"
