"""The report's images of the dashboards, on the emulator: every widget of the SQS and EC2 dashboards that
site.yml made, drawn from the widget JSON CloudWatch holds and the metric data over the run's span."""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from sqs_fleet.scaletest.widgets import (
    ALARM_TABLE,
    LOG_QUERY_EMULATED,
    RENDERED,
    WidgetImage,
    render_dashboards,
    timestamp,
)
from sqs_fleet.stack import Stack

PNG = b"\x89PNG\r\n\x1a\n"
VISIBLE, IN_FLIGHT = [3.0, 5.0, 2.0], [1.0, 0.0, 4.0]


@pytest.fixture(scope="module")
def span() -> tuple[datetime.datetime, datetime.datetime]:
    start = datetime.datetime.now(datetime.timezone.utc).replace(second=0, microsecond=0)
    return start - datetime.timedelta(minutes=10), start


@pytest.fixture(scope="module")
def rendered(stack: Stack, aws, span, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[WidgetImage]]:
    """Three minutes of the queue's depth published as SQS would, then both dashboards rendered over the span."""
    start, end = span
    for minute, (visible, in_flight) in enumerate(zip(VISIBLE, IN_FLIGHT, strict=True), start=1):
        aws("cloudwatch").put_metric_data(Namespace="AWS/SQS", MetricData=[
            {"MetricName": name, "Dimensions": [{"Name": "QueueName", "Value": stack.queue_name}],
             "Value": value, "Timestamp": start + datetime.timedelta(minutes=minute)}
            for name, value in (("ApproximateNumberOfMessagesVisible", visible),
                                ("ApproximateNumberOfMessagesNotVisible", in_flight))])
    out = tmp_path_factory.mktemp("report")
    return out, render_dashboards(aws("cloudwatch"), list(stack.dashboards.values()), start, end, out,
                                  on_aws=False)


def body(aws: Any, dashboard: str) -> dict[str, Any]:
    return dict(json.loads(aws("cloudwatch").get_dashboard(DashboardName=dashboard)["DashboardBody"]))


def test_the_emulator_has_no_widget_images(stack: Stack, aws, span):
    """Why the report draws them itself."""
    widget = body(aws, stack.dashboards["sqs"])["widgets"][0]["properties"]
    with pytest.raises(ClientError):
        aws("cloudwatch").get_metric_widget_image(MetricWidget=json.dumps(widget))


def test_every_widget_is_one_png_titled_as_its_json(stack: Stack, aws, rendered):
    out, images = rendered
    for dashboard in stack.dashboards.values():
        widgets = body(aws, dashboard)["widgets"]
        mine = [image for image in images if image.dashboard == dashboard]
        assert [image.title for image in mine] == [w["properties"]["title"] for w in widgets]
        assert [image.path for image in mine] == [f"report/widgets/{dashboard}-{n}.png"
                                                 for n in range(1, len(widgets) + 1)]
        metric_widgets = [w for w in widgets if w["type"] == "metric"]
        assert metric_widgets and sum(image.made == RENDERED for image in mine) == len(metric_widgets)
        for image in mine:
            assert (out / image.path).read_bytes().startswith(PNG), image
    made = {image.title: image.made for image in images}
    assert made["Queue alarms"] == ALARM_TABLE
    assert made["Vehicles processed (consumer log)"] == LOG_QUERY_EMULATED


def test_the_backlog_expression_is_the_sum_of_what_was_published(stack: Stack, rendered, span):
    out, images = rendered
    start, _ = span
    backlog = next(image for image in images if image.title == "Backlog: visible and in flight")
    data = json.loads((out / backlog.path).with_suffix(".json").read_text())
    moments = [timestamp(start + datetime.timedelta(minutes=minute)) for minute in (1, 2, 3)]
    assert data["visible"]["points"] == [list(point) for point in zip(moments, VISIBLE, strict=True)]
    assert data["in flight"]["points"] == [list(point) for point in zip(moments, IN_FLIGHT, strict=True)]
    assert data["backlog"]["expression"] == "visible + inflight"
    assert data["backlog"]["points"] == [[moment, v + f] for moment, v, f in zip(moments, VISIBLE, IN_FLIGHT,
                                                                                 strict=True)]
