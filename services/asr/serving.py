"""ASR serving: recognition (in-process or remote) and per-segment correction with degradation.

The gateway reuses this class with remote stages: which recognizer and which
corrector run is configuration (ServiceSettings.asr_url / llm_url), the types
that flow are the same.
"""

from __future__ import annotations

import logging
import time
from typing import Literal, Protocol

import numpy as np
from starlette.concurrency import run_in_threadpool

from cascade.config import AsrOptions, Settings
from cascade.types import BackendUnavailable, Correction, NBest, Segment, StageInfo, Transcript
from services.common.metrics import ServiceMetrics
from services.common.queue import Queues

logger = logging.getLogger(__name__)

Method = Literal["rescore", "ger"]


class Recognizer(Protocol):
    name: str

    def transcribe_all(self, samples: np.ndarray, options: AsrOptions) -> Transcript: ...


class Corrector(Protocol):
    name: str

    def correct(self, nbest: NBest, method: Method) -> Correction: ...


class LocalRecognizer:
    """cascade.asr in this process (models cached by cascade.models)."""

    name = "asr"

    def __init__(self, settings: Settings):
        self.home = settings.home

    def load(self, options: AsrOptions) -> None:
        from cascade.asr import load_model

        load_model(options, self.home)

    def transcribe_all(self, samples: np.ndarray, options: AsrOptions) -> Transcript:
        from cascade.asr import transcribe_all

        return transcribe_all(samples, options, home=self.home)


def unavailable(nbest: NBest, method: Method, reason: str) -> Correction:
    """What a segment gets when the LLM cannot be reached: its 1-best, marked unavailable."""
    best = nbest.best.text if nbest.best else ""
    return Correction(text=best, method=method, status="unavailable", chosen=0 if nbest.best else None,
                      fallback_reason=reason)


class AsrServing:
    """Transcribe under the model's queue, then correct each segment (or degrade)."""

    def __init__(self, settings: Settings, recognizer: Recognizer, corrector: Corrector | None,
                 queues: Queues, metrics: ServiceMetrics):
        self.settings = settings
        self.recognizer = recognizer
        self.corrector = corrector
        self.queues = queues
        self.metrics = metrics

    async def transcribe(self, samples: np.ndarray, options: AsrOptions, correct: str = "none") -> Transcript:
        started = time.perf_counter()
        queue = self.queues[f"{self.recognizer.name}:{options.model}"]
        transcript = await queue.run(self.recognizer.transcribe_all, samples, options)
        self.metrics.stage_latency.labels("asr").observe(time.perf_counter() - started)
        if correct == "none" or not transcript.segments:
            return transcript
        return await self.correct_transcript(transcript, correct)  # type: ignore[arg-type]

    async def correct_transcript(self, transcript: Transcript, method: Method) -> Transcript:
        """Correct segment by segment; once the LLM is found down, the rest degrade without waiting."""
        started = time.perf_counter()
        reason: str | None = None if self.corrector else "no LLM stage is configured"
        segments: list[Segment] = []
        for seg in transcript.segments:
            if reason is None:
                try:
                    queue = self.queues[f"llm:{self.corrector.name}"]  # type: ignore[union-attr]
                    fixed = await queue.run(self.corrector.correct, seg.nbest, method)  # type: ignore[union-attr]
                except BackendUnavailable as exc:
                    reason = f"LLM unavailable: {exc.message}"
                    logger.warning("correction degraded: %s", reason)
            if reason is not None:
                fixed = unavailable(seg.nbest, method, reason)
                self.metrics.fallbacks.labels("correct", "llm_unavailable").inc()
            segments.append(seg.model_copy(update={"text": fixed.text, "correction": fixed}))
        seconds = round(time.perf_counter() - started, 3)
        self.metrics.stage_latency.labels("correct").observe(seconds)
        stage = StageInfo(stage=f"correct:{method}", model=getattr(self.corrector, "name", None), seconds=seconds,
                          options={"method": method, "status": "unavailable" if reason else "ok"})
        return transcript.model_copy(update={
            "segments": tuple(segments), "text": " ".join(s.text for s in segments if s.text),
            "stages": (*transcript.stages, stage)})


async def warm(recognizer: LocalRecognizer, options: AsrOptions) -> None:
    await run_in_threadpool(recognizer.load, options)
