"""Loaded by Python at start-up in the controller's module runner (Mitogen's one interpreter per host, which
plugins/strategy/mitogen_linear.py starts with this folder on PYTHONPATH).

Every amazon.aws task makes a new boto3 session, and each session's data loader reads botocore's data again: it
lists the service folders (thousands of stat calls), parses the endpoints (1.2 MB of JSON) and the service's
model, and merges the model's extras, 0.1-0.3 s per task on two cores, most of a no-change task's time. A
loader keeps all of this in its own cache, which botocore treats as read-only (the clients of one session share
it). In this long-lived interpreter the loaders that search the same paths with the same extras share one
cache, so each piece is read once per run. Nothing is imported here: the cache is shared only once a task
imports botocore. The interpreter's own sitecustomize, if it has one, still runs.

Its boundary with botocore (docs/patched-dependencies.md): the one private name it uses is listed in
PRIVATE_NAMES, and the cache is shared only with a botocore of BOTOCORE_VERIFIED, the releases it was verified
with. With any other, each loader keeps its own cache, as without this module, and a note names the release and
the window: a warning of the task that first imports botocore in the play's output, and a line on the
interpreter's standard error where it has one. The patch lives as long as the interpreter: for the controller's
module runner, one run.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import os
import re
import sys
from types import ModuleType
from typing import Any

_HERE = os.path.dirname(os.path.abspath(__file__))
_LOADERS = "botocore.loaders"

# The botocore releases this module was run and tested with, lowest and highest, both included.
BOTOCORE_VERIFIED = ((1, 44, 5), (1, 44, 5))

# Every private name of botocore used below; tests/unit/test_patched_dependencies.py fails when the code uses
# one that is not listed here.
PRIVATE_NAMES = {
    "_cache": "botocore.loaders.Loader._cache: what a loader has read, replaced for each loader it makes",
}
# What is replaced, for the interpreter's life: (module, attribute).
PATCHED = (("botocore.loaders", "Loader.__init__"),)


# (search paths, extras types) -> what the loaders configured so have read
_READ_BY_CONFIGURATION: dict[tuple[tuple[str, ...], tuple[str, ...]], dict[Any, Any]] = {}


class _SharedCache:
    """A loader's cache, looked up by the loader's configuration at each use: boto3 adds its own data folder to
    a session's search paths after the loader is made."""

    def __init__(self, loader: Any) -> None:
        self.loader = loader

    def read(self) -> dict[Any, Any]:
        configuration = (tuple(self.loader.search_paths), tuple(self.loader.extras_types))
        return _READ_BY_CONFIGURATION.setdefault(configuration, {})

    def __contains__(self, key: Any) -> bool:
        return key in self.read()

    def __getitem__(self, key: Any) -> Any:
        return self.read()[key]

    def __setitem__(self, key: Any, value: Any) -> None:
        self.read()[key] = value


def release(version: str) -> tuple[int, ...]:
    """(1, 44, 5) from '1.44.5'; () if it is not a release."""
    found = re.match(r"(\d+)\.(\d+)\.(\d+)", version)
    return tuple(int(part) for part in found.groups()) if found else ()


def verified(botocore: ModuleType | None) -> bool:
    """Whether the botocore being loaded is a release of BOTOCORE_VERIFIED; a note if not."""
    version = str(getattr(botocore, "__version__", "unknown"))
    if BOTOCORE_VERIFIED[0] <= release(version) <= BOTOCORE_VERIFIED[1]:
        return True
    lowest, highest = (".".join(map(str, end)) for end in BOTOCORE_VERIFIED)
    window = lowest if lowest == highest else f"{lowest} to {highest}"
    note = (f"plugins/module_runner: botocore {version} is not a release its loader cache was verified with "
            f"({window}): each session reads botocore's data again")
    # In Mitogen's runner a module is running (it imports botocore): its result carries the note to the play's
    # output. Mitogen's interpreter has no sys.__stderr__; a module's run captures sys.stderr.
    module_warnings = sys.modules.get("ansible.module_utils.common.warnings")
    if module_warnings is not None:
        module_warnings.warn(note)
    if sys.__stderr__ is not None:
        sys.__stderr__.write(note + "\n")
    return False


def share_loaded_data(loaders: ModuleType) -> None:
    """Let botocore's data loaders of the same configuration share one cache in this interpreter."""
    if not verified(sys.modules.get("botocore")):
        return
    loader = loaders.Loader
    if getattr(loader.__init__, "shares_loaded_data", False):
        return
    make = loader.__init__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        make(self, *args, **kwargs)
        self._cache = _SharedCache(self)

    __init__.shares_loaded_data = True  # type: ignore[attr-defined]
    loader.__init__ = __init__


class _WhenBotocoreLoads(importlib.abc.MetaPathFinder):
    """Finds botocore.loaders like the next finder would, and shares its loaders' caches once the module has run."""

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
            share_loaded_data(module)

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def _run_the_interpreters_own() -> None:
    others = [entry for entry in sys.path if os.path.abspath(entry or ".") != _HERE]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", others)
    if spec is not None and spec.loader is not None:
        spec.loader.exec_module(importlib.util.module_from_spec(spec))


if _LOADERS in sys.modules:
    share_loaded_data(sys.modules[_LOADERS])
else:
    sys.meta_path.insert(0, _WhenBotocoreLoads())
_run_the_interpreters_own()
