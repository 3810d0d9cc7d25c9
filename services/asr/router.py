"""Thin routes of the ASR service: parse, call serving, render. No try/except (errors.py maps them)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import Response

from cascade.types import InvalidInput, Transcript
from services.asr.deps import DecodedAudio
from services.asr.protocol import (
    TranscriptionForm, decoded_for, nbest_events, parse_options, render_transcript, transcription_events,
)
from services.asr.serving import AsrServing
from services.common.deps import SettingsDep
from services.common.errors import ERROR_RESPONSES
from services.common.sse import sse_response

router = APIRouter(tags=["audio"])


def get_asr(request: Request) -> AsrServing:
    return request.app.state.asr


AsrDep = Annotated[AsrServing, Depends(get_asr)]
FormDep = Annotated[TranscriptionForm, Form()]


@router.post("/v1/audio/transcriptions", responses=ERROR_RESPONSES)
async def create_transcription(audio: DecodedAudio, form: FormDep, asr: AsrDep, settings: SettingsDep) -> Response:
    """OpenAI-compatible transcription; extra fields n_best and correct add N-best and LLM correction;
    stream=true answers transcript.text.delta events as windows are decoded, then transcript.text.done."""
    options = decoded_for(form, settings, form.to_asr_options(settings.asr, "transcribe", settings.service.model_aliases))
    if form.stream:
        return sse_response(transcription_events(await asr.stream(audio, options, form.correct), form.extended),
                            done=False)
    if "logprobs" in form.include:
        transcript, logprobs = await asr.transcribe_scored(audio, options)
        return render_transcript(transcript, form, settings.subtitles, drop_invented=options.hallucinations == "drop",
                                 logprobs=logprobs)
    return render_transcript(await asr.transcribe(audio, options, form.correct), form, settings.subtitles,
                             drop_invented=options.hallucinations == "drop")


@router.post("/v1/audio/translations", responses=ERROR_RESPONSES)
async def create_translation(audio: DecodedAudio, form: FormDep, asr: AsrDep, settings: SettingsDep) -> Response:
    """OpenAI-compatible translation to English (needs a multilingual model, e.g. model=base)."""
    if form.include:
        raise InvalidInput("include[]: logprobs are given for transcriptions only (as OpenAI)", param="include")
    options = decoded_for(form, settings, form.to_asr_options(settings.asr, "translate", settings.service.model_aliases))
    if form.stream:
        return sse_response(transcription_events(await asr.stream(audio, options, form.correct), form.extended),
                            done=False)
    return render_transcript(await asr.transcribe(audio, options, form.correct), form, settings.subtitles,
                             drop_invented=options.hallucinations == "drop")


@router.post("/v1/nbest", responses=ERROR_RESPONSES, response_model=Transcript)
async def create_nbest(audio: DecodedAudio, asr: AsrDep, settings: SettingsDep,
                       options: Annotated[str | None, Form(description="AsrOptions as JSON")] = None,
                       stream: Annotated[bool, Form(description="SSE: each Segment as decoded, then the Transcript")] = False,
                       ) -> Response:
    """The typed result: a Transcript whose segments carry their N-best lists (a remote gateway's recogniser);
    stream=true sends `{"type": "segment", "segment": ...}` per window, then `{"type": "transcript", ...}`."""
    parsed = parse_options(options, settings.asr)
    if stream:
        return sse_response(nbest_events(await asr.stream(audio, parsed)), done=False)
    return await asr.transcribe(audio, parsed)
