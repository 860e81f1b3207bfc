"""Shared fixtures: a private emulator per test session, the project's playbooks run on it, and the stack's
names read as the tools read them (sqs_fleet.stack).

The tiers are folders, each marked for `pytest -m`: unit (nothing needed), lint, emulator, nodes (root)."""

from __future__ import annotations

import functools
import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sqs_fleet import REPO
from sqs_fleet.aws import clients
from sqs_fleet.lab.emulator import Emulator, free_port, start_emulator
from sqs_fleet.lab.fleet import Lab
from sqs_fleet.stack import Stack
from support.ansible_runs import PlaybookRun, ansible_env, assert_ok

TIERS = ("unit", "lint", "emulator", "nodes")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Each test is marked with its tier, the folder it lives in; the booted-node tests go first, as theirs is
    the longest group of tests that run in one process (pytest_xdist_make_scheduler)."""
    for item in items:
        tier = item.path.parent.name
        if tier in TIERS:
            item.add_marker(getattr(pytest.mark, tier))
    items.sort(key=lambda item: item.path.parent.name != "nodes")  # stable: each file keeps its order


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Under pytest-xdist, the unit of work a process takes: a file's tests together, as they share the stack
    their fixtures make on that process's emulator; every booted-node test together, as they share one bridge
    and one node image."""
    from xdist.scheduler import LoadScopeScheduling

    class FilesAndNodes(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return "tests/nodes" if path.startswith("tests/nodes/") else path

    return FilesAndNodes(config, log)


@pytest.fixture(scope="session")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    server = start_emulator(free_port(), tmp_path_factory.mktemp("emulator") / "moto.log")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def stack_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where site.yml records the stack in this test session (stack_output_file)."""
    return tmp_path_factory.mktemp("stack") / "local.json"


@pytest.fixture(scope="session")
def names_of() -> Callable[[str], Stack]:
    """An environment's names, rendered from its inventory (inventory/<environment>): known before anything is
    deployed. Rendered once per environment in a test run, when a test first asks (never when tests are
    collected: rendering runs Ansible)."""
    return functools.cache(Stack.from_inventory)


@pytest.fixture(scope="session")
def names(names_of: Callable[[str], Stack]) -> Stack:
    """The local environment's names, rendered from inventory/local."""
    return names_of("local")


@pytest.fixture(scope="session")
def run_playbook(emulator: Emulator, tmp_path_factory: pytest.TempPathFactory, stack_file: Path):
    home = tmp_path_factory.mktemp("ansible-home")

    def run(
        playbook: str, *args: str, extra_vars: dict[str, Any] | None = None, env: dict[str, str] | None = None
    ) -> PlaybookRun:
        command: list[str] = ["ansible-playbook", playbook, *args,
                              "-e", json.dumps({"stack_output_file": str(stack_file), **(extra_vars or {})})]
        result = subprocess.run(  # noqa: S603 - the project's own playbooks
            command, cwd=REPO, env={**ansible_env(emulator, home), **(env or {})},
            capture_output=True, text=True, check=False, timeout=900,
        )
        return PlaybookRun(result.returncode, result.stdout, result.stderr)

    return run


@pytest.fixture(scope="module")
def deployed(emulator: Emulator, run_playbook: Callable[..., PlaybookRun]) -> PlaybookRun:
    """The site.yml run that made the test module's stack, on an emptied emulator (once per module). A module
    that deploys otherwise (another inventory, the lab's emulator) defines its own."""
    emulator.reset()
    run = run_playbook("site.yml")
    assert_ok(run, ["site.yml"])
    return run


@pytest.fixture(scope="module")
def stack(deployed: PlaybookRun, stack_file: Path) -> Stack:
    """The stack the module's site.yml (`deployed`) recorded, read as the tools read it."""
    return Stack.load(stack_file)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """The booted-node tests' stand-in for AWS (an emulator, a git daemon serving HEAD, metadata and lifecycle
    services on the nodes' bridge), one per test module."""
    with Lab(tmp_path_factory.mktemp("lab")) as running:
        yield running


@pytest.fixture(scope="session")
def run_module(emulator: Emulator, tmp_path_factory: pytest.TempPathFactory):
    """One sqs_fleet.aws module run on localhost, its result a dict: run_module('scaling_group', {...}, '--check')."""
    home = tmp_path_factory.mktemp("ansible-module-home")

    def run(module: str, args: dict[str, Any], *options: str) -> dict[str, Any]:
        command = ["ansible", "localhost", "-m", f"sqs_fleet.aws.{module}", "-a", json.dumps(args), "--diff", *options]
        # Ad-hoc commands use the json callback only when told to load callbacks.
        env = {**ansible_env(emulator, home), "ANSIBLE_LOAD_CALLBACK_PLUGINS": "true"}
        result = subprocess.run(  # noqa: S603 - the project's own modules
            command, cwd=REPO, env=env, capture_output=True, text=True, check=False, timeout=300,
        )
        try:
            report = PlaybookRun(result.returncode, result.stdout, result.stderr).report
        except ValueError as error:
            raise AssertionError(f"{module}: no result: {result.stdout[-2000:]} {result.stderr[-2000:]}") from error
        outcome: dict[str, Any] = report["plays"][0]["tasks"][0]["hosts"]["localhost"]
        return outcome

    return run


@pytest.fixture(scope="session")
def aws(emulator: Emulator):
    """boto3 clients on the emulator, made as the tools make them: aws('sqs')."""
    return clients(emulator.environment())

