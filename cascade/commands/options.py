"""Option declarations shared by every command: one flag name per idea, defaults and choices shown in --help.

`--correct` chooses the correction mode everywhere (`--method`, `--mode` and `--correction`, its
earlier names, still work but are left out of --help: see old_names); `--limit` caps records;
`--model` (`-m`) names the model of the command's stage; `--input-format` / `--output-format` name
the two formats apart. Short flags mean one thing in
every command: -m --model, -n --n-best, -b --beam-size, -l --language, -f --format (what is written),
-o where output goes, -e --engine (speech), -v --verbose. An option left unset takes the config's
value; its --help shows which key and the shipped default (`[default: asr.n_best = 5]`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import typer

from cascade.config import Settings
from cascade.formats.records import FORMATS as INPUT_FORMATS
from cascade.formats.records import OUTPUT_FORMATS
from cascade.types import CorrectionMode


def config_default(key: str) -> str:
    """'asr.n_best = 5' for --help: the setting an unset flag falls back to, with its built-in default."""
    section, field = key.split(".")
    value = getattr(Settings.model_fields[section].default, field)
    return f"{key} = {'unset' if value is None else value}"


def choices(values: tuple[str, ...]) -> str:
    return "[" + "|".join(values) + "]"


ComputeType = Literal["default", "auto", "int8", "int8_float32", "int8_float16", "int8_bfloat16", "int16",
                      "float16", "bfloat16", "float32"]
"""CTranslate2's compute types (asr.compute_type)."""

OLD_NAMES = {"method": "correct", "mode": "correct", "correction": "correct"}
"""Earlier option names, accepted as they were and kept out of --help (one name per idea there)."""


def old_names(**renamed: str) -> dict[str, Any]:
    """context_settings for a command taking OLD_NAMES (plus `renamed`, old -> new, e.g. format="input-format").

    click normalises every option token through this before matching, so `--mode x` is `--correct x`.
    """
    names = {**OLD_NAMES, **{old.replace("_", "-"): new for old, new in renamed.items()}}
    return {"token_normalize_func": lambda token: names.get(token, token)}


_CORRECT_NAMES = ("--correct",)
_CORRECT_HELP = "Correction mode (also accepted under its older names --method, --mode, --correction)."
CorrectOpt = Annotated[str | None, typer.Option(*_CORRECT_NAMES, metavar=choices(get_args(CorrectionMode)), help=_CORRECT_HELP)]
"""For a command with its own default mode (given in its signature)."""
CorrectCfgOpt = Annotated[str | None, typer.Option(*_CORRECT_NAMES, metavar=choices(get_args(CorrectionMode)),
                                                   help=_CORRECT_HELP, show_default=config_default("correct.mode"))]
"""For a command whose default mode is the config's (None in its signature)."""
TurnCorrectOpt = Annotated[str | None, typer.Option(
    *_CORRECT_NAMES, metavar=choices(get_args(CorrectionMode)), show_default=config_default("chat.correct"),
    help="The spoken turn's correction (chat.correct; also --correction): none replies to Whisper's 1-best at once, "
    "another mode decodes the 5-best and corrects it first.")]
AdapterOpt = Annotated[str | None, typer.Option(
    "--adapter", show_default=config_default("correct.adapter"),
    help="GER LoRA adapter (correct.adapter): a peft directory, or the name a server serves it under.")]
LimitOpt = Annotated[int | None, typer.Option("--limit", help="Only the first N utterances of each file.", min=1,
                                              show_default="all")]
LamOpt = Annotated[float | None, typer.Option(
    "--lam", show_default="rescore.profiles (per input style)",
    help="λ in (1-λ)·AM + λ·LM, the weight of the LLM against Whisper's acoustic score (see `cascade tune`).")]
PromptOpt = Annotated[str | None, typer.Option("--prompt", help="GER prompt template, e.g. ger/numbered.",
                                               show_default=config_default("ger.prompt"))]
BatchSizeOpt = Annotated[int | None, typer.Option("--batch-size", help="N-best lists per LLM call (correct.batch_size).",
                                                  min=1, show_default=config_default("correct.batch_size"))]
InputFormatOpt = Annotated[str | None, typer.Option(
    "--input-format", metavar=choices(INPUT_FORMATS), show_default="from the file name",
    help="Input format when the file name does not tell (--format is its older name).")]
OutputFormatOpt = Annotated[str | None, typer.Option(
    "--output-format", metavar=choices(OUTPUT_FORMATS), show_default="from --out's name",
    help="Output format when the file name does not tell.")]
ConfigOut = Annotated[Path | None, typer.Option(
    "--out", help="YAML config to write (read when CASCADE_CONFIG is unset).", show_default="$CASCADE_HOME/config.yaml")]

# ---------------------------------------------------------------- runtime: where models run
DeviceOpt = Annotated[Literal["cpu", "cuda", "auto"] | None, typer.Option(
    "--device", help="Where Whisper runs.", show_default=config_default("asr.device"))]
ComputeTypeOpt = Annotated[ComputeType | None, typer.Option(
    "--compute-type", help="Whisper's CTranslate2 compute type (quantisation).",
    show_default=config_default("asr.compute_type"))]
ThreadsOpt = Annotated[int | None, typer.Option(
    "--threads", min=0, help="CPU threads of Whisper (asr.cpu_threads) and of the LLM (llm.threads); 0: the library's choice.",
    show_default="asr.cpu_threads = 0, llm.threads = 0")]
LlmThreadsOpt = Annotated[int | None, typer.Option(
    "--threads", min=0, help="CPU threads of the LLM (llm.threads); 0: torch's default.",
    show_default=config_default("llm.threads"))]


def runtime(device: str | None = None, compute_type: str | None = None, threads: int | None = None) -> dict[str, dict]:
    """The settings sections the runtime flags set (None: not given)."""
    return {"asr": {"device": device, "compute_type": compute_type, "cpu_threads": threads},
            "llm": {"threads": threads}}


# ---------------------------------------------------------------- subtitles (srt, vtt)
WordsOpt = Annotated[bool | None, typer.Option(
    "--word-timestamps/--no-word-timestamps", show_default="on for srt, vtt and all; else asr.word_timestamps = False",
    help="Align every word of the 1-best (json: per-segment `words`; srt/vtt: cues cut at word times).")]
LineWidthOpt = Annotated[int | None, typer.Option(
    "--max-line-width", min=8, help="srt/vtt: characters per cue line.", show_default=config_default("subtitles.max_line_width"))]
LineCountOpt = Annotated[int | None, typer.Option(
    "--max-line-count", min=1, help="srt/vtt: lines per cue.", show_default=config_default("subtitles.max_line_count"))]
CueDurationOpt = Annotated[float | None, typer.Option(
    "--max-cue-duration", min=0.5, help="srt/vtt: seconds one cue stays on screen at most.",
    show_default=config_default("subtitles.max_duration_s"))]
