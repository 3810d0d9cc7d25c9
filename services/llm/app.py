"""The LLM service: OpenAI-compatible completions/chat over cascade's backend, plus rescore/correct."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from cascade.config import Settings, load_settings
from services.common.app import create_service_app
from services.llm.router import router
from services.llm.serving import LlmServing


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings()

    async def load(app: FastAPI) -> None:
        llm = LlmServing(settings)
        await run_in_threadpool(lambda: llm.backend)
        app.state.loaded.update({f"llm:{llm.base_name}", *(f"adapter:{n}" for n in llm.adapters)})
        app.state.llm = llm

    return create_service_app("llm", settings, [router], load)
