"""The planner's model inputs, each with where it comes from: the stack's record (or its inventory), the
project's defaults (roles/*/defaults, group_vars/all/stack.yml), the boot benchmark, or a figure published
elsewhere. `Settings.changed` applies `name=value` changes (what --set and --compare give)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqs_fleet.stack import Stack

# The boot benchmark's medians (README, `python -m bench.node_boot --nodes 3`: nspawn test nodes, cached image):
# seconds from the start of the boot to the consumer active, by image.
BOOT_SECONDS = {"stock": 8.8, "baked": 4.9}
BOOT_SOURCE = ("README: python -m bench.node_boot --nodes 3, median of 3 boots to consumer active on test nodes "
               "(a stock boot on AWS also installs ansible-core, git and the agent: not measured)")
# EC2's own part before user-data runs: RunInstances, pending -> running, the OS up to its network.
EC2_LAUNCH_SECONDS = 25.0
EC2_LAUNCH_SOURCE = ("daemonology.net/blog/2021-08-12-EC2-boot-time-benchmarking (c5.xlarge, Amazon Linux: API "
                     "1.5 s + pending->running 4.9 s + running->network 17.2 s) and brevdev/ec2-coldboot-research "
                     "(cold launch 25.8 s average); not measured by this project")

BROKERS = ("sqs", "redis")
IMAGES = tuple(BOOT_SECONDS)
METRIC_SOURCES = ("publisher", "sqs")


class SettingsError(ValueError):
    """A setting the planner cannot use, named with the reason."""


@dataclass(frozen=True)
class Settings:
    names: Mapping[str, Any]  # queue, dead-letter queue, group, publisher metric: the keys metrics are read by
    broker: str = "sqs"
    metric_source: str = "publisher"
    period: int = 60
    out_period: int = 10
    idle_window: int = 180
    backlog_per_instance: int = 10
    min_size: int = 0
    max_size: int = 4
    out_comparison: str = "GreaterThanOrEqualToThreshold"
    out_threshold: int = 1
    from_zero: bool = False
    launch_timeout: int = 600
    drain_timeout: int = 300
    instance_type: str = "t3.micro"
    spot: bool = False
    on_demand_base: int = 0
    image: str = "stock"
    volume_gb: int = 8
    poll_interval: float = 60.0
    wait_time: float = 20.0
    batch: int = 10
    stop_timeout: float = 60.0
    concurrency: int = 2
    watcher_interval: float = 5.0
    ec2_launch_seconds: float = EC2_LAUNCH_SECONDS
    boot_seconds: float = BOOT_SECONDS["stock"]
    publisher_period: int = 10
    publisher_seconds: float = 60.0
    publisher_memory_mb: int = 128
    spot_interruptions_per_hour: float = 0.0
    sqs_wake_delay: int = 900
    network_mode: str = "private"
    zones: int = 2
    interface_endpoints: int = 8
    broker_node_type: str = "cache.t4g.micro"
    broker_nodes: int = 2
    dashboards: int = 2
    sources: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_stack(cls, stack: Stack, inventory: Mapping[str, Any] | None = None) -> Settings:
        """The stack's settings from its record; `inventory`: what only the inventory holds (the fleet's instance
        type, Spot, image, hooks' timeouts, network), as plan.yml passes it."""
        data, extra = stack.data, dict(inventory or {})
        scaling, group, broker = data["scaling"], data["group"], stack.broker.get("kind", "sqs")
        recorded = f"stack {stack.environment} (record or inventory)"
        values: dict[str, Any] = {
            "broker": broker, "metric_source": scaling["metric_source"], "period": int(scaling["period"]),
            "idle_window": int(scaling["idle_window"]), "backlog_per_instance": int(scaling["backlog_per_instance"]),
            "min_size": int(group["min_size"]), "max_size": int(group["max_size"]),
        }
        sources = dict.fromkeys(values, recorded)
        names = {"queue": stack.queue_name, "dead_letter_queue": stack.dead_letter_queue_name,
                 "group": stack.group_name, "environment": stack.environment,
                 "publisher_metric": (data.get("publisher") or {}).get("metric")}
        if not names["publisher_metric"]:
            names["publisher_metric"] = default_publisher_metric(broker, names)
        inventory_keys = {
            "fleet_instance_type": "instance_type", "fleet_spot": "spot", "fleet_on_demand_base": "on_demand_base",
            "fleet_image": "image", "fleet_launch_timeout": "launch_timeout", "stack_drain_timeout": "drain_timeout",
            "fleet_poll_interval": "poll_interval", "fleet_volume_size": "volume_gb",
            "celery_worker_concurrency": "concurrency", "network_mode": "network_mode",
            "network_zone_count": "zones", "broker_node_type": "broker_node_type",
        }
        for key, name in inventory_keys.items():
            if extra.get(key) not in (None, ""):
                values[name] = extra[key]
                sources[name] = f"inventory/{stack.environment}: {key}"
        if isinstance(extra.get("network_interface_endpoints"), list):
            values["interface_endpoints"] = len(extra["network_interface_endpoints"])
            sources["interface_endpoints"] = f"inventory/{stack.environment}: network_interface_endpoints"
        settings = cls(names=names, **derived(broker, values["metric_source"]), sources=sources)
        return settings.changed(values, source=None)

    def changed(self, changes: Mapping[str, Any], source: str | None = "--set") -> Settings:
        """These settings with `changes` (name -> value, strings parsed); a broker change takes that broker's
        derived design (thresholds, periods, idle window, drain timeout) as group_vars/all/stack.yml derives it,
        unless the same changes name them."""
        fields = {f.name: f for f in dataclasses.fields(self)}
        parsed: dict[str, Any] = {}
        for name, value in changes.items():
            if name not in fields or name in ("names", "sources"):
                known = ", ".join(sorted(set(fields) - {"names", "sources"}))
                raise SettingsError(f"unknown setting {name!r}; known: {known}")
            parsed[name] = parse(name, value, getattr(self, name))
        sources = dict(self.sources)
        base = self
        broker = parsed.get("broker", self.broker)
        metric_source = "publisher" if broker == "redis" else parsed.get("metric_source", self.metric_source)
        if (broker, metric_source) != (self.broker, self.metric_source):
            design = derived(broker, metric_source)
            base = dataclasses.replace(self, **design)
            sources.update(dict.fromkeys(design, f"group_vars/all/stack.yml: the {broker} design on {metric_source}"))
            if broker != self.broker:
                names = dict(self.names)
                names["publisher_metric"] = default_publisher_metric(broker, names)
                base = dataclasses.replace(base, names=names)
        if source is not None:
            sources.update(dict.fromkeys(parsed, source))
        result = dataclasses.replace(base, **parsed, sources=sources)
        if "image" in parsed and "boot_seconds" not in parsed:
            result = dataclasses.replace(result, boot_seconds=BOOT_SECONDS[result.image])
        result.check()
        return result

    def check(self) -> None:
        problems = []
        if self.broker not in BROKERS:
            problems.append(f"broker {self.broker!r}: sqs or redis")
        if self.metric_source not in METRIC_SOURCES:
            problems.append(f"metric_source {self.metric_source!r}: publisher or sqs")
        if self.broker == "redis" and self.metric_source != "publisher":
            problems.append("broker redis scales on the publisher's PendingJobs: metric_source must be publisher")
        if self.image not in IMAGES:
            problems.append(f"image {self.image!r}: stock or baked")
        if not 0 <= self.min_size <= self.max_size or self.max_size < 1:
            problems.append(f"group bounds {self.min_size}..{self.max_size}: 0 <= min <= max, max >= 1")
        if self.backlog_per_instance < 1:
            problems.append("backlog_per_instance must be 1 or more")
        for name in ("period", "out_period"):
            value = getattr(self, name)
            if value not in (10, 20, 30) and (value < 60 or value % 60):
                problems.append(f"{name} {value}: 10, 20, 30 or a multiple of 60 seconds")
        if self.idle_window < self.period or self.idle_window % self.period:
            problems.append(f"idle_window {self.idle_window}: a whole number of periods of {self.period} s")
        if self.metric_source == "sqs" and self.period % 60:
            problems.append(f"period {self.period}: SQS publishes one-minute metrics")
        if self.batch < 1 or self.concurrency < 1:
            problems.append("batch and concurrency must be 1 or more")
        if self.spot_interruptions_per_hour < 0:
            problems.append("spot_interruptions_per_hour must be 0 or more")
        if problems:
            raise SettingsError("; ".join(problems))

    def source(self, name: str) -> str:
        return self.sources.get(name, DEFAULT_SOURCES.get(name, "the planner's default"))

    def inputs(self) -> list[tuple[str, Any, str]]:
        """Every model input with its value and where it comes from, for the run's header."""
        return [(f.name, getattr(self, f.name), self.source(f.name)) for f in dataclasses.fields(self)
                if f.name not in ("names", "sources")]


def derived(broker: str, metric_source: str = "publisher") -> dict[str, Any]:
    """What group_vars/all/stack.yml derives from the broker and the metric source (stack_scaling_out, the period,
    the idle window, the drain timeout)."""
    if broker == "redis":
        return {"broker": "redis", "metric_source": "publisher", "out_comparison": "GreaterThanThreshold",
                "out_threshold": 4, "out_period": 60, "from_zero": True, "period": 120, "idle_window": 120,
                "drain_timeout": 600 + 120}
    return {"broker": broker, "metric_source": metric_source, "out_comparison": "GreaterThanOrEqualToThreshold",
            "out_threshold": 1, "out_period": 10, "from_zero": False, "period": 60,
            "idle_window": 180 if metric_source == "publisher" else 900, "drain_timeout": 300}


def default_publisher_metric(broker: str, names: Mapping[str, Any]) -> dict[str, Any]:
    """group_vars/all/stack.yml's stack_backlog_metric or stack_pending_metric."""
    if broker == "redis":
        return {"namespace": "BMAT", "name": "PendingJobs",
                "dimensions": [{"Name": "QueueName", "Value": f"{names.get('environment', 'local')}-bmat"}]}
    return {"namespace": "SqsFleet", "name": "Backlog", "dimensions": [{"Name": "QueueName", "Value": names["queue"]}]}


def parse(name: str, value: Any, current: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        if isinstance(current, bool):
            if value.lower() not in ("true", "false", "yes", "no", "1", "0"):
                raise ValueError(value)
            return value.lower() in ("true", "yes", "1")
        if isinstance(current, int):
            return int(value)
        if isinstance(current, float):
            return float(value)
    except ValueError:
        raise SettingsError(f"{name}={value!r}: expected a {type(current).__name__}") from None
    return value


DEFAULT_SOURCES = {
    "out_comparison": "group_vars/all/stack.yml: stack_scaling_out (by broker)",
    "out_threshold": "group_vars/all/stack.yml: stack_scaling_out (by broker)",
    "out_period": "group_vars/all/stack.yml: stack_scaling_out (by broker)",
    "from_zero": "group_vars/all/stack.yml: stack_scaling_out (by broker)",
    "launch_timeout": "roles/fleet/defaults: fleet_launch_timeout",
    "drain_timeout": "group_vars/all/stack.yml: stack_drain_timeout",
    "instance_type": "roles/fleet/defaults: fleet_instance_type",
    "spot": "roles/fleet/defaults: fleet_spot",
    "on_demand_base": "roles/fleet/defaults: fleet_on_demand_base",
    "image": "roles/fleet/defaults: fleet_image",
    "volume_gb": "roles/fleet/defaults: fleet_volume_size",
    "poll_interval": "roles/consumer/defaults: consumer_poll_interval (files/consumer.py waits it after each receive)",
    "wait_time": "files/consumer.py: --wait-time (long poll) default 20",
    "batch": "files/holds.py: MAX_BATCH (ReceiveMessage's most, as the consumer asks)",
    "stop_timeout": "roles/consumer/defaults: consumer_stop_timeout",
    "concurrency": "roles/celery_worker/defaults: celery_worker_concurrency (prefetch 1 a process, acks late)",
    "watcher_interval": "roles/lifecycle_watcher/defaults: lifecycle_watcher_interval",
    "ec2_launch_seconds": EC2_LAUNCH_SOURCE,
    "boot_seconds": BOOT_SOURCE,
    "publisher_period": "roles/publisher/defaults: publisher_period",
    "publisher_seconds": "files/backlog_publisher.py: 6 publishes 10 s apart, about 60 s of run time an invocation",
    "publisher_memory_mb": "roles/publisher/defaults: publisher_memory_size",
    "spot_interruptions_per_hour": "--set spot_interruptions_per_hour=N (per Spot instance-hour; 0: none)",
    "sqs_wake_delay": "SQS developer guide: a queue asleep after 6 h idle delivers metrics up to 15 min late "
                      "(worst case taken)",
    "network_mode": "roles/network/defaults (private: one NAT gateway, interface endpoints)",
    "zones": "roles/network/defaults: network_zone_count",
    "interface_endpoints": "roles/network/defaults: network_interface_endpoints (8; S3's gateway endpoint is free)",
    "broker_node_type": "roles/broker/defaults: broker_node_type",
    "broker_nodes": "roles/broker/defaults: a primary and broker_replicas 1",
    "dashboards": "group_vars/all/stack.yml: stack_dashboard_names (sqs, ec2)",
}
