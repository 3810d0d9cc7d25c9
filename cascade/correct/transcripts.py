"""Correction of whole transcripts (every segment's N-best), the step after ASR in the CLI, pipeline and services."""

from __future__ import annotations

import functools
from collections.abc import Callable

from cascade.config import Settings
from cascade.correct.registry import build_corrector, load_llm
from cascade.llm import LlmBackend
from cascade.types import Transcript

TranscriptCorrector = Callable[[Transcript], Transcript]


def transcript_corrector(settings: Settings, mode: str | None = None, *, translate: bool = False,
                         backend: LlmBackend | None = None) -> TranscriptCorrector:
    """The correction step for every transcript of a run; the LLM (if any) is loaded once, here.

    `translate`: a translation job's transcripts: fusion/rescoring of Whisper's translation N-best,
    or correct-then-translate when settings.translate.via_transcript (cascade.translate.speech).
    """
    mode = mode or settings.correct.mode
    if translate:
        return _translation_step(settings, mode, backend)
    corrector = build_corrector(settings, mode, backend=backend)
    if mode == "none":
        return lambda transcript: transcript

    def apply(transcript: Transcript) -> Transcript:
        return transcript.with_corrections(corrector.correct(s.nbest for s in transcript.segments))

    return apply


def _translation_step(settings: Settings, mode: str, backend: LlmBackend | None) -> TranscriptCorrector:
    from cascade.translate.speech import translate_step

    if mode not in ("none", "rescore", "ger"):
        from cascade.types import InvalidInput

        raise InvalidInput(f"translation lists are corrected with none, rescore or ger, not {mode!r}", param="correct")
    if mode == "none" and not settings.translate.via_transcript:
        return lambda transcript: transcript
    backend = backend if backend is not None else load_llm(settings)
    return functools.partial(translate_step, method=mode, cfg=settings, backend=backend)
