"""Stopping a server this process started reaps it (a zombie would look alive until SIGKILL and stay a zombie)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from sqs_fleet.lab.emulator import stop_pid


def test_a_server_this_process_started_is_stopped_and_reaped():
    # As start_emulator does: the Popen object is not kept, only the pid.
    pid = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"]).pid  # noqa: S603
    stop_pid(pid, wait_seconds=60)
    with pytest.raises(ChildProcessError):  # already reaped, so not left a zombie
        os.waitpid(pid, os.WNOHANG)


def test_a_gone_process_is_left_alone():
    process = subprocess.Popen([sys.executable, "-c", "pass"])  # noqa: S603
    process.wait()
    stop_pid(process.pid)  # no error: there is nothing to stop
