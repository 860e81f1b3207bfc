"""The controller's plays run under Mitogen by default, ANSIBLE_STRATEGY=linear switches back, and the node
playbook (ansible-pull on workers, which have no Mitogen) keeps the plain linear strategy. What the strategy
replaces in ansible-core is replaced for a play's run only, and with an ansible-core or Mitogen it was not
verified with it is the plain linear strategy."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from contextlib import nullcontext
from pathlib import Path

import ansible.collections.list
import ansible.release
import ansible_mitogen.strategy
import mitogen
import pytest
import yaml
from ansible._internal._templating._jinja_bits import AnsibleEnvironment, _TemplateCompileContext
from ansible.plugins.strategy.linear import StrategyModule as Linear
from ansible.utils.display import Display
from jinja2 import Template, TemplateSyntaxError

from sqs_fleet import REPO


def configured_strategy(**env: str) -> str:
    """The default strategy ansible-playbook would use from the repository, as ansible-config reports it."""
    result = subprocess.run(  # noqa: S603 - Ansible's own tool
        [str(Path(sys.executable).parent / "ansible-config"), "dump", "--format", "json"],
        cwd=REPO, capture_output=True, text=True, check=True,
        env={"PATH": os.environ["PATH"], "ANSIBLE_HOME": str(REPO / ".run" / "ansible-home"), **env},
    )
    # The general settings; the plugins' own follow, without a name.
    settings = {s["name"]: s["value"] for s in json.loads(result.stdout) if "name" in s}
    assert str(REPO / "plugins" / "strategy") in settings["DEFAULT_STRATEGY_PLUGIN_PATH"]
    return str(settings["DEFAULT_STRATEGY"])


def test_the_default_strategy_is_linear_run_by_mitogen_and_the_plain_one_a_switch(strategy_plugin):
    assert configured_strategy() == "mitogen_linear"
    assert configured_strategy(ANSIBLE_STRATEGY="linear") == "linear"
    assert issubclass(strategy_plugin.StrategyModule, ansible_mitogen.strategy.StrategyMixin)
    assert issubclass(strategy_plugin.StrategyModule, Linear)


@pytest.mark.parametrize("playbook", ["playbooks/node.yml"])
def test_node_plays_keep_the_plain_strategy(playbook):
    plays = yaml.safe_load((REPO / playbook).read_text())
    assert [play.get("strategy") for play in plays] == ["linear"] * len(plays)


# Each task reports the process that ran it: the pipe lookup runs in the task's process, and $PPID is its pid.
WHO_RUNS = """
- hosts: "{{ play_hosts_pattern }}"
  gather_facts: false
  tasks:
    - name: First task
      ansible.builtin.debug:
        msg: "RAN-IN {{ inventory_hostname }} {{ lookup('ansible.builtin.pipe', 'echo $PPID') }}"
    - name: Second task
      ansible.builtin.debug:
        msg: "RAN-IN {{ inventory_hostname }} {{ lookup('ansible.builtin.pipe', 'echo $PPID') }}"
"""
TWO_LOCAL_HOSTS = """
all:
  hosts:
    one: {ansible_connection: local, ansible_python_interpreter: "{{ ansible_playbook_python }}"}
    two: {ansible_connection: local, ansible_python_interpreter: "{{ ansible_playbook_python }}"}
"""


def processes_that_ran(run_play, tmp_path: Path, strategy: str, pattern: str) -> tuple[int, list[int]]:
    """(the controller's pid, the pid that ran each task, in order)."""
    (tmp_path / "hosts.yml").write_text(TWO_LOCAL_HOSTS)
    controller, output = run_play(WHO_RUNS, strategy, "-i", str(tmp_path / "hosts.yml"),
                                  "-e", f"play_hosts_pattern={pattern}")
    return controller, [int(line.split()[-1].rstrip('"')) for line in output.splitlines() if "RAN-IN" in line]


def test_a_play_on_one_host_runs_its_tasks_in_the_controller(run_play, tmp_path):
    controller, ran_in = processes_that_ran(run_play, tmp_path, "mitogen_linear", "one")
    assert ran_in == [controller, controller]


@pytest.mark.parametrize(("strategy", "pattern", "tasks"), [
    ("mitogen_linear", "all", 4),  # hosts side by side: a worker each
    ("linear", "one", 2),
])
def test_otherwise_each_task_runs_in_a_worker_of_its_own(run_play, tmp_path, strategy, pattern, tasks):
    controller, ran_in = processes_that_ran(run_play, tmp_path, strategy, pattern)
    assert len(ran_in) == tasks
    assert controller not in ran_in
    assert len(set(ran_in)) == tasks


@pytest.fixture
def compiled_once(strategy_plugin, monkeypatch):
    """Templates compiled once, as in a play's run under the strategy (Ansible's compile again after the test)."""
    uncached = AnsibleEnvironment.compile
    monkeypatch.setattr(AnsibleEnvironment, "compile", strategy_plugin.templates_compiled_once(uncached))
    return uncached


def test_environments_share_the_code_of_a_template(compiled_once, tmp_path):
    one, other = AnsibleEnvironment(), AnsibleEnvironment(ansible_basedir=str(tmp_path))
    assert one.compile("{{ a | default('x') }}") is other.compile("{{ a | default('x') }}")
    assert one.compile("{{ a }}") is not one.compile("{{ b }}")
    assert Template.from_code(other, one.compile("{{ a ~ 'b' }}"), other.make_globals(None)).render(a="a") == "ab"


def test_the_code_depends_on_whether_backslashes_are_escaped(compiled_once):
    environment, source = AnsibleEnvironment(), "{{ 'a\\\\nb' }}"
    with _TemplateCompileContext(escape_backslashes=True):
        escaped = environment.compile(source)
        assert environment.compile(source) is escaped
        expected_escaped = compiled_once(AnsibleEnvironment(), source)
    plain = environment.compile(source)
    assert plain is not escaped

    def render(code):
        return Template.from_code(environment, code, environment.make_globals(None)).render()

    assert render(escaped) == render(expected_escaped)
    assert render(plain) == render(compiled_once(AnsibleEnvironment(), source))
    assert render(escaped) != render(plain)


def test_overlays_and_errors_are_compiled_each_time(compiled_once):
    overlay = AnsibleEnvironment().overlay(variable_start_string="[[", variable_end_string="]]")
    assert overlay.compile("[[ a ]]") is not overlay.compile("[[ a ]]")
    environment = AnsibleEnvironment()
    for _ in range(2):
        with pytest.raises(TemplateSyntaxError, match="unexpected end of template"):
            environment.compile("{{ a")


# A handler is one task run at each flush: the executor finalises a task in place (its arguments templated).
HANDLER_TWICE = """
- hosts: localhost
  gather_facts: false
  vars:
    counter: 1
  tasks:
    - name: Notify
      ansible.builtin.command: "true"
      changed_when: true
      notify: Report
    - name: Run the handler now
      ansible.builtin.meta: flush_handlers
    - name: Count on
      ansible.builtin.set_fact:
        counter: 2
    - name: Notify again
      ansible.builtin.command: "true"
      changed_when: true
      notify: Report
  handlers:
    - name: Report
      ansible.builtin.debug:
        msg: "HANDLER {{ counter }}"
"""


def test_a_task_run_twice_is_templated_each_time(run_play):
    _, output = run_play(HANDLER_TWICE, "mitogen_linear")
    assert [line.split()[-1] for line in output.splitlines() if "HANDLER" in line and "msg" in line] == ["1", "2"]


def dotted(release):
    return ".".join(map(str, release))


def beside(window):
    """The releases just below and just above a window."""
    (major, minor, patch), highest = window[0], window[1]
    below = (major, minor, patch - 1) if patch else (major, minor - 1, 99)
    return [below, (*highest[:2], highest[2] + 1)]


def plain_strategy_warning(plugin, monkeypatch):
    """The class the plugin defines is the plain linear strategy; the one warning it gives when made."""
    assert plugin.StrategyModule.__bases__ == (Linear,)
    warnings: list[str] = []
    monkeypatch.setattr(Display, "warning", lambda _display, message, *_args, **_kwargs: warnings.append(message))
    monkeypatch.setattr(Linear, "__init__", lambda *_args, **_kwargs: None)
    plugin.StrategyModule()
    assert len(warnings) == 1
    assert warnings[0].endswith(": plays run with the plain linear strategy")
    return warnings[0]


@pytest.mark.parametrize("side", [0, 1])
def test_with_an_ansible_core_it_was_not_verified_with_it_is_the_plain_strategy_and_names_both(
        strategy_plugin, load_strategy_plugin, monkeypatch, side):
    window = strategy_plugin.ANSIBLE_CORE_VERIFIED
    release = beside(window)[side]
    monkeypatch.setattr(ansible.release, "__version__", dotted(release))
    assert plain_strategy_warning(load_strategy_plugin(), monkeypatch).startswith(
        f"ansible-core {dotted(release)} is not a release this strategy was verified with "
        f"({strategy_plugin.shown(window)}): ")


@pytest.mark.parametrize("side", [0, 1])
def test_with_a_mitogen_it_was_not_verified_with_it_is_the_plain_strategy_and_names_both(
        strategy_plugin, load_strategy_plugin, monkeypatch, side):
    window = strategy_plugin.MITOGEN_VERIFIED
    release = beside(window)[side]
    monkeypatch.setattr(mitogen, "__version__", release)
    assert plain_strategy_warning(load_strategy_plugin(), monkeypatch).startswith(
        f"Mitogen {dotted(release)} is not a release this strategy was verified with "
        f"({strategy_plugin.shown(window)}): ")


def patched_now(plugin):
    """What each attribute the strategy patches (PATCHED) is at this moment."""
    found = []
    for module, attribute in plugin.PATCHED:
        owner = importlib.import_module(module)
        for name in attribute.split("."):
            owner = getattr(owner, name)
        found.append(owner)
    return found


@pytest.mark.parametrize("ends", ["returns", "raises"])
def test_a_play_s_run_patches_for_its_duration_only(strategy_plugin, monkeypatch, ends):
    during = []

    def mitogen_run(_strategy, _iterator, _play_context):
        during.extend(patched_now(strategy_plugin))
        if ends == "raises":
            raise KeyboardInterrupt
        return 0

    monkeypatch.setattr(ansible_mitogen.strategy.StrategyMixin, "run", mitogen_run)
    # Listing collections needs Ansible's collection finder, which only a playbook's run installs.
    monkeypatch.setattr(ansible.collections.list, "list_collection_dirs", lambda *_args, **_kwargs: iter([]))
    originals = patched_now(strategy_plugin)
    strategy = strategy_plugin.StrategyModule.__new__(strategy_plugin.StrategyModule)  # run() needs no more here
    with pytest.raises(KeyboardInterrupt) if ends == "raises" else nullcontext():
        assert strategy.run("iterator", "play context") == 0
    assert len(during) == len(originals) == 2
    assert [now is not before for now, before in zip(during, originals)] == [True, True]
    assert [now is before for now, before in zip(patched_now(strategy_plugin), originals)] == [True, True]


# Reports, from the controller, whether what the strategy patches is Ansible's own: after each task of each
# play, and once all plays have run.
PATCH_WATCH = """
import ansible.collections.list
from ansible._internal._templating._jinja_bits import AnsibleEnvironment
from ansible.plugins.callback import CallbackBase


def now():
    return [ansible.collections.list.list_collection_dirs, AnsibleEnvironment.compile]


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "patch_watch"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.own = now()  # callbacks load before the strategy

    def report(self, when):
        self._display.display(f"PATCHES-OWN {when} {[a is b for a, b in zip(now(), self.own)]}")

    def v2_runner_on_ok(self, result):
        self.report(result._task.get_name())

    def v2_playbook_on_stats(self, stats):
        self.report("after")
"""
TWO_PLAYS = """
- hosts: localhost
  gather_facts: false
  tasks:
    - name: first
      ansible.builtin.debug:
        msg: "{{ 'one' | upper }}"
- hosts: localhost
  gather_facts: false
  tasks:
    - name: second
      ansible.builtin.debug:
        msg: "{{ 'two' | upper }}"
"""


@pytest.mark.parametrize(("strategy", "during"), [("mitogen_linear", "[False, False]"), ("linear", "[True, True]")])
def test_after_the_plays_what_the_strategy_patched_is_ansible_s_own_again(run_play, tmp_path, strategy, during):
    (tmp_path / "callbacks").mkdir()
    (tmp_path / "callbacks" / "patch_watch.py").write_text(PATCH_WATCH)
    _, output = run_play(TWO_PLAYS, strategy, environ={**os.environ, "ANSIBLE_CALLBACKS_ENABLED": "patch_watch",
                                                       "ANSIBLE_CALLBACK_PLUGINS": str(tmp_path / "callbacks")})
    assert [line for line in output.splitlines() if line.startswith("PATCHES-OWN")] == [
        f"PATCHES-OWN first {during}", f"PATCHES-OWN second {during}", "PATCHES-OWN after [True, True]"]
