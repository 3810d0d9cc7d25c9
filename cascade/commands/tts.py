"""`cascade speak` (text -> audio file) and `cascade chat` (one spoken turn: speech in, speech out)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from cascade.commands.common import cli_errors, console, err_console, settings
from cascade.commands.options import ThreadsOpt, TurnCorrectOpt, config_default, old_names, runtime
from cascade.types import ChatMessage, InvalidInput

app = typer.Typer()

EngineOpt = Annotated[str | None, typer.Option("--engine", "-e", metavar="[piper|espeak|coqui]", help="TTS engine.",
                                                show_default=config_default("tts.engine"))]
VoiceOpt = Annotated[str | None, typer.Option("--voice", help="Piper voice name or .onnx path; espeak-ng voice (e.g. en-us).",
                                              show_default=config_default("tts.voice"))]
SpeedOpt = Annotated[float | None, typer.Option("--speed", help="Speaking rate: 1.0 normal, 2.0 twice as fast.",
                                                show_default=config_default("tts.speed"))]
FormatOpt = Annotated[str | None, typer.Option("--format", "-f", metavar="[wav|flac|mp3|opus|aac|pcm]", help="Audio format.",
                                               show_default="from the output suffix, else tts.format = wav")]
RateOpt = Annotated[int | None, typer.Option("--sample-rate", help="Resample the output to this rate (Hz).",
                                             show_default="the engine's own")]
CoquiOpt = Annotated[str | None, typer.Option("--coqui-model", help="Coqui checkpoint file (config.json beside it) or directory.")]
SpeakerOpt = Annotated[str | None, typer.Option("--speaker", help="Speaker name (multi-speaker models) or a reference .wav (XTTS).")]
OutOpt = Annotated[Path, typer.Option("--output", "-o", help="Audio file to write.")]


def _tts(engine, voice, speed, fmt, rate, coqui, speaker, output: Path) -> dict:
    suffix = output.suffix.lstrip(".").lower()
    fmt = fmt or (suffix if suffix in ("wav", "flac", "mp3", "opus", "aac", "pcm") else None)
    return {"engine": engine, "voice": voice, "speed": speed, "format": fmt, "sample_rate": rate,
            "coqui_model": coqui, "speaker": speaker}


def _write(output: Path, chunk, fmt: str) -> None:
    import numpy as np

    from cascade.audio import encode_audio

    data = encode_audio(np.frombuffer(chunk.pcm, dtype="<i2"), chunk.sample_rate, fmt)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes(data)


@app.command()
@cli_errors
def speak(
    text: Annotated[str, typer.Argument(help="Text to speak ('-' reads stdin).", show_default=False)],
    output: OutOpt,
    engine: EngineOpt = None, voice: VoiceOpt = None, speed: SpeedOpt = None, fmt: FormatOpt = None,
    sample_rate: RateOpt = None, coqui_model: CoquiOpt = None, speaker: SpeakerOpt = None,
    language: Annotated[str | None, typer.Option("--language", help="Language (multilingual Coqui models).")] = None,
) -> None:
    """Synthesize TEXT sentence by sentence and write it to an audio file."""
    import sys

    from cascade.tts import synthesize_all

    text = sys.stdin.read() if text == "-" else text
    s = settings(tts={**_tts(engine, voice, speed, fmt, sample_rate, coqui_model, speaker, output), "language": language})
    chunk = synthesize_all(text, s.tts, home=s.home)
    _write(output, chunk, s.tts.format)
    err_console.print(f"wrote {output} ({chunk.duration:.2f} s, {chunk.sample_rate} Hz, {s.tts.format}, {s.tts.engine})")


def _read_history(path: Path | None) -> list[ChatMessage]:
    if path is None or not path.exists():
        return []
    try:
        return [ChatMessage.model_validate(m) for m in json.loads(path.read_text() or "[]")]
    except (ValueError, TypeError) as exc:
        raise InvalidInput(f"history file {path} is not a JSON list of {{role, content}} messages: {exc}".splitlines()[0], param="history") from exc


@app.command(context_settings=old_names())
@cli_errors
def chat(
    audio: Annotated[Path, typer.Argument(help="The user's utterance (any format ffmpeg reads).", show_default=False)],
    output: OutOpt,
    history: Annotated[Path | None, typer.Option("--history", help="JSON conversation history; read, then extended with this turn.")] = None,
    correction: TurnCorrectOpt = None,
    stream: Annotated[bool | None, typer.Option("--stream/--no-stream", help="Speak the first sentence while the rest is generated.")] = None,
    engine: EngineOpt = None, voice: VoiceOpt = None, speed: SpeedOpt = None, fmt: FormatOpt = None,
    sample_rate: RateOpt = None, coqui_model: CoquiOpt = None, speaker: SpeakerOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the TurnResult as JSON.")] = False,
    live: Annotated[bool, typer.Option("--live", help="Replay AUDIO as a live stream (cascade.live: decoded while it "
                                       "arrives, VAD ends the turn) and print each event with its time.")] = False,
    pace: Annotated[bool, typer.Option("--pace/--no-pace", help="--live: send frames at real time (--no-pace: as fast as "
                                       "they are taken, for tests).")] = True,
    threads: ThreadsOpt = None,
) -> None:
    """One spoken turn: transcribe AUDIO, correct it, reply with the LLM and speak the reply to OUTPUT."""
    from cascade.pipeline import build_turn

    if not audio.exists():
        raise InvalidInput(f"file not found: {audio}", param="file")
    past = _read_history(history)
    s = settings(tts=_tts(engine, voice, speed, fmt, sample_rate, coqui_model, speaker, output),
                 chat={"correct": correction, "stream": stream}, **runtime(threads=threads))
    if live:
        _chat_live(audio, output, history, past, s, pace, as_json)
        return
    result = build_turn(s).run(audio, past)
    _write(output, result.audio, s.tts.format)
    if history is not None:
        turn = [ChatMessage(role="user", content=result.correction.text), ChatMessage(role="assistant", content=result.reply.text)]
        history.write_text(json.dumps([m.model_dump() for m in [*past, *turn]], indent=1))
    if as_json:
        console.print_json(result.model_dump_json())
        return
    _print_turn(result, output)


def _chat_live(audio: Path, output: Path, history: Path | None, past: list[ChatMessage], s, pace: bool,
               as_json: bool) -> None:
    """`chat --live`: the file through cascade.live.replay, one line per event (JSON lines with --json)."""
    import time

    from cascade.audio import load_audio
    from cascade.live import build_detector, join_audio, replay
    from cascade.pipeline import build_turn
    from cascade.types import LiveAudio, LiveDone, LiveError

    turn, samples = build_turn(s), load_audio(audio, max_duration_s=s.live.max_turn_s)
    chunks, done, t0 = [], None, time.perf_counter()
    for event in replay(turn, samples, s.live, pace=pace, history=past, detector=build_detector(s)):
        at = time.perf_counter() - t0
        if as_json:
            console.print_json(event.model_dump_json(exclude={"transcript", "correction"}))
        elif event.type == "final":
            console.print(f"{at:6.2f} s  [bold]final:[/bold] {event.text}", highlight=False)
        elif event.type == "audio":
            console.print(f"{at:6.2f} s  audio {event.bytes} bytes at {event.sample_rate} Hz", highlight=False)
        elif event.type != "done":
            console.print(f"{at:6.2f} s  {event.type}: {getattr(event, 'text', None) or getattr(event, 'message', '')}",
                          highlight=False)
        chunks += [event.chunk] if isinstance(event, LiveAudio) and event.chunk is not None else []
        done = event if isinstance(event, LiveDone) else done
        if isinstance(event, LiveError):
            raise InvalidInput(event.message, param=event.param)
    speech = join_audio(chunks)
    if speech is None or done is None:
        raise InvalidInput("the live turn produced no reply audio", param="file")
    _write(output, speech, s.tts.format)
    if history is not None:
        turn = [ChatMessage(role="user", content=done.transcript), ChatMessage(role="assistant", content=done.reply)]
        history.write_text(json.dumps([m.model_dump() for m in [*past, *turn]], indent=1))
    if not as_json:
        times = ", ".join(f"{k} {v:.2f}" for k, v in done.timings.items())
        console.print(f"seconds from the end of speech: {times}", highlight=False)
        console.print(f"wrote {output} ({speech.duration:.2f} s of speech, live)", highlight=False)


def _print_turn(result, output: Path) -> None:
    from rich.table import Table

    console.print(f"[bold]transcript:[/bold] {result.transcript.text.strip()}", highlight=False)
    console.print(f"[bold]corrected ({result.correction.method}):[/bold] {result.correction.text}", highlight=False)
    console.print(f"[bold]reply:[/bold] {result.reply.text}", highlight=False)
    table = Table("stage", "seconds")
    for name, seconds in result.timings.items():
        table.add_row(name, f"{seconds:.2f}")
    ttfa = "n/a" if result.time_to_first_audio is None else f"{result.time_to_first_audio:.2f}"
    table.add_row("[bold]time to first audio[/bold]", ttfa)
    console.print(table)
    console.print(f"wrote {output} ({result.speech.duration:.2f} s of speech, {result.speech.engine}, "
                  f"{'streamed' if result.streamed else 'sequential'})", highlight=False)
