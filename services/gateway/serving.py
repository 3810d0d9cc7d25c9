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
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from cascade.config import Settings
from cascade.types import (
    AudioChunk, BackendUnavailable, ChatMessage, CorrectedTranscript, Correction, StageInfo, Transcript,
)
from services.asr.deps import PendingAudio
from services.common.metrics import ServiceMetrics
from services.common.middleware import client_gone
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
        if "llm" in self.rec.degraded:  # found down (or slow, or garbled) by the correction: do not wait again
            raise ReplyDown(self.rec.degraded["llm"])
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

    async def voice_turn(self, audio: np.ndarray | PendingAudio, history: list[ChatMessage], fmt: str) -> VoiceTurnResponse:
        """The upload is decoded inside the turn's admission slot (bounded by max_audio_s)."""
        return await self.queues["turn"].run(self._run, audio, history, fmt, client_gone.get())

    def _run(self, audio: np.ndarray | PendingAudio, history: list[ChatMessage], fmt: str,
             cancel: threading.Event | None = None) -> VoiceTurnResponse:
        from cascade.pipeline import SpokenTurn

        samples = audio.decode(cancel) if isinstance(audio, PendingAudio) else audio
        rec, t = _Record(), self.turn
        turn = SpokenTurn(asr=_Asr(t.asr, rec), correct=_Correct(t.corrector, rec, self.settings.chat.correct, self.metrics),
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


# --------------------------------------------------------------------------- the OpenAI routes (one base URL)


class Upstream:
    """A remote stage reached over HTTP: an OpenAI request forwarded as it is, its answer (JSON, SSE or
    audio) streamed back with its status; an unreachable service is BackendUnavailable (503)."""

    def __init__(self, stage: str, url: str, settings: Settings):
        import httpx

        svc = settings.service
        key = svc.api_key.get_secret_value() if svc.api_key else None
        self.stage, self.url = stage, url.rstrip("/")
        self._http = httpx.AsyncClient(base_url=self.url, headers={"Authorization": f"Bearer {key}"} if key else {},
                                       timeout=httpx.Timeout(svc.request_timeout_s, connect=svc.connect_timeout_s))

    async def forward(self, method: str, path: str, body: dict | None = None) -> Any:
        import httpx
        from fastapi.responses import Response, StreamingResponse
        from starlette.background import BackgroundTask

        try:
            response = await self._http.send(self._http.build_request(method, path, json=body), stream=True)
        except httpx.TransportError as exc:
            raise BackendUnavailable(f"{self.stage} service at {self.url} is unreachable ({type(exc).__name__})") from exc
        keep = {k: v for k, v in response.headers.items() if k.lower() in ("x-sample-rate", "retry-after", "cache-control")}
        media = response.headers.get("content-type")
        if not response.is_success or "json" in (media or ""):
            content = await response.aread()
            await response.aclose()
            return Response(content, status_code=response.status_code, media_type=media, headers=keep)
        return StreamingResponse(response.aiter_raw(), status_code=response.status_code, media_type=media,
                                 headers=keep, background=BackgroundTask(response.aclose))

    async def json(self, path: str) -> dict:
        response = await self.forward("GET", path)
        if response.status_code != 200:
            raise BackendUnavailable(f"{self.stage} service at {self.url} answered {response.status_code} on {path}")
        import json

        return json.loads(response.body)


class OpenAIStages:
    """Chat, speech and the model list behind the gateway's one base URL: the LLM and TTS stages run in
    this process (the LLM loaded on first use) or are the services at llm_url / tts_url."""

    def __init__(self, settings: Settings, queues: Queues):
        svc = settings.service
        self.settings, self.queues = settings, queues
        self.llm_remote = Upstream("llm", svc.llm_url, settings) if svc.llm_url else None
        self.tts_remote = Upstream("tts", svc.tts_url, settings) if svc.tts_url else None
        self._llm: Any = None
        self.tts: Any = None
        if self.tts_remote is None:
            from services.tts.serving import TtsServing

            self.tts = TtsServing(settings, queues)

    @property
    def llm(self) -> Any:
        if self._llm is None:
            from services.llm.serving import LlmServing

            self._llm = LlmServing(self.settings)
        return self._llm

    async def chat(self, req: Any) -> Any:
        from services.common.sse import sse_response

        if self.llm_remote is not None:
            body = req.model_dump(exclude_unset=True, by_alias=True)
            return await self.llm_remote.forward("POST", "/v1/chat/completions", body)
        llm = self.llm
        queue = self.queues[f"llm:{llm.name}"]
        if req.stream:
            return sse_response(await queue.open_stream(lambda: llm.chat_stream(req)), done=True)
        return await queue.run(llm.chat, req)

    async def complete(self, req: Any) -> Any:
        if self.llm_remote is not None:
            return await self.llm_remote.forward("POST", "/v1/completions", req.model_dump(exclude_unset=True))
        llm = self.llm
        return await self.queues[f"llm:{llm.name}"].run(llm.complete, req)

    async def speech(self, req: Any) -> Any:
        from fastapi.responses import StreamingResponse

        from services.tts.protocol import MEDIA_TYPES

        if self.tts_remote is not None:
            return await self.tts_remote.forward("POST", "/v1/audio/speech", req.model_dump(exclude_unset=True))
        options = req.to_tts_options(self.settings.tts)
        body, rate = await self.tts.speech(req.input, options)
        return StreamingResponse(body, media_type=MEDIA_TYPES[options.format], headers={"X-Sample-Rate": str(rate)})

    async def models(self, asr_names: Sequence[str]) -> list[dict]:
        """OpenAI's model objects with a `kind` extension (asr, tts, llm); names only, never paths."""
        created = int(time.time())

        def entry(name: str, kind: str, **extra: Any) -> dict:
            return {"id": name, "object": "model", "created": created, "owned_by": "cascade", "kind": kind, **extra}

        tts = self.settings.tts
        out = [entry(n, "asr") for n in asr_names] + [entry("whisper-1", "asr", parent=self.settings.asr.model)]
        out += [entry("tts-1", "tts", parent=tts.engine, voice=tts.voice), entry(tts.engine, "tts", voice=tts.voice)]
        if self.llm_remote is not None:
            listed = (await self.llm_remote.json("/v1/models")).get("data", [])  # an LLM service or a gateway
            out += [entry(m["id"], "llm", **({"parent": m["parent"]} if m.get("parent") else {}))
                    for m in listed if m.get("kind", "llm") == "llm"]
        else:
            out += [entry(m.id, "llm", **({"parent": m.parent} if getattr(m, "parent", None) else {}))
                    for m in self.llm.models()]
        return [m for m in out if not _looks_like_path(m["id"])]

    async def model(self, model_id: str, asr_names: Sequence[str]) -> dict:
        """One entry of models(), or an alias from service.model_aliases (chat, transcription) or tts' names."""
        from cascade.types import ModelNotFound
        from services.tts.protocol import OPENAI_MODELS

        listed = await self.models(asr_names)
        for m in listed:
            if m["id"] == model_id:
                return m
        aliases = self.settings.service.model_aliases
        llm = next((m["id"] for m in listed if m["kind"] == "llm" and "parent" not in m), None)
        kind, parent = (("llm", llm) if model_id in aliases.chat else ("asr", self.settings.asr.model)
                        if model_id in aliases.transcription and model_id else ("tts", self.settings.tts.engine)
                        if model_id in OPENAI_MODELS else (None, None))
        if kind is None:
            raise ModelNotFound(f"model {model_id!r} is not served here", param="model")
        return {"id": model_id, "object": "model", "created": int(time.time()), "owned_by": "cascade", "kind": kind,
                "parent": parent}


def _looks_like_path(name: str) -> bool:
    """A filesystem path (a model directory given as the configured model) is never listed; a hub id such as
    vLLM's `HuggingFaceTB/SmolLM2-135M-Instruct` is a name and stays."""
    return name.startswith(("/", "~", "./", "../")) or "\\" in name or name.count("/") > 1
