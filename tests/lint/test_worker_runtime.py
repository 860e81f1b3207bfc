"""The worker runtime against the platform it runs on: every pinned library installs on Amazon Linux 2023's
worker Python (what pip decides from the index, then each wheel's own METADATA), the pins are closed over their
dependencies, and the roles ask the platform only for what it has (platforms/amazon-linux-2023.yml)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from sqs_fleet import REPO
from sqs_fleet.platform import pinned_requirements, pins, platform_facts, problems, read_wheel, runtime_wheelhouse

FACTS = platform_facts()
EXTRAS = {name: extras for name, (_version, extras) in pinned_requirements().items()}


@pytest.fixture(scope="module")
def wheels() -> list:
    return [read_wheel(path) for path in runtime_wheelhouse().glob("*.whl")]


@pytest.mark.parametrize("patch", ["platform", "first"])
def test_every_pinned_library_installs_on_the_platforms_worker_python(wheels, patch: str) -> None:
    """On AL2023's release of the worker Python, and on the first release of its minor version (a dependency
    some patch releases need, e.g. redis-py's async-timeout below 3.11.3, is pinned too: the twin runs 3.11.2)."""
    version = FACTS["worker_python"]["version"]
    assert problems(wheels, pins(), version if patch == "platform" else f"{minor(version)}.0", EXTRAS) == []


def test_the_check_refuses_a_python_the_pins_do_not_support(wheels) -> None:
    """The same wheels read for AL2023's system Python 3.9: Celery 5.7 and redis-py 8.1 refuse it (the check can
    fail, and would fail a pin bumped past the worker Python)."""
    found = problems(wheels, pins(), FACTS["system_python"]["version"])
    assert "celery==5.7.0 requires Python >=3.10: not 3.9.25" in found
    assert any(line.startswith("redis==8.1.0 requires Python") for line in found)


def test_a_missing_dependency_pin_is_named(wheels) -> None:
    pinned = {name: version for name, version in pins().items() if name != "vine"}
    assert "kombu==5.7.0 needs vine==5.1.0: not pinned" in problems(wheels, pinned, FACTS["worker_python"]["version"])


def test_a_dependency_of_an_extra_is_followed(wheels) -> None:
    """celery[redis] asks kombu[redis], whose Redis transport needs packaging (declared under that extra only)."""
    pinned = {name: version for name, version in pins().items() if name != "packaging"}
    found = problems(wheels, pinned, FACTS["worker_python"]["version"], EXTRAS)
    assert found == ["kombu==5.7.0 needs packaging==26.3: not pinned"]


def test_only_exact_pins_are_accepted(tmp_path: Path) -> None:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("boto3==1.44.5\ncelery>=5.6\n")
    with pytest.raises(ValueError, match="requirements.txt:2: 'celery>=5.6' is not pinned"):
        pins(requirements)


def role_vars(role: str, name: str) -> dict:
    return yaml.safe_load((REPO / "roles" / role / name).read_text())


def test_the_runtime_is_made_from_the_platforms_worker_python() -> None:
    worker_python = FACTS["worker_python"]
    assert role_vars("worker_runtime", "defaults/main.yml")["worker_runtime_python"] == worker_python["executable"]
    assert worker_python["package"] in role_vars("worker_runtime", "vars/RedHat.yml")["worker_runtime__packages"]


@pytest.mark.parametrize("role", ["worker_runtime", "consumer", "celery_worker"])
def test_each_package_a_role_installs_on_amazon_linux_is_in_its_repositories(role: str) -> None:
    packages = next(value for key, value in role_vars(role, "vars/RedHat.yml").items() if key.endswith("__packages"))
    assert set(packages) <= set(FACTS["packages"]), f"{role}: not in AL2023's package list: {packages}"


def test_user_data_installs_only_packages_amazon_linux_has() -> None:
    for template in ("roles/fleet/templates/user-data.sh.j2", "roles/image/templates/builder-user-data.sh.j2"):
        line = next(line for line in (REPO / template).read_text().splitlines() if "dnf install" in line)
        packages = [word for word in line.split("dnf install", 1)[1].split() if not word.startswith("-")]
        assert set(packages) <= set(FACTS["packages"]), f"{template}: {packages}"


def test_the_node_roles_need_no_newer_ansible_core_than_amazon_linux_ships() -> None:
    shipped = tuple(int(part) for part in FACTS["ansible_core"]["version"].split(".")[:2])
    for role in ("worker_runtime", "consumer", "celery_worker", "lifecycle_watcher", "cloudwatch_agent"):
        needed = role_vars(role, "meta/main.yml")["galaxy_info"]["min_ansible_version"]
        assert tuple(int(part) for part in needed.split(".")) <= shipped, f"{role} needs ansible-core {needed}"


@pytest.fixture(scope="module")
def platform_ansible(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """AL2023's ansible-core release on AL2023's system Python minor version (3.9), as `dnf install ansible-core`
    runs it there; the lab's twin node runs the same release on 3.11."""
    wanted = minor(FACTS["ansible_core"]["python"])
    # pyenv's own build before PATH's (a pyenv shim on PATH may not run), as make py39 looks for it.
    candidates = [*sorted(Path.home().glob(f".pyenv/versions/{wanted}.*/bin/python{wanted}")),
                  shutil.which(f"python{wanted}")]
    interpreter = next((path for path in candidates if path), None)
    if interpreter is None:
        pytest.skip(f"no Python {wanted} here (make py39 looks for one)")
    venv = REPO / ".run" / f"ansible-core-{FACTS['ansible_core']['version']}-py{wanted}"
    if not (venv / "bin" / "ansible-playbook").exists():
        subprocess.run([str(interpreter), "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check",
                        f"ansible-core=={FACTS['ansible_core']['version']}"], check=True)
    return venv / "bin"


def minor(version: str) -> str:
    return ".".join(str(version).split(".")[:2])


def test_the_node_playbook_parses_on_the_platforms_ansible_core(platform_ansible: Path, tmp_path: Path) -> None:
    """ansible-pull's first step on a stock instance, with the repository's ansible.cfg as the node reads it."""
    env = {**os.environ, "ANSIBLE_HOME": str(tmp_path), "PATH": f"{platform_ansible}{os.pathsep}/usr/bin:/bin"}
    result = subprocess.run([str(platform_ansible / "ansible-playbook"), "--syntax-check", "--inventory",
                             "localhost,", "playbooks/node.yml"], cwd=REPO, env=env, capture_output=True, text=True,
                            check=False)
    version = subprocess.run([str(platform_ansible / "ansible-playbook"), "--version"], capture_output=True,
                             text=True, check=True).stdout
    assert f"[core {FACTS['ansible_core']['version']}]" in version
    assert result.returncode == 0, result.stdout + result.stderr
