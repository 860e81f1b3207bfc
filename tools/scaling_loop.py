"""Play AWS's part for a stack that site.yml made on the emulator: each period, read the queue's counts
(as AWS/SQS would publish them), evaluate the stack's alarms as CloudWatch does, run the step policies of
the alarms in ALARM as Auto Scaling does, set the group's desired capacity, and turn it into workers.

Everything is read back from the emulator (alarms, policies, group bounds), never from the project's
variables. A time scale shrinks a period (60 s on AWS) to a few seconds; the logic is the same at any scale.
"""

from __future__ import annotations

import signal
import subprocess  # nosec B404 - starts the project's own consumer
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aws_semantics import ALARM, alarm_state, expression_value, new_capacity

REPO = Path(__file__).resolve().parent.parent
# GetQueueAttributes names of the AWS/SQS metrics the alarms use.
QUEUE_ATTRIBUTE = {
    "ApproximateNumberOfMessagesVisible": "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible": "ApproximateNumberOfMessagesNotVisible",
}


class ProcessWorkers:
    """Workers as local consumer processes, started with the node's configuration."""

    def __init__(self, queue: str, poll_interval: float, env: dict[str, str], logs: Path) -> None:
        self.queue, self.poll_interval, self.env, self.logs = queue, poll_interval, env, logs
        self.running: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.started = 0
        logs.mkdir(parents=True, exist_ok=True)

    def count(self) -> int:
        return len(self.running)

    def scale_to(self, wanted: int) -> list[str]:
        events = []
        while len(self.running) < wanted:
            self.started += 1
            name = f"worker-{self.started}"
            out = (self.logs / f"{name}.log").open("ab")
            process = subprocess.Popen(  # noqa: S603  # nosec B603 - the project's consumer
                [sys.executable, str(REPO / "files" / "consumer.py"), "--queue", self.queue, "--wait-time", "1",
                 "--poll-interval", str(self.poll_interval), "--state-file", str(self.logs / f"{name}.seen")],
                env=self.env, stdout=out, stderr=subprocess.STDOUT)
            self.running.append((name, process))
            events.append(f"started {name}")
        while len(self.running) > wanted:
            name, process = self.running.pop()  # newest first, as the default termination policy leans
            process.send_signal(signal.SIGTERM)  # what the instance's shutdown does: drain, then exit
            process.wait(60)
            events.append(f"stopped {name}")
        return events

    def stop(self) -> None:
        self.scale_to(0)


@dataclass
class Period:
    minute: int
    visible: int
    in_flight: int
    dead_letters: int
    desired: int
    workers: int
    alarms: dict[str, str]
    decisions: list[str] = field(default_factory=list)


class ScalingLoop:
    def __init__(self, client: Callable[[str], Any], prefix: str, workers: ProcessWorkers,
                 period_seconds: float) -> None:
        self.sqs, self.cloudwatch, self.autoscaling = client("sqs"), client("cloudwatch"), client("autoscaling")
        self.workers, self.period_seconds = workers, period_seconds
        self.prefix, self.group = prefix, f"{prefix}-workers"
        self.queues = {name: self.sqs.get_queue_url(QueueName=name)["QueueUrl"]
                       for name in (f"{prefix}-vehicles", f"{prefix}-vehicles-dlq")}
        self.alarms = self.cloudwatch.describe_alarms(AlarmNamePrefix=prefix)["MetricAlarms"]
        self.policies = {p["PolicyARN"]: p for p in
                         self.autoscaling.describe_policies(AutoScalingGroupName=self.group)["ScalingPolicies"]}
        self.states = {a["AlarmName"]: "INSUFFICIENT_DATA" for a in self.alarms}
        self.series: dict[str, list[float | None]] = {a["AlarmName"]: [] for a in self.alarms}
        self.timeline: list[Period] = []

    def counts(self) -> dict[tuple[str, str], float]:
        """(queue name, AWS/SQS metric) -> value, as this period's one-minute data points."""
        values = {}
        for name, url in self.queues.items():
            attributes = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=list(QUEUE_ATTRIBUTE.values()))
            for metric, attribute in QUEUE_ATTRIBUTE.items():
                values[(name, metric)] = float(attributes["Attributes"][attribute])
        return values

    def alarm_value(self, alarm: dict[str, Any], counts: dict[tuple[str, str], float]) -> float | None:
        def metric(stat: dict[str, Any]) -> float | None:
            queue = next((d["Value"] for d in stat.get("Dimensions", []) if d["Name"] == "QueueName"), "")
            return counts.get((queue, stat.get("MetricName", "")))

        if alarm.get("Metrics"):
            values = {q["Id"]: metric(q["MetricStat"]["Metric"]) for q in alarm["Metrics"] if "MetricStat" in q}
            expression = next(q["Expression"] for q in alarm["Metrics"] if q.get("ReturnData", True))
            return expression_value(expression, values)
        return metric(alarm)

    def step(self) -> Period:
        counts = self.counts()
        group = self.autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[self.group])[
            "AutoScalingGroups"][0]
        desired, decisions = group["DesiredCapacity"], []
        for alarm in self.alarms:
            name = alarm["AlarmName"]
            value = self.alarm_value(alarm, counts)
            self.series[name].append(value)
            state = alarm_state(alarm, self.series[name], self.states[name])
            if state != self.states[name]:
                decisions.append(f"{name}: {self.states[name]} -> {state} (value {value})")
            self.states[name] = state
            if state != ALARM or (value is None and alarm.get("TreatMissingData") != "breaching"):
                continue
            # Auto Scaling actions run again every period while the alarm stays in ALARM.
            for action in alarm.get("AlarmActions", []):
                policy = self.policies.get(action)
                if policy is None:
                    continue
                breach = (value if value is not None else 0.0) - float(alarm["Threshold"])
                capacity = new_capacity(policy, breach, desired, group["MinSize"], group["MaxSize"])
                if capacity is not None and capacity != desired:
                    decisions.append(f"{policy['PolicyName']}: desired {desired} -> {capacity} "
                                     f"(breach {breach:+g})")
                    desired = capacity
        if desired != group["DesiredCapacity"]:
            self.autoscaling.set_desired_capacity(AutoScalingGroupName=self.group, DesiredCapacity=desired,
                                                  HonorCooldown=False)
        decisions += self.workers.scale_to(desired)
        names = list(self.queues)
        period = Period(
            minute=len(self.timeline),
            visible=int(counts[(names[0], "ApproximateNumberOfMessagesVisible")]),
            in_flight=int(counts[(names[0], "ApproximateNumberOfMessagesNotVisible")]),
            dead_letters=int(counts[(names[1], "ApproximateNumberOfMessagesVisible")]),
            desired=desired, workers=self.workers.count(),
            alarms={name.removeprefix(f"{self.prefix}-"): state for name, state in self.states.items()},
            decisions=decisions,
        )
        self.timeline.append(period)
        return period

    def run(self, until: Callable[[list[Period]], bool], max_periods: int) -> list[Period]:
        """One step per period until `until(timeline)` holds or max_periods have passed."""
        try:
            for _ in range(max_periods):
                started = time.monotonic()
                self.step()
                if until(self.timeline):
                    break
                time.sleep(max(0.0, self.period_seconds - (time.monotonic() - started)))
        finally:
            self.workers.stop()
        return self.timeline
