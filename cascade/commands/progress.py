"""One progress display for long work (correct, eval, correct-batch, make-nbest, transcription).

On a terminal: a rich bar with the count, the rate and the ETA. Elsewhere (a log file, a pipe, CI):
one plain line on stderr every `every` items or every `interval_s` seconds, whichever comes first,
and one closing line, so a long run is never silent and a log never fills with bar redraws.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from cascade.commands.common import err_console

T = TypeVar("T")


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}"


class Ticker:
    """Counts finished items; `position` (e.g. bytes read) drives the ETA when the item count is unknown."""

    def __init__(self, description: str, total: int | None, unit: str, every: int | None, interval_s: float,
                 console: Console, transient: bool = False) -> None:
        self.description, self.total, self.unit = description, total, unit
        self.count, self.position = 0, 0
        self.every = every or (max(1, total // 10) if total else 100)
        self.interval_s, self.console = interval_s, console
        self.started = self._last_time = time.monotonic()
        self._last_count = 0
        self.info = ""
        self.bar: Progress | None = None
        self.task: TaskID | None = None
        if console.is_terminal:
            self.bar = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[count]} {task.fields[unit]}"),
                                TextColumn("{task.fields[rate]:.1f}/s"), TimeElapsedColumn(), TextColumn("ETA"),
                                TimeRemainingColumn(), TextColumn("{task.fields[info]}"), console=console,
                                transient=transient)
            self.task = self.bar.add_task(description, total=total, count=0, unit=unit, rate=0.0, info="")

    def __call__(self, n: int = 1, position: int | None = None, *, total: int | None = None, info: str | None = None,
                 now: bool = False) -> None:
        """`n` more items are done; `position`: how far into the total (default: the item count).

        `total` sets a total learnt late, `info` a short status shown beside the count (e.g. a loss),
        `now` forces a plain line (e.g. after an evaluation).
        """
        self.count += n
        self.position = position if position is not None else self.count
        self.total = total if total is not None else self.total
        self.info = info if info is not None else self.info
        if self.bar is not None and self.task is not None:
            self.bar.update(self.task, total=self.total, completed=self.position, count=self.count, rate=self.rate,
                            info=self.info)
            return
        clock = time.monotonic()
        if self.total == 1:
            return
        if now or self.count - self._last_count >= self.every or clock - self._last_time >= self.interval_s:
            self._line()
            self._last_count, self._last_time = self.count, clock

    @property
    def rate(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.count / elapsed if elapsed > 0 else 0.0

    def _line(self) -> None:
        elapsed = time.monotonic() - self.started
        of = f"/{self.total}" if self.total and self.position == self.count else ""
        parts = [f"{self.description}: {self.count}{of} {self.unit}", f"{self.rate:.2f}/s", f"elapsed {_clock(elapsed)}"]
        if self.total and 0 < self.position < self.total:
            parts.append(f"ETA {_clock(elapsed * (self.total - self.position) / self.position)}")
        if self.info:
            parts.append(self.info)
        self.console.print(", ".join(parts), highlight=False, soft_wrap=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            return
        if self.count != self._last_count and (self.total is None or self.total > 1):
            self._line()  # one item needs no report


@contextlib.contextmanager
def progress(description: str, total: int | None = None, *, unit: str = "items", every: int | None = None,
             interval_s: float = 10.0, console: Console | None = None, transient: bool = False) -> Iterator[Ticker]:
    """A Ticker for the block; call it once per finished item (or with n= for several).

    `every`: items between plain lines (default: a tenth of the total); `transient`: the bar vanishes at the end.
    """
    ticker = Ticker(description, total, unit, every, interval_s, console or err_console, transient)
    if ticker.bar is not None:
        ticker.bar.start()
    try:
        yield ticker
    finally:
        ticker.close()


def tracked(items: Iterable[T], ticker: Ticker) -> Iterator[T]:
    """The items, ticking as each one is produced (the work behind a lazy iterator is done by then)."""
    for item in items:
        ticker()
        yield item
