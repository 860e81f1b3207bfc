"""The controller's module runner (Mitogen's interpreter, started with plugins/module_runner on PYTHONPATH)
reads botocore's data once for the sessions that search the same paths, and changes nothing else about the
interpreter; with a botocore it was not verified with, it changes nothing and says so."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sqs_fleet import REPO

MODULE_RUNNER = REPO / "plugins" / "module_runner"

# Two sessions, as two amazon.aws tasks make them: do they share what their loaders parsed?
TWO_SESSIONS = """
import sys
print("botocore imported at start-up:", "botocore" in sys.modules)
import boto3
import botocore.loaders
loaders = [boto3.session.Session(region_name="us-east-1")._session.get_component("data_loader") for _ in "ab"]
print("shared endpoints:", loaders[0].load_data("endpoints") is loaders[1].load_data("endpoints"))
models = [loader.load_service_model("ec2", "service-2") for loader in loaders]
print("shared model:", models[0] is models[1])
print("shared service list:", loaders[0].list_available_services("service-2")
      is loaders[1].list_available_services("service-2"))
# A loader that also searches another folder lists what it finds there.
other = botocore.loaders.Loader(extra_search_paths=[OTHER_MODELS])
print("other paths share:", other.load_data("endpoints") is loaders[0].load_data("endpoints"),
      "fleetdemo" in other.list_available_services("service-2"),
      "fleetdemo" in loaders[0].list_available_services("service-2"))
client = boto3.session.Session(region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y").client("ec2")
print("operations:", len(client.meta.service_model.operation_names) > 100)
"""


def python(code: str, *pythonpath: Path, other_models: Path = Path("/nonexistent")) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, pythonpath))}
    code = code.replace("OTHER_MODELS", repr(str(other_models)))
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)  # noqa: S603


def run_python(code: str, *pythonpath: Path, other_models: Path = Path("/nonexistent")) -> str:
    return python(code, *pythonpath, other_models=other_models).stdout


def other_models(tmp_path: Path) -> Path:
    """A search path holding one more service model, as ~/.aws/models would."""
    (tmp_path / "fleetdemo" / "2024-01-01").mkdir(parents=True)
    (tmp_path / "fleetdemo" / "2024-01-01" / "service-2.json").write_text('{"metadata": {}, "operations": {}}')
    return tmp_path


def test_the_runner_reads_the_data_once_and_imports_nothing_at_start_up(tmp_path):
    assert run_python(TWO_SESSIONS, MODULE_RUNNER, other_models=other_models(tmp_path)).splitlines() == [
        "botocore imported at start-up: False", "shared endpoints: True", "shared model: True",
        "shared service list: True", "other paths share: False True False", "operations: True"]


def test_a_plain_interpreter_reads_it_again_for_each_session(tmp_path):
    assert run_python(TWO_SESSIONS, other_models=other_models(tmp_path)).splitlines()[1:4] == [
        "shared endpoints: False", "shared model: False", "shared service list: False"]


# The module runner reads botocore's version once botocore is imported, when botocore.loaders is.
AS_RELEASE = "import botocore\nbotocore.__version__ = RELEASE\n"


def verified_botocore() -> tuple[tuple[int, ...], tuple[int, ...]]:
    """BOTOCORE_VERIFIED, read from the source (importing the module would install its hook in this process)."""
    tree = ast.parse((MODULE_RUNNER / "sitecustomize.py").read_text())
    return next(ast.literal_eval(node.value) for node in tree.body if isinstance(node, ast.Assign)
                and any(isinstance(target, ast.Name) and target.id == "BOTOCORE_VERIFIED" for target in node.targets))


def dotted(release: tuple[int, ...]) -> str:
    return ".".join(map(str, release))


def note(release: tuple[int, ...]) -> str:
    lowest, highest = verified_botocore()
    window = dotted(lowest) if lowest == highest else f"{dotted(lowest)} to {dotted(highest)}"
    return (f"plugins/module_runner: botocore {dotted(release)} is not a release its loader cache was verified "
            f"with ({window}): each session reads botocore's data again")


def beside_the_window() -> list[tuple[int, ...]]:
    lowest, highest = verified_botocore()
    below = (*lowest[:2], lowest[2] - 1) if lowest[2] else (lowest[0], lowest[1] - 1, 99)
    return [below, (*highest[:2], highest[2] + 1)]


@pytest.mark.parametrize("side", [0, 1])
def test_with_a_botocore_it_was_not_verified_with_each_session_reads_again_and_a_note_says_so(tmp_path, side):
    release = beside_the_window()[side]
    code = AS_RELEASE.replace("RELEASE", repr(dotted(release))) + TWO_SESSIONS
    result = python(code, MODULE_RUNNER, other_models=other_models(tmp_path))
    assert result.stdout.splitlines()[1:4] == ["shared endpoints: False", "shared model: False",
                                               "shared service list: False"]
    assert result.stderr == note(release) + "\n"


# In Mitogen's runner, where the module that imports botocore is running, the note is one of its warnings: the
# play's output shows it.
A_MODULE_IMPORTS_BOTOCORE = """
import ansible.module_utils.common.warnings
AS_RELEASE
import botocore.loaders
print(ansible.module_utils.common.warnings.get_warning_messages())
"""


def test_the_note_is_a_warning_of_the_module_that_imports_botocore():
    release = beside_the_window()[1]
    code = A_MODULE_IMPORTS_BOTOCORE.replace("AS_RELEASE", AS_RELEASE.replace("RELEASE", repr(dotted(release))))
    assert python(code, MODULE_RUNNER).stdout == f"{(note(release),)}\n"


def test_with_a_botocore_it_was_verified_with_the_sessions_share_and_nothing_is_said(tmp_path):
    models = other_models(tmp_path)
    for release in set(verified_botocore()):  # both ends
        code = AS_RELEASE.replace("RELEASE", repr(dotted(release))) + TWO_SESSIONS
        result = python(code, MODULE_RUNNER, other_models=models)
        assert result.stdout.splitlines()[1:4] == ["shared endpoints: True", "shared model: True",
                                                   "shared service list: True"]
        assert result.stderr == ""


def test_the_interpreters_own_sitecustomize_still_runs(tmp_path):
    (tmp_path / "sitecustomize.py").write_text("import builtins\nbuiltins.OWN_SITECUSTOMIZE = True\n")
    assert run_python("import builtins; print(getattr(builtins, 'OWN_SITECUSTOMIZE', False))",
                      MODULE_RUNNER, tmp_path) == "True\n"


def test_the_strategy_starts_its_runners_with_the_folder_first_once(strategy_plugin, monkeypatch):
    assert strategy_plugin.MODULE_RUNNER == MODULE_RUNNER
    monkeypatch.setenv("PYTHONPATH", f"/opt/one{os.pathsep}/opt/two")
    strategy_plugin.start_module_runners_with(MODULE_RUNNER)
    strategy_plugin.start_module_runners_with(MODULE_RUNNER)
    assert os.environ["PYTHONPATH"] == os.pathsep.join([str(MODULE_RUNNER), "/opt/one", "/opt/two"])
    monkeypatch.delenv("PYTHONPATH")
    strategy_plugin.start_module_runners_with(MODULE_RUNNER)
    assert os.environ["PYTHONPATH"] == str(MODULE_RUNNER)


PLAY = """
- hosts: localhost
  gather_facts: false
  tasks:
    - name: Which sitecustomize would a Python started from the module runner load
      ansible.builtin.command: "{{ ansible_playbook_python }} -c 'import sitecustomize; print(sitecustomize.__file__)'"
      register: found
      changed_when: false
      failed_when: false
    - ansible.builtin.debug:
        msg: "FOUND {{ found.stdout or 'none' }}"
"""


@pytest.mark.parametrize(("strategy", "found"), [
    ("mitogen_linear", str(MODULE_RUNNER / "sitecustomize.py")),
    ("linear", "none"),
])
def test_only_the_mitogen_strategy_starts_its_runner_with_the_folder(run_play, strategy, found):
    _, output = run_play(PLAY, strategy, environ={key: value for key, value in os.environ.items()
                                                    if key != "PYTHONPATH"})
    assert f"FOUND {found}" in output
