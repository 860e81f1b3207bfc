"""The controller's default strategy (ansible.cfg): Ansible's linear strategy run through Mitogen.

Every AWS task is a module in a fresh Python that imports boto3 again, about a second each on two cores.
Mitogen keeps one interpreter per host for the whole run, so the stack's plays take about half the time.
Mitogen is installed from requirements.txt, so ansible.cfg need not know where the venv is. Where it is not
installed, this is the plain linear strategy, with a warning. ANSIBLE_STRATEGY=linear chooses the plain one.
"""

from __future__ import annotations

import os
from pathlib import Path

DOCUMENTATION = """
name: mitogen_linear
short_description: Ansible's linear strategy, run by Mitogen where it is installed
description:
  - One Python interpreter per host for the whole run instead of one per task.
  - That interpreter reads botocore's data once per run (plugins/module_runner/sitecustomize.py).
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
    from ansible.plugins.loader import lookup_loader
    from ansible_mitogen.plugins.strategy.mitogen_linear import StrategyModule as _MitogenLinear

    class StrategyModule(_MitogenLinear):  # type: ignore[no-redef]
        def __init__(self, *args: object, **kwargs: object) -> None:
            # Each task runs in a worker forked from this process, which forgets what the worker loaded: what
            # every worker would load again is loaded here once, before the forks.
            list_installed_collections_once()
            # The inventories read the endpoint from the environment, and the play's environment is templated
            # for every task.
            lookup_loader.get("ansible.builtin.env")
            start_module_runners_with(MODULE_RUNNER)
            super().__init__(*args, **kwargs)

    def list_installed_collections_once() -> None:
        """Mitogen's planner lists the installed collections before each collection module it runs (with every
        collection's metadata parsed, about 0.03 s for the ansible package's 90). They do not change during a
        run: listed once here, the forks inherit the list."""
        list_all = ansible.collections.list.list_collection_dirs
        if getattr(list_all, "listed_once", False):
            return
        installed = list(list_all())

        def list_collection_dirs(*args: object, **kwargs: object) -> object:
            return iter(installed) if not args and not kwargs else list_all(*args, **kwargs)

        list_collection_dirs.listed_once = True  # type: ignore[attr-defined]
        ansible.collections.list.list_collection_dirs = list_collection_dirs  # type: ignore[assignment]
except ImportError:
    from ansible.plugins.strategy.linear import StrategyModule as _Linear
    from ansible.utils.display import Display

    class StrategyModule(_Linear):  # type: ignore[no-redef,misc]
        def __init__(self, *args: object, **kwargs: object) -> None:
            Display().warning("mitogen is not installed (pip install -r requirements.txt): "
                              "plays run with the plain linear strategy")
            super().__init__(*args, **kwargs)

__all__ = ["StrategyModule"]
