"""Silero VAD run frame by frame, and the PCM16 frames it reads."""

from __future__ import annotations


import numpy as np

from cascade.types import InvalidInput


FRAME = 512
"""Silero's frame at 16 kHz (32 ms)."""
CONTEXT = 64
"""Samples of the previous frame Silero sees before each frame."""


class StreamingVad:
    """Silero speech probability of each complete 512-sample frame, fed piece by piece."""

    def __init__(self) -> None:
        from faster_whisper.vad import get_vad_model

        self._session = get_vad_model().session
        self._h = np.zeros((1, 1, 128), dtype=np.float32)
        self._c = np.zeros((1, 1, 128), dtype=np.float32)
        self._context = np.zeros(CONTEXT, dtype=np.float32)
        self._pending = np.zeros(0, dtype=np.float32)

    def __call__(self, samples: np.ndarray) -> np.ndarray:
        buf = np.concatenate([self._pending, samples]) if self._pending.size else samples
        n = len(buf) // FRAME
        self._pending = buf[n * FRAME :].copy()
        if n == 0:
            return np.zeros(0, dtype=np.float32)
        frames = buf[: n * FRAME].reshape(n, FRAME).astype(np.float32, copy=False)
        context = np.vstack([self._context[None, :], frames[:-1, -CONTEXT:]])
        out, self._h, self._c = self._session.run(
            None, {"input": np.concatenate([context, frames], axis=1), "h": self._h, "c": self._c})
        self._context = frames[-1, -CONTEXT:].copy()
        return np.asarray(out, dtype=np.float32).reshape(-1)


def pcm16(data: bytes, max_bytes: int) -> np.ndarray:
    """Float samples of one little-endian PCM16 frame (a malformed frame is the client's error)."""
    if not data:
        raise InvalidInput("empty audio frame", param="audio")
    if len(data) > max_bytes:
        raise InvalidInput(f"audio frame of {len(data)} bytes is above the {max_bytes}-byte limit", param="audio")
    if len(data) % 2:
        raise InvalidInput(f"audio frame of {len(data)} bytes is not 16-bit PCM (odd length)", param="audio")
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0
