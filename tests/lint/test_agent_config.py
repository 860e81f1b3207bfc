"""The CloudWatch agent configuration the role renders validates against the project's schema of it
(cloudwatch-agent-config.schema.json beside this file, written from AWS's documentation of the file), and
that schema rejects the mistakes a template edit could make."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from sqs_fleet import REPO as ROOT

SCHEMA_FILE = Path(__file__).with_name("cloudwatch-agent-config.schema.json")
TEMPLATE = "roles/cloudwatch_agent/templates/amazon-cloudwatch-agent.json.j2"

Config = dict[str, Any]


def render_agent_config() -> Config:
    """The template rendered by Ansible itself, with the role's defaults and a log group."""
    result = subprocess.run(
        [str(Path(sys.executable).parent / "ansible"), "localhost", "-m", "ansible.builtin.debug",
         "-a", f"msg={{{{ lookup('ansible.builtin.template', '{TEMPLATE}') }}}}",
         "-e", "@roles/cloudwatch_agent/defaults/main.yml",
         "-e", json.dumps({"cloudwatch_agent_log_group": "/sqs-fleet/prod/consumer"})],
        cwd=ROOT, capture_output=True, text=True, check=True,
        env={"ANSIBLE_LOAD_CALLBACK_PLUGINS": "1", "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
             "PATH": "/usr/bin:/bin", "ANSIBLE_HOME": str(ROOT / ".run" / "ansible-home")},
    )
    text = json.loads(result.stdout)["plays"][0]["tasks"][0]["hosts"]["localhost"]["msg"]
    return text if isinstance(text, dict) else json.loads(text)


@pytest.fixture(scope="module")
def rendered() -> Config:
    return render_agent_config()


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft7Validator:
    schema = json.loads(SCHEMA_FILE.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def test_schema_names_its_source_and_licence(validator: jsonschema.Draft7Validator) -> None:
    description = validator.schema["description"]
    assert "Manually create or edit the CloudWatch agent configuration file" in description
    assert "https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/" in description
    assert "MIT" in description


def test_agent_configuration_is_valid(rendered: Config, validator: jsonschema.Draft7Validator) -> None:
    validator.validate(rendered)
    files = rendered["logs"]["logs_collected"]["files"]["collect_list"]
    assert files == [{"file_path": "/var/log/sqs-consumer/consumer.log", "log_group_name": "/sqs-fleet/prod/consumer",
                      "log_stream_name": "{instance_id}", "timezone": "UTC"}]
    metrics = rendered["metrics"]
    assert metrics["append_dimensions"]["AutoScalingGroupName"] == "${aws:AutoScalingGroupName}"
    assert metrics["aggregation_dimensions"] == [["AutoScalingGroupName"]]
    assert {"mem", "disk"} <= set(metrics["metrics_collected"])


def _log_file(config: Config) -> Config:
    entry: Config = config["logs"]["logs_collected"]["files"]["collect_list"][0]
    return entry


def _measurement_as_string(config: Config) -> None:
    config["metrics"]["metrics_collected"]["mem"]["measurement"] = "mem_used_percent"


def _misspelt_file_path(config: Config) -> None:
    _log_file(config)["file_pth"] = _log_file(config).pop("file_path")


def _misspelt_log_group_name(config: Config) -> None:
    # Optional, so only the closed entry catches it: the agent would name the group after the file.
    _log_file(config)["log_group_nme"] = _log_file(config).pop("log_group_name")


def _misspelt_drop_device(config: Config) -> None:
    disk = config["metrics"]["metrics_collected"]["disk"]
    disk["drop_devise"] = disk.pop("drop_device")


def _timezone_gmt(config: Config) -> None:
    _log_file(config)["timezone"] = "GMT"


def _procstat_pattern_and_exe(config: Config) -> None:
    config["metrics"]["metrics_collected"]["procstat"][0]["exe"] = "python3"


def _interval_zero(config: Config) -> None:
    config["agent"]["metrics_collection_interval"] = 0


def _retention_42_days(config: Config) -> None:
    _log_file(config)["retention_in_days"] = 42


def _unknown_append_dimension(config: Config) -> None:
    config["metrics"]["append_dimensions"]["Hostname"] = "${aws:Hostname}"


COLLECT_LIST_ENTRY = ("logs", "logs_collected", "files", "collect_list", 0)

# Each fault, and where in the configuration the schema must report it.
FAULTS: list[tuple[Callable[[Config], None], tuple[str | int, ...]]] = [
    (_measurement_as_string, ("metrics", "metrics_collected", "mem", "measurement")),
    (_misspelt_file_path, COLLECT_LIST_ENTRY),
    (_misspelt_log_group_name, COLLECT_LIST_ENTRY),
    (_misspelt_drop_device, ("metrics", "metrics_collected", "disk")),
    (_timezone_gmt, (*COLLECT_LIST_ENTRY, "timezone")),
    (_procstat_pattern_and_exe, ("metrics", "metrics_collected", "procstat", 0)),
    (_interval_zero, ("agent", "metrics_collection_interval")),
    (_retention_42_days, (*COLLECT_LIST_ENTRY, "retention_in_days")),
    (_unknown_append_dimension, ("metrics", "append_dimensions")),
]


@pytest.mark.parametrize(("fault", "where"), FAULTS, ids=[fault.__name__.strip("_") for fault, _ in FAULTS])
def test_schema_rejects_a_broken_configuration(rendered: Config, validator: jsonschema.Draft7Validator,
                                               fault: Callable[[Config], None], where: tuple[str | int, ...]) -> None:
    config = copy.deepcopy(rendered)
    fault(config)
    errors = list(validator.iter_errors(config))
    assert errors, f"{fault.__name__} was accepted"
    # The rendered configuration is valid (above), so every error is the fault's, and found where it is.
    assert all(tuple(error.absolute_path) == where for error in errors), [
        (list(error.absolute_path), error.message) for error in errors]
