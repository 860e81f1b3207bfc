"""What ships to workers runs on the oldest Python the nodes have (3.9, Amazon Linux 2023's system Python):
the producer and the consumer, started with a real Python 3.9 interpreter and its own boto3, against the
emulator. `make py39` makes that interpreter's venv where a Python 3.9 is installed."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from sqs_fleet import REPO
from sqs_fleet_workers import consumer
from support.sqs import Queues, events, processed_ids, script_env

PYTHON39 = REPO / ".venv-py39" / "bin" / "python"
FILES = Path(consumer.__file__).parent

pytestmark = pytest.mark.skipif(not PYTHON39.exists(), reason=f"no Python 3.9 venv at {PYTHON39} (make py39)")


def run39(emulator, script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(PYTHON39), str(FILES / script), *args], env=script_env(emulator), capture_output=True,
                          text=True, timeout=120, check=False)


def test_the_worker_scripts_run_on_python_3_9(emulator, aws):
    version = subprocess.run([str(PYTHON39), "-c", "import sys; print(sys.version_info[:2])"], capture_output=True,
                             text=True, check=True).stdout.strip()
    assert version == "(3, 9)"
    queues = Queues(aws("sqs"))

    sent = run39(emulator, "producer.py", "--queue", queues.url, "--count", "5", "--seed", "39", "--json")
    assert sent.returncode == 0, sent.stderr
    assert json.loads(sent.stdout)["sent"] == 5

    consumed = run39(emulator, "consumer.py", "--queue", queues.url, "--wait-time", "0", "--max-messages", "5",
                     "--poll-interval", "0")
    assert consumed.returncode == 0, consumed.stderr
    assert sorted(processed_ids(events(consumed.stdout))) == [f"VH{n}" for n in range(2001, 2006)]
    assert queues.counts() == (0, 0)
