"""Execution leases of Celery jobs on Redis: a job runs on one worker at a time, even when the broker hands it
to a second worker while the first still runs it (a failover does: the first worker's lost connection gives
its running job back to the queue, and its pool process goes on running it).

Before a job runs, its worker counts the delivery, looks for the job's done record and takes the job's lease
(`<queue>:running:<job>`, a token of this run's, kept the visibility timeout) in one script; with replicas, a
WAIT in the same round trip, so that a failover right after keeps the lease. A thread of each process renews
the leases it holds every sixth of that time. After the job ran, one script writes the done record, drops the
delivery counter and releases the lease, if still this run's. A worker that finds the lease held by another run
waits until the done record appears (the job is then a duplicate) or the lease lapses (its holder died: the
job runs here). So a job runs twice only if its worker stopped renewing for longer than the visibility timeout
(a stalled process, a partition), and the run that lost its lease says so (event lease_lost).

    leases = JobLeases(connect, queue, lease_seconds=30, replicas=1)   # connect: makes a redis-py client
    with leases.hold(job_id, idempotency_key) as hold:   # hold.state: "mine", "done" or "held" (then waited)
        ...; hold.finish()                              # done record + release; returns the replicas' count

Each process (each pool process of a prefork worker) makes its own client, holding one connection: no pool
checkout a command. Only redis-py (the caller's client) beside the standard library; Python 3.9+.
"""

from __future__ import annotations

import itertools
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING or __package__:  # as celery_worker.py imports its modules (docs/workers.md)
    from .redis_backlog import done_key
else:
    from redis_backlog import done_key

DELIVERY_KEY_TTL = 7 * 24 * 3600  # seconds a job's delivery counter is kept
RENEWALS = 6  # renewals per lease time: five can be missed before a live run's lease lapses
WAIT_POLL = 0.5  # seconds between looks at a lease held by another run

# KEYS: deliveries, done, running; ARGV: counter TTL, token, lease ms, whether to count this look as a delivery.
# Returns {deliveries, state, holder}: state "done" (a done record exists), "held" (another run's lease, holder
# its token) or "mine" (the lease is this run's now).
CLAIM_SCRIPT = """
local n = 0
if ARGV[4] == '1' then
  n = redis.call('INCR', KEYS[1])
  redis.call('EXPIRE', KEYS[1], ARGV[1])
end
if redis.call('EXISTS', KEYS[2]) == 1 then return {n, 'done', ''} end
local holder = redis.call('GET', KEYS[3])
if holder and holder ~= ARGV[2] then return {n, 'held', holder} end
redis.call('SET', KEYS[3], ARGV[2], 'PX', ARGV[3])
return {n, 'mine', ''}
"""
# KEYS: each lease and its job's done record; ARGV: lease ms, then each lease's token. A lease still this run's is
# extended, one gone (lost with a failed-over primary) is taken again unless the job is done; returns the positions
# (1-based) of the leases another run holds or whose job another run finished.
RENEW_SCRIPT = """
local lost = {}
for i = 1, #KEYS / 2 do
  local lease, done, token = KEYS[2 * i - 1], KEYS[2 * i], ARGV[i + 1]
  local holder = redis.call('GET', lease)
  if holder == token then
    redis.call('PEXPIRE', lease, ARGV[1])
  elseif not holder and redis.call('EXISTS', done) == 0 then
    redis.call('SET', lease, token, 'PX', ARGV[1])
  else
    table.insert(lost, i)
  end
end
return lost
"""
# KEYS: done, deliveries, running; ARGV: the run's token, done TTL. The record holds the token of the run that
# wrote it, so that a call sent again after a cut connection finds its own record. Returns 1 if the lease was
# still this run's.
FINISH_SCRIPT = """
local again = redis.call('GET', KEYS[1]) == ARGV[1]
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
redis.call('DEL', KEYS[2])
local holder = redis.call('GET', KEYS[3])
if holder == ARGV[1] then
  redis.call('DEL', KEYS[3])
  return 1
end
if again and not holder then return 1 end
return 0
"""
RELEASE_SCRIPT = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"
SCRIPTS = {"claim": CLAIM_SCRIPT, "renew": RENEW_SCRIPT, "finish": FINISH_SCRIPT, "release": RELEASE_SCRIPT}


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass
class Hold:
    """One run's look at a job: its delivery count, what it found, and (state "mine") its lease."""

    leases: JobLeases
    deliveries_key: str
    done_key: str
    running_key: str
    token: str
    deliveries: int = 0
    state: str = ""
    holder: str = ""
    finished: bool = field(default=False, init=False)

    def kept(self) -> bool:
        """Whether the lease is still this run's (another run may have the job once it lapsed)."""
        return self.leases.kept(self.running_key)

    def finish(self) -> tuple[int, bool]:
        """Write the done record, drop the counter, release the lease; with replicas, WAIT in the same round trip.
        Returns (replicas that acknowledged, whether the lease was still this run's)."""
        self.finished = True
        return self.leases.finish(self)


class ProcessState:
    """What one process's runs share: its client (made after a fork, never the parent's socket), the scripts on
    it, a token prefix unique to the process, and the leases it holds, renewed by a thread of its own."""

    def __init__(self, client: Any) -> None:
        self.pid = os.getpid()
        self.client = client
        self.scripts = {name: client.register_script(text) for name, text in SCRIPTS.items()}
        self.token = f"{socket.gethostname()}:{self.pid}:{uuid.uuid4().hex[:8]}"
        self.runs = itertools.count(1)
        self.held: dict[str, Hold] = {}  # lease key -> the run holding it
        self.lost: set[str] = set()
        self.confirmed: dict[str, float] = {}  # lease key -> monotonic time it was last known this run's
        self.lock = threading.Lock()
        self.renewing = False


class JobLeases:
    """The leases of a worker's runs: the scripts that take, renew and release them, per process."""

    def __init__(self, connect: Callable[[], Any], queue: str, lease_seconds: float, replicas: int = 0,
                 replica_timeout_ms: int = 500, done_ttl: int = 24 * 3600,
                 log: Callable[..., None] = lambda event, **fields: None) -> None:
        self.connect = connect
        self.queue = queue
        self.lease_ms = int(lease_seconds * 1000)
        self.replicas = replicas
        self.replica_timeout_ms = replica_timeout_ms
        self.done_ttl = done_ttl
        self.log = log  # the worker's JSON lines: lease_lost, lease_renewal_failed
        self.state: ProcessState | None = None

    @property
    def process(self) -> ProcessState:
        if self.state is None or self.state.pid != os.getpid():
            self.state = ProcessState(self.connect())
        return self.state

    def keys(self, job_id: str, job: str) -> tuple[str, str, str]:
        """(delivery counter, done record, lease) of a job; `job` is its idempotency key, else its task id."""
        return f"{self.queue}:deliveries:{job_id}", done_key(self.queue, job), f"{self.queue}:running:{job}"

    @contextmanager
    def hold(self, job_id: str, job: str) -> Iterator[Hold]:
        """Count the delivery and look at the job: done, held by another run (then wait for its done record or
        for its lease to lapse), or leased to this run, renewed until the block ends, released if not finished."""
        process = self.process
        deliveries, done, running = self.keys(job_id, job)
        hold = Hold(self, deliveries, done, running, f"{process.token}:{next(process.runs)}")
        self.claim(hold, count=True)
        try:
            yield hold
        finally:
            with process.lock:
                process.held.pop(running, None)
                process.lost.discard(running)
                process.confirmed.pop(running, None)
            if hold.state == "mine" and not hold.finished:
                self.run_script("release", [running], [hold.token])

    def run_script(self, name: str, keys: list[str], args: list[Any]) -> Any:
        """One script call; with replicas, and WAIT, in one round trip: returns (the script's reply, replicas).
        The pipeline sends the script's text (EVAL): a Script object in a pipeline costs a SCRIPT EXISTS round
        trip each time, and a new primary after a failover may not have it cached."""
        process = self.process
        if not self.replicas or name in ("renew", "release"):
            return process.scripts[name](keys=keys, args=args), 0
        pipeline = process.client.pipeline(transaction=False)
        pipeline.eval(SCRIPTS[name], len(keys), *keys, *args)
        pipeline.execute_command("WAIT", self.replicas, self.replica_timeout_ms)
        reply, replicas = pipeline.execute()
        return reply, int(replicas)

    def claim(self, hold: Hold, count: bool) -> None:
        # Unconfirmed by WAIT (a lagging replica), the lease still holds on this primary: the job runs all the same.
        (deliveries, state, holder), _ = self.run_script(
            "claim", [hold.deliveries_key, hold.done_key, hold.running_key],
            [DELIVERY_KEY_TTL, hold.token, self.lease_ms, int(count)])
        hold.deliveries = int(deliveries) if count else hold.deliveries
        hold.state, hold.holder = text(state), text(holder)
        if hold.state == "mine":
            process = self.process
            with process.lock:
                process.held[hold.running_key] = hold
                process.confirmed[hold.running_key] = time.monotonic()
                start = not process.renewing
                process.renewing = True
            if start:
                threading.Thread(target=self.renew_forever, args=(process,), name="job-leases", daemon=True).start()

    def wait_turn(self, hold: Hold) -> None:
        """Until the run holding the job finished it (state "done") or its lease lapsed (state "mine")."""
        while hold.state == "held":
            time.sleep(WAIT_POLL)
            self.claim(hold, count=False)

    def finish(self, hold: Hold) -> tuple[int, bool]:
        kept, confirmed = self.run_script("finish", [hold.done_key, hold.deliveries_key, hold.running_key],
                                          [hold.token, self.done_ttl])
        return confirmed, bool(kept)

    def kept(self, key: str) -> bool:
        """Known from a claim or renewal under half a lease ago; else (a stalled process: its renewals stalled
        too) asked now."""
        process = self.process
        with process.lock:
            if key in process.lost:
                return False
            fresh = time.monotonic() - process.confirmed.get(key, 0.0) < self.lease_ms / 2000
        if not fresh:
            self.renew(process)
        with process.lock:
            return key not in process.lost

    def renew_forever(self, process: ProcessState) -> None:
        while True:
            time.sleep(self.lease_ms / 1000 / RENEWALS)
            self.renew(process)

    def renew(self, process: ProcessState) -> None:
        with process.lock:
            held = list(process.held.items())
        if not held:
            return
        asked = time.monotonic()
        try:
            lost, _ = self.run_script("renew", [key for _, run in held for key in (run.running_key, run.done_key)],
                                      [self.lease_ms, *(run.token for _, run in held)])
        except Exception as error:  # the broker away (a failover): the next round tries again
            self.log("lease_renewal_failed", level="warning", error=str(error))
            return
        with process.lock:
            gone = {held[int(position) - 1][0] for position in lost}
            process.confirmed.update({key: asked for key, _ in held if key in process.held and key not in gone})
            for key in gone:
                if key in process.held and key not in process.lost:
                    process.lost.add(key)
                    self.log("lease_lost", level="error", lease=key,
                             reason="another run holds or finished the job: this run went a lease time unrenewed")
