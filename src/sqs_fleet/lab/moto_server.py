"""moto's server (`moto_server`) with the lab's corrections (sqs_fleet.lab.moto_corrections) installed for the
life of the process, so that the emulator behaves as AWS does where this stack depends on it. Outside the moto
releases the corrections were verified with, it serves plain moto and says so on stderr.

    python -m sqs_fleet.lab.moto_server -H 127.0.0.1 -p 4566      # what sqs_fleet.lab.emulator runs
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from moto.server import main as serve

from sqs_fleet.lab.moto_corrections import installed, outside_window


def main(argv: Sequence[str] | None = None) -> None:
    arguments = list(sys.argv[1:] if argv is None else argv)
    problem = outside_window()
    if problem:
        print(f"WARNING: {problem}", file=sys.stderr)
        serve(arguments)
        return
    with installed():
        serve(arguments)


if __name__ == "__main__":
    main()
