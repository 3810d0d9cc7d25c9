"""Replaying a file through a LiveTurn (CLI, benchmark)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence

import numpy as np

from cascade.config import LiveOptions
from cascade.live.endpoint import EndOfTurn
from cascade.live.turn import LiveTurn
from cascade.pipeline import SpokenTurn
from cascade.types import AudioChunk, ChatMessage, LiveEvent


def replay(turn: SpokenTurn, samples: np.ndarray, options: LiveOptions, *, pace: bool = True, frame_ms: int = 20,
           history: Sequence[ChatMessage] = (), detector: EndOfTurn | None = None) -> Iterator[LiveEvent]:
    """Feed 16 kHz samples to a LiveTurn frame by frame (at real time with `pace`), then silence until the end of
    speech is found (or forced), and yield every event: partials, final, reply, audio, done. Unpaced, each pause's
    decode and reading is waited for (as on a machine fast enough), so the turn ends where it would in time."""
    live = LiveTurn(turn, options, history, detector=detector)
    step = options.sample_rate * frame_ms // 1000
    wait = max(options.silence_ms, options.max_silence_ms if live.detector is not None else 0)
    tail = np.zeros(options.sample_rate * (wait + 2 * frame_ms + 100) // 1000, dtype=np.float32)
    t0 = time.perf_counter()
    try:
        for k, frame in enumerate(_frames(np.concatenate([samples.astype(np.float32), tail]), step)):
            due = t0 + (k + 1) * frame_ms / 1000
            if pace and due > time.perf_counter():
                time.sleep(due - time.perf_counter())
            yield from live.feed(_to_pcm16(frame), at=due if pace else None)
            if not pace:
                live.wait_reading()
            if live.ended:
                break
        yield from live.finish()
        yield from live.respond()
    finally:
        live.close()


def _frames(samples: np.ndarray, step: int) -> Iterable[np.ndarray]:
    for i in range(0, len(samples), step):
        yield samples[i : i + step]


def _to_pcm16(samples: np.ndarray) -> bytes:
    return (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2").tobytes()


def join_audio(chunks: Sequence[AudioChunk]) -> AudioChunk | None:
    """The reply's audio chunks as one (for writing a file)."""
    if not chunks:
        return None
    return AudioChunk(pcm=b"".join(c.pcm for c in chunks), sample_rate=chunks[0].sample_rate,
                      text=" ".join(c.text or "" for c in chunks))
