"""The backlog publisher as site.yml deploys it (function, roles, log group, schedule, alarms read back from the
emulator, which stores the function and the schedule and runs neither), and scaling on its metric with the local
loop, which invokes the function's handler each 10-second tick: scale-out from zero within 20 s of AWS time,
scale-in after the short idle window, no data never read as empty, the stale-publisher alarm, Spot interruptions.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from sqs_fleet.lab.lifecycle import LifecycleActions
from sqs_fleet.sim.fleet import Fleet
from sqs_fleet.sim.loop import FleetWatch
from sqs_fleet.sim.scaling import EmulatedScaling
from sqs_fleet.stack import Stack
from support.ansible_runs import assert_ok


class NoticeRecorder:
    """Where the loop gives an instance its metadata: records the Spot notices."""

    def __init__(self) -> None:
        self.noticed: list[str] = []

    def set_target_lifecycle_state(self, instance_id: str, state: str) -> None:
        pass

    def notice_spot_interruption(self, instance_id: str, seconds_ahead: int = 120) -> None:
        self.noticed.append(instance_id)


class IdleWorkers:
    """Workers that take nothing: the test moves the queue itself."""

    completes_lifecycle = False  # the loop completes their lifecycle actions

    def __init__(self) -> None:
        self.followed: list[str] = []

    def follow(self, instances: Sequence[str]) -> list[str]:
        self.followed = list(instances)
        return []

    def in_service(self) -> set[str]:
        return set(self.followed)

    def stop(self) -> None:
        pass


def test_a_rerun_and_check_mode_change_nothing(deployed, run_playbook):
    rerun = run_playbook("site.yml")
    assert_ok(rerun, ["site.yml rerun"])
    check = run_playbook("site.yml", "--check")
    assert_ok(check, ["site.yml --check"])
    assert (rerun.stats["changed"], check.stats["changed"]) == (0, 0)


def test_the_function_is_deployed_as_designed(stack, aws):
    function = stack["publisher"]["function"]
    configuration = aws("lambda").get_function_configuration(FunctionName=function)
    assert (configuration["Runtime"], configuration["Handler"]) == ("python3.12", "backlog_publisher.handler")
    assert (configuration["Timeout"], configuration["MemorySize"]) == (70, 128)
    assert configuration["Role"].endswith(f":role/{stack['publisher']['role']}")
    assert configuration["Environment"]["Variables"] == {
        "BACKLOG_NAMESPACE": "SqsFleet", "BACKLOG_METRIC_NAME": "Backlog", "BACKLOG_DIMENSION_NAME": "QueueName",
        "BACKLOG_DIMENSION_VALUE": stack.queue_name, "BACKLOG_QUEUE_URL": stack["queue"]["url"],
        "BACKLOG_READER": "sqs", "BACKLOG_PERIOD": "10", "BACKLOG_PUBLISHES": "6"}
    # A default account (1000 concurrent executions) has room for the reservation.
    assert aws("lambda").get_function_concurrency(FunctionName=function)["ReservedConcurrentExecutions"] == 1
    settings = aws("lambda").get_function_event_invoke_config(FunctionName=function)
    assert (settings["MaximumRetryAttempts"], settings["MaximumEventAgeInSeconds"]) == (0, 60)
    [group] = aws("logs").describe_log_groups(logGroupNamePrefix=stack["publisher"]["log_group"])["logGroups"]
    assert group["retentionInDays"] == 14

    schedule = aws("scheduler").get_schedule(Name=stack["publisher"]["schedule"], GroupName="default")
    assert schedule["ScheduleExpression"] == "rate(1 minute)" and schedule["State"] == "ENABLED"
    assert schedule["Target"]["Arn"] == configuration["FunctionArn"]
    assert schedule["Target"]["RoleArn"].endswith(f":role/{stack['publisher']['schedule_role']}")
    assert schedule["Target"]["RetryPolicy"]["MaximumRetryAttempts"] == 0


def inline_policy(aws, role: str) -> dict:
    iam = aws("iam")
    [name] = iam.list_role_policies(RoleName=role)["PolicyNames"]
    document = iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]
    return json.loads(document) if isinstance(document, str) else document


def test_each_role_may_do_its_job_only(stack, aws):
    function = inline_policy(aws, stack["publisher"]["role"])["Statement"]
    assert {s["Sid"]: (s["Action"], s["Resource"]) for s in function} == {
        "ReadTheBacklog": ("sqs:GetQueueAttributes", stack["queue"]["arn"]),
        "PublishOnlyTheBacklogNamespace": ("cloudwatch:PutMetricData", "*"),
        "OwnLogGroup": (["logs:CreateLogStream", "logs:PutLogEvents"],
                        f"arn:aws:logs:us-east-1:{stack['account_id']}:log-group:{stack['publisher']['log_group']}:*"),
    }
    publish = next(s for s in function if s["Sid"] == "PublishOnlyTheBacklogNamespace")
    assert publish["Condition"] == {"StringEquals": {"cloudwatch:namespace": "SqsFleet"}}
    [invoke] = inline_policy(aws, stack["publisher"]["schedule_role"])["Statement"]
    configuration = aws("lambda").get_function_configuration(FunctionName=stack["publisher"]["function"])
    assert (invoke["Action"], invoke["Resource"]) == ("lambda:InvokeFunction", configuration["FunctionArn"])
    trust = aws("iam").get_role(RoleName=stack["publisher"]["schedule_role"])["Role"]["AssumeRolePolicyDocument"]
    assert trust["Statement"][0]["Principal"] == {"Service": "scheduler.amazonaws.com"}
    assert trust["Statement"][0]["Condition"] == {"StringEquals": {"aws:SourceAccount": stack["account_id"]}}


def loop(stack: Stack, aws, **options) -> FleetWatch:
    """A fresh loop on an empty group (the emulator keeps what the last test left)."""
    aws("autoscaling").set_desired_capacity(AutoScalingGroupName=stack.group_name, DesiredCapacity=0)
    fleet = Fleet(stack, aws)
    return FleetWatch(fleet, EmulatedScaling(fleet, IdleWorkers(), LifecycleActions(), **options))


def send(aws, stack: Stack, count: int) -> None:
    for n in range(count):
        aws("sqs").send_message(QueueUrl=stack["queue"]["url"], MessageBody=f"m{n}")


def empty(aws, stack: Stack) -> None:
    """Take every message off the queue (PurgeQueue allows one call a minute)."""
    sqs, url = aws("sqs"), stack["queue"]["url"]
    while batch := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages"):
        sqs.delete_message_batch(QueueUrl=url, Entries=[{"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]}
                                                        for n, m in enumerate(batch)])


def test_scale_out_from_zero_within_20_seconds_and_in_after_the_idle_window(stack, aws):
    empty(aws, stack)
    watch = loop(stack, aws)
    scaling = watch.scaling
    assert scaling.tick_seconds == 10  # a 10-second alarm: the loop plays 10 s of AWS time per tick
    watch.step()
    assert watch.timeline[0].desired == 0
    send(aws, stack, 15)  # first message: sent during tick 1
    first_message = 1
    while watch.timeline[-1].desired == 0 and len(watch.timeline) < 6:
        watch.step()
    scaled_out = len(watch.timeline) - 1
    assert watch.timeline[-1].desired == 2  # ceil(15 / 10)
    assert (scaled_out - first_message + 1) * scaling.tick_seconds <= 20, "scale-out decision later than 20 s"
    assert any("emulated invocation" in d for d in watch.timeline[first_message].decisions)
    # The published point is the queue's own count.
    assert scaling.history[("SqsFleet", stack.queue_name, "Backlog")][-1] == 15

    empty(aws, stack)
    drained = len(watch.timeline)
    while watch.timeline[-1].desired and len(watch.timeline) < drained + 30:
        watch.step()
    scaled_in = len(watch.timeline) - 1
    assert watch.timeline[-1].desired == 0
    idle_seconds = (scaled_in - drained + 1) * scaling.tick_seconds
    # The 3-minute window of one-minute periods: at least 3 minutes of zeros, at most one period more for
    # where the drain fell in its minute.
    assert 180 <= idle_seconds <= 240, idle_seconds
    scaling.close()


def test_no_data_is_never_empty_and_the_stale_alarm_fires(stack, aws):
    empty(aws, stack)
    send(aws, stack, 5)
    watch = loop(stack, aws)
    scaling = watch.scaling
    for _ in range(6):
        watch.step()
    assert watch.timeline[-1].desired == 1 and watch.timeline[-1].alarms["publisher_stale"] == "OK"
    empty(aws, stack)  # empty, but nobody publishes it any more
    scaling.publisher.stop()
    for _ in range(30):  # 5 minutes of AWS time, beyond the idle window
        watch.step()
    states = [p.alarms for p in watch.timeline[6:]]
    assert states[-1]["publisher_stale"] == "ALARM"
    stale_at = next(i for i, s in enumerate(states) if s["publisher_stale"] == "ALARM")
    assert stale_at * scaling.tick_seconds <= 180  # within 2 minutes of periods, on the minute's boundary
    assert all(s["scale_in"] != "ALARM" for s in states) and watch.timeline[-1].desired == 1
    assert states[-1]["scale_in"] == "INSUFFICIENT_DATA" and states[-1]["scale_out"] == "INSUFFICIENT_DATA"
    scaling.close()


def test_a_spot_interruption_terminates_two_minutes_after_its_notice_and_the_group_replaces_it(stack, aws):
    empty(aws, stack)
    send(aws, stack, 15)
    metadata = NoticeRecorder()
    watch = loop(stack, aws, metadata=metadata)
    scaling = watch.scaling
    watch.step()
    before = [i["InstanceId"] for i in watch.fleet.group()["Instances"]]
    assert len(before) == 2
    victim = before[0]
    scaling.interrupt([victim], at_minute=0.5)  # tick 3
    for _ in range(16):
        watch.step()
    assert metadata.noticed == [victim] and scaling.spot_interruptions == 1
    notice = next(p.minute for p in watch.timeline if any(f"notice for {victim}" in d for d in p.decisions))
    gone = next(p.minute for p in watch.timeline if any(f"{victim} terminated" in d for d in p.decisions))
    assert notice == 3 and (gone - notice) * scaling.tick_seconds == 120
    after = [i["InstanceId"] for i in watch.fleet.group()["Instances"]
             if i["LifecycleState"] in ("Pending", "InService")]
    assert victim not in after and len(after) == 2 and watch.timeline[-1].desired == 2
    scaling.close()


def test_no_alarm_on_the_publishers_metric_reads_a_statistic_an_overlap_would_change(stack, aws):
    """Where the account has no room for the reservation, two invocations may overlap and publish one reading twice:
    every alarm on the metric reads its Maximum (or the stale alarm its SampleCount, "< 1"), which that leaves as
    it is; a Sum or an Average of counts would not be."""
    stale = stack.alarms["publisher_stale"]
    alarms = aws("cloudwatch").describe_alarms(AlarmNamePrefix=stack.prefix)["MetricAlarms"]
    [published] = [(a["Namespace"], a["MetricName"]) for a in alarms if a["AlarmName"] == stale]
    statistics = {}
    for alarm in alarms:
        if (alarm.get("Namespace"), alarm.get("MetricName")) == published:
            statistics[alarm["AlarmName"]] = alarm.get("Statistic") or alarm.get("ExtendedStatistic")
        for query in alarm.get("Metrics", []):
            metric = query.get("MetricStat", {}).get("Metric", {})
            if (metric.get("Namespace"), metric.get("MetricName")) == published:
                statistics[f"{alarm['AlarmName']}/{query['Id']}"] = query["MetricStat"]["Stat"]
    assert len(statistics) > 1, f"only the stale alarm reads the publisher's metric: {statistics}"
    assert set(statistics.values()) <= {"Maximum", "SampleCount"}, statistics
    assert statistics.pop(stale) == "SampleCount" and set(statistics.values()) == {"Maximum"}
