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
    second = second_reader(settings, mode)

    def apply(transcript: Transcript) -> Transcript:
        if second is not None:
            transcript = second(transcript)
        return transcript.with_corrections(corrector.correct(s.nbest for s in transcript.segments))

    return apply


def second_reader(settings: Settings, mode: str) -> Callable[..., Transcript] | None:
    """`read(transcript, samples=None)`: the transcript with every hypothesis scored by the reranker's second recogniser
    (rerank.second_model, cascade.asr.logprobs.second_scores) over its audio (`samples`, else the file it names); None
    where the mode's reranker does not use that score. A second model that is not there fails here, before any file."""
    if mode not in ("rerank", "ger") or (mode == "ger" and not settings.rerank.ger_base):
        return None
    from cascade.ger.rerank import load_model, second_model

    name = second_model(load_model(settings.rerank.model), settings.rerank)
    if name is None:
        return None
    from cascade import models

    models.whisper_dir(name, settings.home)  # ModelNotFound now, with the model's name

    def read(transcript: Transcript, samples=None) -> Transcript:  # noqa: ANN001
        from cascade.asr.logprobs import second_scores
        from cascade.audio import load_audio
        from cascade.types import InvalidInput

        if not any(len(s.nbest.hypotheses) > 1 for s in transcript.segments):
            return transcript  # nothing to choose between
        if samples is None:
            if not transcript.source:
                raise InvalidInput(f"the reranker reads a second recogniser ({name}) over the audio, and this transcript "
                                   "names none: give the audio, or set rerank.second_model to null", param="correct")
            samples = load_audio(transcript.source)
        return second_scores(samples, transcript, name, settings.asr, settings.home)

    return read


def _translation_step(settings: Settings, mode: str, backend: LlmBackend | None) -> TranscriptCorrector:
    from cascade.translate.speech import translate_step

    if mode not in ("none", "rescore", "ger"):
        from cascade.types import InvalidInput

        raise InvalidInput(f"translation lists are corrected with none, rescore or ger, not {mode!r}", param="correct")
    if mode == "none" and not settings.translate.via_transcript:
        return lambda transcript: transcript
    backend = backend if backend is not None else load_llm(settings)
    return functools.partial(translate_step, method=mode, cfg=settings, backend=backend)
