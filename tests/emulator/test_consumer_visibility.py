"""consumer.py's hold on the messages it has received: the heartbeat keeps every one of them from other
consumers until it is deleted or released, failed batch entries are logged and retried, and the messages a
long poll returns after SIGTERM are processed rather than released with a receive spent. Batch failures are
injected with botocore event hooks on a real client talking to the emulator."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections import Counter
from typing import Any

import pytest

from sqs_fleet_workers import consumer, vehicles
from support.sqs import ConsumerProcess, Queues, in_process, processed_ids, run_script


def produce(emulator, queues, count):
    run = run_script(emulator, "producer.py", "--queue", queues.url, "--count", str(count), "--seed", "1")
    assert run.returncode == 0, run.stderr
    return [f"VH{n}" for n in range(2001, 2001 + count)]


def test_two_consumers_with_short_visibility_and_slow_work_never_process_a_message_twice(emulator, aws, tmp_path):
    # 10 messages of 0.7 s each: the first consumer holds its batch for 7 s, over three visibility timeouts,
    # while the second polls for work all along.
    queues = Queues(aws("sqs"), visibility=2)
    sent = produce(emulator, queues, 10)
    args = ("--queue", queues.url, "--poll-interval", "0", "--wait-time", "1", "--simulate-work", "0.7")
    first = ConsumerProcess(emulator, tmp_path / "first.log", *args)
    first.wait_for(lambda e: len(processed_ids(e)) >= 1)
    second = ConsumerProcess(emulator, tmp_path / "second.log", *args)
    queues.wait_for_counts((0, 0), timeout=90, interval=0.3)
    time.sleep(2.5)  # past a visibility timeout: anything deleted late or released would show now
    assert first.stop() == 0 and second.stop() == 0
    logged = first.events() + second.events()
    processed = Counter(processed_ids(logged))
    assert sorted(processed) == sorted(sent) and set(processed.values()) == {1}
    assert {e["receive_count"] for e in logged if e["event"] == "message_processed"} == {1}
    assert not [e for e in logged if e["event"] in ("message_duplicate", "visibility_extend_failed", "delete_failed")]
    assert any(e["event"] == "visibility_extended" for e in first.events())
    assert queues.counts() == (0, 0) and queues.counts(queues.dlq_url) == (0, 0)


# -- in-process consumer, faults injected -------------------------------------------------------------------


def fail_entries(client: Any, operation: str, failures: list[tuple[str, bool]], releases: bool | None = None) -> dict:
    """On the first `operation` call (of ChangeMessageVisibilityBatch: the first release when `releases`, the
    first extension otherwise), leave the first entries out of the request and report them Failed with the
    given (Code, SenderFault). Counts the calls and records the receipt handles each one carried."""
    state: dict[str, Any] = {"calls": 0, "handles": [], "dropped": []}

    def chosen(entries: list[dict[str, Any]]) -> bool:
        return releases is None or (entries[0].get("VisibilityTimeout") == 0) == releases

    def before_call(params: dict, **_: Any) -> None:
        body = json.loads(params["body"])
        if not chosen(body["Entries"]):
            return
        state["calls"] += 1
        state["handles"].append([e["ReceiptHandle"] for e in body["Entries"]])
        if state["calls"] == 1:
            state["dropped"] = body["Entries"][:len(failures)]
            body["Entries"] = body["Entries"][len(failures):]
            params["body"] = json.dumps(body).encode()

    def after_call(parsed: dict, **_: Any) -> None:
        for entry, (code, sender_fault) in zip(state["dropped"], failures):
            parsed.setdefault("Failed", []).append(
                {"Id": entry["Id"], "Code": code, "SenderFault": sender_fault, "Message": "injected"})
        state["dropped"] = []

    client.meta.events.register(f"before-call.sqs.{operation}", before_call)
    client.meta.events.register(f"after-call.sqs.{operation}", after_call)
    return state


@pytest.fixture
def queues(aws):
    return Queues(aws("sqs"))


def test_a_delete_entry_failed_through_no_fault_of_ours_is_logged_and_retried(monkeypatch, emulator, queues):
    produce(emulator, queues, 3)
    worker, client, logged = in_process(monkeypatch, emulator, queues, "--once")
    calls = fail_entries(client, "DeleteMessageBatch", [("InternalError", False)])
    worker.run()
    failed = [e for e in logged() if e["event"] == "delete_failed"]
    assert [(e["level"], e["code"], e["retry"], e["attempt"]) for e in failed] == [
        ("warning", "InternalError", True, 1)]
    assert failed[0]["message_id"] and calls["calls"] == 2
    assert calls["handles"][1] == calls["handles"][0][:1]  # the retry carries only the failed entry
    assert queues.counts() == (0, 0)  # deleted on the retry


def test_a_delete_entry_failed_by_our_fault_is_logged_as_an_error_and_not_retried(monkeypatch, emulator, queues):
    produce(emulator, queues, 3)
    worker, client, logged = in_process(monkeypatch, emulator, queues, "--once")
    calls = fail_entries(client, "DeleteMessageBatch", [("ReceiptHandleIsInvalid", True)])
    worker.run()
    failed = [e for e in logged() if e["event"] == "delete_failed"]
    assert [(e["level"], e["code"], e["retry"]) for e in failed] == [("error", "ReceiptHandleIsInvalid", False)]
    assert calls["calls"] == 1
    assert queues.counts() == (0, 1)  # still in flight: it comes back after the visibility timeout


@pytest.mark.parametrize(("code", "sender_fault", "released", "visible"), [
    ("KmsThrottled", True, 2, 2),  # throttling is retried whatever SenderFault says
    ("InternalError", False, 2, 2),
    ("ReceiptHandleIsInvalid", True, 1, 1),
])
def test_release_entries_that_fail_are_logged_with_their_code_and_never_counted_as_released(
        monkeypatch, emulator, queues, aws, code, sender_fault, released, visible):
    for body in ("{not json", json.dumps({"vehicleId": "VH1"})):  # invalid: released for the redrive
        aws("sqs").send_message(QueueUrl=queues.url, MessageBody=body)
    worker, client, logged = in_process(monkeypatch, emulator, queues, "--once")
    calls = fail_entries(client, "ChangeMessageVisibilityBatch", [(code, sender_fault)], releases=True)
    worker.run()
    failed = [e for e in logged() if e["event"] == "release_failed"]
    retried = released == 2
    assert [(e["code"], e["retry"], e["level"]) for e in failed] == [
        (code, retried, "warning" if retried else "error")]
    assert calls["calls"] == (2 if retried else 1)
    assert [e["messages"] for e in logged() if e["event"] == "messages_released"] == [released]
    assert queues.counts() == (visible, 2 - visible)


def test_the_heartbeat_keeps_processed_messages_hidden_until_their_delete_and_retries_failed_extensions(
        monkeypatch, emulator, aws):
    queues = Queues(aws("sqs"), visibility=2)
    produce(emulator, queues, 5)
    # 5 x 0.6 s of work against a 2 s visibility; beats every 2/3 s
    worker, client, logged = in_process(monkeypatch, emulator, queues, "--once", "--simulate-work", "0.6",
                                        "--visibility-timeout", "2")
    calls = fail_entries(client, "ChangeMessageVisibilityBatch", [("RequestThrottled", False)], releases=False)
    sqs, stolen, done = aws("sqs"), [], threading.Event()

    def other_consumer() -> None:
        while not processed_ids(logged()) and not done.is_set():  # once the worker holds the batch
            time.sleep(0.05)
        while not done.is_set():
            stolen.extend(sqs.receive_message(QueueUrl=queues.url, MaxNumberOfMessages=10).get("Messages", []))
            time.sleep(0.2)

    thief = threading.Thread(target=other_consumer)
    thief.start()
    try:
        worker.run()
    finally:
        done.set()
        thief.join()
    assert len(processed_ids(logged())) == 5
    assert stolen == []
    failed = [e for e in logged() if e["event"] == "visibility_extend_failed"]
    assert [(e["code"], e["retry"]) for e in failed] == [("RequestThrottled", True)]
    assert calls["handles"][1] == calls["handles"][0][:1]  # retried at once, that entry alone
    assert sum(e["messages"] for e in logged() if e["event"] == "visibility_extended") >= 5
    assert queues.counts() == (0, 0)


def test_messages_a_long_poll_returns_after_sigterm_are_processed_not_released(monkeypatch, emulator, queues):
    sent = produce(emulator, queues, 3)
    stop = consumer.Stop()
    worker, client, logged = in_process(monkeypatch, emulator, queues, stop=stop)
    # The stop request arrives while the receive is in flight, as SIGTERM does during a long poll.
    client.meta.events.register("before-call.sqs.ReceiveMessage", lambda **_: stop.set())
    worker.run()
    names = [e["event"] for e in logged()]
    assert sorted(processed_ids(logged())) == sorted(sent)
    assert "messages_released" not in names and "stop_timeout_near" not in names
    assert names[-1] == "consumer_stopped"
    assert queues.counts() == (0, 0)


def test_sigterm_during_a_long_poll_that_then_returns_a_message_processes_it(emulator, queues, aws, tmp_path):
    # moto answers a long poll at the end of its wait: the message sent after SIGTERM arrives with it.
    running = ConsumerProcess(emulator, tmp_path / "log", "--queue", queues.url, "--wait-time", "5")
    running.wait_for(lambda e: any(x["event"] == "consumer_started" for x in e))
    time.sleep(0.5)
    running.signal(signal.SIGTERM)
    vehicle = vehicles.generate(1)[0]
    aws("sqs").send_message(QueueUrl=queues.url, MessageBody=json.dumps(vehicle))
    assert running.stop(timeout=30) == 0
    logged = running.events()
    assert processed_ids(logged) == [vehicle["vehicleId"]]
    assert [e["receive_count"] for e in logged if e["event"] == "message_processed"] == [1]
    assert not any(e["event"] == "messages_released" for e in logged)
    assert [e["event"] for e in logged][-1] == "consumer_stopped"
    assert queues.counts() == (0, 0)
