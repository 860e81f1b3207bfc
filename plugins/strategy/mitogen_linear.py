"""The controller's default strategy (ansible.cfg): Ansible's linear strategy run through Mitogen.

Every AWS task is a module in a fresh Python that imports boto3 again, about a second each on two cores.
Mitogen keeps one interpreter per host for the whole run, so the stack's plays take about half the time.
Mitogen is installed from requirements.txt, so ansible.cfg need not know where the venv is. Where it is not
installed, this is the plain linear strategy, with a warning. ANSIBLE_STRATEGY=linear chooses the plain one.
"""

from __future__ import annotations

DOCUMENTATION = """
name: mitogen_linear
short_description: Ansible's linear strategy, run by Mitogen where it is installed
description:
  - One Python interpreter per host for the whole run instead of one per task.
  - The plain linear strategy, with a warning, where Mitogen is not installed.
"""

try:
    from ansible_mitogen.plugins.strategy.mitogen_linear import StrategyModule
except ImportError:
    from ansible.plugins.strategy.linear import StrategyModule as _Linear
    from ansible.utils.display import Display

    class StrategyModule(_Linear):  # type: ignore[no-redef,misc]
        def __init__(self, *args: object, **kwargs: object) -> None:
            Display().warning("mitogen is not installed (pip install -r requirements.txt): "
                              "plays run with the plain linear strategy")
            super().__init__(*args, **kwargs)

__all__ = ["StrategyModule"]
