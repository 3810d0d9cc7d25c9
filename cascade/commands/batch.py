"""`cascade correct-batch`: correct existing ASR output in bulk (resumable; local workers or Ray)."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from cascade.commands.common import cli_errors, console, err_console, settings
from cascade.commands.options import (
    AdapterOpt, BatchSizeOpt, CorrectCfgOpt, InputFormatOpt, LlmThreadsOpt, OutputFormatOpt, config_default, old_names,
)
from cascade.commands.progress import progress
from cascade.types import InvalidInput

app = typer.Typer()


@app.command("correct-batch", context_settings=old_names(format="input-format", out_format="output-format"))
@cli_errors
def correct_batch(
    input_paths: Annotated[list[Path], typer.Argument(metavar="INPUT...", help="HyPoradise .json, .jsonl, .csv/.tsv, "
                                                      "Kaldi `text`, .srt/.vtt or .txt (one utterance per line); "
                                                      "with --join, one file per recogniser.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output file; its extension picks the format "
                                      "(.jsonl: one record per utterance). Rerun the same command to resume.")],
    fmt: InputFormatOpt = None,
    out_format: OutputFormatOpt = None,
    mode: CorrectCfgOpt = None,
    adapter: AdapterOpt = None,
    workers: Annotated[int | None, typer.Option("--workers", help="Processes (local) or actors (ray).", min=1,
                                                show_default=config_default("batch.workers"))] = None,
    batch_size: BatchSizeOpt = None,
    engine: Annotated[Literal["local", "ray"] | None, typer.Option("--engine", help="Where the workers run (ray: RAY_ADDRESS "
                                                                   "joins a cluster).", show_default=config_default("batch.engine"))] = None,
    join: Annotated[bool, typer.Option("--join", help="Fuse several recognisers' outputs of the same utterances, "
                                       "joined by id: --correct rover (default, majority vote), rescore, rerank "
                                       "(trained: trusts one far better system) or ger.")] = False,
    id_column: Annotated[str | None, typer.Option("--id-column", help="CSV/TSV: the id column (default: detected).")] = None,
    text_column: Annotated[str | None, typer.Option("--text-column", help="CSV/TSV: the transcript column.")] = None,
    ref_column: Annotated[str | None, typer.Option("--ref-column", help="CSV/TSV: the reference column.")] = None,
    report: Annotated[Path | None, typer.Option("--report", help="Also write a self-contained HTML report "
                                                "(summary, WER when references exist, largest changes); needs a .jsonl --out.")] = None,
    threads: LlmThreadsOpt = None,
    weights: Annotated[str | None, typer.Option("--weights", help="With --join: each system's vote weight, "
                                                "NAME=W,NAME=W (names are the file stems), instead of the reliability "
                                                "estimated from the joined input; the highest is the fallback.")] = None,
) -> None:
    """Correct a file of ASR transcripts (1-best or N-best), keeping its format; resumable after a crash."""
    from cascade.batch import correct_file

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a file-size limit then fails a write cleanly (EFBIG)
    columns = {"id_column": id_column, "text_column": text_column, "ref_column": ref_column}
    method, fusion = _fusion_mode(mode, join, len(input_paths))
    if weights is not None:
        if not join:
            raise InvalidInput("--weights weighs the systems of --join; add --join", param="weights")
        from cascade.fusion.reliability import parse_weights

        fusion = {**(fusion or {}), "weights": parse_weights(weights)}
    if report is not None and (out_format or out.suffix.lstrip(".")) != "jsonl":
        raise InvalidInput("--report reads the originals and corrections from a .jsonl --out; write .jsonl, then "
                           "convert it with `cascade correct-batch OUT.jsonl --out FILE.srt`", param="report")
    s = settings(correct={"mode": method, "batch_size": batch_size, "adapter": adapter},
                 batch={"workers": workers, "engine": engine}, fusion=fusion, llm={"threads": threads})
    with progress(f"correct-batch ({s.correct.mode})", total=_bytes(input_paths[0], fmt, join), unit="records") as tick:
        if join:
            summary = _correct_joined(input_paths, out, s, columns, fmt, out_format, tick)
        else:
            _print_columns(input_paths[0], fmt, columns)
            summary = correct_file(input_paths[0], out, s, in_format=fmt, out_format=out_format, columns=columns,
                                   progress=lambda n, pos: tick(n, position=pos))
    if summary.already_complete:
        console.print(f"{out} is already complete (delete it to run again)", highlight=False)
        return
    console.print(
        f"done {summary.done} (resumed {summary.resumed}, new {summary.new}), changed {summary.changed}, "
        f"fallbacks {summary.fallbacks}, errors {summary.errors}, duplicates {summary.duplicates}; "
        f"{summary.seconds:.1f} s, {summary.records_per_s:.1f} records/s -> {out}", highlight=False, soft_wrap=True)
    if report is not None:
        _write_report(report, out, summary)


def _write_report(path: Path, out: Path, summary: Any) -> None:
    from cascade import report as reports

    rows, seen = reports.rows_from_batch_output(out, dataset=out.stem)
    facts = summary.model_dump(exclude={"output"})
    if seen > len(rows):
        facts["report covers"] = f"the first {len(rows)} of {seen} records"
    reports.write(path, rows, title=f"Batch correction: {out.name}", summary=facts)
    console.print(f"report -> {path}", highlight=False)


def _fusion_mode(mode: str | None, join: bool, n_inputs: int) -> tuple[str | None, dict[str, Any] | None]:
    """(batch method, fusion settings) for the flags: --join maps rover to the vote, rescore/rerank/ger to fusion."""
    if not join:
        if n_inputs != 1:
            raise InvalidInput(f"give one INPUT (got {n_inputs}); to fuse several recognisers' files add --join",
                               param="input")
        return mode, None
    mode = mode or "rover"
    if mode not in ("rover", "rescore", "rerank", "ger"):
        raise InvalidInput(f"--join fuses with --correct rover, rescore, rerank or ger (got {mode!r})", param="correct")
    return ("rover" if mode == "rover" else "fusion"), {"method": mode}


def _print_columns(path: Path, fmt: str | None, columns: dict[str, str | None]) -> None:
    """Show which CSV/TSV columns were taken (detected or named), before any work starts."""
    from cascade.formats.records import detect_format
    from cascade.formats.tabular import read_table

    if path.is_file() and detect_format(path, fmt) in ("csv", "tsv"):
        table = read_table(path, **{k: v for k, v in columns.items() if v is not None})
        err_console.print(table.columns.describe(), highlight=False, soft_wrap=True)


def _correct_joined(paths: list[Path], out: Path, s: Any, columns: dict[str, str | None], fmt: str | None,
                    out_format: str | None, tick: Callable[[int], None]) -> Any:
    from cascade.batch.join import correct_joined

    summary, joined = correct_joined(paths, out, s, columns=columns, in_format=fmt, out_format=out_format,
                                     progress=tick)
    for line in joined.reports:
        err_console.print(line, highlight=False, soft_wrap=True)
    if joined.reliability is not None:
        err_console.print(joined.reliability.describe(), highlight=False, soft_wrap=True)
    lacking = ", ".join(f"{k} {v}" for k, v in joined.missing.items() if v)
    err_console.print(f"joined {len(joined.inputs)} utterances from {len(paths)} systems"
                      + (f"; missing ids: {lacking}" if lacking else ""), highlight=False, soft_wrap=True)
    return summary


def _bytes(path: Path, fmt: str | None, join: bool) -> int | None:
    """The input's size: the engine reports how many bytes it has read, so the ETA needs no record count
    (not for CSV/TSV, read through the csv module, nor for several joined inputs)."""
    from cascade.formats.records import detect_format

    if join or not path.is_file() or detect_format(path, fmt) in ("csv", "tsv"):
        return None
    return path.stat().st_size
