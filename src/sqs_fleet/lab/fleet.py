"""A local stand-in for the AWS side of the fleet: an emulator and a git daemon on the host end of the test
nodes' network, serving this repository's HEAD, and booted nodes that run the launch template's user-data.

Used by the boot tests, the boot benchmark and the local scaling loop (NodeWorkers: one booted node per
instance of the group). Needs root (see sqs_fleet.lab.node).
"""

from __future__ import annotations

import base64
import shutil
import subprocess  # nosec B404 - runs git with fixed arguments
import threading
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from sqs_fleet import REPO, aws
from sqs_fleet.lab.emulator import Emulator, free_port, start_emulator
from sqs_fleet.lab.node import HOST_ADDRESS, boot, destroy, exec_in, image, network_up


class Lab:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.nodes: list[str] = []
        self.daemon: subprocess.Popen[bytes] | None = None
        self.emulator: Emulator | None = None

    def __enter__(self) -> Lab:
        network_up()
        git = self.workdir / "git"
        shutil.rmtree(git, ignore_errors=True)  # a lab serves this run's HEAD, never a previous run's
        subprocess.run(["git", "clone", "-q", "--bare", str(REPO), str(git / "sqs-fleet.git")],  # noqa: S603, S607  # nosec
                       check=True)
        self.commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True,  # noqa: S603, S607  # nosec
                                     text=True, check=True).stdout.strip()
        port = free_port()
        self.daemon = subprocess.Popen(  # noqa: S603  # nosec B603 B607
            ["git", "daemon", "--reuseaddr", "--export-all", f"--base-path={git}", f"--listen={HOST_ADDRESS}",  # noqa: S607
             f"--port={port}", str(git)])
        self.repo_url = f"git://{HOST_ADDRESS}:{port}/sqs-fleet.git"
        try:
            self.emulator = start_emulator(free_port(), self.workdir / "moto.log", host=HOST_ADDRESS)
        except BaseException:
            self.__exit__(None, None, None)  # no git daemon left serving when the lab does not start
            raise
        # What an instance role gives an EC2 node; here the emulator's address and placeholder credentials.
        self.aws_env = self.workdir / "aws.env"
        self.aws_env.write_text(f"AWS_ENDPOINT_URL={self.emulator.url}\n"
                                "AWS_ACCESS_KEY_ID=testing\nAWS_SECRET_ACCESS_KEY=testing\n")
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        for name in list(self.nodes):
            self.remove_worker(name)
        if self.daemon:
            self.daemon.terminate()
            self.daemon.wait(10)
        if self.emulator:
            self.emulator.stop()

    def environment(self) -> dict[str, str]:
        """What a client on the host needs to talk to the lab's emulator."""
        if self.emulator is None:
            raise RuntimeError("the lab is not running: use it as `with Lab(...) as lab`")
        return self.emulator.environment()

    def client(self, service: str) -> Any:
        return aws.client(service, self.environment())

    def site_variables(self, **extra: Any) -> dict[str, Any]:
        """Extra variables for site.yml so that workers pull this commit from the lab's git daemon."""
        return {"fleet_repo_url": self.repo_url, "fleet_repo_version": self.commit, **extra}

    def launch_template_user_data(self, template: str) -> str:
        data = self.client("ec2").describe_launch_template_versions(LaunchTemplateName=template,
                                                                    Versions=["$Latest"])
        return base64.b64decode(data["LaunchTemplateVersions"][0]["LaunchTemplateData"]["UserData"]).decode()

    def boot_worker(self, name: str, user_data: str) -> dict[str, Any]:
        self.nodes.append(name)
        return boot(name, user_data, [(str(self.aws_env), "/etc/sqs-fleet/aws.env")])

    def remove_worker(self, name: str) -> None:
        destroy(name)
        if name in self.nodes:
            self.nodes.remove(name)


class NodeWorkers:
    """One booted node per instance of the group, named after the instance: it runs the launch template's
    user-data (cloud-init, ansible-pull, the consumer role) as an EC2 instance would. Boots and terminations
    run in the background, as on EC2: an instance counts as in service once its consumer is active. A
    terminated node's consumer is stopped as the shutdown stops it (SIGTERM: drain), its logs are kept in
    `logs`, then the node is removed."""

    def __init__(self, lab: Lab, user_data: str, logs: Path) -> None:
        self.lab, self.user_data, self.logs = lab, user_data, logs
        self.booting: dict[str, threading.Thread] = {}
        self.active: set[str] = set()
        self.stopping: list[threading.Thread] = []
        self.failed: dict[str, str] = {}  # instance -> why its node did not boot
        self.failure_told: set[str] = set()
        logs.mkdir(parents=True, exist_ok=True)
        image()  # built once here, not by parallel boots

    def _boot(self, name: str) -> None:
        try:
            self.lab.boot_worker(name, self.user_data)
        except (RuntimeError, subprocess.CalledProcessError) as error:
            self.failed[name] = str(error)

    def _terminate(self, name: str) -> None:
        try:
            exec_in(name, ["systemctl", "stop", "sqs-consumer"])
            for source, kept in (("/var/log/sqs-consumer/consumer.log", f"{name}.log"),
                                 ("/var/log/sqs-fleet-bootstrap.log", f"{name}.bootstrap.txt")):
                (self.logs / kept).write_text(exec_in(name, ["cat", source]).stdout)
        except (KeyError, FileNotFoundError):  # the node never finished booting: nothing to drain or keep
            pass
        finally:
            self.lab.remove_worker(name)

    def follow(self, instances: Sequence[str]) -> list[str]:
        events = []
        for name in [n for n in instances if n not in self.booting]:
            self.booting[name] = threading.Thread(target=self._boot, args=(name,), name=f"boot-{name}")
            self.booting[name].start()
            events.append(f"node {name} booting")
        for name in [n for n in self.booting if n not in instances]:
            self.booting.pop(name).join()
            self.active.discard(name)
            self.stopping.append(threading.Thread(target=self._terminate, args=(name,), name=f"stop-{name}"))
            self.stopping[-1].start()
            events.append(f"node {name} terminating (consumer drains on SIGTERM)")
        for name, thread in self.booting.items():
            if name in self.active:
                continue
            if name in self.failed and not thread.is_alive():
                if name not in self.failure_told:
                    self.failure_told.add(name)
                    events.append(f"node {name} failed to boot: {self.failed[name]}")
            elif self.consumer_active(name):
                self.active.add(name)
                events.append(f"node {name} in service (consumer active)")
        return events

    @staticmethod
    def consumer_active(name: str) -> bool:
        """Whether the node's consumer runs, asked while the node may still be booting: the consumer starts
        during ansible-pull, before the node's boot has finished."""
        try:
            return exec_in(name, ["systemctl", "is-active", "sqs-consumer"]).stdout.strip() == "active"
        except (KeyError, FileNotFoundError):  # not started far enough to be entered yet
            return False

    def in_service(self) -> set[str]:
        return set(self.active)

    def stop(self) -> None:
        self.follow([])
        for thread in self.stopping:
            thread.join()
