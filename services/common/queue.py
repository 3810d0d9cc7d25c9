"""A bounded admission queue per model: N requests run, M wait, the rest are turned away.

Blocking model calls run in worker threads; the queue keeps their number at N so
two CPU cores are never shared by more decodes than configured, and it keeps the
number of waiters at M so a burst never becomes an unbounded pile-up: request
M+1 gets 429 with Retry-After at once, and a waiter that does not get a slot
within `wait_timeout` gets 503 with Retry-After.

A slot is held for as long as its worker thread runs, even when the request stops
waiting for it (deadline passed, client gone): the thread keeps the CPU busy, so the
slot is released by the thread's end, not by the request's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TypeVar

from starlette.concurrency import run_in_threadpool

from services.common.errors import DeadlineExceeded, Overloaded
from services.common.metrics import ServiceMetrics

logger = logging.getLogger(__name__)
T = TypeVar("T")


class ModelQueue:
    """Admission control for one model (asyncio, single event loop)."""

    def __init__(self, name: str, *, concurrency: int, max_waiting: int, wait_timeout: float,
                 metrics: ServiceMetrics | None = None):
        self.name = name
        self.concurrency = concurrency
        self.max_waiting = max_waiting
        self.wait_timeout = wait_timeout
        self.running = 0
        self.waiting = 0
        self._sem = asyncio.Semaphore(concurrency)
        self._metrics = metrics
        self._mean_s = 1.0

    def _publish(self) -> None:
        if self._metrics:
            self._metrics.queue_depth.labels(self.name).set(self.waiting)
            self._metrics.queue_running.labels(self.name).set(self.running)

    def _retry_after(self) -> float:
        """A rough time until a slot frees: queued work divided by the workers."""
        return max(1.0, self._mean_s * (self.waiting + 1) / self.concurrency)

    def _reject(self, reason: str, status: int) -> Overloaded:
        if self._metrics:
            self._metrics.rejected.labels(self.name, reason).inc()
        return Overloaded(
            f"model {self.name!r} is busy ({self.running} running, {self.waiting} waiting): retry later",
            retry_after=self._retry_after(), status_code=status)

    async def acquire(self) -> float:
        """Wait for a running slot (bounded); returns the start time to hand to `release`."""
        if self._sem.locked() and self.waiting >= self.max_waiting:
            raise self._reject("queue_full", 429)
        self.waiting += 1
        self._publish()
        try:
            await asyncio.wait_for(self._sem.acquire(), timeout=self.wait_timeout)
        except TimeoutError:
            raise self._reject("wait_timeout", 503) from None
        finally:
            self.waiting -= 1
        self.running += 1
        self._publish()
        return time.perf_counter()

    def release(self, started: float) -> None:
        self._mean_s = 0.8 * self._mean_s + 0.2 * (time.perf_counter() - started)
        self.running -= 1
        self._sem.release()
        self._publish()

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one of the N running slots for the duration of the block."""
        started = await self.acquire()
        try:
            yield
        finally:
            self.release(started)

    async def run(self, fn: Callable[..., T], *args, timeout: float | None = None, **kwargs) -> T:
        """Run a blocking call in a worker thread once a slot is free.

        With `timeout`, stop waiting for it after that many seconds (DeadlineExceeded); the
        slot stays taken until the thread ends.
        """
        started = await self.acquire()
        task = asyncio.ensure_future(run_in_threadpool(fn, *args, **kwargs))
        try:
            done, _ = await asyncio.wait({task}, timeout=timeout)
        except BaseException:
            self._release_when_done(task, started)
            raise
        if not done:
            self._release_when_done(task, started)
            raise DeadlineExceeded(f"model {self.name!r} did not answer within the {timeout:.3g} s deadline")
        self.release(started)
        return task.result()

    def _release_when_done(self, task: asyncio.Future, started: float) -> None:
        def done(t: asyncio.Future) -> None:
            self.release(started)
            if not t.cancelled() and t.exception() is not None:
                logger.info("abandoned call on %s ended with %s", self.name, type(t.exception()).__name__)

        task.add_done_callback(done)

    async def open_stream(self, make: Callable[[], Iterator[T]]) -> AsyncIterator[T]:
        """Start a blocking generator under a slot and return its items as an async iterator.

        The slot is taken and the first item produced before this returns, so admission
        and input errors still become proper HTTP statuses; the slot is released when the
        stream ends or the client goes away.
        """
        started = await self.acquire()
        sentinel = object()
        try:
            iterator = await run_in_threadpool(make)
            first = await run_in_threadpool(next, iterator, sentinel)
        except BaseException:
            self.release(started)
            raise

        async def rest() -> AsyncIterator[T]:
            try:
                item = first
                while item is not sentinel:
                    yield item  # type: ignore[misc]
                    item = await run_in_threadpool(next, iterator, sentinel)
            finally:
                self.release(started)

        return rest()


class Queues:
    """One ModelQueue per model, created on first use with the service's limits.

    Keys must be canonical model ids (a served name, never a caller's spelling): the
    services resolve `model` first. `max_queues` is the backstop that keeps the queue and
    metric-label sets bounded even if a caller-chosen string slipped through.
    """

    def __init__(self, *, concurrency: int, max_waiting: int, wait_timeout: float, metrics: ServiceMetrics | None,
                 max_queues: int = 32):
        self._args = dict(concurrency=concurrency, max_waiting=max_waiting, wait_timeout=wait_timeout, metrics=metrics)
        self._queues: dict[str, ModelQueue] = {}
        self.max_queues = max_queues

    def __getitem__(self, model: str) -> ModelQueue:
        if model not in self._queues:
            if len(self._queues) >= self.max_queues:
                raise Overloaded(f"this service already runs {self.max_queues} models: no more are admitted",
                                 retry_after=60, status_code=503)
            self._queues[model] = ModelQueue(model, **self._args)
        return self._queues[model]

    def names(self) -> list[str]:
        return sorted(self._queues)
