"""The lab's corrections of moto: where moto 5.2 accepts what AWS refuses, or does what AWS never does, in the
APIs this stack uses. Each module corrects one service and lists its replacements (PATCHES) and the private names
of moto it reads (PRIVATE_NAMES); docs/emulator.md says what each corrects and why.

The corrections were written against one moto release (MOTO_VERIFIED): `installed()` applies them only within
that window, for the life of a `with` block (the emulator's server process), and removes them after; outside
the window the emulator runs plain moto and says which release and window it found.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from importlib.metadata import version

from sqs_fleet.lab.moto_corrections import autoscaling, lambda_network, lambda_settings, launch_templates, sqs

# The moto releases the corrections were verified with (lowest, highest), the pinned one in constraints.txt.
MOTO_VERIFIED = ((5, 2, 5), (5, 2, 5))
# Private names of moto this module reads (tests/unit/test_patched_dependencies.py checks each module's list).
PRIVATE_NAMES: dict[str, str] = {}


def release(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".")[:3] if part.isdigit())


def outside_window() -> str | None:
    """Why the corrections cannot apply to the installed moto, or None."""
    found = version("moto")
    lowest, highest = MOTO_VERIFIED
    if lowest <= release(found) <= highest:
        return None
    window = "..".join(".".join(map(str, end)) for end in MOTO_VERIFIED)
    return (f"moto {found} is not a release the lab's corrections were verified with ({window}): the emulator "
            "runs plain moto, which accepts what AWS refuses (docs/emulator.md)")


@contextlib.contextmanager
def installed() -> Iterator[None]:
    """Every correction applied, and removed on the way out (in the reverse order)."""
    patches = [patch for module in (launch_templates, autoscaling, sqs, lambda_network, lambda_settings)
               for patch in module.PATCHES]
    applied = []
    try:
        for patch in patches:
            patch.apply()
            applied.append(patch)
        yield
    finally:
        for patch in reversed(applied):
            patch.remove()
