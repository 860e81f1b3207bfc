"""The CloudWatch agent configuration the role renders validates against the agent's own schema."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from sqs_fleet import REPO

SCHEMA = REPO.parent / "shared" / "reference" / "cloudwatch-agent-config.schema.json"
needs_schema = pytest.mark.skipif(not SCHEMA.exists(),
                                  reason=f"the agent's schema is not at {SCHEMA} (a user's clone has no ../shared)")


def rendered_agent_config() -> dict:
    result = subprocess.run(
        [str(Path(sys.executable).parent / "ansible"), "localhost", "-m", "ansible.builtin.debug",
         "-a", "msg={{ lookup('ansible.builtin.template', "
               "'roles/cloudwatch_agent/templates/amazon-cloudwatch-agent.json.j2') }}",
         "-e", "@roles/cloudwatch_agent/defaults/main.yml",
         "-e", json.dumps({"cloudwatch_agent_log_group": "/sqs-fleet/prod/consumer"})],
        cwd=REPO, capture_output=True, text=True, check=True,
        env={"ANSIBLE_LOAD_CALLBACK_PLUGINS": "1", "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
             "PATH": "/usr/bin:/bin", "ANSIBLE_HOME": str(REPO / ".run" / "ansible-home")},
    )
    text = json.loads(result.stdout)["plays"][0]["tasks"][0]["hosts"]["localhost"]["msg"]
    return text if isinstance(text, dict) else json.loads(text)


@needs_schema
def test_agent_configuration_is_valid_for_the_agent():
    config = rendered_agent_config()
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft4Validator(schema).validate(config)
    files = config["logs"]["logs_collected"]["files"]["collect_list"]
    assert files == [{"file_path": "/var/log/sqs-consumer/consumer.log", "log_group_name": "/sqs-fleet/prod/consumer",
                      "log_stream_name": "{instance_id}", "timezone": "UTC"}]
    metrics = config["metrics"]
    assert metrics["append_dimensions"]["AutoScalingGroupName"] == "${aws:AutoScalingGroupName}"
    assert metrics["aggregation_dimensions"] == [["AutoScalingGroupName"]]
    assert {"mem", "disk"} <= set(metrics["metrics_collected"])


@needs_schema
def test_schema_rejects_a_broken_configuration():
    config = rendered_agent_config()
    config["metrics"]["metrics_collected"]["mem"]["measurement"] = "mem_used_percent"  # must be a list
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft4Validator(json.loads(SCHEMA.read_text())).validate(config)
