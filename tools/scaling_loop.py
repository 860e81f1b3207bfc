"""Watch a fleet each period, and on the emulator play AWS's part for it.

`FleetWatch` records what a test run sees each period, on AWS or on the emulator: the queue's counts, the
group's desired capacity and instances, the alarms' states. `ScalingLoop` adds what the emulator does not
do (../shared/notes/aws-emulator.md): it publishes the AWS/SQS metrics from GetQueueAttributes, evaluates
the stack's alarms as CloudWatch does, runs the step policies of the alarms in ALARM as Auto Scaling does
(scale-in protection honoured), sets the group's desired capacity, and gives every instance of the group a
worker: a local consumer process (ProcessWorkers) or a booted node (fleet_lab.NodeWorkers).

Everything is read back from the emulator (alarms, policies, group bounds, instances), never from the
project's variables. A time scale shrinks a period (60 s on AWS) to a few seconds; the logic is the same.
"""

from __future__ import annotations

import datetime
import signal
import subprocess  # nosec B404 - starts the project's own consumer
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from aws_semantics import (
    ALARM,
    aggregate,
    alarm_state,
    expression_value,
    instances_to_terminate,
    new_capacity,
    termination_wait_minutes,
)

REPO = Path(__file__).resolve().parent.parent
# GetQueueAttributes names of the AWS/SQS metrics the alarms use.
QUEUE_ATTRIBUTE = {
    "ApproximateNumberOfMessagesVisible": "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible": "ApproximateNumberOfMessagesNotVisible",
}
LIVE_STATES = ("Pending", "Pending:Wait", "Pending:Proceed", "InService")


class StackNotFound(RuntimeError):
    """The stack to watch is not there (or not all of it)."""


class CannotPlay(RuntimeError):
    """The stack uses something the local loop cannot play faithfully."""


class Workers(Protocol):
    def follow(self, instances: Sequence[str]) -> list[str]:
        """Start a worker for each new instance id, stop the workers of instances gone; say what was done."""

    def in_service(self) -> set[str]:
        """The instances whose worker is consuming."""

    def stop(self) -> None: ...


class ProcessWorkers:
    """One local consumer process per instance, started with the node's configuration."""

    def __init__(self, queue: str, poll_interval: float, env: dict[str, str], logs: Path) -> None:
        self.queue, self.poll_interval, self.env, self.logs = queue, poll_interval, env, logs
        self.running: dict[str, subprocess.Popen[bytes]] = {}
        logs.mkdir(parents=True, exist_ok=True)

    def in_service(self) -> set[str]:
        return set(self.running)

    def follow(self, instances: Sequence[str]) -> list[str]:
        events = []
        for name in [n for n in instances if n not in self.running]:
            with (self.logs / f"{name}.log").open("ab") as out:
                self.running[name] = subprocess.Popen(  # noqa: S603  # nosec B603 - the project's consumer
                    [sys.executable, str(REPO / "files" / "consumer.py"), "--queue", self.queue, "--wait-time", "1",
                     "--poll-interval", str(self.poll_interval), "--state-file", str(self.logs / f"{name}.seen")],
                    env=self.env, stdout=out, stderr=subprocess.STDOUT)
            events.append(f"worker started on {name}")
        for name in [n for n in self.running if n not in instances]:
            process = self.running.pop(name)
            process.send_signal(signal.SIGTERM)  # what the instance's shutdown does: drain, then exit
            process.wait(60)
            events.append(f"worker on {name} drained and stopped")
        return events

    def stop(self) -> None:
        self.follow([])


@dataclass
class Period:
    minute: int
    at: float  # when it was recorded (epoch seconds): what happened until the next period's `at` belongs to it
    visible: int
    in_flight: int
    dead_letters: int
    desired: int
    instances: int
    in_service: int
    terminating: int
    alarms: dict[str, str]
    decisions: list[str] = field(default_factory=list)


class FleetWatch:
    """The fleet as a test run sees it each period; acts on nothing."""

    def __init__(self, client: Callable[[str], Any], prefix: str) -> None:
        self.sqs, self.cloudwatch, self.autoscaling = client("sqs"), client("cloudwatch"), client("autoscaling")
        self.prefix, self.group_name = prefix, f"{prefix}-workers"
        self.queue_name, self.dlq_name = f"{prefix}-vehicles", f"{prefix}-vehicles-dlq"
        self.queues = {}
        for name in (self.queue_name, self.dlq_name):
            try:
                self.queues[name] = self.sqs.get_queue_url(QueueName=name)["QueueUrl"]
            except self.sqs.exceptions.QueueDoesNotExist:
                raise StackNotFound(f"queue {name} does not exist: run site.yml for this stack first") from None
        if not self.autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[self.group_name])[
                "AutoScalingGroups"]:
            raise StackNotFound(f"Auto Scaling group {self.group_name} does not exist: run site.yml first")
        self.alarms = self.cloudwatch.describe_alarms(AlarmNamePrefix=prefix)["MetricAlarms"]
        self.states = {a["AlarmName"]: a.get("StateValue", "INSUFFICIENT_DATA") for a in self.alarms}
        self.timeline: list[Period] = []
        self.activities_seen = {a["ActivityId"] for a in self.scaling_activities()}  # only the run's own count

    def counts(self) -> dict[tuple[str, str], float]:
        """(queue name, AWS/SQS metric) -> value, as this period's one-minute data points."""
        values = {}
        for name, url in self.queues.items():
            attributes = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=list(QUEUE_ATTRIBUTE.values()))
            for metric, attribute in QUEUE_ATTRIBUTE.items():
                values[(name, metric)] = float(attributes["Attributes"][attribute])
        return values

    def group(self) -> dict[str, Any]:
        group: dict[str, Any] = self.autoscaling.describe_auto_scaling_groups(
            AutoScalingGroupNames=[self.group_name])["AutoScalingGroups"][0]
        return group

    def live(self, group: dict[str, Any]) -> list[dict[str, Any]]:
        """The group's instances that are launching or in service (not terminating)."""
        return [i for i in group.get("Instances", []) if i["LifecycleState"] in LIVE_STATES]

    def live_instances(self, group: dict[str, Any]) -> list[str]:
        return [i["InstanceId"] for i in self.live(group)]

    def record(self, counts: dict[tuple[str, str], float], group: dict[str, Any], instances: int, in_service: int,
               terminating: int, decisions: list[str]) -> Period:
        period = Period(
            minute=len(self.timeline), at=time.time(),
            visible=int(counts[(self.queue_name, "ApproximateNumberOfMessagesVisible")]),
            in_flight=int(counts[(self.queue_name, "ApproximateNumberOfMessagesNotVisible")]),
            dead_letters=int(counts[(self.dlq_name, "ApproximateNumberOfMessagesVisible")]),
            desired=group["DesiredCapacity"], instances=instances, in_service=in_service, terminating=terminating,
            alarms={name.removeprefix(f"{self.prefix}-"): state for name, state in self.states.items()},
            decisions=decisions,
        )
        self.timeline.append(period)
        return period

    def step(self) -> Period:
        """On AWS: CloudWatch and Auto Scaling act; this reads their states and the new scaling activities."""
        counts = self.counts()
        self.states = {a["AlarmName"]: a["StateValue"] for a in
                       self.cloudwatch.describe_alarms(AlarmNamePrefix=self.prefix)["MetricAlarms"]}
        group = self.group()
        states = [i["LifecycleState"] for i in group.get("Instances", [])]
        running = sum(1 for state in states if state != "Terminated")  # Terminating:Wait is billed too
        return self.record(counts, group, running, states.count("InService"),
                           sum(1 for state in states if state.startswith("Terminating")), self.new_activities())

    def scaling_activities(self) -> list[dict[str, Any]]:
        activities: list[dict[str, Any]] = self.autoscaling.describe_scaling_activities(
            AutoScalingGroupName=self.group_name, MaxRecords=20)["Activities"]
        return activities

    def new_activities(self) -> list[str]:
        """The scaling activities begun since the last look, oldest first, as the timeline's decisions."""
        fresh = [a for a in reversed(self.scaling_activities()) if a["ActivityId"] not in self.activities_seen]
        self.activities_seen |= {a["ActivityId"] for a in fresh}
        return [f"{a['StatusCode']}: {a['Description']} ({a.get('Cause', '').split(' At ')[-1][:120]})"
                for a in fresh]

    def run(self, until: Callable[[list[Period]], bool], max_periods: int, period_seconds: float) -> list[Period]:
        """One step per period until `until(timeline)` holds or max_periods have passed."""
        for _ in range(max_periods):
            started = time.monotonic()
            self.step()
            if until(self.timeline):
                break
            time.sleep(max(0.0, period_seconds - (time.monotonic() - started)))
        return self.timeline


class ScalingLoop(FleetWatch):
    """On the emulator: CloudWatch's and Auto Scaling's part, one period at a time, and workers for the group."""

    def __init__(self, client: Callable[[str], Any], prefix: str, workers: Workers) -> None:
        super().__init__(client, prefix)
        self.workers = workers
        self.policies = {p["PolicyARN"]: p for p in
                         self.autoscaling.describe_policies(AutoScalingGroupName=self.group_name)["ScalingPolicies"]}
        self.states = {a["AlarmName"]: "INSUFFICIENT_DATA" for a in self.alarms}
        self.series: dict[str, list[float | None]] = {a["AlarmName"]: [] for a in self.alarms}
        self.history: dict[tuple[str, str], list[float | None]] = {}  # one-minute points per (queue, metric)
        self.termination_wait = termination_wait_minutes(
            self.autoscaling.describe_lifecycle_hooks(AutoScalingGroupName=self.group_name)["LifecycleHooks"])
        self.terminating: dict[str, int] = {}  # instance in Terminating:Wait -> the minute it goes
        # A period the loop cannot play fails here, before anything is sent.
        self.minutes = {a["AlarmName"]: self.alarm_minutes(a) for a in self.alarms}
        # The loop's clock: minute m of the run is stamped clock + m minutes on the metrics it publishes, so
        # CloudWatch holds one data point per minute, as AWS would, at any time scale.
        self.clock = datetime.datetime.now(datetime.timezone.utc).replace(second=0, microsecond=0)

    def stamp(self, minute: int) -> datetime.datetime:
        return self.clock + datetime.timedelta(minutes=minute)

    def publish_queue_metrics(self, counts: dict[tuple[str, str], float]) -> None:
        """This period's AWS/SQS data points, as SQS publishes them once a minute: what the alarms read."""
        when = self.stamp(len(self.timeline))
        self.cloudwatch.put_metric_data(Namespace="AWS/SQS", MetricData=[
            {"MetricName": metric, "Dimensions": [{"Name": "QueueName", "Value": queue}], "Value": value,
             "Timestamp": when} for (queue, metric), value in counts.items()])

    def publish_group_metrics(self, group: dict[str, Any]) -> None:
        """The group's size at the end of this period (AWS/AutoScaling group metrics, one-minute granularity)."""
        when = self.stamp(len(self.timeline))
        self.cloudwatch.put_metric_data(Namespace="AWS/AutoScaling", MetricData=[
            {"MetricName": metric, "Dimensions": [{"Name": "AutoScalingGroupName", "Value": self.group_name}],
             "Value": value, "Timestamp": when} for metric, value in (
                ("GroupDesiredCapacity", group["DesiredCapacity"]),
                ("GroupInServiceInstances", len(self.serving(group))),
                ("GroupTotalInstances", len(self.live_instances(group)) + len(self.terminating)))])

    def serving(self, group: dict[str, Any]) -> set[str]:
        """Instances in service: live in the group, their worker consuming (Terminating:Wait is not)."""
        return self.workers.in_service() & set(self.live_instances(group))

    def alarm_minutes(self, alarm: dict[str, Any]) -> int:
        """How many one-minute SQS points one period of this alarm spans."""
        periods = {int(q["MetricStat"]["Period"]) for q in alarm.get("Metrics", []) if "MetricStat" in q}
        period = max(periods or {int(alarm.get("Period", 60))})
        if period % 60:
            raise CannotPlay(f"alarm {alarm['AlarmName']} has a period of {period} s: SQS publishes one data point "
                             "a minute, and the local loop evaluates periods of whole minutes only")
        return period // 60

    def alarm_value(self, alarm: dict[str, Any]) -> float | None:
        """The alarm's data point for the period that just ended, from the one-minute points in it."""
        minutes = self.minutes[alarm["AlarmName"]]

        def metric(definition: dict[str, Any], statistic: str) -> float | None:
            queue = next((d["Value"] for d in definition.get("Dimensions", []) if d["Name"] == "QueueName"), "")
            return aggregate(self.history.get((queue, definition.get("MetricName", "")), [])[-minutes:], statistic)

        if alarm.get("Metrics"):
            values = {q["Id"]: metric(q["MetricStat"]["Metric"], q["MetricStat"]["Stat"])
                      for q in alarm["Metrics"] if "MetricStat" in q}
            expression = next(q["Expression"] for q in alarm["Metrics"] if q.get("ReturnData", True))
            return expression_value(expression, values)
        return metric(alarm, alarm.get("Statistic", "Maximum"))

    def evaluate(self, group: dict[str, Any], decisions: list[str]) -> int:
        """Every alarm whose period ends this minute, as CloudWatch does; then the step policies of the alarms
        in ALARM, as Auto Scaling does: each is run again every period while its alarm stays in ALARM, and when
        several run at once the one giving the largest capacity wins."""
        current: int = group["DesiredCapacity"]
        capacities = []
        for alarm in self.alarms:
            name = alarm["AlarmName"]
            if (len(self.timeline) + 1) % self.minutes[name]:
                continue  # this alarm's period has not ended yet
            value = self.alarm_value(alarm)
            self.series[name].append(value)
            state = alarm_state(alarm, self.series[name], self.states[name])
            if state != self.states[name]:
                decisions.append(f"{name}: {self.states[name]} -> {state} (value {value})")
            self.states[name] = state
            if state != ALARM or (value is None and alarm.get("TreatMissingData") != "breaching"):
                continue
            for policy in [self.policies[a] for a in alarm.get("AlarmActions", []) if a in self.policies]:
                breach = (value if value is not None else 0.0) - float(alarm["Threshold"])
                capacity = new_capacity(policy, breach, current, group["MinSize"], group["MaxSize"])
                if capacity is not None:
                    capacities.append((capacity, f"{policy['PolicyName']} (breach {breach:+g})"))
        if not capacities:
            return current
        desired, reason = max(capacities)
        if desired != current:
            decisions.append(f"{reason}: desired {current} -> {desired}")
        return desired

    def resize(self, group: dict[str, Any], desired: int, decisions: list[str]) -> None:
        """Set the desired capacity; on scale-in terminate only what AWS would (never a protected instance)."""
        live = self.live(group)
        victims = instances_to_terminate(live, desired) if desired < len(live) else []
        for instance in victims:
            self.autoscaling.terminate_instance_in_auto_scaling_group(InstanceId=instance,
                                                                      ShouldDecrementDesiredCapacity=True)
            if self.termination_wait:
                # The drain hook holds it, still running, until its heartbeat times out (nothing completes it).
                self.terminating[instance] = len(self.timeline) + self.termination_wait
                decisions.append(f"terminate {instance}: Terminating:Wait for up to {self.termination_wait} minutes")
            else:
                decisions.append(f"terminate {instance}")
        kept = len(live) - len(victims) - desired
        if kept > 0:
            decisions.append(f"{kept} instance(s) protected from scale-in kept running")
        self.autoscaling.set_desired_capacity(AutoScalingGroupName=self.group_name, DesiredCapacity=desired,
                                              HonorCooldown=False)

    def step(self) -> Period:
        counts, group = self.counts(), self.group()
        decisions: list[str] = []
        self.publish_queue_metrics(counts)
        for key, value in counts.items():
            self.history.setdefault(key, []).append(value)
        desired = self.evaluate(group, decisions)
        if desired != group["DesiredCapacity"]:
            self.resize(group, desired, decisions)
            group = self.group()
        for instance in [i for i, until in self.terminating.items() if until <= len(self.timeline)]:
            del self.terminating[instance]
            decisions.append(f"{instance}: lifecycle heartbeat timed out, default result: terminated")
        live = self.live_instances(group)
        decisions += self.workers.follow(live + list(self.terminating))
        self.publish_group_metrics(group)
        return self.record(counts, group, len(live) + len(self.terminating), len(self.serving(group)),
                           len(self.terminating), decisions)

    def run(self, until: Callable[[list[Period]], bool], max_periods: int, period_seconds: float) -> list[Period]:
        try:
            return super().run(until, max_periods, period_seconds)
        finally:
            self.workers.stop()
