"""The TTS service: /v1/audio/speech over cascade.tts (piper on CPU, Coqui on GPU)."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from cascade.config import Settings, load_settings
from services.common.app import create_service_app
from services.tts.router import router
from services.tts.serving import TtsServing


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings()

    async def load(app: FastAPI) -> None:
        tts = TtsServing(settings, app.state.queues)
        await run_in_threadpool(tts.load, settings.tts)
        app.state.loaded.add(f"tts:{settings.tts.engine}:{settings.tts.voice}")
        app.state.tts = tts

    return create_service_app("tts", settings, [router], load)
