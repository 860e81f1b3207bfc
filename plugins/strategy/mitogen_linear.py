"""The controller's default strategy (ansible.cfg): Ansible's linear strategy run through Mitogen.

Every AWS task is a module in a fresh Python that imports boto3 again, about a second each on two cores.
Mitogen keeps one interpreter per host for the whole run.
A play on one host (every controller play here: localhost) gains nothing from Ansible's worker forked per
task, which loses what it loaded and compiled: its tasks run in this process, one after the other, as the
linear strategy runs them anyway. Mitogen is installed from requirements.txt, so ansible.cfg need not know
where the venv is. ANSIBLE_STRATEGY=linear chooses the plain one.

Its boundary with what it builds on (docs/patched-dependencies.md): it uses ansible-core's private names, all
listed in PRIVATE_NAMES, and code copied from ansible-core (COPIED), so it runs only with the ansible-core and
Mitogen releases it was verified with (ANSIBLE_CORE_VERIFIED, MITOGEN_VERIFIED). With any other, or without
Mitogen, it is the plain linear strategy, with a warning naming the release and the window. What it replaces
process-wide (PATCHED) is replaced for the duration of a play's run() and restored after it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import ansible.release
from ansible.plugins.strategy.linear import StrategyModule as _Linear
from ansible.utils.display import Display

DOCUMENTATION = """
name: mitogen_linear
short_description: Ansible's linear strategy, run by Mitogen where it is installed
description:
  - One Python interpreter per host for the whole run instead of one per task.
  - That interpreter reads botocore's data once per run (plugins/module_runner/sitecustomize.py).
  - A play on one host runs its tasks in the controller's process instead of a worker forked for each, and
    compiles each template once per run.
  - The plain linear strategy, with a warning, where Mitogen is not installed or where ansible-core or Mitogen
    is a release it was not verified with.
"""

MODULE_RUNNER = Path(__file__).resolve().parent.parent / "module_runner"

# The releases this module was run and tested with, lowest and highest, both included. Widening a window means
# reading again, in the new release, what PRIVATE_NAMES and COPIED name (docs/patched-dependencies.md).
ANSIBLE_CORE_VERIFIED = ((2, 19, 14), (2, 19, 14))
MITOGEN_VERIFIED = ((0, 3, 54), (0, 3, 54))

# Every private name of ansible-core used below; tests/unit/test_patched_dependencies.py fails when the code
# uses one that is not listed here.
PRIVATE_NAMES = {
    "_internal": "ansible._internal, ansible-core's private package",
    "_task": "ansible._internal._task: TaskContext, entered around a task's execution as the worker does",
    "_templating": "ansible._internal._templating, the package of the template engine",
    "_jinja_bits": "ansible._internal._templating._jinja_bits: AnsibleEnvironment, whose compile a run replaces",
    "_TemplateCompileContext": "_jinja_bits._TemplateCompileContext: whether a template's backslashes are escaped",
    "_debuggable_template_source": "AnsibleEnvironment._debuggable_template_source: templates kept for a debugger",
    "_RawTaskResult": "ansible.executor.task_result._RawTaskResult: the result a worker puts on the results queue",
    "_queue_task": "StrategyBase._queue_task: overridden to run a one-host play's task in this process",
    "_hosts_cache": "StrategyBase._hosts_cache: the play's hosts",
    "_queued_task_cache": "StrategyBase._queued_task_cache: the tasks in flight, read when their results arrive",
    "_tqm": "StrategyBase._tqm: the task queue manager, which sends the callbacks",
    "_pending_results": "StrategyBase._pending_results: how many results the strategy waits for",
    "_final_q": "StrategyBase._final_q: the results queue",
    "_loader": "StrategyBase._loader: the data loader a task executor is given",
    "_variable_manager": "StrategyBase._variable_manager: the variable manager a task executor is given",
    "_uuid": "Task._uuid: a task's key in _queued_task_cache",
}

# ansible-core code that run_task_here and _queue_task repeat: the sha256 of each one's source (first 16 hex
# digits), in the releases of ANSIBLE_CORE_VERIFIED.
COPIED = {
    "ansible.executor.process.worker.WorkerProcess.run": "8be5499df25f08cd",
    "ansible.executor.process.worker.WorkerProcess._run": "bce3e6c2f1658325",
    "ansible.plugins.strategy.StrategyBase._queue_task": "aa2ec898fdd51aaa",
}

# (module, attribute) that a play's run() replaces and restores.
PATCHED = (
    ("ansible.collections.list", "list_collection_dirs"),
    ("ansible._internal._templating._jinja_bits", "AnsibleEnvironment.compile"),
)


def release(version: str) -> tuple[int, ...]:
    """(2, 19, 14) from '2.19.14' (a pre-release, '2.19.14rc1', counts as its release); () if it is not one."""
    found = re.match(r"(\d+)\.(\d+)\.(\d+)", version)
    return tuple(int(part) for part in found.groups()) if found else ()


def shown(window: tuple[tuple[int, ...], tuple[int, ...]]) -> str:
    lowest, highest = (".".join(map(str, end)) for end in window)
    return lowest if lowest == highest else f"{lowest} to {highest}"


def why_not_mitogen() -> str | None:
    """Why plays cannot run here as this module runs them, or None."""
    core = ansible.release.__version__
    if not ANSIBLE_CORE_VERIFIED[0] <= release(core) <= ANSIBLE_CORE_VERIFIED[1]:
        return f"ansible-core {core} is not a release this strategy was verified with ({shown(ANSIBLE_CORE_VERIFIED)})"
    try:
        import mitogen
    except ImportError as missing:
        return f"{missing} (pip install -r requirements.txt)"
    if not MITOGEN_VERIFIED[0] <= tuple(mitogen.__version__) <= MITOGEN_VERIFIED[1]:
        return (f"Mitogen {'.'.join(map(str, mitogen.__version__))} is not a release this strategy was verified with "
                f"({shown(MITOGEN_VERIFIED)})")
    return None


def start_module_runners_with(folder: Path) -> None:
    """Put `folder` first on the PYTHONPATH that the interpreters Mitogen starts from here inherit."""
    paths = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    if str(folder) not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([str(folder), *filter(None, paths)])


UNSUPPORTED = why_not_mitogen()
if UNSUPPORTED is None:
    try:
        import ansible.collections.list
        from ansible._internal import _task
        from ansible._internal._templating import _jinja_bits
        from ansible.executor.task_executor import TaskExecutor
        from ansible.executor.task_result import _RawTaskResult
        from ansible.plugins.loader import get_plugin_loader_namespace, lookup_loader
        from ansible_mitogen.plugins.strategy.mitogen_linear import StrategyModule as _MitogenLinear
        from jinja2.utils import LRUCache
    except ImportError as missing:
        UNSUPPORTED = f"{missing} (pip install -r requirements.txt)"

if UNSUPPORTED is None:
    # Kept from one play's run to the next: the installed collections and the templates' code do not change.
    INSTALLED_COLLECTIONS: list[Any] = []
    COMPILED_TEMPLATES = LRUCache(4096)

    class StrategyModule(_MitogenLinear):  # type: ignore[misc]
        def __init__(self, *args: object, **kwargs: object) -> None:
            # The inventories read the endpoint from the environment, and the play's environment is templated
            # for every task: the lookup is loaded once, before any worker forks.
            lookup_loader.get("ansible.builtin.env")
            start_module_runners_with(MODULE_RUNNER)
            super().__init__(*args, **kwargs)

        def run(self, iterator: Any, play_context: Any, *args: Any, **kwargs: Any) -> Any:
            # As Mitogen's own run() installs its wrappers: for the run, and removed whatever way it ends.
            with patched_for_the_run():
                return super().run(iterator, play_context, *args, **kwargs)

        def _queue_task(self, host: Any, task: Any, task_vars: dict[str, Any], play_context: Any) -> None:
            if len(self._hosts_cache) > 1:
                super()._queue_task(host, task, task_vars, play_context)  # a worker per host, side by side
                return
            self._queued_task_cache[(host.name, task._uuid)] = {
                "host": host, "task": task, "task_vars": task_vars, "play_context": play_context}
            self._tqm.send_callback("v2_runner_on_start", host, task)
            self.run_task_here(host, task, task_vars, play_context)
            self._pending_results += 1

        def run_task_here(self, host: Any, task: Any, task_vars: dict[str, Any], play_context: Any) -> None:
            """What a worker process does with a task (ansible.executor.process.worker), in this process: the
            task runs on its own copy, which the executor finalises in place, and its result goes to the same
            queue."""
            task = task.copy()
            with _task.TaskContext(task):
                result = TaskExecutor(host, task, task_vars, play_context, self._loader, get_plugin_loader_namespace(),
                                      self._final_q, self._variable_manager).run()
            try:
                self._final_q.send_task_result(_RawTaskResult(
                    host=host, task=task, return_data=result, task_fields=task.dump_attrs()))
            except Exception as ex:  # noqa: BLE001 - as the worker does: a result that cannot be sent ends the task
                self._final_q.send_task_result(_RawTaskResult(
                    host=host, task=task, task_fields={},
                    return_data={"failed": True, "msg": f"Task result omitted due to queue send failure: {ex}"}))

    @contextmanager
    def patched_for_the_run() -> Iterator[None]:
        """PATCHED, replaced for a play's run (and for the workers forked during it) and restored after it."""
        listing, environment = ansible.collections.list, _jinja_bits.AnsibleEnvironment
        originals = listing.list_collection_dirs, environment.compile
        listing.list_collection_dirs = collections_listed_once(originals[0])
        environment.compile = templates_compiled_once(originals[1])
        try:
            yield
        finally:
            listing.list_collection_dirs, environment.compile = originals

    def collections_listed_once(list_all: Any) -> Any:
        """Mitogen's planner lists the installed collections before each collection module it runs (with every
        collection's metadata parsed, about 0.03 s for the ansible package's 90). They do not change during a
        run: they are listed once, before any worker forks."""
        if not INSTALLED_COLLECTIONS:
            INSTALLED_COLLECTIONS.extend(list_all())

        def list_collection_dirs(*args: object, **kwargs: object) -> object:
            return iter(INSTALLED_COLLECTIONS) if not args and not kwargs else list_all(*args, **kwargs)

        return list_collection_dirs

    def templates_compiled_once(compile_source: Any) -> Any:
        """Ansible compiles a template every time it renders one (Jinja's parse, code generation and Python's
        compile), and a task renders its play's environment, its module defaults and the variables they name
        again: over 2,000 compilations of about 450 templates in a rerun of site.yml. The code depends only on
        the source and the environment's settings, so the environments made with Ansible's settings (not an
        overlay from a template's own header) share it, as Jinja's bytecode cache shares it between
        environments; errors are not kept, so each is raised where it occurs."""

        def compile(self: Any, source: Any, name: Any = None, filename: Any = None, raw: bool = False,
                    defer_init: bool = False) -> Any:
            if (not isinstance(source, str) or name or filename or raw or defer_init or self.overlayed
                    or self._debuggable_template_source):
                return compile_source(self, source, name, filename, raw, defer_init)
            context = _jinja_bits._TemplateCompileContext.current(optional=True)
            key = (str(source), bool(context and context.escape_backslashes))
            code = COMPILED_TEMPLATES.get(key)
            if code is None:
                code = COMPILED_TEMPLATES[key] = compile_source(self, source)
            return code

        return compile
else:
    class StrategyModule(_Linear):  # type: ignore[no-redef,misc]
        def __init__(self, *args: object, **kwargs: object) -> None:
            Display().warning(f"{UNSUPPORTED}: plays run with the plain linear strategy")
            super().__init__(*args, **kwargs)

__all__ = ["StrategyModule"]
