"""The planner's parts without AWS: load profiles and CSVs, work distributions, the rules it builds, its replay on
small loads, the pricing arithmetic and the choice among compared settings."""

from __future__ import annotations

import json
import math
import statistics

import pytest

from sqs_fleet.planner import cli, compare, load, prices
from sqs_fleet.planner.replay import replay, summary
from sqs_fleet.planner.rules import instances_for, out_steps, rules
from sqs_fleet.planner.settings import Settings, SettingsError
from sqs_fleet.sim.semantics import new_capacity

NAMES = {"queue": "q", "dead_letter_queue": "q-dlq", "group": "g", "environment": "local",
         "publisher_metric": {"namespace": "SqsFleet", "name": "Backlog",
                              "dimensions": [{"Name": "QueueName", "Value": "q"}]}}


def settings(**changes) -> Settings:
    return Settings(names=NAMES).changed(changes) if changes else Settings(names=NAMES)


# -- load ------------------------------------------------------------------------------------------------------
def test_named_profiles_have_their_shape_and_are_reproducible():
    burst = load.named("burst", seconds=3600)
    assert burst.total == 1000 and burst.bursts() == [(600, 659)]
    assert all(n == 0 for n in burst.arrivals[:600])
    diurnal = load.named("diurnal", seed=3)
    assert diurnal.seconds == load.DAY and diurnal == load.named("diurnal", seed=3)
    assert sum(diurnal.arrivals[:6 * 3600]) == 0 and sum(diurnal.arrivals[18 * 3600:]) == 0  # nights are empty
    noon = sum(diurnal.arrivals[11 * 3600:13 * 3600]) / 7200
    assert 0.45 < noon < 0.55  # the sine's peak, 0.5 a second
    assert abs(diurnal.total - 0.5 * 12 * 3600 * 2 / math.pi) < 300
    day = load.named("bursty-day", scale=2)
    assert len(day.bursts()) == 6 and day.total == 6 * 600
    steady = load.named("steady", seconds=20000)
    assert abs(steady.total / 20000 - 0.2) < 0.02


def test_a_csv_of_arrivals_per_interval_is_spread_over_its_seconds(tmp_path):
    plain = tmp_path / "plain.csv"
    plain.write_text("messages\n6\n0\n3\n")
    spread = load.from_csv(plain, interval=3)
    assert spread.arrivals == [2, 2, 2, 0, 0, 0, 1, 1, 1]
    timed = tmp_path / "timed.csv"
    timed.write_text("second,messages\n0,2\n600,4\n")
    arrivals = load.from_csv(timed, interval=60)
    assert arrivals.total == 6 and arrivals.bursts() == [(0, 30), (600, 645)]
    bad = tmp_path / "bad.csv"
    bad.write_text("1\nlots\n")
    with pytest.raises(load.LoadError, match="row 2"):
        load.from_csv(bad)


def test_work_distributions_draw_what_they_say():
    fixed, _ = load.work("fixed:2")
    assert {fixed() for _ in range(5)} == {2.0}
    exponential, _ = load.work("exponential:3", seed=5)
    assert abs(statistics.mean(exponential() for _ in range(20000)) - 3) < 0.1
    lognormal, text = load.work("lognormal:2,0.5", seed=5)
    assert abs(statistics.median(lognormal() for _ in range(20000)) - 2) < 0.05 and "seed 5" in text
    first, second = load.work("lognormal:2,0.5", seed=5)[0], load.work("lognormal:2,0.5", seed=5)[0]
    assert [first() for _ in range(3)] == [second() for _ in range(3)]  # the same seed, the same draws
    for spec in ("fixed", "uniform:1", "lognormal:2", "exponential:0"):
        with pytest.raises(load.LoadError):
            load.work(spec)


# -- settings and rules ------------------------------------------------------------------------------------------
def test_the_scale_out_steps_give_ceil_backlog_over_per_instance():
    s = settings(backlog_per_instance=10, max_size=4)
    policy = {"AdjustmentType": "ExactCapacity", "StepAdjustments": out_steps(s)}
    for backlog in (1, 9, 10, 11, 20, 21, 39, 40, 41, 500):
        assert new_capacity(policy, backlog - s.out_threshold, 0, 0, 4) == instances_for(s, backlog), backlog
    redis = settings(broker="redis", backlog_per_instance=10, max_size=4)
    policy = {"AdjustmentType": "ExactCapacity", "StepAdjustments": out_steps(redis)}
    assert redis.out_comparison == "GreaterThanThreshold" and redis.out_threshold == 4
    assert new_capacity(policy, 5 - 4, 0, 0, 4) == 1 and new_capacity(policy, 25 - 4, 0, 0, 4) == 3


def test_rules_follow_the_metric_source_and_the_broker():
    on_sqs = rules(settings(metric_source="sqs"))
    out, scale_in = on_sqs.alarms
    assert out["TreatMissingData"] == "notBreaching" and scale_in["TreatMissingData"] == "breaching"
    assert scale_in["EvaluationPeriods"] == 900 // 60  # the sqs design's 15-minute idle window
    assert [q.get("Expression") for q in out["Metrics"]][-1] == "visible + inflight"
    on_redis = rules(settings(broker="redis"))
    assert [a["AlarmName"] for a in on_redis.alarms] == ["scale_out", "scale_in", "scale_out_from_zero"]
    assert on_redis.hooks == {"launch": 600, "drain": 720}


def test_bad_settings_are_named():
    with pytest.raises(SettingsError, match="unknown setting 'idle'"):
        settings(idle="60")
    with pytest.raises(SettingsError, match="idle_window 90"):
        settings(idle_window="90")
    with pytest.raises(SettingsError, match="metric_source must be publisher"):
        settings(broker="redis").changed({"metric_source": "sqs"})
    with pytest.raises(SettingsError, match="expected a int"):
        settings(max_size="many")
    assert settings(image="baked").boot_seconds == 4.9
    assert settings(image="baked").source("image") == "--set"


# -- replay ----------------------------------------------------------------------------------------------------
def test_a_burst_scales_out_drains_and_scales_in_after_the_idle_window():
    s = settings(backlog_per_instance=10, max_size=4, idle_window=180)
    result = replay(s, load.named("burst", seconds=3600), load.work("fixed:1")[0])
    figures = summary(result)
    assert figures["processed"] == 1000 and figures["left waiting"] == 0
    assert result.scale_events[0][1] == 0  # out from zero on the first part of the burst
    assert max(to for _, _, to in result.scale_events) == 4 and result.scale_events[-1][2] == 0
    # Four instances at ten messages a (10 s of work + 60 s wait) cycle: about 1000 / (40 / 70) s to drain.
    assert 1500 < figures["drain max s"] < 2100
    # A longer idle window keeps the instances longer after the drain, and costs more instance time.
    longer = replay(settings(backlog_per_instance=10, max_size=4, idle_window=900),
                    load.named("burst", seconds=3600), load.work("fixed:1")[0])
    assert longer.idle_instance_seconds > result.idle_instance_seconds
    assert longer.instance_seconds > result.instance_seconds


def test_celery_workers_take_jobs_as_they_come_and_spot_interruptions_release_nothing_lost():
    s = settings(broker="redis", backlog_per_instance=10, max_size=4, spot=True, spot_interruptions_per_hour=20.0)
    result = replay(s, load.named("burst", seconds=3600, scale=0.5), load.work("fixed:2")[0], seed=2)
    assert result.spot_interruptions > 0 and result.spot_seconds > 0 and result.on_demand_seconds == 0
    assert len(result.waits) == 500 and result.left == 0  # every job once, whatever was interrupted
    sqs = replay(settings(backlog_per_instance=10, max_size=4, spot=True, spot_interruptions_per_hour=20.0),
                 load.named("burst", seconds=3600, scale=0.5), load.work("fixed:2")[0], seed=2)
    assert len(sqs.waits) == 500 and sqs.left == 0
    assert summary(result)["wait p95 s"] < summary(sqs)["wait p95 s"]  # no one-minute wait between polls


def test_a_launching_celery_worker_holds_no_job():
    """PendingJobs counts the queue and the jobs workers hold; a worker still launching holds none (its processes
    are counted only once they took a job)."""
    s = settings(broker="redis", concurrency=4, ec2_launch_seconds=60, boot_seconds=120)
    result = replay(s, load.Load("six", [6] + [0] * 599, "six jobs at second 0"), load.work("fixed:1")[0])
    launching = [backlog for backlog, instances, _, _ in result.minutes[:2]]
    assert launching == [6, 6], result.minutes[:4]
    assert len(result.waits) == 6 and result.left == 0


def test_a_launch_longer_than_its_hook_is_abandoned_and_replaced():
    s = settings(launch_timeout=30)  # 25 s of EC2 + 8.8 s of boot
    result = replay(s, load.named("burst", seconds=1200, scale=0.01), load.work("fixed:1")[0])
    assert result.abandoned_launches >= 2 and not result.waits and result.left == 10


# -- pricing -----------------------------------------------------------------------------------------------------
def test_the_bill_is_the_usage_times_the_table_prices(tmp_path):
    s = settings(spot=True, on_demand_base=0, network_mode="default-public")
    result = replay(s, load.named("burst", seconds=load.DAY), load.work("fixed:1")[0])
    table = prices.load_prices()
    lines = {line.item: line for line in prices.bill(result, table)}
    spot_hour = 0.0104 * (1 - 0.70)
    assert lines["EC2 Spot"].per_day == pytest.approx(result.spot_seconds / 3600 * spot_hour)
    assert lines["EC2 on demand"].per_day == 0
    sqs_requests = sum(v for k, v in result.requests.items() if k != "publisher put")
    assert lines["SQS requests"].per_day == pytest.approx(sqs_requests * 0.40e-6)
    assert lines["Lambda duration"].per_day == pytest.approx(1440 * 60 * 0.125 * 0.0000166667)
    # scale_out high resolution (10 s), scale_in standard, three more standard alarms: $0.80 a month.
    assert lines["CloudWatch alarms"].per_day == pytest.approx((0.30 + 0.10 + 3 * 0.10) * 24 / 730)
    assert "NAT gateway" not in lines and "ElastiCache nodes" not in lines
    day, month = prices.totals(list(lines.values()), table)
    assert month == pytest.approx(day * 730 / 24)
    # A table of one's own replaces the project's.
    own = json.loads(prices.PRICES.read_text())
    own["prices"]["ec2_on_demand_hour"]["t3.micro"] = 1.0
    (tmp_path / "own.json").write_text(json.dumps(own))
    dearer = {line.item: line for line in prices.bill(result, prices.load_prices(tmp_path / "own.json"))}
    assert dearer["EC2 Spot"].per_day == pytest.approx(result.spot_seconds / 3600 * 0.30)
    private = prices.bill(replay(settings(broker="redis"), load.named("burst", seconds=600, scale=0.01),
                                 load.work("fixed:1")[0]), table)
    lines = {line.item: line for line in private}
    assert lines["NAT gateway"].per_day == pytest.approx(24 * 0.045)
    assert lines["VPC interface endpoints"].per_day == pytest.approx(24 * 8 * 2 * 0.01)
    assert lines["ElastiCache nodes"].per_day == pytest.approx(24 * 2 * 0.016)
    with pytest.raises(prices.PriceError, match="t3.nano"):
        prices.bill(replay(settings(instance_type="t3.nano"), load.named("burst", seconds=600),
                           load.work("fixed:1")[0]), table)


# -- compare -----------------------------------------------------------------------------------------------------
def row(label: str, p95: float | None, month: float, left: int = 0) -> compare.Row:
    return compare.Row(label, {"wait p95 s": p95, "left waiting": left}, month / 30, month)


def test_the_cheapest_setting_meeting_the_wait_target_is_named():
    rows = [row("a", 50, 30.0), row("b", 100, 20.0), row("c", 400, 10.0), row("d", 20, 15.0, left=5)]
    choice, reason = compare.cheapest(rows, 120)
    assert choice is rows[1] and "b" in reason  # c is cheaper but too slow; d left messages waiting
    choice, reason = compare.cheapest(rows, 10)
    assert choice is None and "no setting meets" in reason
    choice, _ = compare.cheapest(rows, None)
    assert choice is rows[2]


def test_compare_makes_every_combination_and_checks_each():
    base = settings()
    runs = compare.alternatives(base, ["idle_window=60,180", "image=stock,baked"])
    assert [label for label, _ in runs] == ["idle_window=60 image=stock", "idle_window=60 image=baked",
                                            "idle_window=180 image=stock", "idle_window=180 image=baked"]
    assert runs[1][1].boot_seconds == 4.9 and runs[1][1].idle_window == 60
    brokers = dict(compare.alternatives(base, ["broker=sqs,redis"]))
    assert brokers["broker=redis"].period == 120 and brokers["broker=redis"].from_zero
    with pytest.raises(SettingsError, match="idle_window=61"):
        compare.alternatives(base, ["idle_window=61"])
    with pytest.raises(SettingsError, match="NAME=VALUE"):
        compare.alternatives(base, ["idle_window"])


def test_the_command_prints_inputs_with_sources_the_table_and_the_choice(tmp_path, capsys, monkeypatch):
    record = tmp_path / "stack.json"
    record.write_text(json.dumps({
        "environment": "local", "prefix": "p", "region": "us-east-1", "queue": {"name": "q"},
        "dead_letter_queue": {"name": "q-dlq"}, "group": {"name": "g", "min_size": 0, "max_size": 4},
        "broker": {"kind": "sqs"}, "publisher": {"metric": NAMES["publisher_metric"]},
        "scaling": {"metric_source": "publisher", "period": 60, "idle_window": 180, "backlog_per_instance": 10}}))
    assert cli.main(["--stack", str(record), "--profile", "bursty-day", "--duration", "43200", "--compare",
                     "idle_window=60,900", "--wait-target-p95", "600", "--plot", str(tmp_path / "p.png"),
                     "--inventory-settings", '{"fleet_image": "baked"}']) == 0
    out = capsys.readouterr().out
    assert "image                        baked" in out and "inventory/local: fleet_image" in out
    assert "idle_window=60 " in out and "idle_window=900" in out and "cheapest meeting p95 wait <= 600 s" in out
    assert (tmp_path / "p.png").read_bytes().startswith(b"\x89PNG")
    assert cli.main(["--stack", str(record), "--set", "idle_window=7"]) == 2
    assert "idle_window 7" in capsys.readouterr().err
