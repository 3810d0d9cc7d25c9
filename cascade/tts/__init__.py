"""Text to speech: `synthesize(text, options, home=...)` yields one AudioChunk per sentence.

Engines (TtsOptions.engine): "piper" (bundled en_US-joe-medium voice, the CPU default),
"espeak" (espeak-ng, always available) and "coqui" (a user's Coqui TTS checkpoint,
VITS or XTTS, in its own environment: see `make coqui-env`). Every engine sees the
same cleaned, sentence-split text (cascade.tts.text): streaming starts with the first
sentence, over-long sentences are cut, never truncated.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Protocol

import numpy as np

from cascade.config import TtsOptions
from cascade.tts.text import pieces, split_sentences
from cascade.types import AudioChunk, InvalidInput

logger = logging.getLogger(__name__)

__all__ = ["Engine", "load_engine", "synthesize", "synthesize_all", "synthesize_stream", "ENGINES"]

ENGINES = ("piper", "espeak", "coqui")


class Engine(Protocol):
    """One loaded voice: speaks one sentence at a time at its native rate."""

    name: str
    model: str
    sample_rate: int

    def synth(self, text: str, options: TtsOptions) -> np.ndarray:
        """Mono float32 samples in [-1, 1] at `sample_rate` for one (already cleaned) sentence."""
        ...


def load_engine(options: TtsOptions, home: Path) -> Engine:
    """The engine named by `options` with its voice/model loaded (models are cached in cascade.models)."""
    if options.engine == "piper":
        from cascade.tts.piper import PiperEngine

        return PiperEngine(options)
    if options.engine == "espeak":
        from cascade.tts.espeak import EspeakEngine

        return EspeakEngine(options)
    if options.engine == "coqui":
        from cascade.tts.coqui import CoquiEngine

        return CoquiEngine(options, Path(home))
    raise InvalidInput(f"unknown TTS engine {options.engine!r} (choose from {', '.join(ENGINES)})", param="engine")


def _chunk(engine: Engine, piece: str, options: TtsOptions) -> AudioChunk:
    from cascade.audio import resample, to_pcm16

    samples = engine.synth(piece, options)
    rate = options.sample_rate or engine.sample_rate
    if rate != engine.sample_rate:
        samples = resample(samples, engine.sample_rate, rate)
    return AudioChunk(pcm=to_pcm16(samples).astype("<i2").tobytes(), sample_rate=rate, text=piece)


def synthesize(text: str, options: TtsOptions, *, home: Path) -> Iterator[AudioChunk]:
    """Speak `text` sentence by sentence (lazy: loading, validation and errors happen during iteration).

    Empty or unspeakable text raises InvalidInput; characters no voice can speak are dropped with a warning.
    """
    parts = pieces(text)
    engine = load_engine(options, home)
    for piece in parts:
        yield _chunk(engine, piece, options)


def synthesize_stream(sentences: Iterable[str], options: TtsOptions, *, home: Path) -> Iterator[AudioChunk]:
    """Speak sentences as they arrive (e.g. from a reply still being generated); blank ones are skipped."""
    engine = load_engine(options, home)
    for sentence in sentences:
        if not sentence or not split_sentences(sentence.strip()):
            continue
        for piece in pieces(sentence):
            yield _chunk(engine, piece, options)


def synthesize_all(text: str, options: TtsOptions, *, home: Path) -> AudioChunk:
    """The whole text as one AudioChunk (the sentences concatenated)."""
    chunks = list(synthesize(text, options, home=home))
    return AudioChunk(
        pcm=b"".join(c.pcm for c in chunks),
        sample_rate=chunks[0].sample_rate,
        text=" ".join(c.text or "" for c in chunks),
    )
