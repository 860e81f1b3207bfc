"""The node roles on a booted systemd node: molecule's full sequence (create, converge, idempotence,
verify, destroy), for the SQS consumer (default) and node.yml's Celery path on a real Redis (redis). Runs
where test nodes can boot (root, systemd-nspawn); skips elsewhere, saying why."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sqs_fleet import REPO
from sqs_fleet.lab.node import missing_requirements

pytestmark = pytest.mark.skipif(missing_requirements() is not None, reason=f"{missing_requirements()}")


@pytest.mark.parametrize("scenario", ["default", "redis"])
def test_molecule_scenario_converges_idempotently_and_verifies(tmp_path, scenario):
    # The node's modules run with this environment (nsenter): the host's own pip settings would override the
    # node's (its wheelhouse in /etc/pip.conf), as they never reach a booted node's own bootstrap.
    host = {key: value for key, value in os.environ.items() if not key.startswith("PIP_")}
    env = {**host, "ANSIBLE_HOME": str(tmp_path), "ANSIBLE_DEPRECATION_WARNINGS": "false",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", "NO_COLOR": "1"}
    result = subprocess.run(["molecule", "test", "-s", scenario], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=900, check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    for action in ("create", "converge", "idempotence", "verify", "destroy"):
        assert f"{action}: Executed: Successful" in output, action
