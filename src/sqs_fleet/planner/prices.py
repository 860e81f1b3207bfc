"""A replay priced: each line of the stack's bill per day and per month, from the price table the project carries
(prices-us-east-1.json: region, the date the prices were read, the page each came from) or one given."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqs_fleet.planner.replay import Result
from sqs_fleet.planner.rules import alarm_metrics, high_resolution, rules

PRICES = Path(__file__).with_name("prices-us-east-1.json")
DAY = 86400
# The stack's alarms besides the scaling ones, each on one metric (roles/observability, publisher, broker).
OTHER_ALARMS = {"sqs": ["dead_letters", "oldest_message"], "redis": ["dead_letters", "oldest_message", "broker memory",
                                                                    "dead jobs"]}


class PriceError(ValueError):
    """A price table the planner cannot use, or a price it lacks."""


@dataclass(frozen=True)
class Line:
    item: str
    per_day: float
    basis: str  # the quantity and the unit price, so the arithmetic can be checked by hand


def load_prices(path: Path | None = None) -> dict[str, Any]:
    path = path or PRICES
    try:
        table: dict[str, Any] = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise PriceError(f"cannot read the price table {path}: {error}") from None
    for key in ("region", "read_on", "prices", "hours_per_month"):
        if key not in table:
            raise PriceError(f"price table {path} has no {key!r}")
    return table


def price(table: Mapping[str, Any], name: str, kind: str = "value") -> float:
    try:
        return float(table["prices"][name][kind])
    except KeyError:
        raise PriceError(f"the price table has no {name} price for {kind!r}") from None


def bill(result: Result, table: Mapping[str, Any]) -> list[Line]:
    """The stack's cost per day for this replay's load (usage scaled to one day of load; fixed costs a day)."""
    settings = result.settings
    per_day = DAY / max(1, result.load.seconds)  # the replay's usage (its tail included) per day of load
    month_hours = float(table["hours_per_month"])
    on_demand = price(table, "ec2_on_demand_hour", settings.instance_type)
    spot = on_demand * (1 - price(table, "ec2_spot_discount"))
    od_hours, spot_hours = result.on_demand_seconds / 3600 * per_day, result.spot_seconds / 3600 * per_day
    gb_month = price(table, "ebs_gp3_gb_month")
    volume = gb_month * settings.volume_gb / month_hours
    lines = [
        Line("EC2 on demand", od_hours * on_demand,
             f"{od_hours:.2f} instance-h x ${on_demand:g} ({settings.instance_type})"),
        Line("EC2 Spot", spot_hours * spot, f"{spot_hours:.2f} instance-h x ${spot:.4f} (On-Demand less the discount)"),
        Line("EBS root volumes", (od_hours + spot_hours) * volume,
             f"{od_hours + spot_hours:.2f} h x {settings.volume_gb} GB x ${gb_month:g}/GB-month"),
    ]
    calls = {name: count * per_day for name, count in result.requests.items()}
    if settings.broker == "sqs":
        sqs_count = sum(v for k, v in calls.items() if k != "publisher put")
        lines.append(Line("SQS requests", sqs_count * price(table, "sqs_request"),
                          f"{sqs_count:,.0f} requests (send, receive, delete, release, publisher reads) x "
                          f"${price(table, 'sqs_request') * 1e6:g}/million"))
    publishing = settings.metric_source == "publisher"
    invocations = 1440.0 if publishing else 0.0  # EventBridge Scheduler, rate(1 minute)
    gb_seconds = invocations * settings.publisher_seconds * settings.publisher_memory_mb / 1024
    lines += [
        Line("Lambda invocations", invocations * price(table, "lambda_request"),
             f"{invocations:,.0f} invocations x ${price(table, 'lambda_request') * 1e6:g}/million"),
        Line("Lambda duration", gb_seconds * price(table, "lambda_gb_second"),
             f"{gb_seconds:,.0f} GB-s ({settings.publisher_seconds:g} s x {settings.publisher_memory_mb} MB an "
             f"invocation) x ${price(table, 'lambda_gb_second')}"),
    ]
    metrics = (2 if settings.broker == "redis" else 1) if publishing else 0  # Backlog; PendingJobs and DeadJobs
    puts = calls.get("publisher put", 0.0)
    lines.append(Line("CloudWatch custom metrics and puts",
                      metrics * price(table, "cloudwatch_metric_month") * 24 / month_hours
                      + puts * metrics * price(table, "cloudwatch_put_request"),
                      f"{metrics} metric(s) x ${price(table, 'cloudwatch_metric_month'):g}/month; "
                      f"{puts * metrics:,.0f} PutMetricData x ${price(table, 'cloudwatch_put_request') * 1e3:g}/1000"))
    alarm_lines, alarm_cost = [], 0.0
    for alarm in rules(settings).alarms:
        kind = "high_resolution" if high_resolution(alarm) else "standard"
        alarm_cost += alarm_metrics(alarm) * price(table, "cloudwatch_alarm_metric_month", kind)
        alarm_lines.append(f"{alarm['AlarmName']} {alarm_metrics(alarm)} metric(s) {kind.replace('_', '-')}")
    others = OTHER_ALARMS[settings.broker] + (["publisher_stale"] if publishing else [])
    alarm_cost += len(others) * price(table, "cloudwatch_alarm_metric_month", "standard")
    lines.append(Line("CloudWatch alarms", alarm_cost * 24 / month_hours,
                      f"{'; '.join(alarm_lines)}; {len(others)} more standard ({', '.join(others)})"))
    lines.append(Line("CloudWatch dashboards", settings.dashboards * price(table, "cloudwatch_dashboard_month")
                      * 24 / month_hours, f"{settings.dashboards} x ${price(table, 'cloudwatch_dashboard_month'):g}"
                      "/month (3 free a month per account, not deducted)"))
    if settings.network_mode == "private":
        endpoints = settings.interface_endpoints * settings.zones
        lines += [
            Line("NAT gateway", 24 * price(table, "nat_gateway_hour"),
                 f"1 gateway x 24 h x ${price(table, 'nat_gateway_hour'):g} (data processed not counted)"),
            Line("VPC interface endpoints", 24 * endpoints * price(table, "interface_endpoint_hour"),
                 f"{settings.interface_endpoints} endpoints x {settings.zones} zones x 24 h x "
                 f"${price(table, 'interface_endpoint_hour'):g}"),
        ]
    if settings.broker == "redis":
        node = price(table, "elasticache_node_hour", settings.broker_node_type)
        lines.append(Line("ElastiCache nodes", 24 * settings.broker_nodes * node,
                          f"{settings.broker_nodes} x {settings.broker_node_type} x 24 h x ${node:g}"))
    return lines


def totals(lines: list[Line], table: Mapping[str, Any]) -> tuple[float, float]:
    """Per day and per month (the table's hours a month)."""
    day = sum(line.per_day for line in lines)
    return day, day * float(table["hours_per_month"]) / 24
