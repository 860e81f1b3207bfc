"""producer.py: validation before sending, batching, retries of what is not the sender's fault, and a
truthful report. Faults are injected with botocore event hooks on a real client talking to the emulator."""

from __future__ import annotations

import importlib
import json
from typing import Any

import pytest

from sqs_fleet_workers import producer, sqs_calls, vehicles
from support.sqs import Queues, run_script


@pytest.fixture
def queues(aws):
    return Queues(aws("sqs"))


def keys_on(queues: Queues) -> list[str]:
    return [m["MessageAttributes"][vehicles.IDEMPOTENCY_ATTRIBUTE]["StringValue"] for m in queues.bodies(queues.url)]


def test_generated_vehicles_are_valid_and_reproducible():
    first, again = vehicles.generate(50, seed=3), vehicles.generate(50, seed=3)
    assert first == again and first != vehicles.generate(50, seed=4)
    assert all(vehicles.validation_errors(v) == [] for v in first)
    assert [v["vehicleId"] for v in first[:2]] == ["VH2001", "VH2002"]


@pytest.mark.parametrize(("record", "error"), [
    ({"vehicleId": "VH1", "make": "Honda", "model": "Civic", "year": 1885, "color": "Blue", "mileage": 0},
     "'year' must be 1886.."),
    ({"vehicleId": "VH1", "make": "Honda", "model": "Civic", "year": 2020, "color": "Blue", "mileage": True},
     "'mileage' must be an integer"),
    ({"vehicleId": "VH1", "make": " ", "model": "Civic", "year": 2020, "color": "Blue", "mileage": 1},
     "'make' must be a non-empty string"),
    ({"vehicleId": "VH1", "make": "Honda", "model": "Civic", "year": 2020, "color": "Blue", "mileage": 1, "x": 1},
     "unknown field 'x'"),
    ([1, 2], "expected a JSON object"),
])
def test_schema_names_what_is_wrong(record, error):
    assert any(error in e for e in vehicles.validation_errors(record))


def test_file_with_an_invalid_record_sends_nothing_and_names_its_position(emulator, queues, tmp_path):
    good = vehicles.generate(3, seed=1)
    bad = dict(good[0], year="2020")
    path = tmp_path / "cars.json"
    path.write_text(json.dumps([good[0], bad, good[1]]))
    run = run_script(emulator, "producer.py", "--queue", queues.url, "--file", str(path))
    assert run.returncode == 2
    assert "invalid record 2: 'year' must be an integer" in run.stderr
    assert queues.counts() == (0, 0)
    skip = run_script(emulator, "producer.py", "--queue", queues.url, "--file", str(path), "--skip-invalid", "--json")
    assert skip.returncode == 0
    assert json.loads(skip.stdout) | {"seconds": 0, "messages_per_second": 0} == {
        "records": 3, "sent": 2, "not_sent": 0, "skipped_invalid": 1, "requests": 1, "seconds": 0,
        "messages_per_second": 0, "failures": []}


def test_json_lines_from_stdin(emulator, queues):
    lines = "\n".join(json.dumps(v) for v in vehicles.generate(12, seed=2))
    run = run_script(emulator, "producer.py", "--queue", queues.name, "--file", "-", "--json", stdin=lines)
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout)
    assert (summary["sent"], summary["requests"]) == (12, 2)
    assert len(set(keys_on(queues))) == 12


def inject(client: Any, partial: set[str], throttled_calls: int, sender_fault: set[str] = frozenset(),
           throttle_code: str = "ThrottlingException") -> dict:
    """Make the first call drop `partial` entries (reported Failed, SenderFault false, so not sent) and
    `sender_fault` entries (SenderFault true), and answer the next `throttled_calls` calls with
    `throttle_code` (HTTP 400, the call is never made)."""
    state = {"calls": 0, "dropped": []}

    def before_call(params: dict, **_: Any):
        state["calls"] += 1
        if 1 < state["calls"] <= 1 + throttled_calls:
            from botocore.awsrequest import AWSResponse
            return AWSResponse("", 400, {}, None), {
                "Error": {"Code": throttle_code, "Message": "Rate exceeded"},
                "ResponseMetadata": {"HTTPStatusCode": 400}}
        if state["calls"] == 1:
            body = json.loads(params["body"]) if isinstance(params.get("body"), (str, bytes)) else None
            entries = body["Entries"] if body else None
            if entries is not None:
                keep = [e for e in entries if json.loads(e["MessageBody"])["vehicleId"] not in partial | sender_fault]
                state["dropped"] = [e for e in entries if e not in keep]
                body["Entries"] = keep
                params["body"] = json.dumps(body).encode()
        return None

    def after_call(parsed: dict, **_: Any):
        if state["dropped"]:
            for entry in state["dropped"]:
                fault = json.loads(entry["MessageBody"])["vehicleId"] in sender_fault
                parsed.setdefault("Failed", []).append({"Id": entry["Id"], "SenderFault": fault,
                                                        "Code": "InvalidParameterValue" if fault else "InternalError"})
            state["dropped"] = []

    client.meta.events.register("before-call.sqs.SendMessageBatch", before_call)
    client.meta.events.register("after-call.sqs.SendMessageBatch", after_call)
    return state


def run_producer(monkeypatch, emulator, queues, faults, *args: str) -> tuple[int, dict]:
    for name, value in emulator.environment().items():
        monkeypatch.setenv(name, value)
    client = sqs_calls.sqs_client()
    faults(client)
    monkeypatch.setattr(producer, "sqs_client", lambda: client)
    code = producer.main(["--queue", queues.url, "--json", "--retry-backoff", "0.01", *args])
    return code, client


def test_partial_failures_and_throttling_are_retried_until_every_record_is_sent_once(
        monkeypatch, emulator, queues, capsys):
    code, _ = run_producer(monkeypatch, emulator, queues,
                           lambda c: inject(c, partial={"VH2002", "VH2005"}, throttled_calls=2),
                           "--count", "25", "--seed", "5")
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert code == 0 and summary["sent"] == 25 and summary["not_sent"] == 0
    # 3 batches + 1 retry of the 2 dropped entries + 2 retries of throttled calls
    assert summary["requests"] == 6
    keys = keys_on(queues)
    assert len(keys) == 25 and len(set(keys)) == 25  # each record exactly once
    failures = [json.loads(line) for line in captured.err.splitlines() if line.startswith("{")]
    # one line per failed entry: the 2 dropped, then the same 2 in each of the 2 throttled retries
    assert [(f["event"], f["code"], f["retry"]) for f in failures[:2]] == [("send_failed", "InternalError", True)] * 2
    assert sorted(f["position"] for f in failures[:2]) == [2, 5]
    assert [(f["code"], f["position"], f["attempt"]) for f in failures[2:]] == [
        ("ThrottlingException", position, attempt) for attempt in (2, 3) for position in (2, 5)]


@pytest.mark.parametrize("code", ["KmsThrottled", "KMS.ThrottlingException", "RequestThrottled"])
def test_kms_and_sqs_throttling_of_a_whole_call_is_retried(monkeypatch, emulator, queues, capsys, code):
    # A 400 that botocore's own retries leave alone (KmsThrottled is not in its list).
    code_, _ = run_producer(monkeypatch, emulator, queues,
                            lambda c: inject(c, partial=set(), throttled_calls=1, throttle_code=code),
                            "--count", "12", "--seed", "5")
    summary = json.loads(capsys.readouterr().out)
    assert code_ == 0 and (summary["sent"], summary["not_sent"], summary["requests"]) == (12, 0, 3)
    assert len(set(keys_on(queues))) == 12


def test_every_throttling_code_in_botocores_sqs_model_is_retryable():
    import botocore.loaders

    model = botocore.loaders.Loader().load_service_model("sqs", "service-2")
    throttles = {name for name, shape in model["shapes"].items() if shape.get("exception") and "Throttl" in name}
    assert {"KmsThrottled", "RequestThrottled"} <= throttles <= sqs_calls.RETRYABLE_ERRORS
    assert sqs_calls.entry_retryable({"Code": "KmsThrottled", "SenderFault": True})
    assert not sqs_calls.entry_retryable({"Code": "ReceiptHandleIsInvalid", "SenderFault": True})
    assert sqs_calls.entry_retryable({"Code": "InternalError", "SenderFault": False})


def test_sender_faults_are_reported_not_retried(monkeypatch, emulator, queues, capsys):
    code, _ = run_producer(monkeypatch, emulator, queues,
                           lambda c: inject(c, partial=set(), throttled_calls=0, sender_fault={"VH2003"}),
                           "--count", "10", "--seed", "5")
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert code == 1
    assert (summary["sent"], summary["not_sent"], summary["requests"]) == (9, 1, 1)
    assert summary["failures"][0]["position"] == 3 and "InvalidParameterValue" in summary["failures"][0]["reason"]
    logged = [json.loads(line) for line in captured.err.splitlines() if line.startswith("{")]
    assert [(f["position"], f["code"], f["level"], f["retry"]) for f in logged] == [
        (3, "InvalidParameterValue", "error", False)]
    bodies = [json.loads(m["Body"])["vehicleId"] for m in queues.bodies(queues.url)]
    assert sorted(bodies) == sorted(f"VH{n}" for n in range(2001, 2011) if n != 2003)


def record_of_size(size: int) -> dict:
    """A valid vehicle whose message (body + idempotency attribute) is exactly `size` bytes."""
    record = vehicles.generate(1, seed=9)[0]
    entry = producer.Entry(1, json.dumps(record, separators=(",", ":")), "k" * 36)
    record["model"] += "x" * (size - entry.size)
    return record


def test_size_limit_accepted_at_the_limit_rejected_above_without_retry(emulator, aws, tmp_path):
    queues = Queues(aws("sqs"), maximum_size=1024)
    at_limit, above = tmp_path / "at.json", tmp_path / "above.json"
    at_limit.write_text(json.dumps([record_of_size(1024)]))
    above.write_text(json.dumps([record_of_size(1025)]))
    ok = run_script(emulator, "producer.py", "--queue", queues.url, "--file", str(at_limit), "--json")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["sent"] == 1
    rejected = run_script(emulator, "producer.py", "--queue", queues.url, "--file", str(above))
    assert rejected.returncode == 2
    assert "1025 bytes, above the queue's MaximumMessageSize of 1024" in rejected.stderr
    assert queues.counts() == (1, 0)


@pytest.mark.parametrize("script", ["producer", "consumer"])
def test_help_documents_every_option_with_an_example(script):
    parser = importlib.import_module(f"sqs_fleet_workers.{script}").build_parser()
    text = parser.format_help()
    assert "Examples:" in text and f"{script}.py --queue" in text
    for action in parser._actions:
        if action.option_strings and action.dest != "help":
            assert action.help, action.dest
            if action.nargs != 0:  # options that take a value show one
                assert "e.g." in action.help or "default" in action.help, action.dest


def test_missing_queue_is_a_configuration_error(emulator):
    run = run_script(emulator, "producer.py", "--count", "1", QUEUE_URL="")
    assert run.returncode == 2 and "no queue" in run.stderr


def test_a_fifo_queue_is_a_configuration_error_and_nothing_is_sent(emulator, aws):
    sqs = aws("sqs")
    url = sqs.create_queue(QueueName="t-producer-fifo.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
    run = run_script(emulator, "producer.py", "--queue", url, "--count", "3")
    assert run.returncode == 2 and "FIFO queue" in run.stderr
    assert sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])[
        "Attributes"]["ApproximateNumberOfMessages"] == "0"
