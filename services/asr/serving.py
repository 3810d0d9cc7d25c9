"""ASR serving: recognition (in-process or remote) and per-segment correction with degradation.

The gateway reuses this class with remote stages: which recognizer and which
corrector run is configuration (ServiceSettings.asr_url / llm_url), the types
that flow are the same.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any, Protocol

import numpy as np
from starlette.concurrency import run_in_threadpool

from cascade.config import AsrOptions, Settings
from cascade.correct import second_reader
from cascade.types import (
    BackendUnavailable, Cancelled, Correction, CorrectionMode, ModelNotFound, NBest, Segment, StageInfo, Transcript,
    Unsupported,
)
from services.asr.batching import MicroBatcher
from services.asr.deps import PendingAudio
from services.common.metrics import ServiceMetrics
from services.common.middleware import client_gone
from services.common.queue import Queues

logger = logging.getLogger(__name__)

Method = CorrectionMode
"""Any list mode of cascade.correct; the corrector (in-process LLM service or its HTTP client) runs it."""


class Recognizer(Protocol):
    name: str

    def transcribe_all(self, samples: np.ndarray, options: AsrOptions, *,
                       cancel: threading.Event | None = None) -> Transcript: ...


class Corrector(Protocol):
    name: str

    def correct(self, nbest: NBest, method: Method) -> Correction: ...


class LocalRecognizer:
    """cascade.asr in this process (models cached by cascade.models)."""

    name = "asr"

    def __init__(self, settings: Settings):
        self.home = settings.home
        self.pack = settings.service.asr_batch_pack

    def load(self, options: AsrOptions) -> None:
        from cascade.asr import load_model

        load_model(options, self.home)

    def transcribe_all(self, samples: np.ndarray, options: AsrOptions, *,
                       cancel: threading.Event | None = None) -> Transcript:
        """The whole Transcript; stops between windows with Cancelled once `cancel` is set."""
        from cascade.asr import collect, transcribe

        started = time.perf_counter()
        segments, info = transcribe(samples, options, home=self.home)
        return collect(_until(segments, cancel), info, source=None, started=started)


    def transcribe_many(self, audio: list[np.ndarray | PendingAudio], options: AsrOptions) -> list[Transcript | Exception]:
        """Several requests' recordings in shared batched decodes (cascade.asr.transcribe_many); each one's
        Transcript, or the error that is its answer (an upload that does not decode: 415, as alone). With
        service.asr_batch_pack, their clips share Whisper windows (cascade.asr.packed)."""
        from cascade.asr import transcribe_many

        samples = [_attempt(a.decode) if isinstance(a, PendingAudio) else a for a in audio]
        return transcribe_many(samples, options, home=self.home, like_alone=True, pack=self.pack)

    def stream_segments(self, samples: np.ndarray, options: AsrOptions, *,
                        cancel: threading.Event | None = None) -> Iterator[Segment | Transcript]:
        """Each Segment as soon as its window is decoded, then the Transcript of them all (`stream=true`)."""
        from cascade.asr import collect, transcribe

        started = time.perf_counter()
        segments, info = transcribe(samples, options, home=self.home)
        done: list[Segment] = []
        for segment in _until(segments, cancel):
            done.append(segment)
            yield segment
        yield collect(iter(done), info, source=None, started=started)


    def token_logprobs(self, samples: np.ndarray, transcript: Transcript, options: AsrOptions) -> list[tuple[str, float]]:
        """Each text token of the transcript's 1-best with its log-prob under Whisper's decoder."""
        from cascade.asr.logprobs import token_logprobs

        return token_logprobs(samples, transcript, options, self.home)


def _attempt(fn):
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 - that request's answer
        return exc


def _until(segments: Iterator[Segment], cancel: threading.Event | None) -> Iterator[Segment]:
    for segment in segments:
        if cancel is not None and cancel.is_set():
            raise Cancelled("the client went away: transcription stopped")
        yield segment


class ServedModels:
    """Which Whisper models HTTP callers may name, each under one canonical id.

    The configured model and the bundled names are served; a directory path only when
    ServiceSettings.allow_model_paths is on, and then under its resolved real path (or the
    served name it resolves to), so spellings of one model share one queue, one cache entry
    and one metric label. Unknown names get a 404 that lists the served names and says
    nothing about the server's files.
    """

    def __init__(self, settings: Settings, local: bool):
        from cascade import models

        self.configured = settings.asr.model
        self.aliases = settings.service.model_aliases.transcription
        self.allow_paths = settings.service.allow_model_paths
        self.local, self.home = local, settings.home
        bundled = [n for n, spec in models.REGISTRY.items() if spec.kind == "whisper" and not spec.broken]
        self.names = list(dict.fromkeys([self.configured, *bundled]))
        self._by_dir: dict[str, str] = {}

    def canonical(self, requested: str) -> str:
        if requested in self.names:
            return requested
        if requested in self.aliases:  # whisper-1 & co. in /v1/nbest's options JSON too
            return self.configured
        if self.allow_paths and (os.sep in requested or requested.startswith((".", "~"))):
            return self._path_id(requested)
        shown = requested if len(requested) <= 60 else requested[:57] + "..."
        paths = " or a model directory" if self.allow_paths else ""
        raise ModelNotFound(f"model {shown!r} is not served here (served: {', '.join(self.names)}{paths}; "
                            f"whisper-1 means {self.configured})", param="model")

    def _path_id(self, requested: str) -> str:
        if not self.local:  # the remote ASR service resolves it; keep one spelling per path
            return os.path.normpath(os.path.expanduser(requested))
        from cascade import models

        real = str(models.whisper_dir(requested, self.home).resolve())
        if not self._by_dir:
            for name in self.names:
                try:
                    self._by_dir.setdefault(str(models.whisper_dir(name, self.home).resolve()), name)
                except ModelNotFound:
                    continue
        return self._by_dir.get(real, real)


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
        self.served = ServedModels(settings, isinstance(recognizer, LocalRecognizer))
        window = settings.service.asr_batch_window_ms
        many = getattr(recognizer, "transcribe_many", None)
        self.batcher = MicroBatcher(window / 1000, settings.asr.batch_size, metrics) if many and window is not None else None
        self._readers: dict[str, Any] = {}

    async def transcribe(self, audio: np.ndarray | PendingAudio, options: AsrOptions, correct: str = "none") -> Transcript:
        """Resolve the model (404 before anything else), then decode and recognise inside its slot."""
        model = self.served.canonical(options.model)
        options = options.model_copy(update={"model": model})
        started = time.perf_counter()
        queue = self.queues[f"{self.recognizer.name}:{model}"]
        if self.batcher is not None and correct == "none" and options.n_best == 1:
            # concurrent requests share a batched decode; a lone one runs as below (N-best requests stay alone)
            cancel = client_gone.get()
            transcript = await self.batcher.run(
                queue, options.model_dump_json(), audio, lambda a: self._recognize(a, options, cancel),
                lambda items: self.recognizer.transcribe_many(items, options))  # type: ignore[attr-defined]
        else:
            transcript = await queue.run(self._recognize, audio, options, client_gone.get(), correct)
        self.metrics.stage_latency.labels("asr").observe(time.perf_counter() - started)
        if correct == "none" or not transcript.segments:
            return transcript
        return await self.correct_transcript(transcript, correct)  # type: ignore[arg-type]

    async def transcribe_scored(self, audio: np.ndarray | PendingAudio,
                                options: AsrOptions) -> tuple[Transcript, list[tuple[str, float]]]:
        """The Transcript and its tokens' log-probs (include=["logprobs"]), both inside the model's slot; a
        recogniser that cannot read them (a remote ASR service) is a 501."""
        model = self.served.canonical(options.model)
        options = options.model_copy(update={"model": model})
        if not hasattr(self.recognizer, "token_logprobs"):
            raise Unsupported("include[]=logprobs: token log-probs are read by an in-process recogniser only; "
                              "this one is the remote ASR service (service.asr_url): ask it directly", param="include")
        queue = self.queues[f"{self.recognizer.name}:{model}"]
        return await queue.run(self._recognize_scored, audio, options, client_gone.get())

    def _recognize_scored(self, audio: np.ndarray | PendingAudio, options: AsrOptions,
                          cancel: threading.Event | None) -> tuple[Transcript, list[tuple[str, float]]]:
        samples = audio.decode(cancel) if isinstance(audio, PendingAudio) else audio
        transcript = self.recognizer.transcribe_all(samples, options, cancel=cancel)
        return transcript, self.recognizer.token_logprobs(samples, transcript, options)  # type: ignore[attr-defined]

    def _recognize(self, audio: np.ndarray | PendingAudio, options: AsrOptions,
                   cancel: threading.Event | None, correct: str = "none") -> Transcript:
        samples = audio.decode(cancel) if isinstance(audio, PendingAudio) else audio
        transcript = self.recognizer.transcribe_all(samples, options, cancel=cancel)
        read = self._second_reader(correct)
        return read(transcript, samples) if read is not None and transcript.segments else transcript

    def _second_reader(self, correct: str):  # noqa: ANN202
        """A reranker that reads a second recogniser's score of each hypothesis gets it where the audio is
        (cascade.correct.second_reader; in-process recognisers only: a remote one sends no audio back); built once
        per correction mode, not per request (a missing model raises each time, so nothing failed is kept)."""
        if correct not in self._readers:
            local = correct != "none" and hasattr(self.recognizer, "token_logprobs")
            self._readers[correct] = second_reader(self.settings, correct) if local else None
        return self._readers[correct]

    async def stream(self, audio: np.ndarray | PendingAudio, options: AsrOptions,
                     correct: str = "none") -> AsyncIterator[Segment | Transcript]:
        """`stream=true`: each Segment (corrected when asked) as its window is decoded, then the Transcript.
        A remote recogniser answers whole transcripts, so its segments come all at once."""
        model = self.served.canonical(options.model)
        options = options.model_copy(update={"model": model})
        queue = self.queues[f"{self.recognizer.name}:{model}"]
        items = await queue.open_stream(lambda: self._stream(audio, options, client_gone.get()))
        return self._correct_stream(items, correct)

    def _stream(self, audio: np.ndarray | PendingAudio, options: AsrOptions,
                cancel: threading.Event | None) -> Iterator[Segment | Transcript]:
        samples = audio.decode(cancel) if isinstance(audio, PendingAudio) else audio
        stream = getattr(self.recognizer, "stream_segments", None)
        if stream is not None:
            yield from stream(samples, options, cancel=cancel)
            return
        transcript = self.recognizer.transcribe_all(samples, options, cancel=cancel)
        yield from transcript.segments
        yield transcript

    async def _correct_stream(self, items: AsyncIterator[Segment | Transcript], correct: str) -> AsyncIterator[Segment | Transcript]:
        """Correct each segment as it arrives (correct_transcript on one segment); once the LLM is found
        down the rest keep their 1-best without waiting. The Transcript at the end carries the corrections."""
        fixed: list[Segment] = []
        down: str | None = None
        async for item in items:
            if isinstance(item, Transcript):
                if correct != "none":
                    item = item.model_copy(update={"segments": tuple(fixed),
                                                   "text": " ".join(s.text for s in fixed if s.text)})
                yield item
                continue
            if correct != "none" and down is None:
                one = Transcript(text=item.text, segments=(item,), language=None, model="", duration=0.0)
                item = (await self.correct_transcript(one, correct)).segments[0]  # type: ignore[arg-type]
                if item.correction is not None and item.correction.status == "unavailable":
                    down = item.correction.fallback_reason or "LLM unavailable"
            elif correct != "none":
                c = unavailable(item.nbest, correct, down)  # type: ignore[arg-type]
                self.metrics.fallbacks.labels("correct", "llm_unavailable").inc()
                item = item.model_copy(update={"text": c.text, "correction": c})
            fixed.append(item)
            yield item

    async def correct_transcript(self, transcript: Transcript, method: Method) -> Transcript:
        """Correct segment by segment within one total deadline (ServiceSettings.request_timeout_s);
        once the LLM is found down, slow or garbled, the rest degrade without waiting."""
        started = time.perf_counter()
        budget = self.settings.service.request_timeout_s
        reason: str | None = None if self.corrector else "no LLM stage is configured"
        segments: list[Segment] = []
        for seg in transcript.segments:
            left = budget - (time.perf_counter() - started)
            if reason is None and left <= 0:
                reason = f"LLM unavailable: correction deadline of {budget:g} s spent"
            if reason is None:
                try:
                    queue = self.queues[f"llm:{self.corrector.name}"]  # type: ignore[union-attr]
                    fixed = await queue.run(self.corrector.correct, seg.nbest, method, timeout=left)  # type: ignore[union-attr]
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
