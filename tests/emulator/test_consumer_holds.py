"""consumer.py knows when it lost its hold on a message. SQS accepts a receipt handle from an earlier receive:
a delete sent with it deletes the copy another consumer is working on, an extension extends that copy. So a
consumer paused past the visibility, or whose extension SQS refused, logs the loss and neither logs the message
as processed nor deletes it; a failed extension is retried while the visibility lasts; each receive asks for the
visibility the heartbeat is paced for. Each test drives one message, and no two receives run at once (the
emulator may hand one message to two concurrent receives, which SQS does not)."""

from __future__ import annotations

import json
import signal
import threading
import time
from types import SimpleNamespace
from typing import Any

from botocore.awsrequest import AWSResponse

from support.sqs import ConsumerProcess, Queues, in_process, processed_ids, run_script

FAST = ("--poll-interval", "0", "--wait-time", "0")


def produce_one(emulator, queues: Queues) -> str:
    run = run_script(emulator, "producer.py", "--queue", queues.url, "--count", "1", "--seed", "3")
    assert run.returncode == 0, run.stderr
    return "VH2001"


def named(logged: list[dict[str, Any]], event: str) -> list[dict[str, Any]]:
    return [e for e in logged if e["event"] == event]


class OtherConsumer(threading.Thread):
    """Receives from the queue every 0.1 s once the consumer holds the message: anything it gets is a message
    the consumer's hold failed to keep hidden."""

    def __init__(self, queues: Queues) -> None:
        super().__init__()
        self.queues, self.stolen, self.done = queues, [], threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            self.stolen += self.queues.sqs.receive_message(QueueUrl=self.queues.url).get("Messages", [])
            time.sleep(0.1)

    def __enter__(self) -> OtherConsumer:
        self.queues.wait_for_counts((0, 1))  # the consumer's receive is done: none runs beside it
        self.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self.done.set()
        self.join()


def run_in_thread(worker: Any) -> threading.Thread:
    thread = threading.Thread(target=worker.run)
    thread.start()
    return thread


def test_a_consumer_paused_past_the_visibility_logs_the_loss_and_leaves_the_message_to_the_one_that_took_it(
        emulator, aws, tmp_path):
    queues = Queues(aws("sqs"), visibility=2)
    vehicle = produce_one(emulator, queues)
    stalled = ConsumerProcess(emulator, tmp_path / "stalled.log", "--queue", queues.url, *FAST,
                              "--simulate-work", "5", "--max-messages", "1")
    queues.wait_for_counts((0, 1))
    stalled.signal(signal.SIGSTOP)  # paused mid-work, heartbeat included (a VM freeze, a long GC pause)
    queues.wait_for_counts((1, 0))  # its visibility ran out: the message is visible again
    taker = ConsumerProcess(emulator, tmp_path / "taker.log", "--queue", queues.url, *FAST,
                            "--simulate-work", "4", "--max-messages", "1")
    queues.wait_for_counts((0, 1))  # received again, by the second consumer alone
    stalled.signal(signal.SIGCONT)  # resumes while the second consumer works on the message
    for consumer in (stalled, taker):  # each exits once it has handled its one message
        assert consumer.process.wait(30) == 0
        assert consumer.stop() == 0

    paused, taken = stalled.events(), taker.events()
    assert processed_ids(paused + taken) == [vehicle]  # one success, the second consumer's
    lost = named(paused, "hold_lost")
    assert [(e["reason"], e["receive_count"], e["outcome"]) for e in lost] == [("visibility_expired", 1, None)]
    message_id = lost[0]["message_id"]
    assert not named(paused, "messages_deleted")  # its stale handle would have deleted the other copy
    [processed] = named(taken, "message_processed")
    assert (processed["message_id"], processed["receive_count"]) == (message_id, 2)
    assert [e["receive_count"] for e in named(taken, "message_redelivered")] == [2]
    # The second consumer's hold was never touched: its extensions and its delete went through.
    assert not named(taken, "hold_lost") and not named(taken, "visibility_extend_failed")
    assert [e["messages"] for e in named(taken, "messages_deleted")] == [1]
    assert named(paused, "consumer_stopped")[0]["hold_lost"] == 1
    assert queues.counts() == (0, 0) and queues.counts(queues.dlq_url) == (0, 0)


def test_a_message_deleted_with_an_earlier_receives_handle_is_not_logged_as_processed(monkeypatch, emulator, aws):
    queues = Queues(aws("sqs"), visibility=2)
    produce_one(emulator, queues)
    sqs = aws("sqs")
    # An earlier consumer received it and let its visibility run out; its receipt handle still works.
    [earlier] = sqs.receive_message(QueueUrl=queues.url, VisibilityTimeout=1)["Messages"]
    queues.wait_for_counts((1, 0))
    worker, _, logged = in_process(monkeypatch, emulator, queues, "--once", "--simulate-work", "3",
                                   "--visibility-timeout", "2")
    thread = run_in_thread(worker)
    try:
        queues.wait_for_counts((0, 1))
        sqs.delete_message(QueueUrl=queues.url, ReceiptHandle=earlier["ReceiptHandle"])  # deletes the worker's copy
        assert queues.counts() == (0, 0)
    finally:
        thread.join(30)
    assert processed_ids(logged()) == []
    [lost] = named(logged(), "hold_lost")
    assert (lost["message_id"], lost["reason"], lost["code"], lost["receive_count"]) == (
        earlier["MessageId"], "visibility_change_failed", "ReceiptHandleIsInvalid", 2)
    assert not named(logged(), "messages_deleted")
    assert named(logged(), "consumer_stopped")[0]["processed"] == 0


def fail_extensions(client: Any, count: int) -> dict[str, int]:
    """The first `count` visibility extensions fail as a whole with a server error, as when botocore's own
    retries are spent; the others reach the emulator. Counts the extension calls."""
    calls = {"calls": 0}

    def before_call(params: dict[str, Any], **_: Any) -> Any:
        if all(entry.get("VisibilityTimeout") == 0 for entry in json.loads(params["body"])["Entries"]):
            return None  # a release
        calls["calls"] += 1
        if calls["calls"] > count:
            return None
        error = {"Error": {"Code": "InternalError", "Message": "injected"},
                 "ResponseMetadata": {"HTTPStatusCode": 500}}
        return SimpleNamespace(status_code=500, headers={}, content=b""), error

    client.meta.events.register("before-call.sqs.ChangeMessageVisibilityBatch", before_call)
    return calls


def test_a_failed_extension_is_retried_while_the_visibility_lasts(monkeypatch, emulator, aws):
    queues = Queues(aws("sqs"), visibility=2)
    vehicle = produce_one(emulator, queues)
    worker, client, logged = in_process(monkeypatch, emulator, queues, "--once", "--simulate-work", "2.5",
                                        "--visibility-timeout", "2")
    calls = fail_extensions(client, 3)  # three failures in a row: as many tries as one beat used to get
    thread = run_in_thread(worker)
    try:
        with OtherConsumer(queues) as other:
            thread.join(30)
    finally:
        thread.join(30)
    assert other.stolen == []
    assert processed_ids(logged()) == [vehicle]
    failed = named(logged(), "visibility_extend_failed")
    assert [(e["code"], e["retry"], e["attempt"]) for e in failed] == [
        ("InternalError", True, 1), ("InternalError", True, 2), ("InternalError", True, 3)]
    assert calls["calls"] >= 4 and named(logged(), "visibility_extended")
    assert not named(logged(), "hold_lost")
    assert queues.counts() == (0, 0)


def test_each_receive_asks_for_the_visibility_the_heartbeat_keeps_even_above_three_times_the_queues(
        monkeypatch, emulator, aws):
    queues = Queues(aws("sqs"), visibility=1)
    vehicle = produce_one(emulator, queues)
    # Beats come every 2 s: a message received with the queue's 1 s would be exposed before the first.
    worker, client, logged = in_process(monkeypatch, emulator, queues, "--once", "--simulate-work", "2.5",
                                        "--visibility-timeout", "6")
    asked: list[Any] = []
    client.meta.events.register("before-call.sqs.ReceiveMessage",
                                lambda params, **_: asked.append(json.loads(params["body"]).get("VisibilityTimeout")))
    thread = run_in_thread(worker)
    try:
        with OtherConsumer(queues) as other:
            thread.join(30)
    finally:
        thread.join(30)
    assert other.stolen == []
    assert asked == [6]
    assert processed_ids(logged()) == [vehicle]
    assert not named(logged(), "hold_lost")
    assert queues.counts() == (0, 0)


def test_a_long_poll_leaves_a_third_of_the_visibility_to_extend_a_message_it_returns(monkeypatch, emulator, aws):
    queues = Queues(aws("sqs"), visibility=3)
    worker, _, logged = in_process(monkeypatch, emulator, queues, "--once", "--wait-time", "20",
                                   "--visibility-timeout", "3")
    worker.run()
    assert named(logged(), "consumer_started")[0]["wait_time"] == 2


def test_a_visibility_timeout_a_consumer_cannot_hold_a_message_with_is_a_configuration_error(emulator, aws):
    zero = Queues(aws("sqs"), visibility=0)
    refused = run_script(emulator, "consumer.py", "--queue", zero.url, "--once", "--wait-time", "0")
    assert refused.returncode == 2 and "visibility timeout of 0" in refused.stderr
    for value in ("0", "43201"):
        out_of_range = run_script(emulator, "consumer.py", "--queue", zero.url, "--visibility-timeout", value)
        assert out_of_range.returncode == 2 and "--visibility-timeout must be 1..43200" in out_of_range.stderr


def test_a_delete_botocore_would_retry_after_the_visibility_ran_out_is_not_sent(monkeypatch, emulator, aws):
    queues = Queues(aws("sqs"), visibility=2)
    vehicle = produce_one(emulator, queues)
    worker, client, logged = in_process(monkeypatch, emulator, queues, "--once", "--visibility-timeout", "2")
    attempts = []

    def slow_server_error(request: Any, **_: Any) -> Any:
        """The first delete attempt answers a server error after 2.5 s, past the message's visibility: botocore's
        retry of it would carry a receipt handle another consumer's receive may have made stale."""
        attempts.append(request.url)
        if len(attempts) > 1:
            return None
        time.sleep(2.5)
        body = json.dumps({"__type": "InternalError", "message": "injected"}).encode()
        return AWSResponse(request.url, 500, {"x-amzn-query-error": "InternalError;Receiver"},
                           SimpleNamespace(stream=lambda: iter([body])))

    client.meta.events.register("before-send.sqs.DeleteMessageBatch", slow_server_error)
    worker.run()
    assert len(attempts) == 1  # botocore's retry was refused before it left
    assert processed_ids(logged()) == [vehicle]
    [lost] = named(logged(), "hold_lost")
    assert (lost["reason"], lost["outcome"]) == ("visibility_expired", "processed")
    assert not named(logged(), "messages_deleted")
    assert sum(queues.counts()) == 1  # not deleted: it comes back, and this consumer would know it as a duplicate
