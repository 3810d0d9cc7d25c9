"""The gateway: corrected transcriptions and the spoken turn over the stages (local or remote)."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from cascade.config import Settings, load_settings
from services.asr.router import router as asr_router
from services.asr.serving import AsrServing, LocalRecognizer
from services.common.app import create_service_app
from services.asr.stages import build_recognizer, llm_stage
from services.gateway import live, playground, realtime
from services.gateway.router import router
from services.gateway.serving import GatewayServing, OpenAIStages


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings()

    async def load(app: FastAPI) -> None:
        recognizer = build_recognizer(settings)
        if isinstance(recognizer, LocalRecognizer):
            await run_in_threadpool(recognizer.load, settings.asr)
            app.state.loaded.add(f"whisper:{settings.asr.model}")
        svc = settings.service
        app.state.loaded.update(f"remote:{k}={u}" for k, u in
                                (("asr", svc.asr_url), ("llm", svc.llm_url), ("tts", svc.tts_url)) if u)
        app.state.asr = AsrServing(settings, recognizer, llm_stage(settings, app), app.state.queues,
                                   app.state.metrics)
        app.state.gateway = GatewayServing(settings, app.state.queues, app.state.metrics)
        app.state.openai = OpenAIStages(settings, app.state.queues)  # chat, speech, models on this base URL
        live.preload_detector(app)  # the live turns' end-of-turn reader loads in the background
        if app.state.openai.tts is not None:
            await run_in_threadpool(app.state.openai.tts.load, settings.tts)
            app.state.loaded.add(f"tts:{settings.tts.engine}:{settings.tts.voice}")

    app = create_service_app("gateway", settings, [asr_router, router], load)
    app.include_router(playground.router)  # the page is public; its API calls carry the user's key
    app.include_router(live.router)  # /v1/live checks the key itself (browsers cannot send the header)
    app.include_router(realtime.router)  # /v1/realtime (OpenAI's Realtime API) likewise
    return app
