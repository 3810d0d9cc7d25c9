"""Thin route of the TTS service."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse

from services.common.deps import SettingsDep
from services.common.errors import ERROR_RESPONSES
from services.tts.protocol import MEDIA_TYPES, SpeechRequest
from services.tts.serving import TtsServing

router = APIRouter(tags=["audio"])


def get_tts(request: Request) -> TtsServing:
    return request.app.state.tts


TtsDep = Annotated[TtsServing, Depends(get_tts)]


@router.post("/v1/audio/speech", responses=ERROR_RESPONSES, response_class=StreamingResponse)
async def create_speech(req: SpeechRequest, tts: TtsDep, settings: SettingsDep) -> StreamingResponse:
    """OpenAI-compatible speech; wav and pcm stream sentence by sentence (X-Sample-Rate says the rate)."""
    options = req.to_tts_options(settings.tts)
    body, rate = await tts.speech(req.input, options)
    return StreamingResponse(body, media_type=MEDIA_TYPES[options.format], headers={"X-Sample-Rate": str(rate)})
