"""Batch correction of existing ASR output: streaming, bounded LLM batches, crash-safe resume.

The engine consumes a stream of `Item`s (see `cascade.formats.records`; any stream of
`Utterance`s can be wrapped with `records.as_items`) and never holds more than
a few chunks of it. Records are grouped into *chunks*: a chunk closes after
`batch_size` records that need the LLM (or after a cap of records that do
not), so the chunks, and therefore every LLM batch, depend only on the input
and `batch_size`, never on timing, workers or where a previous run stopped.

Each chunk's results are appended to a JSONL journal as one write of whole
lines, in input order (chunks computed by worker processes or Ray actors are
reordered first), and fsynced at most every `fsync_interval_s`. On restart the
journal is read back chunk by chunk against the input: complete chunks are
skipped, a torn or partial last chunk is truncated away and recomputed. So a
run killed at any moment and resumed writes exactly the bytes of an
uninterrupted run. A JSONL output is the journal itself; other formats are
assembled from it at the end into a temporary file renamed over the output.
"""

from __future__ import annotations

import collections
import hashlib
import itertools
import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cascade.batch.chunks import ChunkResult, lazy_corrector, needs_llm, process_chunk, worker_settings
from cascade.config import Settings
from cascade.formats.records import Item, render
from cascade.types import BatchRecord, CascadeError, InvalidInput, Record

logger = logging.getLogger(__name__)

PASS_CHUNK = 1024
"""Records per chunk when nothing needs the LLM (method none, error/empty records)."""


class BatchSummary(Record):
    """What a batch run did (printed by the CLI, returned by the library)."""

    output: str
    method: str
    engine: str
    workers: int
    done: int = 0
    """Records in the output, including those a previous (interrupted) run wrote."""
    new: int = 0
    resumed: int = 0
    changed: int = 0
    fallbacks: int = 0
    errors: int = 0
    duplicates: int = 0
    seconds: float = 0.0
    records_per_s: float = 0.0
    already_complete: bool = False


# --------------------------------------------------------------------------- chunking / dedupe / resume


@dataclass
class _Stats:
    done: int = 0
    new: int = 0
    changed: int = 0
    fallbacks: int = 0
    errors: int = 0
    duplicates: int = 0

    def add(self, res: ChunkResult, *, new: bool = True) -> None:
        self.done += res.n
        self.new += res.n if new else 0
        self.changed += res.changed
        self.fallbacks += res.fallbacks
        self.errors += res.errors


def _dedupe(items: Iterable[Item], stats: _Stats) -> Iterator[Item]:
    """Keep the first record of each id (64-bit digests, not the ids, are kept in memory)."""
    seen: set[int] = set()
    for it in items:
        key = int.from_bytes(hashlib.blake2b(it.id.encode("utf-8", "replace"), digest_size=8).digest(), "little")
        if key in seen:
            stats.duplicates += 1
            if stats.duplicates <= 5:
                logger.warning("duplicate id %r (record %d) skipped; the first one is kept", it.id, it.pos + 1)
            continue
        seen.add(key)
        yield it


def chunks(items: Iterable[Item], method: str, batch_size: int) -> Iterator[list[Item]]:
    """Deterministic chunks: close after `batch_size` LLM-bound records or PASS_CHUNK records in all."""
    chunk: list[Item] = []
    n_llm = 0
    for it in items:
        chunk.append(it)
        n_llm += needs_llm(it, method)
        if n_llm >= batch_size or len(chunk) >= PASS_CHUNK:
            yield chunk
            chunk, n_llm = [], 0
    if chunk:
        yield chunk


def _resume(journal: Path, stream: Iterator[list[Item]], method: str, stats: _Stats) -> tuple[Iterator[list[Item]], int]:
    """Skip the chunks the journal already holds in full; return the rest and the byte offset to keep."""
    if not journal.exists() or journal.stat().st_size == 0:
        return stream, 0
    offset = 0
    with open(journal, "rb") as fh:
        for chunk in stream:
            res = _read_chunk(fh, chunk, method, journal)
            if res is None:
                return itertools.chain([chunk], stream), offset
            offset = fh.tell()
            stats.add(res, new=False)
        if fh.read(1):
            raise InvalidInput(f"{journal} holds more records than the input: it belongs to another input; "
                               "choose another --out or delete it")
    return iter(()), offset


def _read_chunk(fh: Any, chunk: list[Item], method: str, journal: Path) -> ChunkResult | None:
    """The chunk's lines from the journal if all are there and whole; None at a torn/short tail."""
    res = ChunkResult(b"", 0, 0, 0, 0)
    for it in chunk:
        line = fh.readline()
        if not line.endswith(b"\n"):
            return None
        try:
            rec = BatchRecord.model_validate_json(line)
        except ValueError:
            if fh.read(1):
                raise InvalidInput(f"{journal} is not a cascade batch output (line {it.pos + 1} is not JSON); "
                                   "choose another --out or delete it") from None
            return None
        if rec.id != it.id:
            raise InvalidInput(f"{journal} belongs to another input (it has id {rec.id!r} where the input "
                               f"has {it.id!r}); choose another --out or delete it")
        if rec.status != "error" and rec.method not in (method, "none"):
            raise InvalidInput(f"{journal} was written with --correct {rec.method}; rerun with that mode "
                               "or choose another --out")
        res.n += 1
        res.changed += rec.changed
        res.fallbacks += rec.status in ("fallback", "unavailable")
        res.errors += rec.status == "error"
    return res


# --------------------------------------------------------------------------- journal


class Journal:
    """Append-only JSONL: whole records per write, truncated back on a failed write, fsynced on a timer."""

    def __init__(self, path: Path, keep: int, fsync_interval_s: float):
        self.path = path
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
        os.ftruncate(self.fd, keep)
        os.lseek(self.fd, keep, os.SEEK_SET)
        self.size = keep
        self.interval = fsync_interval_s
        self.last_sync = time.monotonic()

    def append(self, data: bytes) -> None:
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self.fd, view):]
        except OSError as exc:
            os.ftruncate(self.fd, self.size)  # drop the partial chunk: the file ends on a whole record
            raise CascadeError(f"cannot write {self.path}: {exc.strerror or exc}; the records already written are "
                               "kept; free space and run the same command again to resume") from exc
        self.size += len(data)
        if time.monotonic() - self.last_sync >= self.interval:
            self.sync()

    def sync(self) -> None:
        os.fsync(self.fd)
        self.last_sync = time.monotonic()

    def close(self) -> None:
        try:
            self.sync()
        finally:
            os.close(self.fd)


def journal_path(out: Path, out_format: str) -> Path:
    return out if out_format == "jsonl" else out.with_name(out.name + ".partial.jsonl")


def run_path(out: Path) -> Path:
    """Sidecar with the settings an unfinished run was started with (removed when the run completes)."""
    return out.with_name(out.name + ".run.json")


def run_fingerprint(settings: Settings) -> dict[str, Any]:
    """The settings besides the input that decide the output bytes. LLM numerics depend on threads, so a
    GER run resumed with other --workers would not reproduce the uninterrupted output."""
    opts, mode = settings.batch, settings.correct.mode
    fp: dict[str, Any] = {"method": mode, "batch_size": settings.correct.batch_size}
    if mode != "none":
        fp.update(engine=opts.engine, workers=opts.workers, llm=settings.llm.model_dump(mode="json", include={"backend", "model", "threads", "base_url"}),
                  rescore=settings.rescore.model_dump(mode="json"), ger=settings.ger.model_dump(mode="json"),
                  fusion=settings.fusion.model_dump(mode="json"), adapter=settings.correct.adapter)
    return fp


def _check_run(out: Path, fp: dict[str, Any], resuming: bool) -> None:
    """Refuse to resume with settings that change the output; then record this run's settings."""
    path = run_path(out)
    if resuming and path.exists():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            old = None
        if isinstance(old, dict):
            diff = [f"{k} {old.get(k)!r} -> {v!r}" if not isinstance(v, dict) else f"{k} options"
                    for k, v in fp.items() if old.get(k) != v]
            if diff:
                raise InvalidInput(f"{out.name} was started with other settings ({'; '.join(diff)}): resume "
                                   "with the same ones (they change the output) or choose another --out", param="out")
    try:
        path.write_text(json.dumps(fp, sort_keys=True), encoding="utf-8")
    except OSError as exc:  # a safety net only: never the reason a run fails
        logger.warning("could not record the run settings in %s: %s", path, exc)


def _assemble(journal: Path, out: Path, fmt: str) -> None:
    """Render the journal into `fmt` in a temp file, fsync, rename over `out`, then drop the journal."""
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        with open(journal, encoding="utf-8") as src, open(tmp, "w", encoding="utf-8", newline="") as dst:
            render(fmt, (BatchRecord.model_validate_json(line) for line in src), dst)
            dst.flush()
            os.fsync(dst.fileno())
        os.replace(tmp, out)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise CascadeError(f"cannot write {out}: {exc.strerror or exc}; every record is kept in {journal}; free "
                           "space and run the same command again") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(out.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    journal.unlink()


# --------------------------------------------------------------------------- executors


def _execute(stream: Iterator[list[Item]], settings: Settings, workdir: Path) -> Iterator[ChunkResult]:
    """Chunk results in input order: in this process, in local worker processes, or on Ray."""
    opts, mode = settings.batch, settings.correct.mode
    if opts.engine == "ray":
        from cascade.batch.ray_engine import execute_ray

        yield from execute_ray(stream, settings, workdir)
    elif opts.workers == 1 or mode == "none":
        corrector = lazy_corrector(mode, settings)
        for chunk in stream:
            yield process_chunk(chunk, mode, corrector)
    else:
        yield from _execute_pool(stream, settings)


_WORKER: dict[str, Any] = {}


def _init_worker(settings: Settings) -> None:
    _WORKER["method"] = settings.correct.mode
    _WORKER["corrector"] = lazy_corrector(settings.correct.mode, settings)


def _work(chunk: list[Item]) -> ChunkResult:
    return process_chunk(chunk, _WORKER["method"], _WORKER["corrector"])


def _execute_pool(stream: Iterator[list[Item]], settings: Settings) -> Iterator[ChunkResult]:
    """Local processes, each loading its own LLM once; at most 2 chunks in flight per worker."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    n = settings.batch.workers
    ctx = multiprocessing.get_context("spawn")  # no fork after torch/threads were started
    with ProcessPoolExecutor(n, mp_context=ctx, initializer=_init_worker,
                             initargs=(worker_settings(settings, n),)) as pool:
        pending: collections.deque = collections.deque()
        for chunk in stream:
            pending.append(pool.submit(_work, chunk))
            if len(pending) >= 2 * n:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


# --------------------------------------------------------------------------- entry point


def run_batch(
    items: Iterable[Item],
    out: Path,
    out_format: str,
    settings: Settings,
    *,
    dedupe: bool = True,
    progress: Callable[[int], None] | None = None,
) -> BatchSummary:
    """Correct `items` into `out` (resuming a previous run's output); returns the summary."""
    opts, mode = settings.batch, settings.correct.mode
    summary = BatchSummary(output=str(out), method=mode, engine=opts.engine, workers=opts.workers)
    if not out.parent.is_dir():
        raise InvalidInput(f"output directory does not exist: {out.parent}", param="out")
    journal = journal_path(out, out_format)
    if journal != out and out.exists() and not journal.exists():
        return summary.model_copy(update={"already_complete": True})
    lazy_corrector(mode, settings)  # an unknown mode fails before any output is touched
    stats = _Stats()
    it = iter(_dedupe(items, stats) if dedupe else items)
    first = next(it, None)
    if first is None:
        raise InvalidInput("the input holds no records")
    stream, keep = _resume(journal, chunks(itertools.chain([first], it), mode, settings.correct.batch_size), mode,
                           stats)
    _check_run(out, run_fingerprint(settings), resuming=keep > 0)
    if stats.done:
        logger.info("resuming %s: %d records already done", journal, stats.done)
    resumed = stats.done
    start = time.monotonic()
    writer = Journal(journal, keep, opts.fsync_interval_s)
    try:
        for res in _execute(stream, settings, journal.parent):
            writer.append(res.data)
            stats.add(res)
            if progress is not None:
                progress(res.n)
    finally:
        writer.close()
    if journal != out:
        _assemble(journal, out, out_format)
    run_path(out).unlink(missing_ok=True)
    seconds = time.monotonic() - start
    return summary.model_copy(update={
        "done": stats.done, "new": stats.new, "resumed": resumed, "changed": stats.changed,
        "fallbacks": stats.fallbacks, "errors": stats.errors, "duplicates": stats.duplicates,
        "seconds": round(seconds, 3), "records_per_s": round(stats.new / seconds, 1) if seconds > 0 else 0.0,
    })


def correct_file(
    input_path: Path,
    out: Path,
    settings: Settings,
    *,
    in_format: str | None = None,
    out_format: str | None = None,
    columns: dict[str, str | None] | None = None,
    progress: Callable[[int, int | None], None] | None = None,
) -> BatchSummary:
    """Read `input_path` in its format, correct it into `out` in the output's format (see `run_batch`).

    `progress(records, bytes_read)` is called after each chunk (bytes_read is None for CSV/TSV).
    """
    from cascade.formats.records import GENERATED_IDS, ByteCounter, detect_format, read_items

    fmt = detect_format(input_path, in_format)
    ofmt = detect_format(out, out_format, output=True)
    if ofmt in ("srt", "vtt") and fmt not in ("srt", "vtt"):
        raise InvalidInput(f"{ofmt} output needs cue timings, which {fmt} input does not have; write .jsonl instead",
                           param="out")
    if not input_path.is_file():
        raise InvalidInput(f"input file not found: {input_path}", param="input")
    if input_path.stat().st_size == 0:
        raise InvalidInput(f"input file is empty: {input_path}", param="input")
    if out.resolve() == input_path.resolve() or journal_path(out, ofmt).resolve() == input_path.resolve():
        raise InvalidInput(f"--out {out} would overwrite the input; choose another file", param="out")
    counter: list[ByteCounter] = []
    items = read_items(input_path, fmt, counter.append, **(columns or {}))
    tick = None
    if progress is not None:
        def tick(n: int) -> None:
            progress(n, counter[0].pos if counter else None)
    return run_batch(items, out, ofmt, settings, dedupe=fmt not in GENERATED_IDS, progress=tick)
