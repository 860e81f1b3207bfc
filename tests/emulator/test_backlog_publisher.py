"""files/backlog_publisher.py on the emulator: the value it publishes is the queue's own counts (visible + in
flight), an idle queue publishes 0 (never nothing), every data point is high-resolution, an invocation publishes
once a period on the period's boundaries and stops before the function's timeout, errors fail the invocation."""

from __future__ import annotations

import datetime
import json
from typing import Any

import pytest

from sqs_fleet_workers import backlog_publisher
from support.sqs import Queues

NAMESPACE = "SqsFleetTest"


class Recorder:
    """A CloudWatch client that records what PutMetricData sends, then sends it."""

    def __init__(self, client: Any) -> None:
        self.client, self.sent = client, []

    def put_metric_data(self, **params: Any) -> Any:
        self.sent.append(params)
        return self.client.put_metric_data(**params)


def environment(queues: Queues, **extra: str) -> dict[str, str]:
    return {"BACKLOG_NAMESPACE": NAMESPACE, "BACKLOG_DIMENSION_VALUE": queues.name, "BACKLOG_QUEUE_URL": queues.url,
            **extra}


def published(aws, queue_name: str, since: datetime.datetime) -> list[float]:
    result = aws("cloudwatch").get_metric_data(MetricDataQueries=[{"Id": "backlog", "MetricStat": {"Metric": {
        "Namespace": NAMESPACE, "MetricName": "Backlog", "Dimensions": [{"Name": "QueueName", "Value": queue_name}]},
        "Period": 10, "Stat": "Maximum"}}], StartTime=since - datetime.timedelta(minutes=1),
        EndTime=since + datetime.timedelta(minutes=5))["MetricDataResults"][0]
    return list(result["Values"])


def invoke_once(aws, queues: Queues, recorder: Recorder, **event: Any) -> dict[str, Any]:
    clients = {"sqs": aws("sqs"), "cloudwatch": recorder}
    return backlog_publisher.invoke({"publishes": 1, **event}, None, environment(queues), clients.__getitem__)


def test_the_published_value_is_visible_plus_in_flight_at_one_second_resolution(aws, capsys):
    queues = Queues(aws("sqs"))
    for n in range(5):
        queues.sqs.send_message(QueueUrl=queues.url, MessageBody=f"m{n}")
    held = queues.sqs.receive_message(QueueUrl=queues.url, MaxNumberOfMessages=2, VisibilityTimeout=60)["Messages"]
    assert queues.counts() == (5 - len(held), len(held))
    recorder = Recorder(aws("cloudwatch"))
    at = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)

    result = invoke_once(aws, queues, recorder, timestamp=at.isoformat())

    assert result["values"] == [sum(queues.counts())] == [5]
    [datum] = recorder.sent[0]["MetricData"]
    assert recorder.sent[0]["Namespace"] == NAMESPACE
    assert (datum["MetricName"], datum["Value"], datum["StorageResolution"]) == ("Backlog", 5.0, 1)
    assert datum["Dimensions"] == [{"Name": "QueueName", "Value": queues.name}]
    assert abs((datum["Timestamp"] - at).total_seconds()) < 5  # the caller's clock
    assert published(aws, queues.name, at) == [5.0]  # what CloudWatch holds
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["event"] for line in lines] == ["backlog_published"] and lines[0]["values"] == [5]


def test_an_idle_queue_publishes_zero_not_nothing(aws):
    queues = Queues(aws("sqs"))
    recorder = Recorder(aws("cloudwatch"))
    at = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    assert invoke_once(aws, queues, recorder, timestamp=at.isoformat())["values"] == [0]
    assert recorder.sent[0]["MetricData"][0]["Value"] == 0.0
    assert published(aws, queues.name, at) == [0.0]


class FakeClock:
    def __init__(self, start: float) -> None:
        self.now = start

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class Context:
    """Lambda's context: the time left before the function's timeout."""

    def __init__(self, clock: FakeClock, timeout: float) -> None:
        self.deadline = clock.now + timeout
        self.clock = clock

    def get_remaining_time_in_millis(self) -> int:
        return int((self.deadline - self.clock.now) * 1000)


class Counting:
    def __init__(self, clock: FakeClock) -> None:
        self.clock, self.reads = clock, []

    def backlog(self) -> int:
        self.reads.append(self.clock.now)
        return 3


class Sink:
    def __init__(self) -> None:
        self.sent = []

    def put_metric_data(self, **params: Any) -> None:
        self.sent.append(params)


SETTINGS = backlog_publisher.Settings.from_environment({"BACKLOG_NAMESPACE": NAMESPACE,
                                                        "BACKLOG_DIMENSION_VALUE": "q"})


def test_one_invocation_publishes_six_times_on_the_ten_second_boundaries():
    clock = FakeClock(1_000_000_003.5)  # invoked 3.5 s into a period, as a schedule fires with some delay
    reader, sink = Counting(clock), Sink()
    values = backlog_publisher.run(SETTINGS, reader, sink, Context(clock, 70), sleep=clock.sleep, now=clock.time)
    assert values == [3] * 6 and len(sink.sent) == 6
    assert reader.reads == [1_000_000_003.5, 1_000_000_010, 1_000_000_020, 1_000_000_030, 1_000_000_040,
                            1_000_000_050]
    assert {datum["StorageResolution"] for sent in sink.sent for datum in sent["MetricData"]} == {1}


def test_it_stops_before_the_functions_timeout():
    clock = FakeClock(1_000_000_000.0)
    reader, sink = Counting(clock), Sink()
    values = backlog_publisher.run(SETTINGS, reader, sink, Context(clock, 22), sleep=clock.sleep, now=clock.time)
    assert len(values) == 2  # at 0 and 10 s; at 20 s only 2 s would be left, under the safety margin
    assert clock.now < 1_000_000_022


def test_a_failure_is_logged_as_one_json_line_and_raised(aws, capsys):
    queues = Queues(aws("sqs"))
    env = dict(environment(queues), BACKLOG_QUEUE_URL=queues.url + "-gone")
    clients = {"sqs": aws("sqs"), "cloudwatch": Sink()}
    with pytest.raises(Exception, match="NonExistentQueue|does not exist"):
        backlog_publisher.invoke({"publishes": 1}, None, env, clients.__getitem__)
    [line] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert line["event"] == "backlog_publisher_failed" and line["error"] == "QueueDoesNotExist"


@pytest.mark.parametrize(("env", "message"), [
    ({"BACKLOG_DIMENSION_VALUE": "q"}, "BACKLOG_NAMESPACE is not set"),
    ({"BACKLOG_NAMESPACE": "n", "BACKLOG_DIMENSION_VALUE": "q", "BACKLOG_READER": "kafka"}, "BACKLOG_READER"),
    ({"BACKLOG_NAMESPACE": "n", "BACKLOG_DIMENSION_VALUE": "q", "BACKLOG_PERIOD": "0"}, "BACKLOG_PERIOD=0"),
])
def test_bad_configuration_is_named(env, message):
    with pytest.raises(backlog_publisher.ConfigurationError, match=message):
        backlog_publisher.Settings.from_environment(env)


def test_overlapping_invocations_change_no_statistic_the_alarms_read(aws):
    """Without a reserved concurrency (an account with no room for one), two invocations can overlap: both read the
    queue and publish the same count into the same period. Maximum (the scaling alarms') is that count, not twice
    it, and SampleCount (the stale alarm's, "< 1") only grows; a Sum would double."""
    import threading

    queues = Queues(aws("sqs"))
    for n in range(5):
        queues.sqs.send_message(QueueUrl=queues.url, MessageBody=f"m{n}")
    at = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    results: list[dict[str, Any]] = []
    invocations = [threading.Thread(target=lambda: results.append(
        invoke_once(aws, queues, Recorder(aws("cloudwatch")), timestamp=at.isoformat()))) for _ in range(2)]
    for invocation in invocations:
        invocation.start()
    for invocation in invocations:
        invocation.join()
    assert [r["values"] for r in results] == [[5], [5]]

    def statistic(stat: str) -> list[float]:
        result = aws("cloudwatch").get_metric_data(MetricDataQueries=[{"Id": "b", "MetricStat": {"Metric": {
            "Namespace": NAMESPACE, "MetricName": "Backlog", "Dimensions": [{"Name": "QueueName",
                                                                              "Value": queues.name}]},
            "Period": 60, "Stat": stat}}], StartTime=at - datetime.timedelta(minutes=1),
            EndTime=at + datetime.timedelta(minutes=2))["MetricDataResults"][0]
        return list(result["Values"])

    assert statistic("Maximum") == [5.0]
    assert statistic("SampleCount") == [2.0]
    assert statistic("Sum") == [10.0], "a Sum would count the overlap twice: no alarm may read one"
