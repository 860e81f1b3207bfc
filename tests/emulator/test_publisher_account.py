"""The backlog publisher on an account whose Lambda concurrency quota leaves no room for a reservation (a new
account's can be 10; Lambda keeps 100 executions unreserved): site.yml deploys it unreserved with a warning, and a
rerun changes nothing. The emulator plays that account (SQS_FLEET_LAMBDA_ACCOUNT_CONCURRENCY); the session's
emulator plays a default account, where the reservation is made (test_publisher.py)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from sqs_fleet import REPO
from sqs_fleet.aws import clients
from sqs_fleet.lab.emulator import Emulator, free_port, start_emulator
from sqs_fleet.stack import Stack
from support.ansible_runs import PlaybookRun, ansible_env, assert_ok

WARNING = "No reserved concurrency of 1 for function"


@pytest.fixture(scope="module")
def small_account(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    work = tmp_path_factory.mktemp("small-account")
    with pytest.MonkeyPatch.context() as patch:  # the server inherits it; nothing else sees it
        patch.setenv("SQS_FLEET_LAMBDA_ACCOUNT_CONCURRENCY", "10")
        server = start_emulator(free_port(), work / "moto.log")
    yield server
    server.stop()


def site(server: Emulator, work: Path) -> PlaybookRun:
    result = subprocess.run(["ansible-playbook", "site.yml", "-e",  # noqa: S603, S607 - the project's playbook
                             json.dumps({"stack_output_file": str(work / "stack.json")})],
                            cwd=REPO, env=ansible_env(server, work / "ansible-home"), capture_output=True, text=True,
                            check=False, timeout=900)
    return PlaybookRun(result.returncode, result.stdout, result.stderr)


def warnings_of(run: PlaybookRun) -> list[str]:
    return [w for play in run.report["plays"] for task in play["tasks"]
            for w in task["hosts"].get("localhost", {}).get("warnings", [])]


def test_a_small_account_gets_the_publisher_unreserved_with_a_warning(small_account, tmp_path):
    aws = clients(small_account.environment())
    first = site(small_account, tmp_path)
    assert_ok(first, ["site.yml on a small account"])
    [warning] = [w for w in warnings_of(first) if WARNING in w]
    assert "the account allows 10 concurrent executions" in warning and "at least 100 unreserved" in warning
    function = Stack.load(tmp_path / "stack.json")["publisher"]["function"]
    assert "ReservedConcurrentExecutions" not in aws("lambda").get_function_concurrency(FunctionName=function)
    settings = aws("lambda").get_function_event_invoke_config(FunctionName=function)
    assert (settings["MaximumRetryAttempts"], settings["MaximumEventAgeInSeconds"]) == (0, 60)

    rerun = site(small_account, tmp_path)
    assert_ok(rerun, ["site.yml rerun on a small account"])
    assert rerun.stats["changed"] == 0 and any(WARNING in w for w in warnings_of(rerun))
