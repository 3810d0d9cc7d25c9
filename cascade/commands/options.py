"""Option declarations shared by every command: one flag name per idea, defaults and choices shown in --help.

`--correct` chooses the correction mode everywhere (`--method`, `--mode` and `--correction`, its
earlier names, still work); `--limit` caps records; `--model` names the model of the command's
stage; `--input-format` / `--output-format` name the two formats apart.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, get_args

import typer

from cascade.types import CorrectionMode

CorrectOpt = Annotated[str | None, typer.Option(
    "--correct", "--method", "--mode", "--correction", metavar="[" + "|".join(get_args(CorrectionMode)) + "]",
    help="Correction mode (config: correct.mode); --method/--mode/--correction are its older names.")]
AdapterOpt = Annotated[str | None, typer.Option(
    "--adapter", help="GER LoRA adapter (correct.adapter): a peft directory, or the name a server serves it under.")]
LimitOpt = Annotated[int | None, typer.Option("--limit", help="Only the first N utterances of each file.", min=1)]
LamOpt = Annotated[float | None, typer.Option("--lam", help="λ in (1-λ)·AM + λ·LM (default: the config's, see `cascade tune`).")]
PromptOpt = Annotated[str | None, typer.Option("--prompt", help="GER prompt template, e.g. ger/numbered.")]
BatchSizeOpt = Annotated[int | None, typer.Option("--batch-size", help="N-best lists per LLM call (correct.batch_size).", min=1)]
InputFormatOpt = Annotated[str | None, typer.Option("--input-format", "--format", help="Input format when the file name does not tell.")]
OutputFormatOpt = Annotated[str | None, typer.Option("--output-format", "--out-format", help="Output format when the file name does not tell.")]
ConfigOut = Annotated[Path | None, typer.Option(
    "--out", help="YAML config to write (default: $CASCADE_HOME/config.yaml, read when CASCADE_CONFIG is unset).")]
