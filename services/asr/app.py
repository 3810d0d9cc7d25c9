"""The ASR service: Whisper N-best behind OpenAI's audio API (`cascade serve asr`)."""

from __future__ import annotations

from fastapi import FastAPI

from cascade.config import Settings, load_settings
from services.asr.router import router
from services.asr.serving import AsrServing, LocalRecognizer, warm
from services.common.app import create_service_app
from services.asr.stages import llm_stage


def create_app(settings: Settings | None = None) -> FastAPI:
    """Settings are loaded here, at the edge, and reach handlers through app.state dependencies."""
    settings = settings or load_settings()

    async def load(app: FastAPI) -> None:
        recognizer = LocalRecognizer(settings)
        await warm(recognizer, settings.asr)
        app.state.loaded.add(f"whisper:{settings.asr.model}")
        corrector = llm_stage(settings, app)
        app.state.asr = AsrServing(settings, recognizer, corrector, app.state.queues, app.state.metrics)

    return create_service_app("asr", settings, [router], load)
