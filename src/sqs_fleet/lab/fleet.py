"""A local stand-in for the AWS side of the fleet: an emulator and a git daemon on the host end of the test
nodes' network, serving this repository's HEAD, and booted nodes that run the launch template's user-data.
What the emulator lacks, the lab serves on the same address (emulation, faithful to AWS's documents): an
instance metadata service (IMDSv2) that tells each node apart by its bridge address, and an Auto Scaling front
that answers CompleteLifecycleAction and RecordLifecycleActionHeartbeat from the lab's lifecycle actions and
passes every other call to the emulator. Nodes reach them through AWS_EC2_METADATA_SERVICE_ENDPOINT and
AWS_ENDPOINT_URL in /etc/sqs-fleet/aws.env, never through a link-local address.

Used by the boot tests, the boot benchmark and the local scaling loop (NodeWorkers: one booted node per
instance of the group). Needs root (see sqs_fleet.lab.node).
"""

from __future__ import annotations

import base64
import datetime
import json
import shutil
import subprocess  # nosec B404 - runs git and the producer with fixed arguments
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from sqs_fleet import REPO, aws
from sqs_fleet.lab.emulator import Emulator, free_port, start_emulator
from sqs_fleet.lab.lifecycle import AutoScalingFront, LifecycleActions
from sqs_fleet.lab.metadata import Instance, MetadataService
from sqs_fleet.lab.node import HOST_ADDRESS, boot, destroy, exec_in, network_up
from sqs_fleet.lab.node_image import baked_image, image


class Lab:
    """`actions`: the lifecycle actions the nodes complete through the lab's front (the scaling loop passes its
    own, on its scaled clock); a node's name is its instance id in the metadata service."""

    def __init__(self, workdir: Path, actions: LifecycleActions | None = None) -> None:
        self.workdir = workdir
        self.nodes: list[str] = []
        self.daemon: subprocess.Popen[bytes] | None = None
        self.emulator: Emulator | None = None
        self.actions = actions or LifecycleActions()
        self.metadata: MetadataService | None = None
        self.front: AutoScalingFront | None = None
        self.addresses: dict[str, str] = {}  # node -> its bridge address

    def __enter__(self) -> Lab:
        network_up()
        git = self.workdir / "git"
        shutil.rmtree(git, ignore_errors=True)  # a lab serves this run's HEAD, never a previous run's
        self.repository = git / "sqs-fleet.git"
        subprocess.run(["git", "clone", "-q", "--bare", str(REPO), str(self.repository)],  # noqa: S603, S607  # nosec
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
            self.metadata = MetadataService(HOST_ADDRESS).start()
            self.front = AutoScalingFront(self.actions, self.emulator.url, HOST_ADDRESS, 0).start()
        except BaseException:
            self.__exit__(None, None, None)  # nothing left serving when the lab does not start
            raise
        # What an instance role and the instance's metadata service give an EC2 node; here the lab's front for
        # the emulator, its metadata service and placeholder credentials.
        self.aws_env = self.workdir / "aws.env"
        self.aws_env.write_text(f"AWS_ENDPOINT_URL={self.front.url}\n"
                                f"AWS_EC2_METADATA_SERVICE_ENDPOINT={self.metadata.url}\n"
                                "AWS_ACCESS_KEY_ID=testing\nAWS_SECRET_ACCESS_KEY=testing\n")
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        for name in list(self.nodes):
            self.remove_worker(name)
        for server in (self.front, self.metadata):
            if server:
                server.stop()
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

    def produce(self, queue: str, vehicle: str) -> subprocess.CompletedProcess[str]:
        """files/producer.py sends one vehicle with this id to `queue` on the lab's emulator."""
        body = json.dumps({"vehicleId": vehicle, "make": "Honda", "model": "Civic", "year": 2020, "color": "Blue",
                           "mileage": 15000})
        return subprocess.run([sys.executable, str(REPO / "files" / "producer.py"), "--queue", queue,  # noqa: S603  # nosec
                               "--file", "-"], input=body, env={**self.environment(), "PATH": "/usr/bin:/bin"},
                              capture_output=True, text=True, check=False)

    def commit_ahead(self) -> str:
        """A commit on top of the one served, with the same tree, on a branch of its own: a version newer than the
        one an image was baked from."""
        git = ["git", "-C", str(self.repository)]
        commit = subprocess.run([*git, "commit-tree", f"{self.commit}^{{tree}}", "-p", self.commit,  # noqa: S603  # nosec
                                 "-m", "The next version"], capture_output=True, text=True, check=True,
                                env={"GIT_AUTHOR_NAME": "lab", "GIT_AUTHOR_EMAIL": "lab@localhost",
                                     "GIT_COMMITTER_NAME": "lab", "GIT_COMMITTER_EMAIL": "lab@localhost",
                                     "PATH": "/usr/bin:/bin"}).stdout.strip()
        subprocess.run([*git, "branch", "-f", "ahead", commit], check=True)  # noqa: S603  # nosec
        return commit

    def baked_image(self, commit: str | None = None) -> Path:
        """The node image baked at `commit` (this lab's HEAD by default) with the node playbook's bake phase."""
        return baked_image(str(self.repository), commit or self.commit)

    def boot_worker(self, name: str, user_data: str, wait_for_system: bool = True,
                    image_commit: str | None = None) -> dict[str, Any]:
        """Boot a node as the instance `name`: its metadata service knows it by address before it starts. With
        `image_commit`, from the node image baked at that commit (image.yml's lab counterpart)."""
        self.nodes.append(name)

        def registered(address: str) -> None:
            self.addresses[name] = address
            if self.metadata:
                self.metadata.register(address, Instance(name))

        layers = [self.baked_image(image_commit)] if image_commit else []
        return boot(name, user_data, [(str(self.aws_env), "/etc/sqs-fleet/aws.env")], on_address=registered,
                    wait_for_system=wait_for_system, layers=layers)

    def remove_worker(self, name: str) -> None:
        destroy(name)
        address = self.addresses.pop(name, None)
        if address and self.metadata:
            self.metadata.forget(address)
        if name in self.nodes:
            self.nodes.remove(name)


class NodeWorkers:
    """One booted node per instance of the group, named after the instance: it runs the launch template's
    user-data (cloud-init, ansible-pull, the node roles) as an EC2 instance would. Boots and terminations run
    in the background, as on EC2. The nodes complete their own lifecycle actions through the lab: the launch
    action once the consumer is active (CONTINUE) or when the bootstrap fails (ABANDON), the termination action
    once the lifecycle watcher has stopped the consumer. Readiness is the node's word, not a boot deadline: a
    slow boot is late, not failed. A node whose instance is gone is stopped as a shutdown stops it (SIGTERM:
    drain), its logs are kept in `logs`, then it is removed."""

    completes_lifecycle = True

    def __init__(self, lab: Lab, user_data: str, logs: Path, image_commit: str | None = None) -> None:
        self.lab, self.user_data, self.logs, self.image_commit = lab, user_data, logs, image_commit
        self.booting: dict[str, threading.Thread] = {}
        self.started: set[str] = set()  # nodes whose systemd runs (their bootstrap may still be going)
        self.stopping: list[threading.Thread] = []
        self.failed: dict[str, str] = {}  # instance -> why its node could not even start
        self.failure_told: set[str] = set()
        self.removed_at: dict[str, float] = {}  # instance -> when its node was removed (epoch seconds)
        logs.mkdir(parents=True, exist_ok=True)
        image()  # built once here, not by parallel boots
        if image_commit:
            lab.baked_image(image_commit)  # likewise: the baked layer (image.yml's lab counterpart)

    def _boot(self, name: str) -> None:
        # When its boot began, beside its logs: the report measures each boot from it to the launch action the
        # node's watcher completed.
        (self.logs / f"{name}.booted.txt").write_text(
            datetime.datetime.now(datetime.timezone.utc).isoformat() + "\n")
        try:
            self.lab.boot_worker(name, self.user_data, wait_for_system=False, image_commit=self.image_commit)
            self.started.add(name)
        except (RuntimeError, subprocess.CalledProcessError) as error:
            self.failed[name] = str(error)

    def _terminate(self, name: str) -> None:
        try:
            exec_in(name, ["systemctl", "stop", "sqs-consumer"])  # already stopped when the watcher completed
            exec_in(name, ["systemctl", "stop", "celery-worker"])
            # The worker's log: the SQS consumer's, or the Celery worker's (a node runs one of them).
            for sources, kept in ((("/var/log/sqs-consumer/consumer.log", "/var/log/celery-worker/worker.log"),
                                   f"{name}.log"),
                                  (("/var/log/sqs-fleet-bootstrap.log",), f"{name}.bootstrap.txt"),
                                  (("/var/log/sqs-lifecycle-watcher.log",), f"{name}.lifecycle.txt")):
                (self.logs / kept).write_text("".join(exec_in(name, ["cat", source]).stdout for source in sources))
        except (KeyError, FileNotFoundError):  # the node never started far enough: nothing to drain or keep
            pass
        finally:
            self.lab.remove_worker(name)
            self.removed_at[name] = time.time()
            # When the instance was gone, beside its logs: the report and tests measure the drain with it.
            (self.logs / f"{name}.removed.txt").write_text(
                datetime.datetime.fromtimestamp(self.removed_at[name], datetime.timezone.utc).isoformat() + "\n")

    def follow(self, instances: Sequence[str]) -> list[str]:
        events = []
        for name in [n for n in instances if n not in self.booting]:
            self.booting[name] = threading.Thread(target=self._boot, args=(name,), name=f"boot-{name}")
            self.booting[name].start()
            events.append(f"node {name} booting")
        for name in [n for n in self.booting if n not in instances]:
            self.booting.pop(name).join()
            self.started.discard(name)
            self.stopping.append(threading.Thread(target=self._terminate, args=(name,), name=f"stop-{name}"))
            self.stopping[-1].start()
            events.append(f"node {name} removed")
        for name, thread in self.booting.items():
            if name in self.failed and not thread.is_alive() and name not in self.failure_told:
                self.failure_told.add(name)
                events.append(f"node {name} failed to start: {self.failed[name]}")
        return events

    def in_service(self) -> set[str]:
        """The nodes running; whether one serves is its launch action's to say."""
        return set(self.started)

    def stop(self) -> None:
        self.follow([])
        for thread in self.stopping:
            thread.join()
