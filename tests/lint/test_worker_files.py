"""What ships to workers (files/) against how it is shipped: every module a program imports, directly or through
another module, is copied beside it by its role (or zipped beside the Lambda handler); each file imports the same
modules as a script and as part of the package sqs_fleet_workers; no file grows past 400 lines."""

from __future__ import annotations

import ast
import re

import pytest
import yaml

from sqs_fleet import REPO

FILES = REPO / "files"
MODULES = {path.stem for path in FILES.glob("*.py") if path.name != "__init__.py"}
LONGEST = 400  # lines: a longer file is split by job (as holds.py is out of consumer.py)


def imports(name: str) -> tuple[set[str], set[str]]:
    """The modules of files/ that files/<name>.py imports: (relative: as part of the package, by top-level name:
    as a script)."""
    relative: set[str] = set()
    flat: set[str] = set()
    for node in ast.walk(ast.parse((FILES / f"{name}.py").read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            relative |= {node.module} if node.module else {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module in MODULES:
            flat.add(node.module)
        elif isinstance(node, ast.Import):
            flat |= {alias.name for alias in node.names if alias.name in MODULES}
    return relative, flat


def needed(program: str) -> set[str]:
    """The program's file and every module of files/ it needs, through the modules it imports."""
    found, todo = set(), [program]
    while todo:
        name = todo.pop()
        if name not in found:
            found.add(name)
            todo += sorted(imports(name)[1])
    return {f"{name}.py" for name in found}


def copied(role: str, program: str) -> set[str]:
    """The files the role's install phase copies with the program."""
    for task in yaml.safe_load((REPO / "roles" / role / "tasks" / "install.yml").read_text()):
        copy = task.get("ansible.builtin.copy")
        if copy and (task.get("loop") and f"{program}.py" in task["loop"] or copy.get("src") == f"{program}.py"):
            return set(task.get("loop") or [copy["src"]])
    raise AssertionError(f"roles/{role}/tasks/install.yml copies no {program}.py")


@pytest.mark.parametrize("name", sorted(MODULES))
def test_a_module_imports_the_same_modules_as_a_script_and_in_the_package(name: str) -> None:
    relative, flat = imports(name)
    assert relative == flat, f"files/{name}.py: relative imports {sorted(relative)}, flat imports {sorted(flat)}"


@pytest.mark.parametrize(("role", "program"), [("consumer", "consumer"), ("celery_worker", "celery_worker"),
                                               ("lifecycle_watcher", "lifecycle_watcher")])
def test_a_role_copies_every_module_its_program_imports(role: str, program: str) -> None:
    shipped = copied(role, program)
    assert needed(program) <= shipped, f"roles/{role} does not copy {sorted(needed(program) - shipped)}"
    for name in shipped:  # the role's files are the ones in files/, not copies that could drift
        assert (REPO / "roles" / role / "files" / name).resolve() == FILES / name


def test_the_lambda_package_holds_every_module_the_handler_imports() -> None:
    """The redis reader's package, the larger one: the SQS reader's lacks only redis_backlog.py, which the handler
    imports only in the redis reader."""
    sources = yaml.safe_load((REPO / "roles" / "publisher" / "vars" / "main.yml").read_text())["publisher__sources"]
    shipped = {"backlog_publisher.py"} | set(re.findall(r"'/(\w+\.py)'", sources))
    assert needed("backlog_publisher") <= shipped


def test_no_file_that_ships_to_workers_is_longer_than_400_lines() -> None:
    lengths = {path.name: len(path.read_text().splitlines()) for path in FILES.glob("*.py")}
    assert {name: length for name, length in lengths.items() if length > LONGEST} == {}
