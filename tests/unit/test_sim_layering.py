"""The simulated AWS (sqs_fleet.sim) stands below the lab: the lab and the scale test hand it what it needs
(lifecycle actions, workers, a metadata service), and no module of it imports the lab, at the top or inside a
function."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import sqs_fleet.sim

SIM = Path(sqs_fleet.sim.__file__).parent
LAB = "sqs_fleet.lab"


def imported(source: str) -> list[tuple[str, int, bool]]:
    """Every module a source imports, with its line and whether the import sits inside a function or class."""
    found = []
    tree = ast.parse(source)
    nested = {id(node) for scope in ast.walk(tree) if isinstance(scope, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                                         ast.ClassDef))
              for node in ast.walk(scope) if isinstance(node, (ast.Import, ast.ImportFrom))}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno, id(node) in nested) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found += [(node.module, node.lineno, id(node) in nested)]
            found += [(f"{node.module}.{alias.name}", node.lineno, id(node) in nested) for alias in node.names]
    return found


def lab_imports(source: str) -> list[int]:
    return sorted({line for module, line, _ in imported(source) if module == LAB or module.startswith(f"{LAB}.")})


def test_the_check_finds_the_lab_however_it_is_imported():
    assert lab_imports("import sqs_fleet.lab.workers\n") == [1]
    assert lab_imports("from sqs_fleet.lab.lifecycle import LifecycleActions\n") == [1]
    assert lab_imports("from sqs_fleet import lab\n") == [1]
    assert lab_imports("def f():\n    from sqs_fleet.lab.fleet import Lab\n") == [2]
    assert lab_imports("from sqs_fleet.sim.semantics import ALARM\nimport sqs_fleet.labels\n") == []


@pytest.mark.parametrize("module", sorted(SIM.glob("*.py")), ids=lambda path: path.name)
def test_no_module_of_the_simulated_aws_imports_the_lab(module):
    assert lab_imports(module.read_text()) == [], f"{module.name} imports {LAB}"


@pytest.mark.parametrize("module", sorted(SIM.glob("*.py")), ids=lambda path: path.name)
def test_the_simulated_aws_imports_at_the_top_of_its_modules(module):
    inside = [(name, line) for name, line, nested in imported(module.read_text()) if nested]
    assert inside == [], f"{module.name} imports inside a function or class"
