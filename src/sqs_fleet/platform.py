"""The workers' platform as data: Amazon Linux 2023's facts (platforms/amazon-linux-2023.yml) and the worker
runtime's pinned libraries (roles/worker_runtime/files/requirements.txt), and the check that every pin installs
on the platform's worker Python.

The check reads what pip itself decides from the index (Requires-Python, wheel tags for that Python), then each
wheel's own METADATA: an index can list a release whose METADATA refuses the interpreter, which only an install
(or this second reading) catches.
"""

from __future__ import annotations

import hashlib
import subprocess  # nosec B404 - runs pip with a fixed argv
import sys
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from email.parser import HeaderParser
from itertools import chain
from pathlib import Path
from typing import Any

import yaml
from packaging import tags
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import Version

from sqs_fleet import REPO, RUN_DIR

PLATFORM_FILE = REPO / "platforms" / "amazon-linux-2023.yml"
RUNTIME_REQUIREMENTS = REPO / "roles" / "worker_runtime" / "files" / "requirements.txt"
# The workers' machines: x86_64 instance types (the launch template's architecture).
WHEEL_PLATFORMS = ("manylinux2014_x86_64", "manylinux_2_17_x86_64", "manylinux_2_28_x86_64")


def platform_facts(path: Path = PLATFORM_FILE) -> dict[str, Any]:
    facts: dict[str, Any] = yaml.safe_load(path.read_text())
    return facts


def pins(path: Path = RUNTIME_REQUIREMENTS) -> dict[str, str]:
    """Every `name==version` of a requirements file, by canonical name; anything but an exact pin is an error."""
    return {name: version for name, (version, _extras) in pinned_requirements(path).items()}


def pinned_requirements(path: Path = RUNTIME_REQUIREMENTS) -> dict[str, tuple[str, frozenset[str]]]:
    """{name: (version, extras asked for)} of a requirements file of exact pins (`celery[redis]==5.7.0`)."""
    pinned: dict[str, tuple[str, frozenset[str]]] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        requirement = Requirement(line)
        exact = [spec for spec in requirement.specifier if spec.operator == "=="]
        if len(exact) != 1 or len(requirement.specifier) != 1:
            raise ValueError(f"{path.name}:{number}: {line!r} is not pinned to one version (name==version)")
        pinned[canonicalize_name(requirement.name)] = (exact[0].version, frozenset(requirement.extras))
    return pinned


@dataclass(frozen=True)
class Wheel:
    name: str
    version: str
    requires_python: str
    requires: tuple[str, ...]
    tags: frozenset[str]


def read_wheel(path: Path) -> Wheel:
    name, version, _build, tags = parse_wheel_filename(path.name)
    with zipfile.ZipFile(path) as archive:
        metadata_name = next(item for item in archive.namelist() if item.endswith(".dist-info/METADATA"))
        metadata = HeaderParser().parsestr(archive.read(metadata_name).decode())
    return Wheel(str(name), str(version), metadata.get("Requires-Python") or "",
                 tuple(metadata.get_all("Requires-Dist") or ()), frozenset(str(tag) for tag in tags))


def marker_environment(python_version: str) -> dict[str, str]:
    """The environment markers of CPython `python_version` on x86_64 Linux (the workers)."""
    minor = ".".join(python_version.split(".")[:2])
    return {"python_version": minor, "python_full_version": python_version, "implementation_name": "cpython",
            "platform_python_implementation": "CPython", "sys_platform": "linux", "platform_system": "Linux",
            "platform_machine": "x86_64", "os_name": "posix", "extra": ""}


def supported_tags(python_version: str) -> frozenset[str]:
    """The wheel tags CPython `python_version` installs on x86_64 Linux, as pip ranks them."""
    major_minor = (int(python_version.split(".")[0]), int(python_version.split(".")[1]))
    interpreter = f"cp{major_minor[0]}{major_minor[1]}"
    return frozenset(str(tag) for tag in chain(tags.cpython_tags(major_minor, platforms=WHEEL_PLATFORMS),
                                               tags.compatible_tags(major_minor, interpreter, WHEEL_PLATFORMS)))


def problems(wheels: Iterable[Wheel], pinned: Mapping[str, str], python_version: str,
             extras: Mapping[str, Iterable[str]] | None = None) -> list[str]:
    """What stops the pinned set installing on CPython `python_version`: a wheel whose Requires-Python refuses it,
    a wheel built for another Python, a dependency (for that Python, and for the extras asked for, followed
    through the dependencies: celery[redis] asks kombu[redis], which needs packaging) the pins leave out or pin
    outside its range, a pin with no wheel."""
    found: list[str] = []
    version = Version(python_version)
    supported = supported_tags(python_version)
    by_name: dict[str, Wheel] = {canonicalize_name(wheel.name): wheel for wheel in wheels}
    wanted_extras: dict[str, set[str]] = {name: set((extras or {}).get(name, ())) for name in pinned}
    for name, pin in sorted(pinned.items()):
        wheel = by_name.get(name)
        if wheel is None:
            found.append(f"{name}=={pin}: no wheel")
            continue
        if wheel.requires_python and version not in SpecifierSet(wheel.requires_python):
            found.append(f"{name}=={pin} requires Python {wheel.requires_python}: not {python_version}")
        if not wheel.tags & supported:
            found.append(f"{name}=={pin}: no wheel for CPython {python_version} ({', '.join(sorted(wheel.tags))})")
    # The dependencies each pinned wheel needs on that Python with the extras asked of it, until no new extra.
    checked: set[tuple[str, str]] = set()
    queue = [(name, extra) for name in sorted(pinned) for extra in ("", *sorted(wanted_extras[name]))]
    while queue:
        name, extra = queue.pop(0)
        wheel = by_name.get(name)
        if (name, extra) in checked or wheel is None:
            continue
        checked.add((name, extra))
        environment = {**marker_environment(python_version), "extra": extra}
        for line in wheel.requires:
            requirement = Requirement(line)
            if requirement.marker is not None and not requirement.marker.evaluate(environment):
                continue
            if extra and requirement.marker is None:
                continue  # needed without the extra too: checked with ""
            dependency = canonicalize_name(requirement.name)
            if dependency not in pinned:
                found.append(f"{name}=={pinned[name]} needs {requirement.name}{requirement.specifier}: not pinned")
                continue
            if not requirement.specifier.contains(pinned[dependency], prereleases=True):
                found.append(f"{name}=={pinned[name]} needs {requirement.name}{requirement.specifier}: "
                             f"pinned {pinned[dependency]}")
            queue += [(dependency, wanted) for wanted in sorted(requirement.extras)]
    return sorted(set(found), key=found.index)


def download(requirements: Path, python_version: str, destination: Path) -> list[Path]:
    """The wheels pip picks for CPython `python_version` on the workers' platform (no sources, no dependencies
    beyond the file's own pins); pip fails naming a pin it cannot find for that Python."""
    minor = "".join(python_version.split(".")[:2])
    destination.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
               "--python-version", python_version, "--implementation", "cp", "--abi", f"cp{minor}",
               "--abi", "abi3", "--abi", "none", *[arg for tag in WHEEL_PLATFORMS for arg in ("--platform", tag)],
               "--dest", str(destination), "--requirement", str(requirements)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603  # nosec B603
    if result.returncode != 0:
        raise RuntimeError(f"pip found no installable wheels of {requirements.name} for Python {python_version}:\n"
                           + "\n".join(line for line in result.stderr.splitlines() if "is ignored" not in line))
    wanted = pins(requirements)
    return sorted(path for path in destination.glob("*.whl")
                  if wanted.get(canonicalize_name(parse_wheel_filename(path.name)[0])) ==
                  str(parse_wheel_filename(path.name)[1]))


def runtime_wheelhouse(python_version: str | None = None) -> Path:
    """The runtime's wheels for the platform's worker Python, downloaded once per set of pins (.run/wheels/...):
    what the lab's nodes install from in place of PyPI."""
    version = python_version or platform_facts()["worker_python"]["version"]
    key = f"{version}-{hashlib.sha256(RUNTIME_REQUIREMENTS.read_bytes()).hexdigest()[:12]}"
    house = RUN_DIR / "wheels" / key
    if not (house / ".complete").exists():
        download(RUNTIME_REQUIREMENTS, version, house)
        (house / ".complete").touch()
    return house
