"""Concurrent transcription requests decoded together (ServiceSettings.asr_batch_window_ms, asr.batch_size).

Every request still goes through its model's queue (the same admission, 429 and 503 as alone). The request that
gets a slot leads: it waits `window` for more to arrive, takes the requests with the same options that are still
waiting for a slot (up to batch_size in all), and decodes their clips in one batched CTranslate2 call
(cascade.asr.transcribe_many); each waiting request then has its answer and leaves the queue without a slot. A
leader that finds nobody to take decodes its request as an unbatched one would, so a lone request is unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.concurrency import run_in_threadpool

from services.common.metrics import ServiceMetrics
from services.common.queue import ModelQueue


@dataclass
class _Waiting:
    item: Any
    taken: bool = False
    answer: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class MicroBatcher:
    """The requests waiting per (queue, options) key, for the next leader of that key to take."""

    def __init__(self, window_s: float, size: int, metrics: ServiceMetrics | None = None):
        self.window_s, self.size, self.metrics = window_s, size, metrics
        self._waiting: dict[str, list[_Waiting]] = {}

    async def run(self, queue: ModelQueue, key: str, item: Any, one: Callable[[Any], Any],
                  many: Callable[[list[Any]], list[Any]]) -> Any:
        """`one(item)` alone, or this item's share of `many(items)` (an Exception there is raised here)."""
        me = _Waiting(item)
        waiting = self._waiting.setdefault(key, [])
        waiting.append(me)
        slot = asyncio.ensure_future(queue.acquire())
        try:
            await asyncio.wait({slot, me.answer}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            self._leave(key, me)
            _give_back(queue, slot)
            raise
        if me.taken:  # a leader decodes it: the slot it waited for is not needed
            _give_back(queue, slot)
            return await me.answer
        self._leave(key, me)
        started = slot.result()  # a 429/503 is raised here, as for an unbatched request
        try:
            if self.window_s > 0:
                await asyncio.sleep(self.window_s)
        except BaseException:
            queue.release(started)
            raise
        taken = self._take(key, self.size - 1)
        if taken:
            if self.metrics is not None:  # /metrics: cascade_asr_batches_total, cascade_asr_batched_requests_total
                self.metrics.batches.labels(queue.name).inc()
                self.metrics.batched_requests.labels(queue.name).inc(1 + len(taken))
            work = asyncio.ensure_future(run_in_threadpool(many, [item] + [w.item for w in taken]))
        else:
            work = asyncio.ensure_future(run_in_threadpool(lambda: [_attempt(one, item)]))
        # the slot is held until the thread ends, and the others get their answers even if this client goes away
        work.add_done_callback(lambda done: _finish(queue, started, done, taken))
        results = await asyncio.shield(work)
        if isinstance(results[0], Exception):
            raise results[0]
        return results[0]

    def _take(self, key: str, n: int) -> list[_Waiting]:
        waiting = self._waiting.get(key, [])
        taken, rest = waiting[:n], waiting[n:]
        for w in taken:
            w.taken = True
        if rest:
            self._waiting[key] = rest
        else:
            self._waiting.pop(key, None)
        return taken

    def _leave(self, key: str, me: _Waiting) -> None:
        waiting = self._waiting.get(key, [])
        with contextlib.suppress(ValueError):
            waiting.remove(me)
        if not waiting:
            self._waiting.pop(key, None)


def _give_back(queue: ModelQueue, slot: asyncio.Future) -> None:
    """A slot this request no longer needs goes back as soon as it is granted. The wait for it is not cancelled: a
    cancel that lands just after the semaphore woke the waiter would keep that slot taken for good."""
    def back(done: asyncio.Future) -> None:
        if not done.cancelled() and done.exception() is None:  # a 429/503 for a request already answered: moot
            queue.release(done.result())

    if slot.done():
        back(slot)
    else:
        slot.add_done_callback(back)


def _attempt(fn: Callable[[Any], Any], item: Any) -> Any:
    try:
        return fn(item)
    except Exception as exc:  # noqa: BLE001 - it is this request's answer
        return exc


def _finish(queue: ModelQueue, started: float, done: asyncio.Future, taken: list[_Waiting]) -> None:
    results = None if done.cancelled() or done.exception() is not None else done.result()
    for n, w in enumerate(taken, start=1):
        if w.answer.done():
            continue
        result = results[n] if results is not None else (done.exception() if not done.cancelled() else None)
        if result is None:
            w.answer.set_exception(RuntimeError("the batched decode was cancelled"))
        elif isinstance(result, BaseException):
            w.answer.set_exception(result)
        else:
            w.answer.set_result(result)
    queue.release(started)  # after the answers: a taken request granted this slot gives it back at once
