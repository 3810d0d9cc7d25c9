"""TTS serving: sentence-by-sentence synthesis under the engine's queue, streamed as it is produced."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import numpy as np
from starlette.concurrency import run_in_threadpool

from cascade.config import Settings, TtsOptions
from cascade.types import AudioChunk, ModelNotFound
from services.common.queue import Queues
from services.tts.protocol import streaming_wav_header


class TtsServing:
    def __init__(self, settings: Settings, queues: Queues):
        self.settings = settings
        self.queues = queues

    def check_voice(self, voice: str) -> None:
        """404 for a voice given as a server path (an .onnx file) unless ServiceSettings.allow_model_paths:
        clients name voices, they do not load files (and the message says nothing about which exist)."""
        if self.settings.service.allow_model_paths or voice == self.settings.tts.voice:
            return
        if voice.endswith(".onnx") or os.sep in voice or voice.startswith((".", "~")):
            shown = voice if len(voice) <= 60 else voice[:57] + "..."
            raise ModelNotFound(f"voice {shown!r} is not served here (name a voice, e.g. {self.settings.tts.voice}, "
                                "or an OpenAI voice such as alloy)", param="voice")

    def load(self, options: TtsOptions) -> None:
        from cascade.tts import load_engine

        load_engine(options, self.settings.home)

    async def speech(self, text: str, options: TtsOptions) -> tuple[AsyncIterator[bytes], int]:
        """(body iterator, sample rate): the first sentence is synthesized before this returns, so bad
        input and a full queue still get a proper status; the rest streams as it is spoken."""
        from cascade.tts import synthesize

        self.check_voice(options.voice)
        chunks = await self.queues[f"tts:{options.engine}"].open_stream(
            lambda: synthesize(text, options, home=self.settings.home))
        first: AudioChunk = await anext(chunks)
        return _encode(first, chunks, options.format), first.sample_rate


async def _encode(first: AudioChunk, rest: AsyncIterator[AudioChunk], fmt: str) -> AsyncIterator[bytes]:
    """Bytes as each sentence is spoken: pcm/wav as they are, mp3/opus/aac through a streaming encoder,
    flac (no streaming writer) once the last sentence is done."""
    from cascade.audio import COMPRESSED, StreamEncoder, encode_audio

    if fmt in ("pcm", "wav"):
        if fmt == "wav":
            yield streaming_wav_header(first.sample_rate)
        yield first.pcm
        async for chunk in rest:
            yield chunk.pcm
        return
    if fmt in COMPRESSED:  # encoding runs off the event loop (a sentence of mp3 is ~10-30 ms of CPU)
        encoder = StreamEncoder(fmt, first.sample_rate)
        yield await run_in_threadpool(encoder.encode, first.pcm)
        async for chunk in rest:
            if data := await run_in_threadpool(encoder.encode, chunk.pcm):
                yield data
        yield await run_in_threadpool(encoder.finish)
        return
    pcm = [first.pcm] + [c.pcm async for c in rest]
    samples = np.frombuffer(b"".join(pcm), dtype="<i2")
    yield encode_audio(samples, first.sample_rate, fmt)
