"""`cascade serve asr|llm|tts|gateway`: run one service under uvicorn."""

from __future__ import annotations

import importlib
import logging
from typing import Annotated

import typer

from cascade.commands.common import cli_errors, settings

GROUP = "serve"
app = typer.Typer(help="Run a REST service (OpenAI-compatible) under uvicorn.", no_args_is_help=True)

Host = Annotated[str | None, typer.Option(help="Interface to bind (default: service.host, 127.0.0.1).")]
Port = Annotated[int | None, typer.Option(help="Port to listen on (default: service.port, 8000).")]
Concurrency = Annotated[int | None, typer.Option(help="Requests running at once per model.")]
Queue = Annotated[int | None, typer.Option(help="Requests waiting per model before 429.")]
LogLevel = Annotated[str, typer.Option(help="Log level of the JSON logs.")]
Url = Annotated[str | None, typer.Option(help="Remote stage URL (default: run the stage in-process).")]


def _run(name: str, service: dict) -> None:
    import uvicorn

    from services.common.logs import setup_json_logging

    level = service.pop("_log_level")
    s = settings(service=service)
    setup_json_logging(getattr(logging, level.upper(), logging.INFO))
    module = importlib.import_module(f"services.{name}.app")
    uvicorn.run(module.create_app(s), host=s.service.host, port=s.service.port, log_config=None,
                access_log=False, timeout_graceful_shutdown=10)


def _service(host, port, concurrency, queue, log_level, **urls) -> dict:
    return {"host": host, "port": port, "max_concurrency": concurrency, "max_queue": queue,
            "_log_level": log_level, **urls}


@app.command("asr")
@cli_errors
def serve_asr(host: Host = None, port: Port = None, max_concurrency: Concurrency = None, max_queue: Queue = None,
              log_level: LogLevel = "info", llm_url: Url = None) -> None:
    """Whisper N-best: /v1/audio/transcriptions, /v1/audio/translations, /v1/nbest."""
    _run("asr", _strip(_service(host, port, max_concurrency, max_queue, log_level, llm_url=llm_url)))


@app.command("llm")
@cli_errors
def serve_llm(host: Host = None, port: Port = None, max_concurrency: Concurrency = None, max_queue: Queue = None,
              log_level: LogLevel = "info") -> None:
    """LLM: /v1/completions, /v1/chat/completions, /v1/models, /v1/rescore, /v1/correct."""
    _run("llm", _strip(_service(host, port, max_concurrency, max_queue, log_level)))


@app.command("tts")
@cli_errors
def serve_tts(host: Host = None, port: Port = None, max_concurrency: Concurrency = None, max_queue: Queue = None,
              log_level: LogLevel = "info") -> None:
    """Speech: /v1/audio/speech (streamed)."""
    _run("tts", _strip(_service(host, port, max_concurrency, max_queue, log_level)))


@app.command("gateway")
@cli_errors
def serve_gateway(host: Host = None, port: Port = None, max_concurrency: Concurrency = None,
                  max_queue: Queue = None, log_level: LogLevel = "info", asr_url: Url = None, llm_url: Url = None,
                  tts_url: Url = None) -> None:
    """Orchestrator: corrected transcriptions and the spoken turn (/v1/voice/turn) over the stages."""
    _run("gateway", _strip(_service(host, port, max_concurrency, max_queue, log_level, asr_url=asr_url,
                                    llm_url=llm_url, tts_url=tts_url)))


def _strip(service: dict) -> dict:
    level = service.pop("_log_level")
    out = {k: v for k, v in service.items() if v is not None}
    out["_log_level"] = level
    return out
