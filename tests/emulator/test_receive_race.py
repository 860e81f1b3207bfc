"""SQS returns a message to one receive only until its visibility timeout ends. moto 5.2's threaded server checks
that a message is visible and then marks it received without a lock, so two receives at once can both return it;
the lab's emulator (sqs_fleet.lab.moto_server) serialises one queue's receives."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from sqs_fleet import REPO
from support import receive_race
from support.receive_race import received_twice

RACE = Path(receive_race.__file__)


def test_concurrent_receives_never_return_a_message_twice_within_its_visibility(aws):
    """The lab's emulator as the tests and `make demo` run it: 16 consumers, 200 messages, three rounds."""
    assert [received_twice(lambda: aws("sqs")) for _ in range(3)] == [0, 0, 0]


def run_race(server: str, *options: str) -> list[int]:
    result = subprocess.run([sys.executable, str(RACE), server, *options], cwd=REPO, capture_output=True,
                            text=True, check=True, timeout=600)
    rounds: list[int] = json.loads(result.stdout.splitlines()[-1])["duplicates_per_round"]
    return rounds


def test_plain_moto_returns_a_message_twice_and_the_correction_does_not():
    """The same consumers on moto served in one process with a very short thread switch interval, which makes the
    race show within a few rounds (up to 30 on a loaded machine): plain moto returns some messages twice (so the
    check above can fail), the corrected server none."""
    plain = run_race("plain", "--rounds", "30", "--until-duplicate")
    assert plain[-1] > 0, f"plain moto returned no message twice in {len(plain)} rounds"
    assert run_race("corrected", "--rounds", "3") == [0, 0, 0]
