"""The scale test with booted nodes as the workers: every instance the loop asks the emulator for boots a
node that runs the launch template's user-data (cloud-init, ansible-pull of this commit, the consumer and
lifecycle watcher roles), completes its launch action once consuming, consumes, and on scale-in drains and
completes its termination action itself. Needs root and systemd-nspawn."""

from __future__ import annotations

import datetime
import json

import pytest

from sqs_fleet.lab.node import missing_requirements
from sqs_fleet.scaletest import plan
from sqs_fleet.scaletest.figures import DATA_FILE

pytestmark = pytest.mark.skipif(missing_requirements() is not None, reason=f"{missing_requirements()}")


def test_a_burst_boots_nodes_that_consume_it_all_and_the_group_returns_to_zero(monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://lab")  # the tool runs its own lab; nothing goes to AWS
    assert plan.main(["--workers", "nodes", "--messages", "20", "--period-seconds", "5",
                      "--idle-minutes", "3", "--out", str(tmp_path)]) == 0

    result = json.loads((tmp_path / DATA_FILE).read_text())
    numbers, timeline = result["figures"], result["timeline"]
    assert numbers["messages processed"] == 20 and numbers["messages lost"] == 0
    assert numbers["peak instances"] == 2  # ceil(20 / 10)
    # In AWS minutes (a tick is 60 s, or 10 s with the publisher's 10-second alarm): scaled out in tick 0,
    # decided at its end.
    assert numbers["minutes to first scale-out"] == 0
    assert numbers["seconds from first message to scale-out decision"] == result["conditions"]["tick seconds"]
    # A node says it is in service once its consumer is active; the loop sees it at its next tick, by which
    # time a small burst may already be drained.
    assert 0 < numbers["minutes to first message processed"] <= numbers["minutes to queue drained"]
    assert numbers["minutes to first instance in service"] > 0
    assert numbers["seconds from last message to last termination"] > 0 and numbers["spot interruptions"] == 0
    assert timeline[-1]["desired"] == 0 and timeline[-1]["instances"] == 0
    decisions = [d for p in timeline for d in p["decisions"]]
    # In service on the nodes' own word (launch action CONTINUE), however slow the boot (one may be scaled in
    # while still in Pending:Wait, once the other has taken half the burst); none failed or was abandoned; each
    # termination completed by the node's watcher, not by the drain hook's heartbeat.
    assert 1 <= sum("launch action CONTINUE: InService" in d for d in decisions) <= 2, decisions
    assert not [d for d in decisions if "failed to start" in d or "launch abandoned" in d or "timed out" in d]
    assert sum("termination action was completed with CONTINUE" in d for d in decisions) == 2, decisions
    workers = {e["worker"] for e in result["worker log excerpt"]}
    assert all(w.startswith("i-") for w in workers)  # the log lines came from the nodes named after instances
    show_drains(tmp_path / ".run" / "scale-test" / "workers")
    report = (tmp_path / "REPORT.md").read_text()
    assert "booted nodes" in report and "bootstrap: done" in report
    # The planner's prediction of the run, on the boots the run measured (each node: boot to launch action).
    inputs, rows = result["prediction"]["inputs"], result["prediction"]["rows"]
    assert 1 <= len(inputs["boots"]) <= 2 and all(b > 0 for b in inputs["boots"]), inputs
    assert inputs["boot seconds"] > 0 and inputs["messages"] == 20
    assert [r["figure"] for r in rows][0] == "seconds to first instance in service"
    assert all(r["predicted"] is not None and r["measured"] is not None for r in rows), rows
    assert "## The planner's prediction beside the measurement" in report


def show_drains(logs) -> None:
    """Per node, from its own logs: how long its drain took once its metadata said Terminated, and from its last
    message processed until it was gone (the latter includes the idle window before scale-in)."""
    def at(text: str) -> datetime.datetime:
        return datetime.datetime.fromisoformat(text.strip())

    for removed in sorted(logs.glob("*.removed.txt")):
        name = removed.name.removesuffix(".removed.txt")
        watcher, consumer = ([json.loads(line) for line in (logs / f"{name}{suffix}").read_text().splitlines()
                              if line.startswith("{")] for suffix in (".lifecycle.txt", ".log"))
        seen = next(at(e["ts"]) for e in watcher
                    if e["event"] == "target_lifecycle_state" and e["state"] == "Terminated")
        completed = next(at(e["ts"]) for e in watcher if e["event"] == "lifecycle_action_completed"
                         and e["hook"] == "drain")
        last = max((at(e["ts"]) for e in consumer if e["event"] == "message_processed"), default=None)
        gone = at(removed.read_text())
        print(f"\n{name}: Terminated seen -> action completed {(completed - seen).total_seconds():.1f} s, -> node gone "
              f"{(gone - seen).total_seconds():.1f} s; last message processed -> node gone "
              f"{(gone - last).total_seconds() if last else float('nan'):.1f} s")
