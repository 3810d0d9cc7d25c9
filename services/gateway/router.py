"""Thin route of the gateway's spoken turn (the transcription routes are the ASR service's own)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Form, Request

from services.asr.deps import DecodedAudio
from services.common.errors import ERROR_RESPONSES
from services.gateway.protocol import VoiceTurnResponse, parse_history
from services.gateway.serving import GatewayServing

router = APIRouter(tags=["voice"])


def get_gateway(request: Request) -> GatewayServing:
    return request.app.state.gateway


GatewayDep = Annotated[GatewayServing, Depends(get_gateway)]


@router.post("/v1/voice/turn", responses=ERROR_RESPONSES)
async def voice_turn(
    audio: DecodedAudio, gateway: GatewayDep,
    history: Annotated[str | None, Form(description="JSON list of earlier {role, content} messages")] = None,
    audio_format: Annotated[Literal["wav", "flac", "pcm"], Form(description="Encoding of the reply audio")] = "wav",
) -> VoiceTurnResponse:
    """Speech in -> transcript -> correction -> reply -> speech out (base64 in `audio`), with degradation flags."""
    return await gateway.voice_turn(audio, parse_history(history), audio_format)
