"""The controller side of sqs-fleet, split by job.

- `sqs_fleet.stack`: the stack's names and addresses, read from what site.yml recorded (one loader).
- `sqs_fleet.aws`: the one factory of AWS clients.
- `sqs_fleet.lab`: stand-ins for what the emulator cannot do: the emulator itself, booted test nodes.
- `sqs_fleet.sim`: AWS's scaling semantics and the loop that plays CloudWatch and Auto Scaling locally.
- `sqs_fleet.scaletest`: the scale-out / scale-in test plan and REPORT.md.
- `sqs_fleet.ops`: operator tools (stack summary, policy and role-doc linters).

What ships to worker nodes is not here: it is files/ (modules consumer, producer, vehicles), standalone on
purpose: standard library and boto3 only, Python 3.9 and later.
"""

from __future__ import annotations

from pathlib import Path

# The repository this package is installed from (editable install: src/sqs_fleet/ -> the repository root).
REPO = Path(__file__).resolve().parents[2]
# Where local runs keep their state and generated files; never committed.
RUN_DIR = REPO / ".run"
