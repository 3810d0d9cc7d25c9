"""faster-whisper's own `transcribe()` arguments equivalent to an AsrOptions.

Used by the tests and the benchmark to check that our 1-best is what
faster-whisper yields for the same audio and options, and to time the two.
The equivalence holds window by window: for audio whose speech fits in one
30 s window both cut the same window; on longer audio faster-whisper cuts
the concatenated speech every 30 s while we pack whole VAD chunks into
windows, so the cut points (and the words at them) can differ.
"""

from __future__ import annotations

from typing import Any

from cascade.config import AsrOptions


def faster_whisper_kwargs(options: AsrOptions) -> dict[str, Any]:
    kwargs: dict[str, Any] = dict(
        task=options.task,
        language=options.language,
        beam_size=options.beam_size,
        patience=options.patience,
        length_penalty=options.length_penalty,
        temperature=options.temperature,
        initial_prompt=options.initial_prompt,
        condition_on_previous_text=options.condition_on_previous_text,
        without_timestamps=options.without_timestamps,
        max_new_tokens=options.max_new_tokens,
        vad_filter=options.vad_filter,
        multilingual=options.detect_language_per_segment,
    )
    if options.vad_filter:
        kwargs["vad_parameters"] = dict(
            min_silence_duration_ms=options.vad_min_silence_ms, max_speech_duration_s=options.chunk_length
        )
    return kwargs


def faster_whisper_text(whisper, audio, options: AsrOptions) -> str:
    """faster-whisper's 1-best for the same audio and options (the generator consumed)."""
    segments, _ = whisper.transcribe(audio, **faster_whisper_kwargs(options))
    return " ".join(" ".join(s.text.split()) for s in segments)
