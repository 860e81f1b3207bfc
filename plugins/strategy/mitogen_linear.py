"""The controller's default strategy (ansible.cfg): Ansible's linear strategy run through Mitogen.

Every AWS task is a module in a fresh Python that imports boto3 again, about a second each on two cores.
Mitogen keeps one interpreter per host for the whole run.
A play on one host (every controller play here: localhost) gains nothing from Ansible's worker forked per
task, which loses what it loaded and compiled: its tasks run in this process, one after the other, as the
linear strategy runs them anyway. Mitogen is installed from requirements.txt, so ansible.cfg need not know
where the venv is. Where it is not installed, this is the plain linear strategy, with a warning.
ANSIBLE_STRATEGY=linear chooses the plain one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

DOCUMENTATION = """
name: mitogen_linear
short_description: Ansible's linear strategy, run by Mitogen where it is installed
description:
  - One Python interpreter per host for the whole run instead of one per task.
  - That interpreter reads botocore's data once per run (plugins/module_runner/sitecustomize.py).
  - A play on one host runs its tasks in the controller's process instead of a worker forked for each, and
    compiles each template once per run.
  - The plain linear strategy, with a warning, where Mitogen is not installed.
"""

MODULE_RUNNER = Path(__file__).resolve().parent.parent / "module_runner"


def start_module_runners_with(folder: Path) -> None:
    """Put `folder` first on the PYTHONPATH that the interpreters Mitogen starts from here inherit."""
    paths = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    if str(folder) not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([str(folder), *filter(None, paths)])


try:
    import ansible.collections.list
    from ansible._internal import _task
    from ansible._internal._templating import _jinja_bits
    from ansible.executor.task_executor import TaskExecutor
    from ansible.executor.task_result import _RawTaskResult
    from ansible.plugins.loader import get_plugin_loader_namespace, lookup_loader
    from ansible_mitogen.plugins.strategy.mitogen_linear import StrategyModule as _MitogenLinear
    from jinja2.utils import LRUCache

    class StrategyModule(_MitogenLinear):  # type: ignore[no-redef]
        def __init__(self, *args: object, **kwargs: object) -> None:
            # What every task would load again is loaded here once (and inherited by the workers of a play on
            # several hosts, forked from this process).
            list_installed_collections_once()
            # The inventories read the endpoint from the environment, and the play's environment is templated
            # for every task.
            lookup_loader.get("ansible.builtin.env")
            start_module_runners_with(MODULE_RUNNER)
            compile_each_template_once()
            super().__init__(*args, **kwargs)

        def _queue_task(self, host: Any, task: Any, task_vars: dict[str, Any], play_context: Any) -> None:
            if len(self._hosts_cache) > 1:
                super()._queue_task(host, task, task_vars, play_context)  # a worker per host, side by side
                return
            self._queued_task_cache[(host.name, task._uuid)] = {
                "host": host, "task": task, "task_vars": task_vars, "play_context": play_context}
            self._tqm.send_callback("v2_runner_on_start", host, task)
            self._run_here(host, task, task_vars, play_context)
            self._pending_results += 1

        def _run_here(self, host: Any, task: Any, task_vars: dict[str, Any], play_context: Any) -> None:
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

    def list_installed_collections_once() -> None:
        """Mitogen's planner lists the installed collections before each collection module it runs (with every
        collection's metadata parsed, about 0.03 s for the ansible package's 90). They do not change during a
        run: they are listed once."""
        list_all = ansible.collections.list.list_collection_dirs
        if getattr(list_all, "listed_once", False):
            return
        installed = list(list_all())

        def list_collection_dirs(*args: object, **kwargs: object) -> object:
            return iter(installed) if not args and not kwargs else list_all(*args, **kwargs)

        list_collection_dirs.listed_once = True  # type: ignore[attr-defined]
        ansible.collections.list.list_collection_dirs = list_collection_dirs  # type: ignore[assignment]

    def compile_each_template_once(capacity: int = 4096) -> None:
        """Ansible compiles a template every time it renders one (Jinja's parse, code generation and Python's
        compile), and a task renders its play's environment, its module defaults and the variables they name
        again: over 2,000 compilations of about 450 templates in a rerun of site.yml. The code depends only on
        the source and the environment's settings, so the environments made with Ansible's settings (not an
        overlay from a template's own header) share it, as Jinja's bytecode cache shares it between
        environments; errors are not kept, so each is raised where it occurs."""
        environment = _jinja_bits.AnsibleEnvironment
        compile_source = environment.compile
        if getattr(compile_source, "compiles_once", False):
            return
        compiled = LRUCache(capacity)

        def compile(self: Any, source: Any, name: Any = None, filename: Any = None, raw: bool = False,
                    defer_init: bool = False) -> Any:
            if (not isinstance(source, str) or name or filename or raw or defer_init or self.overlayed
                    or self._debuggable_template_source):
                return compile_source(self, source, name, filename, raw, defer_init)
            context = _jinja_bits._TemplateCompileContext.current(optional=True)
            key = (str(source), bool(context and context.escape_backslashes))
            code = compiled.get(key)
            if code is None:
                code = compiled[key] = compile_source(self, source)
            return code

        compile.compiles_once = True  # type: ignore[attr-defined]
        environment.compile = compile  # type: ignore[method-assign]
except ImportError as missing:
    # Mitogen, or an ansible-core other than the one requirements.txt pins (this uses its task executor).
    from ansible.plugins.strategy.linear import StrategyModule as _Linear
    from ansible.utils.display import Display

    _MISSING = str(missing)  # the except clause unbinds its own name

    class StrategyModule(_Linear):  # type: ignore[no-redef,misc]
        def __init__(self, *args: object, **kwargs: object) -> None:
            Display().warning(f"{_MISSING} (pip install -r requirements.txt): "
                              "plays run with the plain linear strategy")
            super().__init__(*args, **kwargs)

__all__ = ["StrategyModule"]
