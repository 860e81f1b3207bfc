"""Loaded by Python at start-up in the controller's module runner (Mitogen's one interpreter per host, which
plugins/strategy/mitogen_linear.py starts with this folder on PYTHONPATH).

Every amazon.aws task makes a new boto3 session, and each session parses botocore's data files again: the
endpoints (1.2 MB of JSON) and the service's model, 0.1-0.3 s per task on two cores, most of a no-change task's
time. In this long-lived interpreter each file is parsed once and shared by the sessions that follow, as the
clients of one session already share it (botocore treats the loaded data as read-only). Nothing is imported
here: the files are kept only once a task imports botocore. The interpreter's own sitecustomize, if it has one,
still runs.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
from types import ModuleType
from typing import Any

_HERE = os.path.dirname(os.path.abspath(__file__))
_LOADERS = "botocore.loaders"


def keep_parsed_files(loaders: ModuleType) -> None:
    """Parse each of botocore's data files once in this interpreter."""
    file_loader = loaders.JSONFileLoader
    if getattr(file_loader.load_file, "keeps_parsed_files", False):
        return
    parse = file_loader.load_file
    parsed: dict[str, Any] = {}

    def load_file(self: Any, file_path: str) -> Any:
        if file_path not in parsed:
            parsed[file_path] = parse(self, file_path)
        return parsed[file_path]

    load_file.keeps_parsed_files = True  # type: ignore[attr-defined]
    file_loader.load_file = load_file


class _WhenBotocoreLoads(importlib.abc.MetaPathFinder):
    """Finds botocore.loaders like the next finder would, and keeps its files once the module has run."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if name != _LOADERS:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        run_module = spec.loader.exec_module

        def exec_module(module: ModuleType) -> None:
            run_module(module)
            keep_parsed_files(module)

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def _run_the_interpreters_own() -> None:
    others = [entry for entry in sys.path if os.path.abspath(entry or ".") != _HERE]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", others)
    if spec is not None and spec.loader is not None:
        spec.loader.exec_module(importlib.util.module_from_spec(spec))


if _LOADERS in sys.modules:
    keep_parsed_files(sys.modules[_LOADERS])
else:
    sys.meta_path.insert(0, _WhenBotocoreLoads())
_run_the_interpreters_own()
