"""Wire types of the TTS service: OpenAI's /v1/audio/speech body, converted to TtsOptions.

OpenAI's defaults and rates: mp3 when no format is given; pcm (raw 16-bit mono, no header), mp3,
opus and aac at 24 kHz, which clients such as pipecat assume for pcm; wav and flac keep the voice's
own rate (their header says it). The `sample_rate` extension (extra_body) picks another rate.
"""

from __future__ import annotations

import logging
import struct
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from cascade.config import TtsOptions

logger = logging.getLogger(__name__)

OPENAI_MODELS = ("tts-1", "tts-1-hd", "gpt-4o-mini-tts", "default")
"""Model names stock clients send: they mean the service's configured engine."""
OPENAI_VOICES = ("alloy", "ash", "ballad", "coral", "echo", "fable", "onyx", "nova", "sage", "shimmer", "verse")
"""OpenAI's voice names map to the configured voice (there is one bundled voice)."""
ENGINES = ("piper", "espeak", "coqui")
MEDIA_TYPES = {"wav": "audio/wav", "flac": "audio/flac", "mp3": "audio/mpeg", "opus": "audio/ogg",
               "aac": "audio/aac", "pcm": "audio/pcm"}
OPENAI_RATE = 24000
"""OpenAI's output rate for pcm/mp3/opus/aac."""
NATIVE_RATE_FORMATS = ("wav", "flac")


class SpeechRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str = "tts-1"
    """tts-1 (the configured engine) or an engine name: piper, espeak, coqui."""
    input: str = Field(min_length=1, max_length=4096)
    voice: str = "alloy"
    """An OpenAI voice name (the configured voice) or an engine voice (e.g. en_US-joe-medium, en-us)."""
    response_format: Literal["mp3", "opus", "aac", "flac", "wav", "pcm"] = "mp3"
    speed: float = Field(1.0, ge=0.25, le=4.0)
    sample_rate: int | None = Field(None, ge=8000, le=48000)
    """Extension (extra_body): output rate; None is 24 kHz for pcm/mp3/opus/aac, the voice's rate for wav/flac."""

    @model_validator(mode="after")
    def _warn(self) -> SpeechRequest:
        for name in sorted(self.model_extra or {}):
            logger.warning("ignoring unsupported field %r", name)
        return self

    def to_tts_options(self, base: TtsOptions) -> TtsOptions:
        native = self.response_format in NATIVE_RATE_FORMATS
        rate = self.sample_rate or (base.sample_rate if native else OPENAI_RATE)
        update: dict = {"speed": max(self.speed, 0.26), "format": self.response_format, "sample_rate": rate}
        if self.model not in OPENAI_MODELS:
            if self.model not in ENGINES:
                from cascade.types import ModelNotFound

                raise ModelNotFound(f"unknown TTS model {self.model!r} (tts-1 or one of {', '.join(ENGINES)})",
                                    param="model")
            update["engine"] = self.model
        if self.voice not in OPENAI_VOICES:
            update["voice"] = self.voice
        elif update.get("engine", base.engine) != base.engine:
            update["voice"] = TtsOptions.model_fields["voice"].default if update["engine"] == "piper" else "en-us"
        return base.model_copy(update=update)


def streaming_wav_header(sample_rate: int) -> bytes:
    """A 16-bit mono WAV header with the 'unknown length' sizes streamed WAV uses (players read to EOF)."""
    byte_rate = sample_rate * 2
    return (b"RIFF" + struct.pack("<I", 0xFFFFFFFF) + b"WAVEfmt " + struct.pack("<IHHIIHH", 16, 1, 1, sample_rate,
            byte_rate, 2, 16) + b"data" + struct.pack("<I", 0xFFFFFFFF - 36))

