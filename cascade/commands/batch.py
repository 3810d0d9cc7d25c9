"""`cascade correct-batch`: correct existing ASR output in bulk (resumable; local workers or Ray)."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated

import typer

from cascade.cli import cli_errors, console, err_console, settings

app = typer.Typer()


@app.command("correct-batch")
@cli_errors
def correct_batch(
    input_path: Annotated[Path, typer.Argument(metavar="INPUT", help="HyPoradise .json, .jsonl, .csv/.tsv, Kaldi "
                                               "`text`, .srt/.vtt or .txt (one utterance per line).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output file; its extension picks the format "
                                      "(.jsonl: one record per utterance). Rerun the same command to resume.")],
    fmt: Annotated[str | None, typer.Option("--format", help="Input format when the name does not tell.")] = None,
    out_format: Annotated[str | None, typer.Option("--out-format", help="Output format when the name does not tell.")] = None,
    mode: Annotated[str | None, typer.Option("--mode", help="none (format conversion), rescore or ger.")] = None,
    adapter: Annotated[Path | None, typer.Option("--adapter", help="LoRA adapter directory for the LLM.")] = None,
    workers: Annotated[int | None, typer.Option("--workers", help="Processes (local) or actors (ray).")] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", help="N-best lists per LLM call.")] = None,
    engine: Annotated[str | None, typer.Option("--engine", help="local or ray (RAY_ADDRESS joins a cluster).")] = None,
) -> None:
    """Correct a file of ASR transcripts (1-best or N-best), keeping its format; resumable after a crash."""
    from cascade.batch import correct_file

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a file-size limit then fails a write cleanly (EFBIG)
    a = str(adapter) if adapter else None
    s = settings(batch={"method": mode, "workers": workers, "batch_size": batch_size, "engine": engine},
                 llm={"adapter": a}, ger={"adapter": a})
    with _progress(input_path) as tick:
        summary = correct_file(input_path, out, s, in_format=fmt, out_format=out_format, progress=tick)
    if summary.already_complete:
        console.print(f"{out} is already complete (delete it to run again)", highlight=False)
        return
    console.print(
        f"done {summary.done} (resumed {summary.resumed}, new {summary.new}), changed {summary.changed}, "
        f"fallbacks {summary.fallbacks}, errors {summary.errors}, duplicates {summary.duplicates}; "
        f"{summary.seconds:.1f} s, {summary.records_per_s:.1f} records/s -> {out}", highlight=False, soft_wrap=True)


@contextlib.contextmanager
def _progress(path: Path) -> Iterator[Callable[[int, int | None], None]]:
    """A rich bar over the input's bytes (so the ETA needs no record count) showing records/s."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    total = path.stat().st_size if path.is_file() else None
    bar = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[records]} records"),
                   TextColumn("{task.fields[rate]:.1f}/s"), TimeElapsedColumn(), TextColumn("ETA"),
                   TimeRemainingColumn(), console=err_console, disable=not err_console.is_terminal)
    with bar:
        task = bar.add_task("correcting", total=total, records=0, rate=0.0)

        def tick(n: int, pos: int | None) -> None:
            t = bar.tasks[0]
            records = t.fields["records"] + n
            rate = records / t.elapsed if t.elapsed else 0.0
            bar.update(task, completed=pos if pos is not None else 0, records=records, rate=rate)

        yield tick
