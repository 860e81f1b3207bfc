"""AWS's rules that the emulator does not check, as the project applies them before any AWS call: the AUTH token
of an ElastiCache replication group, and alarm periods on metrics AWS publishes once a minute. The roles' own
checks and the alarms they build are rendered with Ansible, as site.yml renders them."""

from __future__ import annotations

import json
import os
import string
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible_collections.sqs_fleet.aws.plugins.module_utils.aws_rules import (
    auth_token_errors,
    sub_minute_errors,
)

from sqs_fleet import REPO
from sqs_fleet.sim.alarms import one_minute_metrics

ALLOWED_SPECIALS = set("!&#$^<>-")


def ansible_env() -> dict[str, str]:
    return {"ANSIBLE_LOAD_CALLBACK_PLUGINS": "1", "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
            "PATH": os.environ["PATH"], "ANSIBLE_HOME": str(REPO / ".run" / "ansible-home")}


def render(variable: str, vars_file: str, extra: dict[str, Any]) -> Any:
    """A role variable as Ansible renders it from the role's vars file and these inputs."""
    result = subprocess.run(
        [str(Path(sys.executable).parent / "ansible"), "localhost", "-m", "ansible.builtin.debug",
         "-a", f"var={variable}", "-e", f"@{vars_file}", "-e", json.dumps(extra)],
        cwd=REPO, capture_output=True, text=True, check=True, env=ansible_env(),
    )
    return json.loads(result.stdout)["plays"][0]["tasks"][0]["hosts"]["localhost"][variable]


# ---- the AUTH token ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("token", [
    "a" * 16, "A" * 128, "Abc123" * 10, "only-the-allowed!&#$^<>-specials", "0123456789abcdef",
])
def test_tokens_elasticache_accepts_pass(token):
    assert auth_token_errors(token, transit_encryption=True) == []


@pytest.mark.parametrize(("token", "named"), [
    ("a" * 15, "it has 15 characters"),
    ("a" * 129, "it has 129 characters"),
    ("a-token-with-a-percent-%-sign", "1 outside that set"),  # printable, forbidden by CreateReplicationGroup
    ("a token with spaces in it", "5 outside that set"),
    ("token*with(other)specials", "3 outside that set"),
    ("naïve-token-of-unicode-letters", "1 outside that set"),  # a letter, but not ASCII
    ("with/slash@at\"quote", "outside that set"),
])
def test_tokens_elasticache_rejects_are_refused_naming_the_rule_not_the_token(token, named):
    [error] = auth_token_errors(token, transit_encryption=True)
    assert "16 to 128 characters, only ASCII letters, digits and ! & # $ ^ < > -" in error
    assert named in error
    assert token not in error


def test_a_token_needs_tls_in_transit():
    assert auth_token_errors("a" * 32, transit_encryption=False) == [
        "an AUTH token needs TLS in transit (transit_encryption)"]


def test_every_printable_ascii_character_is_judged_as_the_api_reference_says():
    for character in string.printable:
        token = "a" * 15 + character
        allowed = character in string.ascii_letters + string.digits or character in ALLOWED_SPECIALS
        assert (auth_token_errors(token, True) == []) is allowed, repr(character)


def play_result(tmp_path: Path, task: dict[str, Any], variables: dict[str, Any] | None = None) -> dict[str, Any]:
    """The result of one task run on localhost by ansible-playbook."""
    play = [{"hosts": "localhost", "gather_facts": False, "vars": variables or {}, "tasks": [task]}]
    (tmp_path / "play.yml").write_text(json.dumps(play))
    result = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), str(tmp_path / "play.yml")],
        cwd=REPO, capture_output=True, text=True, check=True, env=ansible_env(),
    )
    outcome: dict[str, Any] = json.loads(result.stdout)["plays"][0]["tasks"][0]["hosts"]["localhost"]
    return outcome


def test_the_broker_roles_check_agrees_with_the_modules(tmp_path):
    """The broker role checks a token stored beforehand with a pattern of its own (vars/main.yml), the way
    start.yml applies it: it accepts and refuses exactly what the module does, character by character and at
    the length limits."""
    pattern = render("broker__auth_token_pattern", "roles/broker/vars/main.yml", {})
    samples = [prefix + c for prefix in ("a" * 15, "a" * 127) for c in string.printable + "é"]
    samples += ["a" * 15, "a" * 16, "a" * 128, "a" * 129, "a" * 16 + "\n"]
    accepted = play_result(tmp_path, {"ansible.builtin.debug": {
        "msg": "{{ samples | select('ansible.builtin.regex', pattern, match_type='fullmatch') | list }}"}},
        {"samples": samples, "pattern": pattern})["msg"]
    assert accepted == [sample for sample in samples if auth_token_errors(sample, True) == []]
    assert "a" * 16 in accepted


def test_the_tokens_the_broker_role_generates_keep_the_rules(tmp_path):
    """The role's own generator, as start.yml writes it, run 20 times."""
    tasks = yaml.safe_load((REPO / "roles/broker/tasks/start.yml").read_text())
    [generate] = [t for t in tasks if t["name"] == "Generate an AUTH token candidate"]
    expression = generate["ansible.builtin.set_fact"]["broker__new_token"]
    results = play_result(tmp_path, {"ansible.builtin.debug": {"msg": expression}, "loop": list(range(20))})
    tokens = [r["msg"] for r in results["results"]]
    assert len(set(tokens)) == 20
    assert all(auth_token_errors(token, True) == [] for token in tokens)


# ---- alarm periods on one-minute metrics ---------------------------------------------------------------------


def sqs_alarm(period: int) -> dict[str, Any]:
    return {"Namespace": "AWS/SQS", "MetricName": "ApproximateNumberOfMessagesVisible", "Period": period,
            "Dimensions": [{"Name": "QueueName", "Value": "jobs"}], "Statistic": "Maximum", "EvaluationPeriods": 1}


@pytest.mark.parametrize("period", [10, 20, 30])
def test_a_sub_minute_period_on_an_aws_metric_is_refused_naming_the_metric(period):
    [error] = sub_minute_errors(sqs_alarm(period))
    assert error.startswith(f"period {period} on AWS/SQS ApproximateNumberOfMessagesVisible: AWS publishes it once")


def test_a_metric_query_on_an_aws_metric_is_named_with_its_id():
    alarm = {"Metrics": [
        {"Id": "backlog", "ReturnData": False, "MetricStat": {
            "Metric": {"Namespace": "BMAT", "MetricName": "PendingJobs"}, "Period": 10, "Stat": "Maximum"}},
        {"Id": "desired", "ReturnData": False, "MetricStat": {
            "Metric": {"Namespace": "AWS/AutoScaling", "MetricName": "GroupDesiredCapacity"}, "Period": 10,
            "Stat": "Maximum"}},
        {"Id": "both", "Expression": "IF(desired == 0, backlog, 0)", "ReturnData": True}]}
    [error] = sub_minute_errors(alarm)
    assert error.startswith("period 10 on AWS/AutoScaling GroupDesiredCapacity (query desired):")
    assert one_minute_metrics(alarm) == ["AWS/AutoScaling GroupDesiredCapacity"]  # what the local loop refuses


@pytest.mark.parametrize("alarm", [
    sqs_alarm(60), sqs_alarm(300),
    # A custom namespace can hold high-resolution points (PutMetricData with StorageResolution 1).
    {"Namespace": "BMAT", "MetricName": "Backlog", "Period": 10, "Statistic": "Maximum", "EvaluationPeriods": 1},
])
def test_whole_minutes_on_aws_metrics_and_sub_minute_periods_on_custom_ones_pass(alarm):
    assert sub_minute_errors(alarm) == []


def scaling_alarms(**inputs: Any) -> dict[str, dict[str, Any]]:
    """The scaling role's three alarms, as vars/main.yml builds them from these inputs."""
    base = {"scaling_queue_name": "jobs", "scaling_group_name": "workers", "scaling_max_size": 4,
            "scaling_backlog_per_instance": 10, "scaling_period": 60, "scaling_out_period": 10,
            "scaling_out_threshold": 4, "scaling_out_comparison": "GreaterThanThreshold",
            "scaling_out_evaluation_periods": 1, "scaling_idle_window": 120, "scaling_in_policy_name": "in",
            "scaling_publisher_metric": {"namespace": "BMAT", "name": "PendingJobs",
                                         "dimensions": [{"Name": "QueueName", "Value": "jobs"}]},
            **inputs}
    return {
        "from_zero": render("scaling__from_zero_alarm", "roles/scaling/vars/main.yml", base),
        "out": render("scaling__out_alarm", "roles/scaling/vars/main.yml", base),
        "in": render("scaling__in_alarm", "roles/scaling/vars/main.yml", base),
    }


@pytest.mark.parametrize(("out_period", "from_zero_period"), [(10, 60), (30, 60), (60, 60), (120, 120)])
def test_each_alarm_of_the_scaling_role_takes_its_period_from_its_metrics(out_period, from_zero_period):
    """A one-minute metric never gets a sub-minute period: the from-zero alarm reads GroupDesiredCapacity, so it
    runs on whole minutes whatever scaling_out_period; the publisher's own scale-out alarm keeps that period."""
    alarms = scaling_alarms(scaling_out_period=out_period)
    from_zero = alarms["from_zero"]
    assert {int(q["MetricStat"]["Period"]) for q in from_zero["Metrics"] if "MetricStat" in q} == {from_zero_period}
    assert sub_minute_errors(from_zero) == []
    assert int(alarms["out"]["publisher"]["Period"]) == out_period
    for source in ("publisher", "sqs"):
        for kind in ("out", "in"):
            assert sub_minute_errors(alarms[kind][source]) == [], (kind, source)
