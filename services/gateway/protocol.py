"""Wire types of the gateway's spoken turn: audio in, JSON (records + base64 audio) out."""

from __future__ import annotations

import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from cascade.types import ChatMessage, CorrectedTranscript, InvalidInput, Reply, SpeechInfo, Transcript

_HISTORY = TypeAdapter(list[ChatMessage])


def parse_history(raw: str | None) -> list[ChatMessage]:
    """The `history` form field: a JSON list of ChatMessage records (earlier turns)."""
    if not raw:
        return []
    try:
        return _HISTORY.validate_python(json.loads(raw))
    except (ValueError, ValidationError) as exc:
        raise InvalidInput(f"history: expected a JSON list of {{role, content}} messages ({str(exc).splitlines()[0]})",
                           param="history") from exc


class AudioOut(BaseModel):
    model_config = ConfigDict(frozen=True)
    format: Literal["wav", "flac", "mp3", "opus", "aac", "pcm"]
    sample_rate: int
    data: str
    """The reply's audio, base64-encoded."""


class VoiceTurnResponse(BaseModel):
    """One spoken turn. `status` is "degraded" when a stage was down; `degraded` says which and why:
    "llm" (correction fell back to the recogniser's text, and no reply if the LLM stayed down) or
    "tts" (the reply comes as text only, `audio` is null)."""

    model_config = ConfigDict(frozen=True)
    status: Literal["ok", "degraded"]
    degraded: dict[str, str] = Field(default_factory=dict)
    transcript: Transcript
    correction: CorrectedTranscript
    reply: Reply | None
    speech: SpeechInfo | None
    audio: AudioOut | None
    timings: dict[str, float]
    time_to_first_audio: float | None = None
