"""The stack's queue, group and alarms as AWS (or the emulator) holds them, read for one run.

Names come from the recorded stack; alarms and group bounds are read back from AWS (or the emulator), never
from the project's variables.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqs_fleet.stack import Stack, StackNotFound
from sqs_fleet_workers import redis_backlog  # files/: the Celery queue's key names

# GetQueueAttributes names of the AWS/SQS metrics the alarms use.
QUEUE_ATTRIBUTE = {
    "ApproximateNumberOfMessagesVisible": "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible": "ApproximateNumberOfMessagesNotVisible",
}
LIVE_STATES = ("Pending", "Pending:Wait", "Pending:Proceed", "InService")
Counts = dict[tuple[str, str], float]  # (queue name, AWS/SQS metric) -> this period's value


class CannotPlay(RuntimeError):
    """The stack uses something the local loop cannot play faithfully."""


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
