"""What a user sees on the stack's dashboards over one run: each widget as an image.

The widgets are read from the dashboards as CloudWatch holds them (GetDashboard), never from the templates.
- On AWS, a metric widget is CloudWatch's own image: GetMetricWidgetImage with the widget's properties, its
  size in pixels and the run's start and end (the MetricWidget format of the CloudWatch API reference).
- On the emulator, which has no GetMetricWidgetImage, a metric widget is drawn here from its definition and
  the data GetMetricData returns over the run, and labelled as such. Metric-math expressions, for which the
  emulator returns no values, are computed here from the queried series (sqs_fleet.sim.semantics).
- Everywhere, an alarm widget is a table of its alarms' states (DescribeAlarms), a log widget shows its Logs
  Insights query, a text widget its Markdown: GetMetricWidgetImage draws metric graphs only.
"""

from __future__ import annotations

import datetime
import json
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple

from botocore.exceptions import ClientError

from sqs_fleet.scaletest.figures import OUTPUTS
from sqs_fleet.sim.semantics import expression_value

WIDGETS = f"{OUTPUTS}/widgets"
DEFAULT_PERIOD = 60
DEFAULT_STAT = "Average"  # CloudWatch's default when neither the metric nor the widget names one
# A dashboard is 24 grid units wide; 12 x 6 units gives GetMetricWidgetImage's default 600 x 400 pixels.
PIXELS_PER_COLUMN, PIXELS_PER_ROW, MAX_PIXELS = 50, 400 / 6, 2000

FROM_CLOUDWATCH = "CloudWatch's image of the widget (GetMetricWidgetImage)"
RENDERED = "rendered locally from the widget definition; not CloudWatch's image"
ALARM_TABLE = "the alarms' states read with DescribeAlarms, drawn locally; not CloudWatch's image"
LOG_QUERY_EMULATED = "the widget's Logs Insights query; the emulator has no Logs Insights, so it was not run"
LOG_QUERY_AWS = "the widget's Logs Insights query (not run by the report: open the dashboard for its results)"
TEXT_SOURCE = "the widget's Markdown source"


class WidgetImage(NamedTuple):
    dashboard: str
    title: str
    path: str  # relative to the report's folder
    made: str  # how the image was made


@dataclass(frozen=True)
class WidgetMetric:
    """One entry of a metric widget's `metrics`: a metric (namespace, name, dimensions) or an expression."""

    id: str
    label: str
    stat: str
    period: int
    namespace: str = ""
    name: str = ""
    dimensions: tuple[tuple[str, str], ...] = ()
    expression: str = ""
    visible: bool = True
    y_axis: str = "left"

    def query(self, query_id: str) -> dict[str, Any]:
        """This metric as a GetMetricData query."""
        return {"Id": query_id, "ReturnData": True, "MetricStat": {
            "Metric": {"Namespace": self.namespace, "MetricName": self.name,
                       "Dimensions": [{"Name": n, "Value": v} for n, v in self.dimensions]},
            "Period": self.period, "Stat": self.stat}}


def expand(entries: Sequence[Sequence[Any]]) -> list[tuple[list[str], dict[str, Any]]]:
    """The compact `metrics` form written out: each entry's strings and its options.

    As the dashboard body reference documents it, "." repeats the value at the same position in the previous
    metric, and a leading "..." repeats the previous metric's values up to those that follow it (which
    replace its last ones). An expression entry holds only its options; options never carry over."""
    previous: list[str] = []
    expanded: list[tuple[list[str], dict[str, Any]]] = []
    for number, entry in enumerate(entries, start=1):
        entry = list(entry)
        options = entry.pop() if entry and isinstance(entry[-1], Mapping) else {}
        if any(not isinstance(value, str) for value in entry):
            raise ValueError(f"metric {number}: only strings may precede its options, got {entry!r}")
        if not entry:
            if "expression" not in options:
                raise ValueError(f"metric {number}: neither a metric nor an expression")
            expanded.append(([], dict(options)))
            continue
        values: list[str] = entry
        if values[0] == "...":
            rest = values[1:]
            if not previous or len(rest) > len(previous):
                raise ValueError(f"metric {number}: '...' has no previous metric to repeat")
            values = previous[:len(previous) - len(rest)] + rest
        if any(value == "." for value in values[len(previous):]):
            raise ValueError(f"metric {number}: '.' where the previous metric has no value")
        values = [previous[i] if value == "." else value for i, value in enumerate(values)]
        if len(values) < 2 or len(values) % 2:
            raise ValueError(f"metric {number}: expected namespace, name and dimension name/value pairs, "
                             f"got {values!r}")
        expanded.append((values, dict(options)))
        previous = values
    return expanded


def parse_metrics(properties: Mapping[str, Any]) -> list[WidgetMetric]:
    """A metric widget's metrics and expressions, with the widget's stat and period where they give none."""
    stat = str(properties.get("stat", DEFAULT_STAT))
    period = int(properties.get("period", DEFAULT_PERIOD))
    metrics = []
    for number, (values, options) in enumerate(expand(properties.get("metrics", [])), start=1):
        metric = WidgetMetric(id=str(options.get("id") or f"m{number}"), label="",
                              stat=str(options.get("stat", stat)), period=int(options.get("period", period)),
                              visible=bool(options.get("visible", True)), y_axis=str(options.get("yAxis", "left")))
        if not values:
            expression = str(options["expression"])
            metrics.append(replace(metric, label=str(options.get("label") or expression), expression=expression))
            continue
        metrics.append(replace(metric, label=str(options.get("label") or values[1]), namespace=values[0],
                               name=values[1], dimensions=tuple(zip(values[2::2], values[3::2]))))
    return metrics


def image_size(widget: Mapping[str, Any]) -> tuple[int, int]:
    """The widget's size in pixels, from its size in dashboard grid units."""
    width = min(MAX_PIXELS, round(float(widget.get("width", 6)) * PIXELS_PER_COLUMN))
    height = min(MAX_PIXELS, round(float(widget.get("height", 6)) * PIXELS_PER_ROW))
    return width, height


def timestamp(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def metric_widget_request(widget: Mapping[str, Any], start: datetime.datetime,
                          end: datetime.datetime) -> dict[str, Any]:
    """GetMetricWidgetImage's arguments for a dashboard's metric widget over [start, end]."""
    width, height = image_size(widget)
    metric_widget = {**widget.get("properties", {}), "width": width, "height": height,
                     "start": timestamp(start), "end": timestamp(end)}
    return {"MetricWidget": json.dumps(metric_widget, sort_keys=True), "OutputFormat": "png"}


Series = dict[datetime.datetime, float]


def widget_series(cloudwatch: Any, metrics: Sequence[WidgetMetric], start: datetime.datetime,
                  end: datetime.datetime) -> tuple[dict[str, Series], dict[str, str]]:
    """Each entry's data over [start, end] by id: metrics from GetMetricData, expressions computed here in
    order (metric math over the ids they name, missing values as metric math counts them). The second
    mapping says why an expression has no series."""
    plain = [m for m in metrics if not m.expression]
    series: dict[str, Series] = {m.id: {} for m in plain}
    if plain:
        queries = [m.query(f"q{n}") for n, m in enumerate(plain)]
        by_query = {f"q{n}": m.id for n, m in enumerate(plain)}
        for page in cloudwatch.get_paginator("get_metric_data").paginate(
                MetricDataQueries=queries, StartTime=start, EndTime=end, ScanBy="TimestampAscending"):
            for result in page["MetricDataResults"]:
                series[by_query[result["Id"]]].update(zip(result["Timestamps"], result["Values"]))
    problems = {}
    for metric in (m for m in metrics if m.expression):
        moments = sorted({moment for points in series.values() for moment in points})
        try:
            values = {moment: expression_value(metric.expression, {i: s.get(moment) for i, s in series.items()})
                      for moment in moments}
        except ValueError as error:
            problems[metric.id] = str(error)
            values = {}
        series[metric.id] = {moment: value for moment, value in values.items() if value is not None}
    return series, problems


def new_figure(size: tuple[int, int]) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(size[0] / 100, size[1] / 100), dpi=100)


def draw_metric_widget(title: str, metrics: Sequence[WidgetMetric], series: Mapping[str, Series],
                       problems: Mapping[str, str], span: tuple[datetime.datetime, datetime.datetime],
                       size: tuple[int, int], path: Path, y_axes: Mapping[str, Any] | None = None) -> None:
    """A time-series graph of the widget's visible entries over `span`; `y_axes`: the widget's yAxis property
    (per side: label, min, max)."""
    import matplotlib.dates

    figure = new_figure(size)
    axes = {"left": figure.add_subplot()}
    drawn = 0
    for colour, metric in enumerate(m for m in metrics if m.visible):
        points = sorted(series.get(metric.id, {}).items())
        side = "right" if metric.y_axis == "right" else "left"
        if side not in axes:
            axes[side] = axes["left"].twinx()
        legend = (f"{metric.label} = {metric.expression} (computed locally)" if metric.expression
                  else f"{metric.label} ({metric.stat})")
        if metric.id in problems:
            legend += ": not computed"
        axes[side].plot([t for t, _ in points], [v for _, v in points], marker="o", markersize=3,
                        color=f"C{colour % 10}", label=legend)
        drawn += len(points)
    for side, axis in axes.items():
        settings = dict((y_axes or {}).get(side, {}))
        axis.set_ylabel(str(settings.get("label", "")), fontsize=8)
        axis.set_ylim(bottom=settings.get("min"), top=settings.get("max"))
        axis.tick_params(labelsize=7)
    left = axes["left"]
    left.set_title(title, fontsize=10, loc="left")
    locator = matplotlib.dates.AutoDateLocator(tz=datetime.timezone.utc)  # type: ignore[no-untyped-call]
    left.xaxis.set_major_locator(locator)
    left.xaxis.set_major_formatter(
        matplotlib.dates.ConciseDateFormatter(locator, tz=datetime.timezone.utc))  # type: ignore[no-untyped-call]
    left.set_xlim(*span)  # the run's span, as the dashboard would be set to it
    handles = [h for axis in axes.values() for h in axis.get_legend_handles_labels()[0]]
    left.legend(handles=handles, fontsize=7, loc="upper right")
    if not drawn:
        left.text(0.5, 0.5, "no data points in the run's span", ha="center", va="center",
                  transform=left.transAxes, fontsize=9, color="gray")
    figure.text(0.01, 0.01, f"{RENDERED} (UTC)", fontsize=6, color="gray")
    figure.tight_layout(rect=(0, 0.03, 1, 1))
    figure.savefig(path)


def draw_table(title: str, header: Sequence[str], rows: Sequence[Sequence[str]], note: str,
               size: tuple[int, int], path: Path) -> None:
    figure = new_figure(size)
    axis = figure.add_subplot()
    axis.axis("off")
    axis.set_title(title, fontsize=10, loc="left")
    if rows:
        table = axis.table(cellText=[list(r) for r in rows], colLabels=list(header), loc="upper center",
                           cellLoc="left")
        table.auto_set_font_size(False)
        table.set_fontsize(7)
        table.auto_set_column_width(list(range(len(header))))
    else:
        axis.text(0.5, 0.5, "no alarms", ha="center", va="center", transform=axis.transAxes)
    figure.text(0.01, 0.01, note, fontsize=6, color="gray")
    figure.savefig(path)


def draw_text(title: str, text: str, note: str, size: tuple[int, int], path: Path) -> None:
    figure = new_figure(size)
    axis = figure.add_subplot()
    axis.axis("off")
    axis.set_title(title, fontsize=10, loc="left")
    wrapped = "\n".join(textwrap.fill(line, width=max(20, size[0] // 7)) for line in text.splitlines())
    axis.text(0, 1, wrapped, va="top", ha="left", fontsize=7, family="monospace", transform=axis.transAxes)
    figure.text(0.01, 0.01, note, fontsize=6, color="gray")
    figure.savefig(path)


def alarm_rows(cloudwatch: Any, arns: Sequence[str]) -> list[tuple[str, str, str]]:
    """(name, state, since) of the widget's alarms, in the widget's order."""
    # An alarm ARN ends with ":alarm:<name>" (the CloudWatch ARN format); DescribeAlarms takes names.
    names = [arn.split(":alarm:", 1)[-1] for arn in arns]
    found = {}
    for start in range(0, len(names), 100):
        described = cloudwatch.describe_alarms(AlarmNames=names[start:start + 100],
                                               AlarmTypes=["MetricAlarm", "CompositeAlarm"])
        for alarm in described.get("MetricAlarms", []) + described.get("CompositeAlarms", []):
            since = alarm.get("StateUpdatedTimestamp")
            found[alarm["AlarmName"]] = (alarm["StateValue"],
                                         since.strftime("%H:%M:%S UTC") if isinstance(since, datetime.datetime)
                                         else str(since or ""))
    return [(name, *found.get(name, ("not found", ""))) for name in names]


def render_widget(cloudwatch: Any, dashboard: str, number: int, widget: Mapping[str, Any],
                  start: datetime.datetime, end: datetime.datetime, out: Path, on_aws: bool) -> WidgetImage:
    """One widget's image under out/report/widgets/, and how it was made."""
    properties = widget.get("properties", {})
    kind = widget.get("type", "")
    title = str(properties.get("title") or f"{kind} widget {number}")
    relative = f"{WIDGETS}/{dashboard}-{number}.png"
    path = out / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    size = image_size(widget)
    if kind == "metric" and on_aws:
        try:
            image = cloudwatch.get_metric_widget_image(**metric_widget_request(widget, start, end))
        except ClientError as error:  # the run's report matters more than one image: say what failed
            made = f"no image: GetMetricWidgetImage failed ({error.response['Error'].get('Code', 'error')})"
            draw_text(title, str(error), made, size, path)
            return WidgetImage(dashboard, title, relative, made)
        path.write_bytes(image["MetricWidgetImage"])
        return WidgetImage(dashboard, title, relative, FROM_CLOUDWATCH)
    if kind == "metric":
        metrics = parse_metrics(properties)
        series, problems = widget_series(cloudwatch, metrics, start, end)
        draw_metric_widget(title, metrics, series, problems, (start, end), size, path,
                           properties.get("yAxis"))
        # The data behind the drawing, beside it, for a reader (and the report's check against the run's
        # timeline, sqs_fleet.scaletest.consistency) to set against what was published.
        path.with_suffix(".json").write_text(json.dumps(
            {m.label: {"id": m.id, "expression": m.expression or None, "problem": problems.get(m.id),
                       "metric": None if m.expression else {"namespace": m.namespace, "name": m.name,
                                                            "dimensions": dict(m.dimensions)},
                       "stat": m.stat, "period": m.period,
                       "points": [[timestamp(t), v] for t, v in sorted(series.get(m.id, {}).items())]}
             for m in metrics}, indent=1))
        return WidgetImage(dashboard, title, relative, RENDERED)
    if kind == "alarm":
        rows = alarm_rows(cloudwatch, properties.get("alarms", []))
        draw_table(title, ("alarm", "state", "since"), rows, ALARM_TABLE, size, path)
        return WidgetImage(dashboard, title, relative, ALARM_TABLE)
    if kind == "log":
        made = LOG_QUERY_AWS if on_aws else LOG_QUERY_EMULATED
        draw_text(title, str(properties.get("query", "")).replace(" | ", "\n| "), made, size, path)
        return WidgetImage(dashboard, title, relative, made)
    if kind == "text":
        draw_text(title, str(properties.get("markdown", "")), TEXT_SOURCE, size, path)
        return WidgetImage(dashboard, title, relative, TEXT_SOURCE)
    made = f"a {kind!r} widget, which the report does not draw"
    draw_text(title, json.dumps(properties, indent=1)[:2000], made, size, path)
    return WidgetImage(dashboard, title, relative, made)


def render_dashboards(cloudwatch: Any, dashboard_names: Sequence[str], start: datetime.datetime,
                      end: datetime.datetime, out_dir: Path, on_aws: bool) -> list[WidgetImage]:
    """Every widget of the named dashboards as an image over [start, end], under out_dir/report/widgets/
    (<dashboard>-<n>.png, n the widget's place in the dashboard from 1)."""
    images = []
    for dashboard in dashboard_names:
        body = json.loads(cloudwatch.get_dashboard(DashboardName=dashboard)["DashboardBody"])
        for number, widget in enumerate(body.get("widgets", []), start=1):
            images.append(render_widget(cloudwatch, dashboard, number, widget, start, end, out_dir, on_aws))
    return images
