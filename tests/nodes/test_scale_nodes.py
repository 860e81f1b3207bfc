"""The scale test with booted nodes as the workers: every instance the loop asks the emulator for boots a
node that runs the launch template's user-data (cloud-init, ansible-pull of this commit, the consumer
role), consumes, and on scale-in drains and goes. Needs root and systemd-nspawn."""

from __future__ import annotations

import json

import pytest

from sqs_fleet.lab.node import missing_requirements
from sqs_fleet.scaletest import plan
from sqs_fleet.scaletest.report import DATA_FILE

pytestmark = pytest.mark.skipif(missing_requirements() is not None, reason=f"{missing_requirements()}")


def test_a_burst_boots_nodes_that_consume_it_all_and_the_group_returns_to_zero(monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://lab")  # the tool runs its own lab; nothing goes to AWS
    assert plan.main(["--workers", "nodes", "--messages", "20", "--period-seconds", "5",
                      "--idle-minutes", "3", "--out", str(tmp_path)]) == 0

    result = json.loads((tmp_path / DATA_FILE).read_text())
    numbers, timeline = result["figures"], result["timeline"]
    assert numbers["messages processed"] == 20 and numbers["messages lost"] == 0
    assert numbers["peak instances"] == 2  # ceil(20 / 10)
    assert numbers["minutes to first scale-out"] == 0
    assert 0 < numbers["minutes to first instance in service"] <= numbers["minutes to queue drained"]
    assert timeline[-1]["desired"] == 0 and timeline[-1]["instances"] == 0
    assert not [d for p in timeline for d in p["decisions"] if "failed to boot" in d]
    workers = {e["worker"] for e in result["worker log excerpt"]}
    assert all(w.startswith("i-") for w in workers)  # the log lines came from the nodes named after instances
    report = (tmp_path / "REPORT.md").read_text()
    assert "booted nodes" in report and "bootstrap: done" in report
