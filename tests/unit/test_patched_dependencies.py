"""Each module that reaches into a dependency's private names or repeats its code (plugins/) lists every private
name it uses (PRIVATE_NAMES), names the releases it was verified with, and docs/patched-dependencies.md lists
each name with the tests that guard it. The modules are read, not imported: the module runner's sitecustomize
would install its hook in this process."""

from __future__ import annotations

import ast
import hashlib
import importlib
import inspect
import re
from pathlib import Path
from typing import Any

import pytest

from sqs_fleet import REPO

# Each bounded module: (the distribution, the module's window of its releases, the file that pins the release).
BOUNDED = {
    "plugins/strategy/mitogen_linear.py": [("ansible-core", "ANSIBLE_CORE_VERIFIED", "constraints.txt"),
                                           ("mitogen", "MITOGEN_VERIFIED", "requirements.txt")],
    "plugins/module_runner/sitecustomize.py": [("botocore", "BOTOCORE_VERIFIED", "constraints.txt")],
    "src/sqs_fleet/lab/moto_corrections/__init__.py": [("moto", "MOTO_VERIFIED", "constraints.txt")],
    **{f"src/sqs_fleet/lab/moto_corrections/{module}.py": [] for module in
       ("launch_templates", "autoscaling", "sqs", "lambda_network", "lambda_settings")},
}
DOCUMENT = REPO / "docs" / "patched-dependencies.md"


def private_names(source: str) -> set[str]:
    """The private names (one leading underscore) the code imports or reads from other objects: `x._name`,
    `from a._b import _c`, getattr(x, "_name"). A module's own top-level names (`_HERE = ...`) are not read
    from another object and do not count."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute):
            found.add(node.attr)
        elif isinstance(node, ast.ImportFrom):
            found.update([*(node.module or "").split("."), *(alias.name for alias in node.names)])
        elif isinstance(node, ast.Import):
            found.update(part for alias in node.names for part in alias.name.split("."))
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
              and node.func.id in {"getattr", "setattr", "hasattr", "delattr"} and len(node.args) > 1
              and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str)):
            found.add(node.args[1].value)
    return {name for name in found if name.startswith("_") and not name.startswith("__")}


def assigned(path: str, name: str) -> Any:
    """The value of a module's top-level `name = <literal>` (or `name: type = <literal>`)."""
    for node in ast.parse((REPO / path).read_text()).body:
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        else:
            continue
        if any(isinstance(target, ast.Name) and target.id == name for target in targets):
            return ast.literal_eval(value)
    raise AssertionError(f"{path} assigns no {name}")


def release(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split(".")[:3])


def test_the_scan_finds_each_way_of_reaching_a_private_name():
    source = ("import a._b\nfrom c._d import _e, f\nx.y._g()\ngetattr(h, '_i', None)\nz.__init__ = 1\n_own = 2\n"
              "s = '_in_a_string'\n")
    assert private_names(source) == {"_b", "_d", "_e", "_g", "_i"}


@pytest.mark.parametrize("path", BOUNDED)
def test_each_private_name_the_code_uses_is_listed(path):
    listed = assigned(path, "PRIVATE_NAMES")
    assert private_names((REPO / path).read_text()) == set(listed)
    assert all(isinstance(what, str) and what for what in listed.values())


def test_no_other_plugin_uses_a_private_name():
    for path in sorted((REPO / "plugins").rglob("*.py")):
        if str(path.relative_to(REPO)) not in BOUNDED:
            assert private_names(path.read_text()) == set(), path


def pinned(distribution: str, pins: str) -> tuple[int, ...]:
    found = re.search(rf"^{re.escape(distribution)}==(\S+)$", (REPO / pins).read_text(), re.MULTILINE | re.IGNORECASE)
    assert found, f"{pins} pins no {distribution}"
    return release(found[1])


@pytest.mark.parametrize(("path", "distribution", "window", "pins"),
                         [(path, *bound) for path, bounds in BOUNDED.items() for bound in bounds])
def test_the_pinned_releases_are_in_the_windows(path, distribution, window, pins):
    lowest, highest = assigned(path, window)
    assert lowest <= pinned(distribution, pins) <= highest
    ends = {".".join(map(str, end)) for end in (lowest, highest)}
    assert all(end in DOCUMENT.read_text() for end in ends)


def resolved(dotted: str) -> Any:
    """An object from its dotted path: the longest importable module, then attributes."""
    parts = dotted.split(".")
    for split in range(len(parts) - 1, 0, -1):
        try:
            found = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for name in parts[split:]:
            found = getattr(found, name)
        return found
    raise AssertionError(dotted)


def test_the_code_the_strategy_repeats_is_ansible_s_as_verified():
    """A release that changes what run_task_here and _queue_task repeat changes these digests: the copy must
    be read again before the window grows."""
    copied = assigned("plugins/strategy/mitogen_linear.py", "COPIED")
    assert {name: hashlib.sha256(inspect.getsource(resolved(name)).encode()).hexdigest()[:16]
            for name in copied} == copied


def document_rows() -> list[tuple[str, str, list[str]]]:
    """(name, module, guarding tests) of each row of the document's table of private names."""
    rows = []
    for line in DOCUMENT.read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[1].strip("`") in BOUNDED:
            rows.append((cells[0].strip("`"), cells[1].strip("`"), re.findall(r"`([^`]+::\w+)`", cells[3])))
    return rows


def test_the_document_lists_each_private_name_with_the_tests_that_guard_it():
    rows = document_rows()
    assert len({(name, path) for name, path, _ in rows}) == len(rows)
    for path in BOUNDED:
        assert {name for name, module, _ in rows if module == path} == set(assigned(path, "PRIVATE_NAMES")), path
    for name, _, guards in rows:
        assert guards, name
        for guard in guards:
            file, test = guard.split("::")
            assert re.search(rf"^def {test}\(", Path(REPO / file).read_text(), re.MULTILINE), guard
