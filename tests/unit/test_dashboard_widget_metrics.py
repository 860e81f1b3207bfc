"""A dashboard widget's `metrics` in CloudWatch's compact form, read as CloudWatch reads it, and the request
the report sends to GetMetricWidgetImage on AWS (checked with a botocore Stubber, no network)."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import boto3
import pytest
from botocore.stub import Stubber

from sqs_fleet.scaletest.report import dashboard_images
from sqs_fleet.scaletest.widgets import (
    ALARM_TABLE,
    FROM_CLOUDWATCH,
    RENDERED,
    WidgetMetric,
    expand,
    image_size,
    parse_metrics,
    render_dashboards,
)

SQS = ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", "work"]


def test_dots_repeat_the_previous_metric_and_options_never_carry_over():
    entries = [
        [*SQS, {"stat": "Maximum", "label": "visible"}],
        ["...", "dead", {"label": "dead letters"}],             # all but the last value repeated
        [".", "NumberOfMessagesSent", ".", "."],                # each '.' repeats its position
        ["...", {"stat": "Sum", "period": 300}],                # the same metric again, other options
        [{"expression": "m1 + m2", "label": "both", "id": "e1"}],
    ]
    assert expand(entries) == [
        (SQS, {"stat": "Maximum", "label": "visible"}),
        ([*SQS[:3], "dead"], {"label": "dead letters"}),
        (["AWS/SQS", "NumberOfMessagesSent", "QueueName", "dead"], {}),
        (["AWS/SQS", "NumberOfMessagesSent", "QueueName", "dead"], {"stat": "Sum", "period": 300}),
        ([], {"expression": "m1 + m2", "label": "both", "id": "e1"}),
    ]


def test_metrics_take_the_widgets_stat_and_period_unless_their_options_say_otherwise():
    properties = {"stat": "Maximum", "period": 120, "metrics": [
        [*SQS, {"label": "visible", "id": "visible"}],
        ["...", "NumberOfMessagesSent", "QueueName", "work", {"stat": "Sum", "period": 60, "yAxis": "right"}],
        ["AWS/EC2", "CPUUtilization", {"visible": False}],
        [{"expression": "visible + m2", "id": "sum"}],
    ]}
    assert parse_metrics(properties) == [
        WidgetMetric(id="visible", label="visible", stat="Maximum", period=120, namespace="AWS/SQS",
                     name="ApproximateNumberOfMessagesVisible", dimensions=(("QueueName", "work"),)),
        WidgetMetric(id="m2", label="NumberOfMessagesSent", stat="Sum", period=60, namespace="AWS/SQS",
                     name="NumberOfMessagesSent", dimensions=(("QueueName", "work"),), y_axis="right"),
        WidgetMetric(id="m3", label="CPUUtilization", stat="Maximum", period=120, namespace="AWS/EC2",
                     name="CPUUtilization", visible=False),
        WidgetMetric(id="sum", label="visible + m2", stat="Maximum", period=120, expression="visible + m2"),
    ]
    assert parse_metrics({"metrics": [SQS]})[0].stat == "Average"  # CloudWatch's default
    assert parse_metrics({"metrics": [SQS]})[0].period == 60


@pytest.mark.parametrize("entries", [
    [["...", "work"]],                                    # nothing to repeat
    [SQS, [".", ".", ".", ".", ".", "x"]],                # '.' past the previous metric's values
    [["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName"]],  # a dimension without its value
    [[{"label": "nothing"}]],
    [["AWS/SQS", 7]],
])
def test_malformed_metrics_are_named(entries):
    with pytest.raises(ValueError, match="metric"):
        expand(entries)


def test_on_aws_each_metric_widget_is_cloudwatchs_own_image(tmp_path: Path):
    start = datetime.datetime(2025, 3, 1, 12, 0, tzinfo=datetime.timezone.utc)
    end = start + datetime.timedelta(minutes=25, seconds=30)
    properties = {"title": "Backlog", "region": "eu-west-1", "period": 60, "view": "timeSeries", "stacked": False,
                  "metrics": [[*SQS, {"stat": "Maximum", "id": "visible"}],
                              [{"expression": "visible * 2", "id": "e1"}]]}
    alarm = "arn:aws:cloudwatch:eu-west-1:123456789012:alarm:work-dead-letters"
    body = {"widgets": [{"type": "metric", "x": 0, "y": 0, "width": 12, "height": 6, "properties": properties},
                        {"type": "alarm", "x": 12, "y": 0, "width": 12, "height": 6,
                         "properties": {"title": "Alarms", "alarms": [alarm]}}]}
    png = b"\x89PNG\r\n\x1a\n from CloudWatch"
    cloudwatch = boto3.client("cloudwatch", region_name="eu-west-1", aws_access_key_id="x",
                              aws_secret_access_key="x")  # noqa: S106 - never sent: the stubber answers
    with Stubber(cloudwatch) as stub:
        stub.add_response("get_dashboard", {"DashboardBody": json.dumps(body), "DashboardName": "board"},
                          {"DashboardName": "board"})
        expected = json.dumps({**properties, "width": 600, "height": 400,
                               "start": "2025-03-01T12:00:00.000Z", "end": "2025-03-01T12:25:30.000Z"},
                              sort_keys=True)
        stub.add_response("get_metric_widget_image", {"MetricWidgetImage": png},
                          {"MetricWidget": expected, "OutputFormat": "png"})
        stub.add_response("describe_alarms", {"MetricAlarms": [
            {"AlarmName": "work-dead-letters", "StateValue": "OK", "StateUpdatedTimestamp": end}]},
            {"AlarmNames": ["work-dead-letters"], "AlarmTypes": ["MetricAlarm", "CompositeAlarm"]})
        images = render_dashboards(cloudwatch, ["board"], start, end, tmp_path, on_aws=True)
        stub.assert_no_pending_responses()
    assert images == [("board", "Backlog", "report/widgets/board-1.png", FROM_CLOUDWATCH),
                      ("board", "Alarms", "report/widgets/board-2.png", ALARM_TABLE)]
    assert (tmp_path / "report/widgets/board-1.png").read_bytes() == png
    assert (tmp_path / "report/widgets/board-2.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_a_widgets_grid_size_gives_its_pixels():
    assert image_size({"width": 12, "height": 6}) == (600, 400)  # GetMetricWidgetImage's default size
    assert image_size({"width": 24, "height": 40}) == (1200, 2000)  # capped at the API's maximum


def test_the_report_shows_each_image_with_its_caption_and_how_it_was_made():
    section = dashboard_images([("board", "Backlog", "report/widgets/board-1.png", RENDERED)])
    assert section.startswith("\n## What the dashboards show\n")
    assert f"![Backlog](report/widgets/board-1.png)\n*`board`: Backlog; {RENDERED}.*" in section
    assert dashboard_images([]) == ""  # a report made before the dashboards were drawn


def test_a_refused_widget_image_is_named_and_the_report_goes_on(tmp_path: Path):
    start = datetime.datetime(2025, 3, 1, 12, 0, tzinfo=datetime.timezone.utc)
    body = {"widgets": [{"type": "metric", "width": 12, "height": 6,
                         "properties": {"title": "Backlog", "metrics": [SQS]}}]}
    cloudwatch = boto3.client("cloudwatch", region_name="eu-west-1", aws_access_key_id="x",
                              aws_secret_access_key="x")  # noqa: S106 - never sent: the stubber answers
    with Stubber(cloudwatch) as stub:
        stub.add_response("get_dashboard", {"DashboardBody": json.dumps(body)}, {"DashboardName": "board"})
        stub.add_client_error("get_metric_widget_image", "AccessDenied", "not authorized")
        [image] = render_dashboards(cloudwatch, ["board"], start, start + datetime.timedelta(hours=1), tmp_path,
                                    on_aws=True)
    assert image.made == "no image: GetMetricWidgetImage failed (AccessDenied)"
    assert (tmp_path / image.path).read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
