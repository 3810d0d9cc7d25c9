"""Cut audio into the windows Whisper decodes (at most `chunk_length` seconds each).

With VAD: Silero speech chunks (each capped at the window length) are merged,
in order, into windows of at most `chunk_length` seconds of speech; the
silence between chunks is dropped, as faster-whisper's `vad_filter` does.
Without VAD: consecutive fixed windows, as faster-whisper seeks without
timestamps. A window keeps the original times of its first and last sample.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from cascade.config import AsrOptions

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000


@dataclass(frozen=True)
class Window:
    """Audio for one decoding call and where it came from in the original file."""

    audio: np.ndarray
    start: float
    end: float
    spans: tuple[tuple[float, float], ...] = ()
    """Original (start, end) seconds of each piece of audio joined into this window, in order."""

    def original_time(self, t: float) -> float:
        """Map a time inside the (silence-free) window audio back to the original file."""
        offset = 0.0
        for start, end in self.spans:
            if t <= offset + (end - start):
                return start + (t - offset)
            offset += end - start
        return self.end


def vad_options(options: AsrOptions):
    """faster-whisper VadOptions for these ASR options (chunks never longer than a window)."""
    from faster_whisper.vad import VadOptions

    return VadOptions(min_silence_duration_ms=options.vad_min_silence_ms, max_speech_duration_s=options.chunk_length)


def speech_chunks(audio: np.ndarray, options: AsrOptions) -> list[dict[str, int]]:
    """Silero VAD speech spans in samples ({"start", "end"})."""
    from faster_whisper.vad import get_speech_timestamps

    if audio.size == 0:
        return []
    return get_speech_timestamps(audio, vad_options(options), sampling_rate=SAMPLE_RATE)


def merge_chunks(audio: np.ndarray, chunks: list[dict[str, int]], max_s: float) -> Iterator[Window]:
    """Greedily pack consecutive speech chunks into windows of at most `max_s` seconds."""
    limit = int(max_s * SAMPLE_RATE)
    group: list[dict[str, int]] = []
    size = 0
    for chunk in chunks:
        length = chunk["end"] - chunk["start"]
        if group and size + length > limit:
            yield _window(audio, group)
            group, size = [], 0
        group.append(chunk)
        size += length
    if group:
        yield _window(audio, group)


def _window(audio: np.ndarray, group: list[dict[str, int]]) -> Window:
    parts = [audio[c["start"] : c["end"]] for c in group]
    spans = tuple((c["start"] / SAMPLE_RATE, min(c["end"], len(audio)) / SAMPLE_RATE) for c in group)
    return Window(np.concatenate(parts), spans[0][0], spans[-1][1], spans)


def fixed_windows(audio: np.ndarray, length_s: float) -> Iterator[Window]:
    """Consecutive windows of `length_s` seconds (the last one shorter)."""
    step = int(length_s * SAMPLE_RATE)
    for offset in range(0, len(audio), step):
        piece = audio[offset : offset + step]
        start, end = offset / SAMPLE_RATE, (offset + len(piece)) / SAMPLE_RATE
        yield Window(piece, start, end, ((start, end),))


def windows(audio: np.ndarray, options: AsrOptions) -> tuple[list[Window], float]:
    """The windows to decode and the seconds of audio they hold."""
    if options.vad_filter:
        chunks = speech_chunks(audio, options)
        result = list(merge_chunks(audio, chunks, options.chunk_length))
    else:
        result = list(fixed_windows(audio, options.chunk_length))
    kept = sum(len(w.audio) for w in result) / SAMPLE_RATE
    logger.info("%d window(s), %.1f s of %.1f s kept", len(result), kept, len(audio) / SAMPLE_RATE)
    return result, kept
