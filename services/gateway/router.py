"""Thin routes of the gateway: the spoken turn and OpenAI's chat, speech and models.

The transcription routes are the ASR service's own (included by the app), so a stock OpenAI
client (pipecat, Open WebUI) needs only the gateway's base URL for every route.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import Response, StreamingResponse
from openai.types import Completion
from openai.types.chat import ChatCompletion

from services.asr.deps import DecodedAudio
from services.common.errors import ERROR_RESPONSES
from services.gateway.protocol import VoiceTurnResponse, parse_history
from services.gateway.serving import GatewayServing, OpenAIStages
from services.llm.protocol import ChatCompletionRequest, CompletionRequest
from services.tts.protocol import SpeechRequest

router = APIRouter(tags=["voice"])


def get_gateway(request: Request) -> GatewayServing:
    return request.app.state.gateway


GatewayDep = Annotated[GatewayServing, Depends(get_gateway)]


def get_openai(request: Request) -> OpenAIStages:
    return request.app.state.openai


OpenAIDep = Annotated[OpenAIStages, Depends(get_openai)]


@router.post("/v1/voice/turn", responses=ERROR_RESPONSES)
async def voice_turn(
    audio: DecodedAudio, gateway: GatewayDep,
    history: Annotated[str | None, Form(description="JSON list of earlier {role, content} messages")] = None,
    audio_format: Annotated[Literal["wav", "flac", "mp3", "opus", "aac", "pcm"],
                            Form(description="Encoding of the reply audio")] = "wav",
) -> VoiceTurnResponse:
    """Speech in -> transcript -> correction -> reply -> speech out (base64 in `audio`), with degradation flags."""
    return await gateway.voice_turn(audio, parse_history(history), audio_format)


@router.post("/v1/chat/completions", responses=ERROR_RESPONSES, response_model=ChatCompletion)
async def chat_completions(req: ChatCompletionRequest, stages: OpenAIDep) -> Response:
    """OpenAI chat over the LLM stage; `stream=true` answers SSE chunks, content parts are accepted."""
    return await stages.chat(req)


@router.post("/v1/completions", responses=ERROR_RESPONSES, response_model=Completion)
async def completions(req: CompletionRequest, stages: OpenAIDep) -> Response:
    """OpenAI (legacy) completions over the LLM stage: echo + logprobs scores a prompt as on the LLM service."""
    return await stages.complete(req)


@router.post("/v1/audio/speech", responses=ERROR_RESPONSES, response_class=StreamingResponse)
async def speech(req: SpeechRequest, stages: OpenAIDep) -> Response:
    """OpenAI speech over the TTS stage: mp3 by default, opus/aac/flac/wav, pcm at 24 kHz."""
    return await stages.speech(req)


@router.get("/v1/models")
async def models(request: Request, stages: OpenAIDep) -> dict:
    """The ASR, TTS and LLM models callers may name (`kind` says which stage), by name only."""
    asr = getattr(request.app.state, "asr", None)
    names = asr.served.names if asr is not None and hasattr(asr, "served") else [request.app.state.settings.asr.model]
    return {"object": "list", "data": await stages.models(names)}


@router.get("/v1/models/{model_id:path}", responses=ERROR_RESPONSES)
async def model(model_id: str, request: Request, stages: OpenAIDep) -> dict:
    """One model callers may name: listed models and the aliases stock clients send (`parent` says what an alias
    means); 404 for other names."""
    asr = getattr(request.app.state, "asr", None)
    names = asr.served.names if asr is not None and hasattr(asr, "served") else [request.app.state.settings.asr.model]
    return await stages.model(model_id, names)
