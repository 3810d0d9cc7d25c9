"""faster-whisper's own `transcribe()` output, the peer our 1-best is checked and timed against.

The tests and benchmarks/asr_nbest.py call faster-whisper on the same audio with
the arguments `faster_whisper_kwargs(options)` (for the default options: its
defaults with beam_size=5) and compare text and segment boundaries.
"""

from __future__ import annotations

from cascade.asr.decode import faster_whisper_kwargs
from cascade.config import AsrOptions

__all__ = ["faster_whisper_kwargs", "faster_whisper_segments", "faster_whisper_text"]


def faster_whisper_segments(whisper, audio, options: AsrOptions | None = None) -> list[tuple[float, float, str]]:
    """(start, end, text) of each faster-whisper segment (its generator consumed).

    With options None: `transcribe(audio, beam_size=5)`, faster-whisper's defaults, literally.
    """
    kwargs = faster_whisper_kwargs(options) if options is not None else {"beam_size": 5}
    segments, _ = whisper.transcribe(audio, **kwargs)
    return [(round(s.start, 3), round(s.end, 3), " ".join(s.text.split())) for s in segments]


def faster_whisper_text(whisper, audio, options: AsrOptions | None = None) -> str:
    """faster-whisper's 1-best for the same audio and options, segments joined."""
    return " ".join(text for _, _, text in faster_whisper_segments(whisper, audio, options) if text)
