"""The controller's plays run under Mitogen by default, ANSIBLE_STRATEGY=linear switches back, and the node
playbook (ansible-pull on workers, which have no Mitogen) keeps the plain linear strategy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import ansible_mitogen.strategy
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
    """Templates compiled once, as in a run under the strategy (undone after the test)."""
    monkeypatch.setattr(AnsibleEnvironment, "compile", AnsibleEnvironment.compile)
    uncached = AnsibleEnvironment.compile
    strategy_plugin.compile_each_template_once()
    once = AnsibleEnvironment.compile
    strategy_plugin.compile_each_template_once()
    assert AnsibleEnvironment.compile is once is not uncached  # a second call wraps nothing again
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


def test_without_mitogen_it_is_the_plain_strategy_and_says_why(monkeypatch, request):
    monkeypatch.setitem(sys.modules, "ansible_mitogen.plugins.strategy.mitogen_linear", None)  # import fails
    plugin = request.getfixturevalue("strategy_plugin")  # loaded only now, without Mitogen
    assert plugin.StrategyModule.__bases__ == (Linear,)
    warnings: list[str] = []
    monkeypatch.setattr(Display, "warning", lambda _display, message, *_args, **_kwargs: warnings.append(message))
    monkeypatch.setattr(Linear, "__init__", lambda *_args, **_kwargs: None)
    plugin.StrategyModule()
    assert len(warnings) == 1
    assert "ansible_mitogen" in warnings[0]
    assert warnings[0].endswith("(pip install -r requirements.txt): plays run with the plain linear strategy")
