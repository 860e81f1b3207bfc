"""Leases of Celery jobs on Redis. Held jobs: a worker's main process renews the entries of the jobs it holds
in kombu's unacked index (renew_leases), so a job of any length stays with a live worker and a dead worker's
jobs go back to the queue after the visibility timeout. Execution: a job runs on one worker at a time, even
when the broker hands it to a second worker while the first still runs it (a failover does: the first
worker's lost connection gives its running job back to the queue, and its pool process goes on running it).

Before a job runs, its worker records the delivery, looks for the job's done record and takes the job's lease
(`<queue>:running:<job>`, a token of this run's, kept the visibility timeout) in one script; with replicas, a
WAIT in the same round trip, so that a failover right after keeps the lease (lease_unconfirmed says when the
replica did not confirm it). A thread of each process renews the leases it holds every sixth of that time.
After the job ran, one script writes the done record, drops the delivery record and releases the lease, if
still this run's. A run that finds the lease held by another waits until the done record appears (the job is
then a duplicate) or the lease lapses (its holder died; on the same host a holder whose process is gone is
known at once): the job runs here. A run that went a lease time without a confirmed renewal (a stalled
process, a partition) counts its lease as lost (event lease_lost) and must not process the job.

    leases = JobLeases(connect, queue, lease_seconds=30, replicas=1)   # connect: makes a redis-py client
    with leases.hold(job_id, idempotency_key) as hold:   # hold.state: "mine", "done" or "held" (then waited)
        ...; hold.kept(); hold.finish()                 # done record + release; returns the replicas' count

Each process (each pool process of a prefork worker) makes its own client, holding one connection for the
scripts sent without replicas. A holder "gone from this host" is judged by hostname and pid: hosts (instances)
have names of their own. Only redis-py (the caller's client), Celery's worker state (renew_leases) and worker_common
beside the standard library.
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
    from .redis_backlog import UNACKED_INDEX, done_key
    from .worker_common import log
else:
    from redis_backlog import UNACKED_INDEX, done_key
    from worker_common import log

DELIVERY_KEY_TTL = 7 * 24 * 3600  # seconds a job's delivery record is kept
RENEWALS = 6  # renewals per lease time: five can be missed before a live run's lease lapses
WAIT_POLL = 0.5  # seconds between looks at a lease held by another run

# KEYS: deliveries (a hash: one field a run, so a claim sent again after a cut connection counts once), done,
# running; ARGV: the record's TTL, token, lease ms, whether this look is a delivery. Returns {deliveries, state,
# holder}: state "done" (a done record exists), "held" (another run's lease, holder its token) or "mine".
CLAIM_SCRIPT = """
local n = 0
if ARGV[4] == '1' then
  redis.call('HSETNX', KEYS[1], ARGV[2], 1)
  redis.call('EXPIRE', KEYS[1], ARGV[1])
  n = redis.call('HLEN', KEYS[1])
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
# KEYS: done, deliveries, running; ARGV: the run's token, done TTL. The record, once written, stays its writer's
# (it holds the token, so that a call sent again after a cut connection finds its own). Returns 1 if the lease
# was still this run's.
FINISH_SCRIPT = """
local record = redis.call('GET', KEYS[1])
if not record or record == ARGV[1] then redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2]) end
redis.call('DEL', KEYS[2])
local holder = redis.call('GET', KEYS[3])
if holder == ARGV[1] then
  redis.call('DEL', KEYS[3])
  return 1
end
if record == ARGV[1] and not holder then return 1 end
return 0
"""
RELEASE_SCRIPT = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"
SCRIPTS = {"claim": CLAIM_SCRIPT, "renew": RENEW_SCRIPT, "finish": FINISH_SCRIPT, "release": RELEASE_SCRIPT}


def held_delivery_tags() -> list[str]:
    """The delivery tags of the jobs this worker holds (prefetched or running): Celery's own record of them."""
    from celery.worker import state

    while True:
        try:  # the worker's loop adds to these sets meanwhile: copy again if one changed during the copy
            requests = set(state.reserved_requests) | set(state.active_requests)
            break
        except RuntimeError:
            continue
    return [str(request.message.delivery_tag) for request in requests if request.message is not None]


def renew_leases(client: Any, interval: float, stop: threading.Event) -> None:
    """Every `interval`, the held jobs' entries in the unacked index get the current time (XX: an entry that was
    acknowledged meanwhile is not brought back). The restore sweep gives back entries older than the visibility
    timeout: only those of a worker that stopped renewing."""
    while not stop.wait(interval):
        try:
            tags = held_delivery_tags()
            if tags:
                client.zadd(UNACKED_INDEX, dict.fromkeys(tags, time.time()), xx=True)
        except Exception as error:  # the broker away (a failover): the next round tries again
            log("lease_renewal_failed", level="warning", error=str(error))


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def gone_from_this_host(token: str) -> bool:
    """Whether a lease's holder (host:pid:...) is a process of this host that no longer exists (a pool process
    killed: Celery gives its job back at once)."""
    host, _, rest = token.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


@dataclass
class Hold:
    """One run's look at a job: its delivery count, what it found, and (state "mine") its lease."""

    leases: JobLeases
    process: ProcessState
    deliveries_key: str
    done_key: str
    running_key: str
    token: str
    deliveries: int = 0
    state: str = ""
    holder: str = ""
    ended: bool = field(default=False, init=False)  # finished or released: out of the renewals

    def kept(self) -> bool:
        """Whether the lease is still this run's: no other run can have taken the job."""
        return self.leases.kept(self)

    def finish(self) -> tuple[int, bool]:
        """Write the done record, drop the delivery record, release the lease; with replicas, WAIT in the same
        round trip. Returns (replicas that acknowledged, whether the lease was still this run's)."""
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
        self.confirmed: dict[str, float] = {}  # lease key -> monotonic time its renewal was last confirmed
        self.lost: set[str] = set()
        # Held through a renewal (its snapshot, call and result) and while a run leaves the renewals: a renewal
        # never reaches the server after the run's finish or release, nor applies to a later run of the job.
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
        self.log = log  # the worker's JSON lines: lease_lost, lease_unconfirmed, lease_renewal_failed
        self.state: ProcessState | None = None
        self.creating = threading.Lock()

    @property
    def process(self) -> ProcessState:
        state = self.state
        if state is None or state.pid != os.getpid():
            with self.creating:  # the threads pool's first jobs arrive together
                state = self.state
                if state is None or state.pid != os.getpid():
                    state = self.state = ProcessState(self.connect())
        return state

    def keys(self, job_id: str, job: str) -> tuple[str, str, str]:
        """(delivery record, done record, lease) of a job; `job` is its idempotency key, else its task id."""
        return f"{self.queue}:delivered:{job_id}", done_key(self.queue, job), f"{self.queue}:running:{job}"

    @contextmanager
    def hold(self, job_id: str, job: str) -> Iterator[Hold]:
        """Record the delivery and look at the job: done, held by another run (then wait_turn), or leased to
        this run, renewed until the block ends, released if not finished."""
        process = self.process
        hold = Hold(self, process, *self.keys(job_id, job), f"{process.token}:{next(process.runs)}")
        self.claim(hold, count=True)
        try:
            yield hold
        finally:
            if self.leave(hold):
                self.run_script(hold, "release", [hold.running_key], [hold.token])

    def leave(self, hold: Hold) -> bool:
        """Take the run out of the renewals; whether it still had to (a lease of its own, not yet ended)."""
        process = hold.process
        with process.lock:
            if process.held.get(hold.running_key) is hold:
                del process.held[hold.running_key]
                process.confirmed.pop(hold.running_key, None)
                process.lost.discard(hold.running_key)
            ended, hold.ended = hold.ended, True
        return hold.state == "mine" and not ended

    def run_script(self, hold: Hold, name: str, keys: list[str], args: list[Any]) -> tuple[Any, int]:
        """One script call; with replicas, and WAIT, in one round trip: returns (the script's reply, replicas).
        The pipeline sends the script's text (EVAL): a Script object in a pipeline costs a SCRIPT EXISTS round
        trip each time, and a new primary after a failover may not have it cached."""
        if not self.replicas or name in ("renew", "release"):
            return hold.process.scripts[name](keys=keys, args=args), 0
        pipeline = hold.process.client.pipeline(transaction=False)
        pipeline.eval(SCRIPTS[name], len(keys), *keys, *args)
        pipeline.execute_command("WAIT", self.replicas, self.replica_timeout_ms)
        reply, replicas = pipeline.execute()
        return reply, int(replicas)

    def claim(self, hold: Hold, count: bool) -> None:
        (deliveries, state, holder), replicas = self.run_script(
            hold, "claim", [hold.deliveries_key, hold.done_key, hold.running_key],
            [DELIVERY_KEY_TTL, hold.token, self.lease_ms, int(count)])
        hold.deliveries = int(deliveries) if count else hold.deliveries
        hold.state, hold.holder = text(state), text(holder)
        if hold.state != "mine":
            return
        if replicas < self.replicas:  # the lease holds on this primary: a failover now could lose it
            self.log("lease_unconfirmed", level="warning", lease=hold.running_key, replicas=replicas,
                     wanted=self.replicas)
        process = hold.process
        with process.lock:
            process.held[hold.running_key] = hold
            process.confirmed[hold.running_key] = time.monotonic()
            start, process.renewing = not process.renewing, True
        if start:
            threading.Thread(target=self.renew_forever, args=(process,), name="job-leases", daemon=True).start()

    def wait_turn(self, hold: Hold) -> None:
        """Until the run holding the job finished it (state "done") or its lease lapsed (state "mine")."""
        while hold.state == "held":
            if gone_from_this_host(hold.holder):
                self.run_script(hold, "release", [hold.running_key], [hold.holder])
            else:
                time.sleep(WAIT_POLL)
            self.claim(hold, count=False)

    def finish(self, hold: Hold) -> tuple[int, bool]:
        self.leave(hold)  # first: no renewal of this lease reaches the server after the finish
        kept, confirmed = self.run_script(hold, "finish", [hold.done_key, hold.deliveries_key, hold.running_key],
                                          [hold.token, self.done_ttl])
        return confirmed, bool(kept)

    def kept(self, hold: Hold) -> bool:
        """Confirmed by a renewal less than half a lease ago; else (a stalled process: its renewals stalled too)
        renewed now. Unconfirmed for a whole lease (the broker out of reach) counts as lost: the lease may have
        lapsed and another run have the job."""
        process, key = hold.process, hold.running_key
        with process.lock:
            age = time.monotonic() - process.confirmed.get(key, 0.0)
        if age >= self.lease_ms / 2000:
            self.renew(process)
        with process.lock:
            age = time.monotonic() - process.confirmed.get(key, 0.0)
            return key not in process.lost and age < self.lease_ms / 1000

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
                lost = process.scripts["renew"](
                    keys=[key for _, run in held for key in (run.running_key, run.done_key)],
                    args=[self.lease_ms, *(run.token for _, run in held)])
            except Exception as error:  # the broker away (a failover): the next round tries again
                self.log("lease_renewal_failed", level="warning", error=str(error))
                return
            gone = {held[int(position) - 1][0] for position in lost}
            for key, _ in held:  # still held: a run leaves the renewals under the same lock
                if key not in gone:
                    process.confirmed[key] = asked
                elif key not in process.lost:
                    process.lost.add(key)
                    self.log("lease_lost", level="error", lease=key,
                             reason="another run holds or finished the job: this run went a lease time unrenewed")
