"""The broker role uses an AUTH token stored beforehand in its SSM parameter as it is: one that ElastiCache would
refuse fails the run, naming the rule and the parameter (never the token), before the replication group is
asked for; one that keeps the rules is used."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

PARAMETER = "/token-check/broker/auth-token"
GROUP = "token-check"


def broker_play(emulator, path: Path) -> Path:
    inputs = {
        "broker_group_id": GROUP, "broker_subnet_group_name": GROUP, "broker_security_group_name": f"{GROUP}-broker",
        "broker_client_security_group_names": [], "broker_auth_parameter": PARAMETER,
        "broker_endpoint_parameter": "/token-check/broker/endpoint", "broker_reader_role_names": [],
        "broker_reader_policy_name": "token-check-read", "broker_memory_alarm_name": f"{GROUP}-memory",
        "broker_dead_jobs_alarm_name": f"{GROUP}-dead-jobs", "broker_region": "us-east-1",
        "broker_account_id": "123456789012", "broker_aws_environment": emulator.environment(),
    }
    play = [{"name": "Start the broker", "hosts": "localhost", "gather_facts": False,
             "vars": {"ansible_python_interpreter": "{{ ansible_playbook_python }}"},
             "tasks": [{"name": "Start the broker", "ansible.builtin.import_role": {"name": "broker",
                                                                                   "tasks_from": "start"},
                        "vars": inputs}]}]
    path.write_text(json.dumps(play))
    return path


@pytest.fixture
def stored_token(aws):
    def store(token: str) -> None:
        aws("ssm").put_parameter(Name=PARAMETER, Value=token, Type="SecureString", Overwrite=True)

    yield store
    aws("ssm").delete_parameter(Name=PARAMETER)


def groups(aws) -> list[str]:
    return [g["ReplicationGroupId"] for g in aws("elasticache").describe_replication_groups()["ReplicationGroups"]]


@pytest.mark.parametrize("token", ["a-token-with-a-%-sign-in-it", "too-short-token"])
def test_a_stored_token_elasticache_refuses_fails_before_the_group_is_asked_for(
        run_playbook, emulator, aws, stored_token, tmp_path, token):
    stored_token(token)
    run = run_playbook(str(broker_play(emulator, tmp_path / "broker.yml")))
    assert run.returncode != 0
    messages = " ".join(run.failure_messages())
    assert (f"The AUTH token in {PARAMETER} breaks ElastiCache's rules: 16 to 128 characters, ASCII letters, digits "
            "and only ! & # $ ^ < > - as special characters") in messages
    assert token not in run.output + run.stderr
    assert GROUP not in groups(aws)


def test_a_stored_token_that_keeps_the_rules_is_used(run_playbook, emulator, aws, stored_token, tmp_path):
    stored_token("Given-by-hand!&#$^<>0123456789")
    run = run_playbook(str(broker_play(emulator, tmp_path / "broker.yml")), "--check")
    assert run.returncode == 0, run.failure_messages()
    tasks = {task["task"]["name"].split(" : ")[-1]: task["hosts"]["localhost"]
             for task in run.report["plays"][0]["tasks"]}
    assert tasks["Check the AUTH token against ElastiCache's rules"].get("failed") is not True
    assert tasks["Start the replication group (a primary and its replica, failover, TLS, encryption at rest, "
                 "AUTH)"]["changed"] is True
