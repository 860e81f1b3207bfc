"""sqs_fleet.aws.cloudwatch_dashboard on the emulator: create, rerun, check mode, update, delete."""

from __future__ import annotations

import json
from typing import Any

from support.ansible_runs import ok

NAME = "modules-dashboard"


def widget(title: str, metric: str) -> dict[str, Any]:
    return {
        "type": "metric", "x": 0, "y": 0, "width": 12, "height": 6,
        "properties": {"title": title, "region": "us-east-1", "metrics": [["AWS/SQS", metric, "QueueName", "jobs"]]},
    }


BODY = {"widgets": [widget("Visible", "ApproximateNumberOfMessagesVisible")]}
UPDATED = {"widgets": [*BODY["widgets"], widget("In flight", "ApproximateNumberOfMessagesNotVisible")]}


def body_on_emulator(aws) -> dict[str, Any] | None:
    cloudwatch = aws("cloudwatch")
    if not cloudwatch.list_dashboards(DashboardNamePrefix=NAME)["DashboardEntries"]:
        return None
    body: dict[str, Any] = json.loads(cloudwatch.get_dashboard(DashboardName=NAME)["DashboardBody"])
    return body


def test_dashboard_lifecycle(run_module, aws):
    if body_on_emulator(aws) is not None:
        aws("cloudwatch").delete_dashboards(DashboardNames=[NAME])
    present = {"name": NAME, "body": BODY}

    planned = ok(run_module("cloudwatch_dashboard", present, "--check"))
    assert planned["changed"] and planned["diff"] == {"before": {}, "after": BODY}
    assert body_on_emulator(aws) is None, "check mode created the dashboard"

    created = ok(run_module("cloudwatch_dashboard", present))
    assert created["changed"] and created["arn"].endswith(f"dashboard/{NAME}")
    assert body_on_emulator(aws) == BODY

    assert not ok(run_module("cloudwatch_dashboard", present))["changed"], "a rerun changed the dashboard"
    assert not ok(run_module("cloudwatch_dashboard", present, "--check"))["changed"]

    update = {"name": NAME, "body": UPDATED}
    planned = ok(run_module("cloudwatch_dashboard", update, "--check"))
    assert planned["changed"] and planned["diff"] == {"before": BODY, "after": UPDATED}
    assert body_on_emulator(aws) == BODY, "check mode changed the dashboard"
    assert ok(run_module("cloudwatch_dashboard", update))["changed"]
    assert body_on_emulator(aws) == UPDATED
    assert not ok(run_module("cloudwatch_dashboard", update))["changed"]

    absent = {"name": NAME, "state": "absent"}
    planned = ok(run_module("cloudwatch_dashboard", absent, "--check"))
    assert planned["changed"] and planned["diff"] == {"before": UPDATED, "after": {}}
    assert body_on_emulator(aws) == UPDATED, "check mode deleted the dashboard"
    assert ok(run_module("cloudwatch_dashboard", absent))["changed"]
    assert body_on_emulator(aws) is None
    assert not ok(run_module("cloudwatch_dashboard", absent))["changed"], "deleting a missing dashboard changed it"


def test_invalid_widget_fails_before_any_call(run_module, aws):
    broken = {"widgets": [{"type": "metric", "x": 0, "y": 0, "width": 6, "height": 6}]}
    result = run_module("cloudwatch_dashboard", {"name": f"{NAME}-broken", "body": broken})
    assert result.get("failed") and "widget 0 has no properties" in result["msg"]
    assert not aws("cloudwatch").list_dashboards(DashboardNamePrefix=f"{NAME}-broken")["DashboardEntries"]
