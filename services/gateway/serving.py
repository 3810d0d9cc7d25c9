"""The gateway's spoken turn: cascade.pipeline's stages (in-process or HTTP) with graceful degradation.

The turn itself is cascade.pipeline.SpokenTurn. Here each request wraps its stages
so a stage that is down (BackendUnavailable) degrades the answer instead of failing
it: the LLM down -> the recogniser's text with correction status "unavailable"
(and no reply); the TTS down -> the reply as text with audio null. Only the ASR
stage is essential (no transcript, no turn: 503).
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from cascade.config import Settings
from cascade.types import (
    AudioChunk, BackendUnavailable, ChatMessage, CorrectedTranscript, Correction, StageInfo, Transcript,
)
from services.common.metrics import ServiceMetrics
from services.common.queue import Queues
from services.gateway.protocol import AudioOut, VoiceTurnResponse

logger = logging.getLogger(__name__)


class _Record:
    """What the stages of one turn produced so far (kept when a later stage fails)."""

    def __init__(self) -> None:
        self.transcript: Transcript | None = None
        self.corrected: CorrectedTranscript | None = None
        self.sentences: list[str] = []
        self.degraded: dict[str, str] = {}


class _Asr:
    def __init__(self, stage: Any, rec: _Record):
        self.stage, self.rec = stage, rec

    def transcribe(self, audio: Any) -> Transcript:
        self.rec.transcript = self.stage.transcribe(audio)
        return self.rec.transcript


class _Correct:
    """LLM down -> each segment keeps its 1-best, status "unavailable"."""

    def __init__(self, stage: Any, rec: _Record, method: str, metrics: ServiceMetrics):
        self.stage, self.rec, self.method, self.metrics = stage, rec, method, metrics

    def correct(self, transcript: Transcript) -> CorrectedTranscript:
        try:
            self.rec.corrected = self.stage.correct(transcript)
        except BackendUnavailable as exc:
            self.metrics.fallbacks.labels("correct", "llm_unavailable").inc()
            self.rec.degraded["llm"] = exc.message
            fixes = tuple(Correction(text=s.text, method=self.method, status="unavailable",  # type: ignore[arg-type]
                                     chosen=0, fallback_reason=f"LLM unavailable: {exc.message}")
                          for s in transcript.segments)
            self.rec.corrected = CorrectedTranscript(
                text=" ".join(c.text for c in fixes if c.text), corrections=fixes, method=self.method,  # type: ignore[arg-type]
                info=StageInfo(stage="correct", options={"method": self.method, "status": "unavailable"}))
        return self.rec.corrected


class _Reply:
    def __init__(self, stage: Any, rec: _Record):
        self.stage, self.rec = stage, rec

    def describe(self) -> StageInfo:
        return self.stage.describe()

    def stream(self, text: str, history: Sequence[ChatMessage]) -> Iterator[str]:
        try:
            for sentence in self.stage.stream(text, history):
                self.rec.sentences.append(sentence)
                yield sentence
        except BackendUnavailable as exc:
            raise ReplyDown(exc.message) from exc


class ReplyDown(Exception):
    """The LLM could not write the reply (kept apart from BackendUnavailable so the TTS wrapper,
    which sees reply errors through the sentence stream, does not take it for its own failure)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class TtsDown(Exception):
    """Raised out of the turn once the reply is complete and the TTS stage could not speak it."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class _Tts:
    """TTS down -> let the reply finish (drain the sentences), then stop the turn with TtsDown."""

    def __init__(self, stage: Any, rec: _Record):
        self.stage, self.rec = stage, rec

    def describe(self) -> StageInfo:
        return self.stage.describe()

    def stream(self, sentences: Iterable[str]) -> Iterator[AudioChunk]:
        it = iter(sentences)
        try:
            yield from self.stage.stream(it)
        except BackendUnavailable as exc:
            for _ in it:
                pass
            raise TtsDown(exc.message) from exc


def _audio(chunk: AudioChunk, fmt: str) -> AudioOut:
    from cascade.audio import encode_audio

    samples = np.frombuffer(chunk.pcm, dtype="<i2")
    data = encode_audio(samples, chunk.sample_rate, fmt)
    return AudioOut(format=fmt, sample_rate=chunk.sample_rate, data=base64.b64encode(data).decode())  # type: ignore[arg-type]


class GatewayServing:
    """Builds the turn's stages once (pipeline.build_turn: local or HTTP by settings) and runs turns."""

    def __init__(self, settings: Settings, queues: Queues, metrics: ServiceMetrics):
        from cascade.pipeline import build_turn

        self.settings, self.queues, self.metrics = settings, queues, metrics
        self.turn = build_turn(settings)

    async def voice_turn(self, samples: np.ndarray, history: list[ChatMessage], fmt: str) -> VoiceTurnResponse:
        return await self.queues["turn"].run(self._run, samples, history, fmt)

    def _run(self, samples: np.ndarray, history: list[ChatMessage], fmt: str) -> VoiceTurnResponse:
        from cascade.pipeline import SpokenTurn

        rec, t = _Record(), self.turn
        turn = SpokenTurn(asr=_Asr(t.asr, rec), correct=_Correct(t.corrector, rec, t.chat.correction, self.metrics),
                          reply=_Reply(t.replier, rec), tts=_Tts(t.tts, rec), chat=t.chat)
        start = time.perf_counter()
        try:
            result = turn.run(samples, history)
        except TtsDown as exc:
            self.metrics.fallbacks.labels("tts", "tts_unavailable").inc()
            rec.degraded["tts"] = exc.reason
            return self._partial(rec, start)
        except ReplyDown as exc:
            self.metrics.fallbacks.labels("reply", "llm_unavailable").inc()
            rec.degraded.setdefault("llm", exc.reason)
            return self._partial(rec, start)
        audio = _audio(result.audio, fmt) if result.audio is not None else None
        return VoiceTurnResponse(
            status="degraded" if rec.degraded else "ok", degraded=rec.degraded, transcript=result.transcript,
            correction=result.correction, reply=result.reply, speech=result.speech, audio=audio,
            timings=result.timings, time_to_first_audio=result.time_to_first_audio)

    def _partial(self, rec: _Record, start: float) -> VoiceTurnResponse:
        from cascade.types import Reply

        reply = Reply(text=" ".join(rec.sentences), sentences=tuple(rec.sentences)) if rec.sentences else None
        return VoiceTurnResponse(status="degraded", degraded=rec.degraded, transcript=rec.transcript,  # type: ignore[arg-type]
                                 correction=rec.corrected, reply=reply, speech=None, audio=None,  # type: ignore[arg-type]
                                 timings={"total": time.perf_counter() - start})
