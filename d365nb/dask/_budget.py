"""One request budget per identity across a Dask cluster.

Dataverse limits each user (each identity: a person, or an app's application user) per
environment, however many machines send the requests.  `Budget` names that budget: a
`distributed.Semaphore` called `d365nb:<host>:<identity hash>` whose leases are the
service's allowed concurrency.  Every HTTP attempt a worker's connection makes (first
tries and retries alike) holds one lease while it is on the wire, so the whole cluster
never has more requests in flight than the service allows.

A 429 on one worker slows all of them: its `Retry-After` becomes a pause, kept on the
scheduler, that every worker waits out before its next attempt.

Without a distributed cluster (Dask's threaded scheduler), a process-wide semaphore of
the same size does the same job for the threads of this process.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from ._internals import parse_retry_after

__all__ = ["Budget", "GateStats", "budget_name", "gate_for", "gate_stats", "register"]

_PAUSE_KEY = "d365nb-pause"
# How often a worker asks the scheduler whether the cluster is paused (at most).
_PAUSE_POLL = 0.2
_SIZE_KEY = "d365nb-budget-size"


@dataclass(frozen=True)
class Budget:
    """A cluster-wide request budget: its semaphore's name and how many leases it has."""

    name: str
    leases: int


def budget_name(service: str, identity: str) -> str:
    """`d365nb:<host>:<hash>`: one name per environment and identity (no ids shown)."""
    host = httpx.URL(service).host
    digest = hashlib.sha256(f"{service}|{identity}".encode()).hexdigest()[:12]
    return f"d365nb:{host}:{digest}"


def register(budget: Budget, client: Any | None) -> Budget:
    """Create the budget's semaphore on the cluster, or resize an idle one.

    Two jobs of one identity must share one budget: while a semaphore of that name has
    leases out (a job is running), its size stands and is returned; an idle one takes
    the new size (the service's advice may have changed).  The size in force is kept on
    the scheduler next to the semaphore.
    """
    if client is None:
        return budget
    from distributed import Semaphore

    size_key = [_SIZE_KEY, budget.name]
    current = client.get_metadata(size_key, None)
    semaphores = []
    try:
        if current is not None and int(current) != budget.leases:
            old = Semaphore(max_leases=int(current), name=budget.name)
            semaphores.append(old)
            if old.get_value() > 0:
                return Budget(budget.name, int(current))
            old.close()
        semaphore = Semaphore(max_leases=budget.leases, name=budget.name)
        semaphores.append(semaphore)
        semaphore.register()
        client.set_metadata(size_key, budget.leases)
        return budget
    finally:
        for semaphore in semaphores:
            callback = getattr(semaphore, "refresh_callback", None)
            if callback is not None:
                callback.stop()


@dataclass
class GateStats:
    """What one process's gate saw: attempts sent, 429s met, seconds paused, peak leases."""

    attempts: int = 0
    throttled: int = 0
    paused: float = 0.0
    in_flight: int = 0
    peak: int = 0


@dataclass
class _Gate:
    """This process's door to one budget (shared by every connection and task here)."""

    budget: Budget
    stats: GateStats = field(default_factory=GateStats)
    worker: Any = None
    client: Any = None
    semaphore: Any = None
    local: threading.BoundedSemaphore | None = None
    pause_until: float = 0.0
    pause_checked: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)
    pool: concurrent.futures.ThreadPoolExecutor = field(
        default_factory=lambda: concurrent.futures.ThreadPoolExecutor(
            max_workers=64, thread_name_prefix="d365nb-budget"
        )
    )

    def bind(self) -> None:
        """Attach to the Dask worker running the current task (call from its thread)."""
        if self.semaphore is not None or self.local is not None:
            return
        with self.lock:
            if self.semaphore is not None or self.local is not None:
                return
            try:
                from distributed import Semaphore, get_client, get_worker

                worker = get_worker()
            except (ImportError, ValueError):
                self.local = threading.BoundedSemaphore(self.budget.leases)
                return
            self.worker = worker
            self.client = get_client()
            self.semaphore = Semaphore(
                max_leases=self.budget.leases,
                name=self.budget.name,
                scheduler_rpc=worker.scheduler,
                loop=worker.loop,
            )

    # -- blocking halves (run in the gate's threads) ---------------------------------

    def _paused_for(self) -> float:
        now = time.time()
        if self.client is not None and now - self.pause_checked >= _PAUSE_POLL:
            self.pause_checked = now
            try:
                until = float(self.client.get_metadata([_PAUSE_KEY, self.budget.name], 0.0))
            except Exception:  # the scheduler is busy or gone: go on with what we know
                until = 0.0
            self.pause_until = max(self.pause_until, until)
        return max(0.0, self.pause_until - time.time())

    def _enter(self) -> None:
        while (wait := self._paused_for()) > 0:
            self.stats.paused += wait
            time.sleep(wait)
        if self.semaphore is not None:
            self.semaphore.acquire()
        elif self.local is not None:
            self.local.acquire()
        with self.lock:
            self.stats.in_flight += 1
            self.stats.attempts += 1
            self.stats.peak = max(self.stats.peak, self.stats.in_flight)

    def _leave(self) -> None:
        with self.lock:
            self.stats.in_flight -= 1
        if self.semaphore is not None:
            self.semaphore.release()
        elif self.local is not None:
            self.local.release()

    def _pause(self, seconds: float) -> None:
        until = time.time() + seconds
        self.pause_until = max(self.pause_until, until)
        if self.client is not None:
            try:
                current = float(self.client.get_metadata([_PAUSE_KEY, self.budget.name], 0.0))
                if until > current:
                    self.client.set_metadata([_PAUSE_KEY, self.budget.name], until)
            except Exception:  # best effort: this worker waits anyway
                pass

    # -- async face ------------------------------------------------------------------

    async def enter(self) -> None:
        """Wait out a cluster pause, then take a lease (released by `leave()`)."""
        future = self.pool.submit(self._enter)
        try:
            await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            # The thread may still get the lease: give it back when it does.
            future.add_done_callback(
                lambda f: None if f.cancelled() or f.exception() else self.pool.submit(self._leave)
            )
            raise

    def leave(self) -> None:
        """Give the lease back (without waiting for the scheduler's answer)."""
        self.pool.submit(self._leave)

    def throttled(self, retry_after: float | None) -> None:
        """A 429 arrived: pause every worker of the cluster for `retry_after` seconds."""
        with self.lock:
            self.stats.throttled += 1
        self.pool.submit(self._pause, retry_after if retry_after is not None else 1.0)


_GATES: dict[str, _Gate] = {}
_GATES_LOCK = threading.Lock()


def gate_for(budget: Budget) -> _Gate:
    """This process's gate for `budget`, bound to the current task's worker."""
    with _GATES_LOCK:
        gate = _GATES.get(budget.name)
        if gate is None or gate.budget.leases != budget.leases:
            gate = _GATES[budget.name] = _Gate(budget)
    gate.bind()
    return gate


def gate_stats() -> dict[str, dict[str, float]]:
    """Every gate of this process and what it saw (e.g. `client.run(gate_stats)`)."""
    with _GATES_LOCK:
        gates = list(_GATES.values())
    return {
        g.budget.name: {
            "attempts": g.stats.attempts,
            "throttled": g.stats.throttled,
            "paused": g.stats.paused,
            "peak": g.stats.peak,
        }
        for g in gates
    }


class GatedTransport(httpx.AsyncBaseTransport):
    """Holds a budget lease around each attempt (body included); reports 429s to the gate."""

    def __init__(self, inner: httpx.AsyncBaseTransport, gate: _Gate) -> None:
        self._inner = inner
        self._gate = gate

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await self._gate.enter()
        try:
            response = await self._inner.handle_async_request(request)
            try:
                await response.aread()
            except BaseException:
                await response.aclose()
                raise
        finally:
            self._gate.leave()
        if response.status_code == 429:
            self._gate.throttled(parse_retry_after(response.headers.get("retry-after")))
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()
