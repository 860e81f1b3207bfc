"""The security linters in `make lint` catch what they are there for: seeded faults fail them."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from sqs_fleet import REPO
from sqs_fleet.ops.lint_policies import POLICIES, renderings

CHECKOV = REPO / ".venv-checkov" / "bin" / "checkov"

# (file, text to replace, faulty text, the check that must fail)
FAULTS = [
    ("roles/fleet/tasks/main.yml", "http_tokens: required", "http_tokens: optional", "CKV2_FLEET_3"),
    ("roles/fleet/tasks/main.yml", "encrypted: true", "encrypted: false", "CKV2_FLEET_4"),
    ("roles/fleet/tasks/main.yml", 'associate_public_ip_address: "{{ fleet_associate_public_ip }}"',
     "associate_public_ip_address: true", "CKV2_FLEET_5"),
    ("roles/network/tasks/main.yml", "    rules: []",
     "    rules: [{proto: tcp, ports: [22], cidr_ip: 0.0.0.0/0}]", "CKV2_FLEET_6"),
    ("roles/queue/tasks/main.yml", '    kms_master_key_id: "{{ queue_kms_key }}"\n    policy', "    policy",
     "CKV2_FLEET_1"),
    ("roles/observability/tasks/main.yml", '    retention: "{{ observability_log_retention_days }}"\n', "",
     "CKV2_FLEET_7"),
]


def checkov_failures(directory: Path) -> set[str]:
    result = subprocess.run(
        [str(CHECKOV), "--quiet", "--compact", "--skip-download", "--framework", "ansible", "-d", str(directory),
         "--external-checks-dir", str(REPO / "checks" / "checkov")],
        capture_output=True, text=True, check=False, timeout=300,
    )
    return set(re.findall(r"Check: (CKV2_FLEET_\d+)", result.stdout))


@pytest.mark.skipif(not CHECKOV.exists(), reason="checkov is installed by `make lint` into .venv-checkov")
def test_checkov_project_policies_pass_the_roles_and_fail_each_seeded_fault(tmp_path):
    assert checkov_failures(REPO / "roles") == set()
    for index, (path, good, bad, check) in enumerate(FAULTS):
        text = (REPO / path).read_text()
        assert good in text, f"{path} no longer contains {good!r}: update this test"
        faulty = tmp_path / str(index) / path
        faulty.parent.mkdir(parents=True)
        faulty.write_text(text.replace(good, bad))
        assert check in checkov_failures(tmp_path / str(index)), f"{check} missed: {bad!r}"


def test_parliament_rejects_a_misspelt_action_and_a_wildcard():
    from parliament import analyze_policy_string

    for statement in ({"Effect": "Allow", "Action": "sqs:ReceiveMessages", "Resource": "arn:aws:sqs:eu-west-1:1:q"},
                      {"Effect": "Allow", "Action": "sqs:DeleteMessage", "Resource": "*"}):
        policy = json.dumps({"Version": "2012-10-17", "Statement": [statement]})
        assert analyze_policy_string(policy).findings, statement


def test_rendered_policies_pass_parliament():
    result = subprocess.run([sys.executable, "-m", "sqs_fleet.ops.lint_policies"], cwd=REPO,
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout
    assert result.stdout.count(": ok") == len(renderings()), result.stdout
    rendered = {str(path.relative_to(REPO)) for path in REPO.glob("roles/*/templates/*policy*.j2")}
    assert rendered <= set(POLICIES), f"policy templates the lint does not cover: {rendered - set(POLICIES)}"
