"""`cascade transcribe`, `cascade translate` and `cascade demo`.

The option aliases and `OutputOptions`/`run_files` are reusable: `translate`
is `transcribe` with task=translate, and later options (correction, target
language) plug into `OutputOptions` and `corrector` without touching
the command bodies.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from pydantic import ValidationError

from cascade.commands.common import cli_errors, console, err_console, error_line, settings
from cascade.commands.options import (
    AdapterOpt, ComputeTypeOpt, CorrectOpt, CueDurationOpt, DeviceOpt, LineCountOpt, LineWidthOpt, ThreadsOpt, WordsOpt,
    config_default, old_names, runtime,
)
from cascade.commands.progress import Ticker, progress
from cascade.config import Settings, SubtitleOptions
from cascade.types import InvalidInput, Segment, Transcript

logger = logging.getLogger(__name__)

app = typer.Typer()

FormatName = Literal["txt", "json", "srt", "vtt", "tsv", "all"]
ALL_FORMATS = ("txt", "json", "srt", "vtt", "tsv")

Files = Annotated[list[Path], typer.Argument(help="Audio files (any format ffmpeg reads).", show_default=False)]
ModelOpt = Annotated[str | None, typer.Option("--model", "-m", help="Whisper model name (`cascade models list`) or a CTranslate2 directory.",
                                               show_default=config_default("asr.model"))]
NBestOpt = Annotated[int | None, typer.Option("--n-best", "-n", help="Hypotheses kept per segment.", min=1,
                                              show_default=config_default("asr.n_best"))]
BeamOpt = Annotated[int | None, typer.Option("--beam-size", "-b", help="Beam width of the 1-best's search.", min=1,
                                             show_default=config_default("asr.beam_size"))]
LanguageOpt = Annotated[str | None, typer.Option("--language", "-l", help="Spoken language (ISO code).",
                                                 show_default="detected")]
FormatOpt = Annotated[FormatName, typer.Option("--format", "-f", help="Output format; json carries the N-best per segment, "
                                               "srt/vtt cues are cut at word times; all: every format (needs --output-dir).")]
OutDirOpt = Annotated[Path | None, typer.Option("--output-dir", "-o", help="Write <name>.<format> files here instead of printing.",
                                                show_default="print to stdout")]
HypoOpt = Annotated[Path | None, typer.Option("--hyporadise", help="Also write every segment's N-best as HyPoradise JSON records to this file.")]
VadOpt = Annotated[bool | None, typer.Option("--vad/--no-vad", help="Drop silence with Silero VAD before decoding.",
                                             show_default=config_default("asr.vad_filter"))]
SeedOpt = Annotated[int | None, typer.Option("--seed", help="Seed of the temperature fallback's sampling (the same output on every run; "
                                             "another seed may differ where the fallback samples).", min=0, max=2**32 - 2,
                                             show_default=config_default("asr.seed"))]
HallucinationsOpt = Annotated[Literal["flag", "drop", "keep"] | None, typer.Option(
    "--hallucinations", help="Segments that read as invented: flag (marked in json), drop (also left out of txt/srt/vtt/tsv), keep.",
    show_default=config_default("asr.hallucinations"))]
BatchedOpt = Annotated[bool | None, typer.Option("--batched/--sequential", help="Decode VAD chunks of speech "
                       "asr.batch_size at a time (faster-whisper's batched pipeline); many short files (1-best) share 30-s windows.",
                       show_default=config_default("asr.batched"))]
ToOpt = Annotated[str, typer.Option("--to", help="Target language (ISO code); Whisper itself translates only into English.")]
ViaOpt = Annotated[bool, typer.Option("--via-transcript", help="Transcribe in the source language, correct (--correct), then translate with the LLM.")]


@dataclass(frozen=True)
class OutputOptions:
    """What to do with each transcript once decoded (format, destination, correction)."""

    format: str | None = "txt"
    """None: print nothing per file (the caller shows the transcripts itself); "all": every format."""
    output_dir: Path | None = None
    hyporadise: Path | None = None
    correct: str = "none"
    adapter: str | None = None
    translate: bool = False
    """A translation job: cfg.translate picks fusion of Whisper's translations or --via-transcript."""
    subtitles: SubtitleOptions | None = None
    """How srt/vtt cues are cut (None: the defaults)."""
    drop_invented: bool = False
    """asr.hallucinations=drop: segments flagged as invented are left out of txt/srt/vtt/tsv (json keeps them)."""

    @property
    def formats(self) -> tuple[str, ...]:
        return () if self.format is None else ALL_FORMATS if self.format == "all" else (self.format,)


def asr_settings(*, task: str, model: str | None, n_best: int | None, beam_size: int | None,
                 language: str | None, vad: bool | None = None, words: bool | None = None,
                 run: dict[str, dict] | None = None, subtitles: dict[str, Any] | None = None,
                 seed: int | None = None, hallucinations: str | None = None, batched: bool | None = None) -> Settings:
    """Settings with the ASR flags laid on top; a larger --n-best widens the N-best's beam (not the 1-best's).

    `run`: the runtime flags' sections (options.runtime); `subtitles`: the cue flags.
    """
    wide = max(n_best, settings().asr.nbest_beam_size) if n_best is not None else None
    flags = dict(task=task, model=model, n_best=n_best, beam_size=beam_size, nbest_beam_size=wide, language=language,
                 vad_filter=vad, word_timestamps=words, seed=seed, hallucinations=hallucinations, batched=batched)
    run = run or runtime()
    try:
        return settings(asr={**flags, **run["asr"]}, llm=run["llm"], subtitles=subtitles)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InvalidInput(f"invalid option {where}: {first['msg']}") from None


def decoded_for(out: OutputOptions, cfg: Settings) -> Settings:
    """Alternatives are decoded only when something reads them: json (every segment's N-best), --hyporadise, or a
    correction that can pick other than the 1-best (cascade.correct.reads_alternatives); else the 1-best alone."""
    from cascade.asr import best_only
    from cascade.correct import reads_alternatives

    if "json" in out.formats or out.hyporadise is not None or reads_alternatives(cfg, out.correct):
        return cfg
    return cfg.model_copy(update={"asr": best_only(cfg.asr)})


def corrector(out: OutputOptions, cfg: Settings) -> Callable[[Transcript], Transcript]:
    """The correction step for every transcript of a run (cascade.correct): the LLM is loaded once, before any file."""
    from cascade.correct import transcript_corrector

    if out.adapter:
        cfg = cfg.model_copy(update={"correct": cfg.correct.model_copy(update={"adapter": out.adapter})})
    return transcript_corrector(cfg, out.correct, translate=out.translate)


def _emit(transcript: Transcript, path: Path, out: OutputOptions, many: bool) -> None:
    from cascade.formats.transcript import render

    for fmt in out.formats:
        body = render(transcript, fmt, out.subtitles, drop_invented=out.drop_invented)
        if out.output_dir is None:
            if many:
                sys.stdout.write(f"==> {path} <==\n")
            sys.stdout.write(body)
            sys.stdout.flush()
            continue
        out.output_dir.mkdir(parents=True, exist_ok=True)
        target = out.output_dir / f"{path.stem}.{fmt}"
        target.write_text(body, encoding="utf-8")
        err_console.print(f"wrote {target}", highlight=False)


def _check_output_names(files: list[Path], out: OutputOptions) -> None:
    """Refuse, before any work, inputs that would write the same file in -o (a/x.wav and b/x.flac -> x.txt)."""
    if out.format == "all" and out.output_dir is None:
        raise InvalidInput("--format all writes five files per input: give --output-dir", param="format")
    if out.output_dir is None or out.format is None:
        return
    seen: dict[Path, Path] = {}
    for path in files:
        target = out.output_dir / f"{path.stem}.{out.formats[0]}"
        if target in seen and seen[target] != path:
            raise InvalidInput(f"{seen[target]} and {path} would both write {target}: rename one, or transcribe "
                               "them into different --output-dir folders", param="files")
        seen[target] = path


def _tracked(segments: Iterator[Segment], tick: Ticker) -> Iterator[Segment]:
    done = 0
    for segment in segments:
        tick(max(int(segment.end) - done, 0))
        done = max(done, int(segment.end))
        yield segment


def transcribe_file(path: Path, cfg: Settings) -> Transcript:
    """One file through ASR, reporting progress in seconds of audio (its rate: seconds of audio per second)."""
    from cascade.asr import collect, transcribe

    started = time.perf_counter()
    segments, info = transcribe(path, cfg.asr, home=cfg.home)
    total = max(int(info.duration), 1)
    with progress(path.name, total=total, unit="s of audio", every=total, transient=True) as tick:  # else ~10 s lines
        transcript = collect(_tracked(segments, tick), info, source=str(path), started=started)
        tick(max(total - tick.count, 0))
    return transcript


def _decoder(files: list[Path], cfg: Settings) -> Callable[[Path], Transcript]:
    """transcribe_file for each file in turn; with asr.batched and several files, cascade.asr.transcribe_files
    (short files batch_size at a time in one batched decode). Called once per file, in order."""
    if not (cfg.asr.batched and len(files) > 1):
        return lambda path: transcribe_file(path, cfg)
    from cascade.asr import transcribe_files

    results = transcribe_files(files, cfg.asr, home=cfg.home)

    def next_file(path: Path) -> Transcript:
        _, got = next(results)
        if isinstance(got, Exception):
            raise got
        return got

    return next_file


def run_files(files: list[Path], cfg: Settings, out: OutputOptions) -> list[Transcript]:
    """Transcribe (and correct) each file; a bad file is reported in one line and skipped.

    Raises typer.Exit(1) after the others are done when any file failed.
    """
    from cascade.asr import prepare
    from cascade.formats.hyporadise import dumps, transcript_records

    _check_output_names(files, out)
    prepare(cfg.asr, cfg.home)  # model, task and LLM errors: once, before any file
    correct = corrector(out, cfg)
    done: list[Transcript] = []
    records: list[dict[str, Any]] = []
    failed = 0
    decoded = _decoder(files, cfg)
    for path in files:
        try:
            transcript = correct(decoded(path))
            _emit(transcript, path, out, many=len(files) > 1)
        except Exception as exc:  # noqa: BLE001 - one bad file must not stop the others
            if os.environ.get("CASCADE_DEBUG"):
                raise
            failed += 1
            message = error_line(exc)
            message = message if str(path) in message else f"{path}: {message}"
            err_console.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
            continue
        done.append(transcript)
        records += transcript_records(transcript, path.stem)
    if out.hyporadise is not None:
        out.hyporadise.parent.mkdir(parents=True, exist_ok=True)
        out.hyporadise.write_text(dumps(records), encoding="utf-8")
        err_console.print(f"wrote {len(records)} HyPoradise records to {out.hyporadise}", highlight=False)
    if failed:
        err_console.print(f"{failed} of {len(files)} file(s) failed", highlight=False)
        raise typer.Exit(1)
    return done


def _words(words: bool | None, fmt: str) -> bool | None:
    """Subtitle cues are cut at word times: srt, vtt and all turn word timestamps on unless told not to."""
    return True if words is None and fmt in ("srt", "vtt", "all") else words


def _cue_flags(width: int | None, lines: int | None, seconds: float | None) -> dict[str, Any]:
    return {"max_line_width": width, "max_line_count": lines, "max_duration_s": seconds}


@app.command(context_settings=old_names())
@cli_errors
def transcribe(files: Files, model: ModelOpt = None, n_best: NBestOpt = None, beam_size: BeamOpt = None,
               language: LanguageOpt = None, format: FormatOpt = "txt", output_dir: OutDirOpt = None,
               hyporadise: HypoOpt = None, vad: VadOpt = None, word_timestamps: WordsOpt = None,
               max_line_width: LineWidthOpt = None, max_line_count: LineCountOpt = None,
               max_cue_duration: CueDurationOpt = None, correct: CorrectOpt = "none", adapter: AdapterOpt = None,
               seed: SeedOpt = None, hallucinations: HallucinationsOpt = None, batched: BatchedOpt = None,
               device: DeviceOpt = None, compute_type: ComputeTypeOpt = None, threads: ThreadsOpt = None) -> None:
    """Transcribe audio files with Whisper and keep the N-best hypotheses of every segment."""
    cfg = asr_settings(task="transcribe", model=model, n_best=n_best, beam_size=beam_size, language=language, vad=vad,
                       words=_words(word_timestamps, format), run=runtime(device, compute_type, threads),
                       subtitles=_cue_flags(max_line_width, max_line_count, max_cue_duration),
                       seed=seed, hallucinations=hallucinations, batched=batched)
    out = OutputOptions(format=format, output_dir=output_dir, hyporadise=hyporadise, correct=correct, adapter=adapter,
                        subtitles=cfg.subtitles, drop_invented=cfg.asr.hallucinations == "drop")
    run_files(files, decoded_for(out, cfg), out)


@app.command(context_settings=old_names())
@cli_errors
def translate(files: Files, model: Annotated[str, typer.Option("--model", "-m", help="Whisper model (multilingual).")] = "base",
              n_best: NBestOpt = None, beam_size: BeamOpt = None,
              language: LanguageOpt = None, to: ToOpt = "en", correct: CorrectOpt = "none", via_transcript: ViaOpt = False,
              adapter: AdapterOpt = None, format: FormatOpt = "txt", output_dir: OutDirOpt = None,
              hyporadise: HypoOpt = None, vad: VadOpt = None, word_timestamps: WordsOpt = None,
              max_line_width: LineWidthOpt = None, max_line_count: LineCountOpt = None,
              max_cue_duration: CueDurationOpt = None, seed: SeedOpt = None, hallucinations: HallucinationsOpt = None,
              device: DeviceOpt = None, compute_type: ComputeTypeOpt = None, threads: ThreadsOpt = None) -> None:
    """Translate speech into English with Whisper (multilingual model), optionally fused/rescored by the LLM.

    --via-transcript instead transcribes in the source language, corrects, and lets the LLM translate.
    """
    from cascade.translate.speech import check_request

    task = "transcribe" if via_transcript else "translate"
    cfg = asr_settings(task=task, model=model, n_best=n_best, beam_size=beam_size, language=language, vad=vad,
                       words=_words(word_timestamps, format), run=runtime(device, compute_type, threads),
                       subtitles=_cue_flags(max_line_width, max_line_count, max_cue_duration),
                       seed=seed, hallucinations=hallucinations)
    cfg = cfg.model_copy(update={"translate": cfg.translate.model_copy(update={"target": to, "via_transcript": via_transcript})})
    check_request(cfg)
    out = OutputOptions(format=format, output_dir=output_dir, hyporadise=hyporadise, correct=correct, adapter=adapter,
                        translate=True, subtitles=cfg.subtitles, drop_invented=cfg.asr.hallucinations == "drop")
    run_files(files, cfg, out)


@app.command()
@cli_errors
def demo(file: Annotated[Path | None, typer.Argument(help="Your own recording; omitted: a sample made with the bundled piper voice.")] = None,
         model: ModelOpt = None, n_best: NBestOpt = None, as_json: Annotated[bool, typer.Option("--json", help="Print the transcript as JSON.")] = False,
         device: DeviceOpt = None, compute_type: ComputeTypeOpt = None, threads: ThreadsOpt = None) -> None:
    """N-best transcription of a sample (or your FILE), one table per segment, then what correction changed."""
    from cascade.asr.demo import demo_sample

    cfg = asr_settings(task="transcribe", model=model, n_best=n_best, beam_size=None, language=None,
                       run=runtime(device, compute_type, threads))
    path = file if file is not None else demo_sample(cfg.home)
    transcript = run_files([path], cfg, OutputOptions(format=None, correct=cfg.correct.mode))[0]
    if as_json:
        console.print_json(transcript.model_dump_json())
        return
    show_nbest(transcript, path)


def show_nbest(transcript: Transcript, path: Path) -> None:
    """Rich rendering: a header, then per segment a ranked table of hypotheses with their scores."""
    from rich.table import Table

    seconds = transcript.stages[0].seconds if transcript.stages else 0.0
    rtf = seconds / transcript.duration if transcript.duration else 0.0
    console.print(
        f"[bold]{path}[/bold]  model={transcript.model}  language={transcript.language}  "
        f"duration={transcript.duration:.1f}s  decode={seconds:.1f}s (RTF {rtf:.2f})", highlight=False
    )
    if not transcript.segments:
        console.print("[yellow]no speech found[/yellow]")
    for seg in transcript.segments:
        table = Table(title=f"segment {seg.id}: {seg.start:.2f}-{seg.end:.2f} s", title_justify="left")
        table.add_column("#", justify="right")
        table.add_column("hypothesis")
        table.add_column("log p (sum)", justify="right")
        table.add_column("per token", justify="right")
        chosen = seg.correction.chosen if seg.correction is not None else None
        for rank, hyp in enumerate(seg.nbest.hypotheses, start=1):
            style = "bold green" if rank == 1 else ("bold cyan" if chosen == rank - 1 else None)
            table.add_row(str(rank), hyp.text, f"{hyp.am_score:.2f}", f"{hyp.avg_logprob:.3f}", style=style)
        console.print(table)
    console.print(f"[bold]1-best:[/bold] {' '.join(s.nbest.texts[0] for s in transcript.segments if s.nbest.hypotheses)}",
                  highlight=False)
    show_correction(transcript)


def show_correction(transcript: Transcript) -> None:
    """What the configured correction (correct.mode) did to each segment: kept the 1-best, or which words it changed."""
    from cascade.metrics import normalize

    fixes = [(s, s.correction) for s in transcript.segments if s.correction is not None]
    if not fixes:
        return
    mode = fixes[0][1].method
    changed = [(s, c) for s, c in fixes if normalize(c.text) != normalize(s.nbest.texts[0])]
    console.print(f"[bold]corrected ({mode}):[/bold] {transcript.text}", highlight=False)
    for s, c in changed:
        console.print(f"  segment {s.id}: [red]{s.nbest.texts[0]}[/red] -> [cyan]{c.text}[/cyan]", highlight=False)
    if not changed:
        reasons = sorted({c.fallback_reason or "the 1-best scored highest" for _, c in fixes})
        console.print(f"  {mode} kept the 1-best in every segment ({'; '.join(reasons)})", highlight=False)
