"""Every module of the project's collection carries DOCUMENTATION, EXAMPLES and RETURN that parse as YAML
(ansible-doc and the collection's docs read them; a stray ': ' or ' #' in a description breaks them)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from sqs_fleet import REPO

MODULES = sorted((REPO / "collections/ansible_collections/sqs_fleet/aws/plugins/modules").glob("*.py"))


def documents(path: Path) -> dict[str, str]:
    tree = ast.parse(path.read_text())
    return {target.id: node.value.value for node in tree.body if isinstance(node, ast.Assign)
            for target in node.targets if isinstance(target, ast.Name)
            and target.id in ("DOCUMENTATION", "EXAMPLES", "RETURN") and isinstance(node.value, ast.Constant)}


@pytest.mark.parametrize("path", MODULES, ids=[p.stem for p in MODULES])
def test_module_documentation_parses(path):
    found = documents(path)
    assert set(found) == {"DOCUMENTATION", "EXAMPLES", "RETURN"}
    documentation = yaml.safe_load(found["DOCUMENTATION"])
    assert documentation["module"] == path.stem
    assert all(isinstance(option.get("description"), (str, list)) for option in documentation["options"].values())
    assert isinstance(yaml.safe_load(found["EXAMPLES"]), list)
    assert isinstance(yaml.safe_load(found["RETURN"]), dict)
