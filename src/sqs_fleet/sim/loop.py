"""Watch a fleet each period, on AWS or on the emulator, and on the emulator play AWS's part for it.

`FleetWatch` records what a run sees each period: the queue's counts, the group's desired capacity and
instances, the alarms' states and what was decided. What decides is a `Scaling`, composed in:

- `AwsScaling`: on AWS, CloudWatch and Auto Scaling act; it only reads the alarms' states and the new
  scaling activities.
- `EmulatedScaling`: on the emulator, which evaluates no alarm and runs no policy, it publishes the AWS/SQS
  metrics from GetQueueAttributes, evaluates the stack's alarms as CloudWatch does, runs the step policies of
  the alarms in ALARM as Auto Scaling does (scale-in protection honoured), sets the group's desired
  capacity, and gives every instance of the group a worker: a local consumer process
  (`sqs_fleet.lab.workers.ProcessWorkers`) or a booted node (`sqs_fleet.lab.fleet.NodeWorkers`). It plays the
  group's lifecycle hooks with the lab's `LifecycleActions` (emulation: moto has none) on its own clock (the
  ticks played, in AWS seconds): a new instance waits in Pending:Wait until its launch action settles
  (CONTINUE: in service; ABANDON or a timeout with ABANDON: terminated, "launch abandoned"), a terminated one
  in Terminating:Wait until its action is completed or its heartbeat runs out, its metadata's target lifecycle
  state turned Terminated. Booted nodes complete their own actions; for local processes the loop completes
  them (launch once the process has started, termination once it has exited).

Names come from the recorded stack; alarms, policies and group bounds are read back from AWS (or the
emulator), never from the project's variables. A time scale shrinks a period (60 s on AWS) to a few
seconds; the logic is the same.
"""

from __future__ import annotations

import contextlib
import datetime
import io
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqs_fleet.lab.lifecycle import LAUNCHING, TERMINATING, LifecycleActions
from sqs_fleet.sim.semantics import (
    ALARM,
    aggregate,
    alarm_state,
    expression_value,
    instances_to_terminate,
    new_capacity,
)
from sqs_fleet.stack import Stack, StackNotFound

# GetQueueAttributes names of the AWS/SQS metrics the alarms use.
QUEUE_ATTRIBUTE = {
    "ApproximateNumberOfMessagesVisible": "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible": "ApproximateNumberOfMessagesNotVisible",
}
LIVE_STATES = ("Pending", "Pending:Wait", "Pending:Proceed", "InService")
Counts = dict[tuple[str, str], float]  # (queue name, AWS/SQS metric) -> this period's value


class CannotPlay(RuntimeError):
    """The stack uses something the local loop cannot play faithfully."""


class Workers(Protocol):
    # True when the workers complete their own lifecycle actions (booted nodes); else the loop completes them.
    completes_lifecycle: bool

    def follow(self, instances: Sequence[str]) -> list[str]:
        """Start a worker for each new instance id, stop the workers of instances gone; say what was done."""

    def in_service(self) -> set[str]:
        """The instances whose worker runs."""

    def stop(self) -> None: ...


@dataclass
class Period:
    # The tick's index in the run (0, 1, ...): a minute only when a tick is 60 s of AWS time; `seconds` says when.
    minute: int
    seconds: int  # AWS seconds from the run's start to this tick's start: minute * the scaling's tick_seconds
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


@dataclass
class Outcome:
    """What one period of scaling did, and the group it left."""

    group: dict[str, Any]
    instances: int  # running, Terminating:Wait included (it is billed)
    in_service: int
    terminating: int
    decisions: list[str]


class Fleet:
    """The stack's queue, group and alarms as AWS (or the emulator) holds them."""

    def __init__(self, stack: Stack, client: Callable[[str], Any], broker: Any = None) -> None:
        self.stack = stack
        self.client = client
        # A Redis client of the broker, for a stack on Redis: the counts come from the Celery queue.
        if stack.on_redis and broker is None:
            raise CannotPlay("the stack's broker is Redis: give the fleet a client of it (the lab's Redis server)")
        self.broker = broker
        self.sqs, self.cloudwatch, self.autoscaling = client("sqs"), client("cloudwatch"), client("autoscaling")
        self.queue_name, self.dlq_name, self.group_name = (stack.queue_name, stack.dead_letter_queue_name,
                                                           stack.group_name)
        self.queues = {}
        for name in (self.queue_name, self.dlq_name):
            try:
                self.queues[name] = self.sqs.get_queue_url(QueueName=name)["QueueUrl"]
            except self.sqs.exceptions.QueueDoesNotExist:
                raise StackNotFound(f"queue {name} does not exist: run site.yml for this stack first") from None
        if not self.autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[self.group_name])[
                "AutoScalingGroups"]:
            raise StackNotFound(f"Auto Scaling group {self.group_name} does not exist: run site.yml first")
        # The stack's short alarm keys (scale_out, ...) by full name, as the timeline shows them; on Redis, with
        # the alarm that starts a worker from zero.
        scaling_alarms = {**stack.alarms, **{key: name for key, name in stack.broker.get("alarms", {}).items()
                                             if key == "scale_out_from_zero"}}
        self.alarm_keys = {name: key for key, name in scaling_alarms.items()}
        self.alarms: list[dict[str, Any]] = self.cloudwatch.describe_alarms(
            AlarmNames=list(self.alarm_keys))["MetricAlarms"]

    def counts(self) -> Counts:
        if self.broker is not None:
            return self.broker_counts()
        values = {}
        for name, url in self.queues.items():
            attributes = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=list(QUEUE_ATTRIBUTE.values()))
            for metric, attribute in QUEUE_ATTRIBUTE.items():
                values[(name, metric)] = float(attributes["Attributes"][attribute])
        return values

    def broker_counts(self) -> Counts:
        """The Celery queue's counts under the SQS names the timeline uses, read in one MULTI/EXEC: waiting jobs
        as visible, jobs workers hold (unacked) as in flight, the dead-letter list as the DLQ's visible."""
        import redis_backlog  # files/

        with self.broker.pipeline(transaction=True) as pipeline:
            pipeline.llen(self.queue_name)
            pipeline.hlen(redis_backlog.UNACKED)
            pipeline.llen(self.dlq_name)
            waiting, held, dead = pipeline.execute()
        return {(self.queue_name, "ApproximateNumberOfMessagesVisible"): float(waiting),
                (self.queue_name, "ApproximateNumberOfMessagesNotVisible"): float(held),
                (self.dlq_name, "ApproximateNumberOfMessagesVisible"): float(dead),
                (self.dlq_name, "ApproximateNumberOfMessagesNotVisible"): 0.0}

    def group(self) -> dict[str, Any]:
        group: dict[str, Any] = self.autoscaling.describe_auto_scaling_groups(
            AutoScalingGroupNames=[self.group_name])["AutoScalingGroups"][0]
        return group

    def alarm(self, key: str) -> dict[str, Any] | None:
        """The stack's alarm with this short key (scale_in, ...), as described."""
        return next((a for a in self.alarms if self.alarm_keys.get(a["AlarmName"]) == key), None)


def live(group: dict[str, Any]) -> list[dict[str, Any]]:
    """The group's instances that are launching or in service (not terminating)."""
    return [i for i in group.get("Instances", []) if i["LifecycleState"] in LIVE_STATES]


def live_ids(group: dict[str, Any]) -> list[str]:
    return [i["InstanceId"] for i in live(group)]


class TargetLifecycleState(Protocol):
    """Where an instance reads its metadata (the lab's metadata service): autoscaling/target-lifecycle-state
    and spot/instance-action."""

    def set_target_lifecycle_state(self, instance_id: str, state: str) -> None: ...

    def notice_spot_interruption(self, instance_id: str, seconds_ahead: int = 120) -> None: ...


class Scaling(Protocol):
    """What decides the group's size each period: AWS itself, or the local loop playing it."""

    states: dict[str, str]  # alarm name -> state
    tick_seconds: int  # AWS seconds one period (a tick of the run) spans

    def period(self, minute: int, counts: Counts, group: dict[str, Any]) -> Outcome: ...

    def close(self) -> None: ...


class AwsScaling:
    """On AWS: CloudWatch and Auto Scaling act; this reads their states and the new scaling activities."""

    tick_seconds = 60  # the plan watches AWS once a minute, in real time

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        self.states = {a["AlarmName"]: a.get("StateValue", "INSUFFICIENT_DATA") for a in fleet.alarms}
        self.activities_seen = {a["ActivityId"] for a in self.scaling_activities()}  # only the run's own count

    def scaling_activities(self) -> list[dict[str, Any]]:
        activities: list[dict[str, Any]] = self.fleet.autoscaling.describe_scaling_activities(
            AutoScalingGroupName=self.fleet.group_name, MaxRecords=20)["Activities"]
        return activities

    def new_activities(self) -> list[str]:
        """The scaling activities begun since the last look, oldest first, as the timeline's decisions."""
        fresh = [a for a in reversed(self.scaling_activities()) if a["ActivityId"] not in self.activities_seen]
        self.activities_seen |= {a["ActivityId"] for a in fresh}
        return [f"{a['StatusCode']}: {a['Description']} ({a.get('Cause', '').split(' At ')[-1][:120]})"
                for a in fresh]

    def period(self, minute: int, counts: Counts, group: dict[str, Any]) -> Outcome:
        self.states = {a["AlarmName"]: a["StateValue"] for a in self.fleet.cloudwatch.describe_alarms(
            AlarmNames=list(self.fleet.alarm_keys))["MetricAlarms"]}
        states = [i["LifecycleState"] for i in group.get("Instances", [])]
        return Outcome(group=group, instances=sum(1 for state in states if state != "Terminated"),
                       in_service=states.count("InService"),
                       terminating=sum(1 for state in states if state.startswith("Terminating")),
                       decisions=self.new_activities())

    def close(self) -> None:
        """Nothing to stop: AWS runs the instances."""


class EmulatedScaling:
    """On the emulator: CloudWatch's and Auto Scaling's part, one period at a time, and workers for the group.

    The loop's tick is the shortest period it must play: 10 s of AWS time when an alarm reads 10-second periods
    (the backlog publisher's high-resolution metric), else one minute. AWS's own metrics (SQS's, the group's)
    stay one point a minute at any tick, and an alarm with a sub-minute period on one cannot be played. Nothing
    on the emulator runs the publisher's Lambda function nor its schedule, so each tick the loop invokes the same
    handler in-process, with the environment the function has on the emulator.

    `actions`: the lifecycle actions the workers complete (the lab's, which its nodes reach; by default the
    loop's own); `metadata`: where a node reads its target lifecycle state and Spot notices;
    `complete_terminations`: False plays local processes whose termination action nothing completes, so the
    drain hook's heartbeat decides (a fleet without the nodes' lifecycle watcher).
    """

    def __init__(self, fleet: Fleet, workers: Workers, actions: LifecycleActions | None = None,
                 metadata: TargetLifecycleState | None = None, complete_terminations: bool = True) -> None:
        self.fleet, self.workers, self.metadata = fleet, workers, metadata
        self.complete_terminations = complete_terminations
        autoscaling = fleet.autoscaling
        self.policies = {p["PolicyARN"]: p for p in
                         autoscaling.describe_policies(AutoScalingGroupName=fleet.group_name)["ScalingPolicies"]}
        self.states = {a["AlarmName"]: "INSUFFICIENT_DATA" for a in fleet.alarms}
        self.series: dict[str, list[float | None]] = {a["AlarmName"]: [] for a in fleet.alarms}
        # One point per tick (None: nothing published in it) per (namespace, queue, metric).
        self.history: dict[tuple[str, str, str], list[float | None]] = {}
        # A period the loop cannot play fails here, before anything is sent.
        self.tick_seconds = tick_seconds(fleet.alarms)
        self.ticks = {a["AlarmName"]: self.alarm_ticks(a) for a in fleet.alarms}
        # Lifecycle actions run on the loop's clock (AWS time: ticks played), so a 300 s heartbeat lasts the
        # ticks it spans on AWS however long a tick takes to play.
        self.actions = actions or LifecycleActions()
        self.actions.clock = lambda: float(self.tick * self.tick_seconds)
        # The group's hooks by transition (the stack has one of each at most).
        self.hooks = {h["LifecycleTransition"]: h for h in autoscaling.describe_lifecycle_hooks(
            AutoScalingGroupName=fleet.group_name)["LifecycleHooks"]}
        self.known: set[str] = set()  # every instance seen in the group
        self.pending: set[str] = set()  # in Pending:Wait: launch action not settled yet
        self.serving_ids: set[str] = set()  # launch action settled with CONTINUE
        self.terminating: set[str] = set()  # in Terminating:Wait: still running, still billed
        self.tick = 0  # the tick being played
        self.publisher = EmulatedPublisher.for_stack(fleet) if fleet.stack.data.get("publisher") else None
        # Spot: instance -> the tick its interruption terminates it; the notice goes to the metadata service.
        self.interruptions: dict[int, list[str]] = {}  # tick of the notice -> instances
        self.interrupted: dict[str, int] = {}
        self.spot_interruptions = 0
        # The loop's clock: tick t of the run is stamped clock + t ticks on the metrics it publishes, so
        # CloudWatch holds one data point per period, as AWS would, at any time scale. A played tick is shorter
        # than the AWS time it stamps, so an earlier run may have stamped points past now under the same names:
        # the clock starts after them, and nothing read over this run's span is another run's.
        self.clock = clock_after(fleet.cloudwatch, self.dimensions(),
                                 datetime.datetime.now(datetime.timezone.utc))

    def dimensions(self) -> list[tuple[str, str]]:
        """The dimensions of every metric the loop publishes: the queues', the group's, the publisher's."""
        named = [("QueueName", self.fleet.queue_name), ("QueueName", self.fleet.dlq_name),
                 ("AutoScalingGroupName", self.fleet.group_name)]
        if self.publisher is not None:
            named.append(self.publisher.dimension)
        return named

    @property
    def ticks_per_minute(self) -> int:
        return 60 // self.tick_seconds

    def stamp(self, tick: int) -> datetime.datetime:
        return self.clock + datetime.timedelta(seconds=tick * self.tick_seconds)

    def publish_queue_metrics(self, tick: int, counts: Counts) -> None:
        """This minute's AWS/SQS data points, as SQS publishes them once a minute: what the SQS alarms read."""
        self.fleet.cloudwatch.put_metric_data(Namespace="AWS/SQS", MetricData=[
            {"MetricName": metric, "Dimensions": [{"Name": "QueueName", "Value": queue}], "Value": value,
             "Timestamp": self.stamp(tick)} for (queue, metric), value in counts.items()])

    def publish_group_metrics(self, tick: int, group: dict[str, Any]) -> None:
        """The group's size at the end of this period (AWS/AutoScaling group metrics, one-minute granularity)."""
        values = (("GroupDesiredCapacity", group["DesiredCapacity"]),
                  ("GroupInServiceInstances", len(self.serving(group))),
                  ("GroupTotalInstances", len(live_ids(group)) + len(self.terminating)))
        self.fleet.cloudwatch.put_metric_data(Namespace="AWS/AutoScaling", MetricData=[
            {"MetricName": metric,
             "Dimensions": [{"Name": "AutoScalingGroupName", "Value": self.fleet.group_name}],
             "Value": value, "Timestamp": self.stamp(tick)} for metric, value in values])

    def serving(self, group: dict[str, Any]) -> set[str]:
        """Instances in service: live in the group and, with a launch hook, past it with CONTINUE (their own
        word that the consumer is active); without one, their worker running (Terminating:Wait is not)."""
        live = set(live_ids(group))
        if LAUNCHING in self.hooks:
            return live & self.serving_ids
        return self.workers.in_service() & live


    def alarm_ticks(self, alarm: dict[str, Any]) -> int:
        """How many of the loop's ticks one period of this alarm spans."""
        period = alarm_period(alarm)
        one_minute = one_minute_metrics(alarm)
        if period % 60 and one_minute:
            raise CannotPlay(f"alarm {alarm['AlarmName']} has a period of {period} s on {', '.join(one_minute)}, "
                             "which AWS publishes once a minute (on AWS it would lapse into INSUFFICIENT_DATA)")
        if period % self.tick_seconds:
            raise CannotPlay(f"alarm {alarm['AlarmName']} has a period of {period} s: the local loop plays whole "
                             f"ticks of {self.tick_seconds} s")
        return period // self.tick_seconds

    def alarm_value(self, alarm: dict[str, Any]) -> float | None:
        """The alarm's data point for the period that just ended, from the points published in it."""
        ticks = self.ticks[alarm["AlarmName"]]

        def metric(definition: dict[str, Any], statistic: str) -> float | None:
            # Every metric the loop records has one dimension: a queue's or the group's name.
            dimension = next((d["Value"] for d in definition.get("Dimensions", [])), "")
            key = (definition.get("Namespace", ""), dimension, definition.get("MetricName", ""))
            # The points of this period's ticks (index = tick); a tick nothing was published in has none.
            return aggregate(self.history.get(key, [])[max(0, self.tick + 1 - ticks):self.tick + 1], statistic)

        if alarm.get("Metrics"):
            values = {q["Id"]: metric(q["MetricStat"]["Metric"], q["MetricStat"]["Stat"])
                      for q in alarm["Metrics"] if "MetricStat" in q}
            expression = next(q["Expression"] for q in alarm["Metrics"] if q.get("ReturnData", True))
            return expression_value(expression, values)
        return metric(alarm, alarm.get("Statistic", "Maximum"))

    def evaluate(self, tick: int, group: dict[str, Any], decisions: list[str]) -> int:
        """Every alarm whose period ends this tick, as CloudWatch does; then the step policies of the alarms
        in ALARM, as Auto Scaling does: each is run again every period while its alarm stays in ALARM, and when
        several run at once the one giving the largest capacity wins."""
        current: int = group["DesiredCapacity"]
        capacities = []
        for alarm in self.fleet.alarms:
            name = alarm["AlarmName"]
            if (tick + 1) % self.ticks[name]:
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

    def resize(self, tick: int, group: dict[str, Any], desired: int, decisions: list[str]) -> None:
        """Set the desired capacity; on scale-in terminate only what AWS would (never a protected instance)."""
        running = live(group)
        victims = instances_to_terminate(running, desired) if desired < len(running) else []
        drain = self.hooks.get(TERMINATING)
        for instance in victims:
            self.fleet.autoscaling.terminate_instance_in_auto_scaling_group(InstanceId=instance,
                                                                            ShouldDecrementDesiredCapacity=True)
            self.pending.discard(instance)
            self.serving_ids.discard(instance)
            if drain:
                # The drain hook holds it, still running, until its action is completed or its heartbeat runs out;
                # the instance reads Terminated from its metadata and drains.
                self.actions.begin(instance, self.fleet.group_name, drain)
                self.terminating.add(instance)
                if self.metadata:
                    self.metadata.set_target_lifecycle_state(instance, "Terminated")
                decisions.append(f"terminate {instance}: Terminating:Wait (hook {drain['LifecycleHookName']}, "
                                 f"heartbeat {drain.get('HeartbeatTimeout', 3600)} s)")
            else:
                decisions.append(f"terminate {instance}")
        kept = len(running) - len(victims) - desired
        if kept > 0:
            decisions.append(f"{kept} instance(s) protected from scale-in kept running")
        self.fleet.autoscaling.set_desired_capacity(AutoScalingGroupName=self.fleet.group_name,
                                                    DesiredCapacity=desired, HonorCooldown=False)

    def record(self, key: tuple[str, str, str], tick: int, value: float | None) -> None:
        points = self.history.setdefault(key, [])
        points.extend([None] * (tick - len(points)))  # ticks in which nothing was published
        points.append(value)

    def interrupt(self, instance_ids: Sequence[str], at_minute: float) -> None:
        """Spot interruption notices for these instances at this minute of the run (AWS time): each gets its
        notice then (the lab's metadata service, through `spot_notice`) and is terminated two minutes later,
        without lowering the desired capacity, so the group replaces it."""
        tick = math.ceil(at_minute * 60 / self.tick_seconds)
        self.interruptions.setdefault(tick, []).extend(instance_ids)

    def spot(self, tick: int, decisions: list[str]) -> bool:
        """This tick's Spot notices (emulated: EC2 gives them on AWS) and the interruptions they announced;
        True when an instance was terminated."""
        terminated = False
        for instance in self.interruptions.pop(tick, []):
            self.interrupted[instance] = tick + math.ceil(SPOT_NOTICE_SECONDS / self.tick_seconds)
            self.spot_interruptions += 1
            if self.metadata is not None:
                self.metadata.notice_spot_interruption(instance, SPOT_NOTICE_SECONDS)
            decisions.append(f"spot interruption notice for {instance} (emulated): terminated in two minutes")
        due = [i for i, until in self.interrupted.items() if until <= tick]
        # Scale-in may have taken an announced instance first (the emulator answers a call on it with a 500).
        in_group = set(live_ids(self.fleet.group())) if due else set()
        for instance in due:
            del self.interrupted[instance]
            if instance not in in_group or instance in self.terminating:
                decisions.append(f"spot interruption of {instance}: already terminating or gone")
                continue
            self.fleet.autoscaling.terminate_instance_in_auto_scaling_group(
                InstanceId=instance, ShouldDecrementDesiredCapacity=False)
            self.pending.discard(instance)
            self.serving_ids.discard(instance)
            decisions.append(f"spot interruption: {instance} terminated by EC2 (emulated); the group replaces it")
            terminated = True
        return terminated

    def begin_launches(self, group: dict[str, Any], decisions: list[str]) -> None:
        """Each instance new in the group waits in Pending:Wait for its launch action, if the group has a hook."""
        launch = self.hooks.get(LAUNCHING)
        for instance in [i for i in live_ids(group) if i not in self.known]:
            self.known.add(instance)
            if launch:
                self.actions.begin(instance, self.fleet.group_name, launch)
                self.pending.add(instance)
                decisions.append(f"{instance}: Pending:Wait (hook {launch['LifecycleHookName']}, "
                                 f"heartbeat {launch.get('HeartbeatTimeout', 3600)} s)")

    def settle(self, decisions: list[str]) -> bool:
        """Apply the lifecycle actions settled since the last look (completed, or timed out to the hook's default
        result); True when an abandoned launch terminated an instance (Auto Scaling then launches another)."""
        for action in self.actions.expire():
            decisions.append(f"{action.instance_id}: {action.hook} heartbeat timed out, default result {action.result}")
        abandoned = False
        for instance in sorted(i for i in self.pending if not self.actions.waiting(i)):
            self.pending.discard(instance)
            settled = self.actions.settled(instance)
            if settled and settled.result == "CONTINUE":
                self.serving_ids.add(instance)
                decisions.append(f"{instance}: launch action CONTINUE: InService")
                continue
            why = "heartbeat timed out" if settled is None or settled.timed_out else "the instance abandoned it"
            decisions.append(f"{instance}: launch abandoned ({why}): terminated, a replacement launches")
            self.fleet.autoscaling.terminate_instance_in_auto_scaling_group(InstanceId=instance,
                                                                            ShouldDecrementDesiredCapacity=False)
            abandoned = True
        for instance in sorted(i for i in self.terminating if not self.actions.waiting(i)):
            self.terminating.discard(instance)
            settled = self.actions.settled(instance)
            how = ("its heartbeat timed out" if settled is None or settled.timed_out
                   else f"its termination action was completed with {settled.result}")
            decisions.append(f"{instance}: terminated, {how}")
        return abandoned

    def complete_for_local_workers(self, group: dict[str, Any], decisions: list[str]) -> None:
        """Local processes cannot complete lifecycle actions; the loop does it for them (emulation): a launch once
        the process runs, a termination once follow() has stopped it and it has exited."""
        running = self.workers.in_service()
        for instance in sorted(self.pending & running):
            self.actions.complete(self.fleet.group_name, self.hooks[LAUNCHING]["LifecycleHookName"], "CONTINUE",
                                  instance_id=instance)
        for instance in sorted(self.terminating - running) if self.complete_terminations else []:
            if self.actions.waiting(instance):
                self.actions.complete(self.fleet.group_name, self.hooks[TERMINATING]["LifecycleHookName"],
                                      "CONTINUE", instance_id=instance)
                decisions.append(f"{instance}: worker exited; termination action completed with CONTINUE "
                                 "(by the loop for a local process)")

    def period(self, minute: int, counts: Counts, group: dict[str, Any]) -> Outcome:
        """One tick of the loop (`minute` is the tick's index: a minute, or 10 s with high-resolution alarms)."""
        tick, decisions = minute, list[str]()
        self.tick = tick
        if tick % self.ticks_per_minute == 0:
            self.publish_queue_metrics(tick, counts)
            for (queue, metric), value in counts.items():
                self.record(("AWS/SQS", queue, metric), tick, value)
            # What an alarm on the group's desired capacity reads in this minute: the capacity it started with, one
            # point a minute as Auto Scaling publishes its group metrics.
            self.record(("AWS/AutoScaling", self.fleet.group_name, "GroupDesiredCapacity"), tick,
                        float(group["DesiredCapacity"]))
        if self.publisher is not None:
            published = self.publisher.invoke(self.stamp(tick), decisions)
            if published is not None:
                self.record(self.publisher.key, tick, published)
        if self.spot(tick, decisions):
            group = self.fleet.group()
        desired = self.evaluate(tick, group, decisions)
        if desired != group["DesiredCapacity"]:
            self.resize(tick, group, desired, decisions)
        self.settle(decisions)
        group = self.fleet.group()
        self.begin_launches(group, decisions)
        if self.workers.completes_lifecycle:
            # A node in Terminating:Wait keeps running until its own watcher has completed the action.
            decisions += self.workers.follow(live_ids(group) + sorted(self.terminating))
        else:
            decisions += self.workers.follow(live_ids(group))  # a terminating process is stopped (SIGTERM: drain)
            self.complete_for_local_workers(group, decisions)
            if self.settle(decisions):
                group = self.fleet.group()
        running = live_ids(group)
        if tick % self.ticks_per_minute == 0:
            self.publish_group_metrics(tick, group)
        return Outcome(group=group, instances=len(running) + len(self.terminating),
                       in_service=len(self.serving(group)), terminating=len(self.terminating), decisions=decisions)

    def close(self) -> None:
        self.workers.stop()


SPOT_NOTICE_SECONDS = 120  # EC2's two-minute warning before a Spot interruption
# How far past now the clock looks for an earlier run's points: each run played on one emulator moves the
# stamps further ahead by the AWS time it plays less the real time it takes (a few hours at most per run).
CLOCK_HORIZON = datetime.timedelta(days=14)


def latest_point(cloudwatch: Any, metrics: Sequence[dict[str, Any]], start: datetime.datetime,
                 end: datetime.datetime, period: int) -> datetime.datetime | None:
    """The start of the last `period`-second bucket from `start` holding a data point of any of `metrics`
    (ListMetrics' entries) before `end`, or None."""
    stamps: list[datetime.datetime] = []
    for first in range(0, len(metrics), 500):  # GetMetricData takes 500 queries at most
        queries = [{"Id": f"m{n}", "ReturnData": True, "MetricStat": {"Metric": metric, "Period": period,
                                                                      "Stat": "SampleCount"}}
                   for n, metric in enumerate(metrics[first:first + 500])]
        for page in cloudwatch.get_paginator("get_metric_data").paginate(
                MetricDataQueries=queries, StartTime=start, EndTime=end, ScanBy="TimestampDescending"):
            stamps += [moment for result in page["MetricDataResults"] for moment in result["Timestamps"]]
    return max(stamps, default=None)


def clock_after(cloudwatch: Any, dimensions: Sequence[tuple[str, str]], now: datetime.datetime,
                horizon: datetime.timedelta = CLOCK_HORIZON) -> datetime.datetime:
    """Where a run's clock starts: the current minute, or the minute after the last data point CloudWatch holds
    past it for any metric of these dimensions (an earlier run's, stamped ahead of real time), whichever is later.
    Found hour by hour, then minute by minute within the last hour that holds one."""
    start = now.astimezone(datetime.timezone.utc).replace(second=0, microsecond=0)
    metrics: list[dict[str, Any]] = []
    for name, value in dimensions:
        for page in cloudwatch.get_paginator("list_metrics").paginate(Dimensions=[{"Name": name, "Value": value}]):
            for listed in page["Metrics"]:
                metric = {key: listed[key] for key in ("Namespace", "MetricName", "Dimensions")}
                if metric not in metrics:
                    metrics.append(metric)
    if not metrics:
        return start
    hour = latest_point(cloudwatch, metrics, start, start + horizon, 3600)
    if hour is None:
        return start
    minute = latest_point(cloudwatch, metrics, hour, hour + datetime.timedelta(hours=1), 60)
    return max(start, (minute or hour) + datetime.timedelta(minutes=1))


# AWS's own namespaces: their metrics are stored at one-minute resolution (only PutMetricData with
# StorageResolution 1 stores finer points), as sqs_fleet.aws's alarm module also assumes.
ONE_MINUTE_NAMESPACE_PREFIX = "AWS/"


def one_minute_metrics(alarm: dict[str, Any]) -> list[str]:
    """The metrics an alarm reads that AWS publishes once a minute, as "namespace name"."""
    metrics = [q["MetricStat"]["Metric"] for q in alarm.get("Metrics", []) if "MetricStat" in q]
    if alarm.get("MetricName"):
        metrics.append(alarm)
    return [f"{m.get('Namespace')} {m.get('MetricName')}" for m in metrics
            if str(m.get("Namespace", "")).startswith(ONE_MINUTE_NAMESPACE_PREFIX)]


def alarm_period(alarm: dict[str, Any]) -> int:
    periods = {int(q["MetricStat"]["Period"]) for q in alarm.get("Metrics", []) if "MetricStat" in q}
    return max(periods or {int(alarm.get("Period", 60))})


def tick_seconds(alarms: Sequence[dict[str, Any]]) -> int:
    """The loop's tick: the greatest period dividing every alarm's, at most one minute (SQS's own points)."""
    tick = 60
    for alarm in alarms:
        tick = math.gcd(tick, alarm_period(alarm))
    return tick


class EmulatedPublisher:
    """The backlog publisher's Lambda function, played in-process: the same handler, with the environment the
    function has on the emulator (read back from its configuration), one data point per tick."""

    def __init__(self, fleet: Fleet, environment: dict[str, str]) -> None:
        import backlog_publisher  # files/: what the function runs

        self.fleet, self.environment, self.handler = fleet, environment, backlog_publisher
        self.log = io.StringIO()  # the function's log lines, as its log group would hold them
        self.key = (environment.get("BACKLOG_NAMESPACE", ""), environment.get("BACKLOG_DIMENSION_VALUE", ""),
                    environment.get("BACKLOG_METRIC_NAME", "Backlog"))
        # The one dimension of what it puts (the handler's defaults when the function sets none).
        self.dimension = (environment.get("BACKLOG_DIMENSION_NAME") or "QueueName",
                          environment.get("BACKLOG_DIMENSION_VALUE", ""))
        self.running = True
        self.last: float | None = None

    @classmethod
    def for_stack(cls, fleet: Fleet) -> EmulatedPublisher:
        function = fleet.stack.data["publisher"]["function"]
        configuration = fleet.client("lambda").get_function_configuration(FunctionName=function)
        return cls(fleet, dict(configuration.get("Environment", {}).get("Variables", {})))

    def stop(self) -> None:
        """The publisher stops (a failing function, a disabled schedule): no more data points."""
        self.running = False

    def invoke(self, at: datetime.datetime, decisions: list[str]) -> float | None:
        if not self.running:
            return None
        # The function's own log lines go to its log group on AWS; here they would interleave with the run's
        # lines, so they are kept apart, as Lambda keeps them.
        with contextlib.redirect_stdout(self.log):
            result = self.handler.invoke({"publishes": 1, "timestamp": at.isoformat()}, None, self.environment,
                                         self.fleet.client)
        value = float(result["values"][0])
        if value != self.last:
            decisions.append(f"backlog publisher (emulated invocation of the function's handler): {value:g}")
        self.last = value
        return value


class FleetWatch:
    """The fleet as a run sees it, one period at a time; `scaling` decides what happens in each."""

    def __init__(self, fleet: Fleet, scaling: Scaling) -> None:
        self.fleet, self.scaling = fleet, scaling
        self.timeline: list[Period] = []

    def step(self) -> Period:
        counts = self.fleet.counts()
        outcome = self.scaling.period(len(self.timeline), counts, self.fleet.group())
        keys = self.fleet.alarm_keys
        period = Period(
            minute=len(self.timeline), seconds=len(self.timeline) * self.scaling.tick_seconds, at=time.time(),
            visible=int(counts[(self.fleet.queue_name, "ApproximateNumberOfMessagesVisible")]),
            in_flight=int(counts[(self.fleet.queue_name, "ApproximateNumberOfMessagesNotVisible")]),
            dead_letters=int(counts[(self.fleet.dlq_name, "ApproximateNumberOfMessagesVisible")]),
            desired=outcome.group["DesiredCapacity"], instances=outcome.instances, in_service=outcome.in_service,
            terminating=outcome.terminating,
            alarms={keys.get(name, name): state for name, state in self.scaling.states.items()},
            decisions=outcome.decisions,
        )
        self.timeline.append(period)
        return period

    def run(self, until: Callable[[list[Period]], bool], max_periods: int, period_seconds: float,
            show: Callable[[Period], None] = lambda period: None) -> list[Period]:
        """One step per period until `until(timeline)` holds or max_periods have passed; `show` sees each period."""
        try:
            for _ in range(max_periods):
                started = time.monotonic()
                show(self.step())
                if until(self.timeline):
                    break
                time.sleep(max(0.0, period_seconds - (time.monotonic() - started)))
        finally:
            self.scaling.close()
        return self.timeline
