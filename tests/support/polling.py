"""The one way the tests wait for something: poll a check until it holds or a deadline passes."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(check: Callable[[], T], timeout: float, what: str | Callable[[], str], interval: float = 1.0) -> T:
    """check()'s first truthy result, polled every `interval` seconds; after `timeout` seconds an assertion error
    naming `what` (a callable is asked then, for what it shows of the state at that moment). A check may itself
    raise to stop waiting early (a process that exited, say)."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what() if callable(what) else what}")
        time.sleep(interval)
