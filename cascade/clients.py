"""HTTP implementations of the pipeline stages: the same types in and out as the in-process ones.

Each client talks to one cascade service (services/asr, llm, tts). Calls have a
connect timeout (a dead service is noticed in seconds) and one total deadline
covering retries and every read: a watchdog shuts the socket when it passes, so a
service that trickles its answer byte by byte cannot hold a caller past it. Calls
that are safe to repeat are retried with exponential backoff and jitter on
connection failures and on 429/502/503/504 (honouring Retry-After up to a cap).
Errors come back as the cascade error the service raised (the status code picks
the class); an unreachable, overloaded, too slow or garbled stage (a 200 whose body
is not the expected record) is `BackendUnavailable`, which the orchestrator turns
into a degraded answer. URLs are shown with credentials and tokens redacted.
"""

from __future__ import annotations

import io
import json
import logging
import random
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

import httpx
import numpy as np
from pydantic import BaseModel, ValidationError

from cascade.config import AsrOptions, ServiceSettings, TtsOptions, redact
from cascade.types import (
    AudioChunk,
    AudioDecodeError,
    BackendUnavailable,
    CascadeError,
    Correction,
    InvalidInput,
    ModelNotFound,
    NBest,
    Segment,
    TooLarge,
    Transcript,
    Unsupported,
)

logger = logging.getLogger(__name__)

_BY_STATUS: dict[int, type[CascadeError]] = {
    400: InvalidInput, 404: ModelNotFound, 413: TooLarge, 415: AudioDecodeError, 422: InvalidInput, 501: Unsupported,
}
_RETRY_STATUS = frozenset({429, 502, 503, 504})
_RUNTIME_FIELDS = {"device", "compute_type", "cpu_threads"}
R = TypeVar("R", bound=BaseModel)


def error_from_response(response: httpx.Response, stage: str) -> CascadeError:
    """The cascade error a service's JSON envelope stands for (503 for anything that is not the caller's fault)."""
    try:
        info = response.json()["error"]
        message, param = str(info.get("message")), info.get("param")
    except (ValueError, KeyError, TypeError, AttributeError):
        message, param = response.text[:200] or response.reason_phrase, None
    cls = _BY_STATUS.get(response.status_code)
    if cls is None:
        return BackendUnavailable(f"{stage} service answered {response.status_code}: {redact(message)}")
    return cls(redact(message), param=param)


class _Watchdog:
    """Shuts the socket of one call at its deadline, waking a read blocked on a trickle.

    The socket is taken from httpcore's trace when the call opens a connection (so a trickle of
    headers is cut too) or from the response once headers are in (a reused connection).
    """

    def __init__(self, seconds: float):
        self.fired = False
        self.stream: Any = None
        self._lock = threading.Lock()
        self._timer = threading.Timer(max(0.0, seconds), self._fire)
        self._timer.daemon = True

    def trace(self, event: str, info: dict[str, Any]) -> None:
        if event == "connection.connect_tcp.complete":
            self.attach(info.get("return_value"))

    def attach(self, stream: Any) -> None:
        with self._lock:
            self.stream = stream if stream is not None else self.stream
            late = self.fired
        if late:
            self._fire()

    def _fire(self) -> None:
        with self._lock:
            self.fired = True
            stream = self.stream
        sock = stream.get_extra_info("socket") if stream is not None else None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def __enter__(self) -> _Watchdog:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()


class StageClient:
    """One remote stage: base URL, optional bearer key, timeouts, bounded retries with backoff."""

    stage = "stage"

    def __init__(self, base_url: str, *, api_key: str | None = None, timeout_s: float = 60.0,
                 connect_timeout_s: float = 3.0, retries: int = 2, backoff_s: float = 0.2, max_backoff_s: float = 2.0):
        self.base_url = base_url.rstrip("/")
        self.url = redact(self.base_url)
        """The base URL as it may be shown (credentials and tokens masked)."""
        self.name = f"{self.stage}@{self.url}"
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=self.base_url, headers=headers,
                                  timeout=httpx.Timeout(timeout_s, connect=connect_timeout_s))

    @classmethod
    def from_settings(cls, base_url: str, service: ServiceSettings, **kw: Any) -> StageClient:
        key = service.api_key.get_secret_value() if service.api_key else None
        return cls(base_url, api_key=key, timeout_s=service.request_timeout_s,
                   connect_timeout_s=service.connect_timeout_s, **kw)

    def close(self) -> None:
        self._http.close()

    def _delay(self, attempt: int, response: httpx.Response | None) -> float:
        wait = self.backoff_s * (2**attempt) * (0.5 + random.random())
        if response is not None and (after := response.headers.get("retry-after", "")).replace(".", "").isdigit():
            wait = max(wait, float(after))
        return min(wait, self.max_backoff_s)

    def request(self, method: str, path: str, *, idempotent: bool = True, **kw: Any) -> httpx.Response:
        """Send with retries within one total deadline; returns a read 2xx response or raises the cascade error."""
        deadline = time.monotonic() + self.timeout_s
        for attempt in range(self.retries + 1):
            response = None
            try:
                response = self._send(method, path, deadline, **kw)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                error: CascadeError = BackendUnavailable(f"{self.stage} service at {self.url} is unreachable ({redact(str(exc))})")
            except (httpx.TimeoutException, _DeadlinePassed) as exc:
                raise self._too_slow() from exc
            except httpx.TransportError as exc:
                error = BackendUnavailable(f"{self.stage} service at {self.url} failed mid-request ({redact(str(exc))})")
                if not idempotent:
                    raise error from exc
            else:
                if response.is_success:
                    return response
                error = error_from_response(response, self.stage)
                if response.status_code not in _RETRY_STATUS or not idempotent:
                    raise error
            if attempt < self.retries:
                delay = min(self._delay(attempt, response), deadline - time.monotonic())
                if delay < 0:
                    raise self._too_slow()
                logger.info("%s: %s; retry %d/%d in %.2f s", self.name, error.message, attempt + 1, self.retries, delay)
                time.sleep(delay)
        raise error

    def _too_slow(self) -> BackendUnavailable:
        return BackendUnavailable(f"{self.stage} service at {self.url} timed out: no answer within the "
                                  f"{self.timeout_s:g} s deadline")

    def _send(self, method: str, path: str, deadline: float, **kw: Any) -> httpx.Response:
        """One attempt: every wait bounded by what is left of the deadline, under a socket watchdog."""
        left = deadline - time.monotonic()
        if left <= 0:
            raise _DeadlinePassed
        timeout = httpx.Timeout(left, connect=min(self.connect_timeout_s, left))
        with _Watchdog(left) as dog:
            request = self._http.build_request(method, path, timeout=timeout, extensions={"trace": dog.trace}, **kw)
            try:
                response = self._http.send(request, stream=True)
                try:
                    dog.attach(response.extensions.get("network_stream"))
                    response.read()
                finally:
                    response.close()
            except httpx.TransportError:
                if dog.fired:
                    raise _DeadlinePassed from None
                raise
        return response

    def parse(self, response: httpx.Response, model: type[R]) -> R:
        """The record a 2xx body holds; a body that is not one is the stage misbehaving (BackendUnavailable)."""
        try:
            return model.model_validate_json(response.content)
        except ValidationError as exc:
            first = str(exc.errors()[0].get("msg", exc)) if exc.errors() else str(exc)
            raise BackendUnavailable(f"{self.stage} service at {self.url} answered {response.status_code} with a body "
                                     f"that is not a {model.__name__} ({first[:120]})") from exc

    def ready(self) -> bool:
        try:
            return self._http.get("/readyz", timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False


class _DeadlinePassed(Exception):
    """The watchdog cut a read off at the call's total deadline."""


def wav_bytes(samples: np.ndarray, sample_rate: int = 16000) -> bytes:
    """16-bit mono WAV in memory (what the ASR service decodes)."""
    import soundfile as sf

    from cascade.audio import to_pcm16

    buf = io.BytesIO()
    sf.write(buf, to_pcm16(np.asarray(samples).reshape(-1)), sample_rate, subtype="PCM_16", format="WAV")
    return buf.getvalue()


class AsrClient(StageClient):
    """Recognition by the ASR service's /v1/nbest (returns the Transcript record itself)."""

    stage = "asr"

    def transcribe_all(self, samples: np.ndarray, options: AsrOptions, *, cancel: threading.Event | None = None) -> Transcript:
        """The remote Transcript (`cancel` is not checked: one request, bounded by the deadline)."""
        fields = options.model_dump_json(exclude=_RUNTIME_FIELDS)
        response = self.request("POST", "/v1/nbest", files={"file": ("audio.wav", wav_bytes(samples), "audio/wav")},
                                data={"options": fields})
        return self.parse(response, Transcript)


    def stream_segments(self, samples: np.ndarray, options: AsrOptions, *,
                        cancel: threading.Event | None = None) -> Iterator[Segment | Transcript]:
        """Each Segment as the service decodes its window (/v1/nbest stream=true, server-sent events), then the
        Transcript: a gateway streams a remote recogniser's transcription window by window. Not retried."""
        fields = options.model_dump_json(exclude=_RUNTIME_FIELDS)
        request = self._http.build_request("POST", "/v1/nbest", data={"options": fields, "stream": "true"},
                                           files={"file": ("audio.wav", wav_bytes(samples), "audio/wav")})
        try:
            response = self._http.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise BackendUnavailable(f"asr service at {self.url} is unreachable ({type(exc).__name__})") from exc
        try:
            if not response.is_success:
                response.read()
                raise error_from_response(response, self.stage)
            for line in response.iter_lines():
                if line.startswith("data: "):
                    yield self._event(json.loads(line[6:]))
        except (httpx.HTTPError, ValueError, ValidationError) as exc:
            raise BackendUnavailable(f"asr service at {self.url} failed mid-stream ({type(exc).__name__})") from exc
        finally:
            response.close()

    def _event(self, data: dict) -> Segment | Transcript:
        if "error" in data:
            message = redact(str(data["error"].get("message")))
            raise BackendUnavailable(f"asr service at {self.url} failed mid-stream: {message}")
        return Segment.model_validate(data["segment"]) if data["type"] == "segment" else Transcript.model_validate(data["transcript"])


class LlmClient(StageClient):
    """Rescoring/GER by the LLM service (/v1/rescore, /v1/correct) and chat replies (/v1/chat/completions)."""

    stage = "llm"

    def correct(self, nbest: NBest, method: str = "ger") -> Correction:
        """One list corrected by the LLM service, which runs the correction seam (any list mode)."""
        path, params = ("/v1/rescore", None) if method == "rescore" else ("/v1/correct", {"method": method})
        response = self.request("POST", path, params=params, json=nbest.model_dump(mode="json"))
        return self.parse(response, Correction)

    def chat(self, messages: Sequence[dict[str, str]], *, max_tokens: int, temperature: float = 0.0,
             model: str = "default") -> str:
        body = {"model": model, "messages": list(messages), "max_tokens": max_tokens, "temperature": temperature}
        response = self.request("POST", "/v1/chat/completions", json=body)
        try:
            content = response.json()["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise BackendUnavailable(f"llm service at {self.url} answered {response.status_code} with a body that "
                                     "is not a chat completion") from exc
        if content is not None and not isinstance(content, str):
            raise BackendUnavailable(f"llm service at {self.url} answered a chat completion without text content")
        return content or ""


class TtsClient(StageClient):
    """Speech by the TTS service's /v1/audio/speech, streamed as raw 16-bit PCM chunks."""

    stage = "tts"

    def synthesize(self, text: str, options: TtsOptions, *, chunk_bytes: int = 16384) -> Iterator[AudioChunk]:
        """Chunks as they arrive; the connection opens (and may fail) on the first next()."""
        body = {"model": options.engine, "input": text, "voice": options.voice, "speed": options.speed,
                "response_format": "pcm"}
        response = self._open_stream(body)
        try:
            rate = int(response.headers.get("x-sample-rate", "22050"))
            pending = b""
            for block in response.iter_bytes(chunk_bytes):
                pending += block
                whole = len(pending) - len(pending) % 2
                if whole:
                    yield AudioChunk(pcm=pending[:whole], sample_rate=rate)
                    pending = pending[whole:]
        except httpx.HTTPError as exc:
            raise BackendUnavailable(f"tts service at {self.url} failed mid-stream ({redact(str(exc))})") from exc
        finally:
            response.close()

    def _open_stream(self, body: dict[str, Any]) -> httpx.Response:
        for attempt in range(self.retries + 1):
            try:
                response = self._http.send(self._http.build_request("POST", "/v1/audio/speech", json=body), stream=True)
            except httpx.TimeoutException as exc:
                raise BackendUnavailable(f"tts service at {self.url} timed out") from exc
            except httpx.TransportError as exc:
                error: CascadeError = BackendUnavailable(f"tts service at {self.url} is unreachable ({redact(str(exc))})")
                response = None
            else:
                if response.is_success:
                    return response
                response.read()
                error = error_from_response(response, self.stage)
                if response.status_code not in _RETRY_STATUS:
                    raise error
            if attempt < self.retries:
                time.sleep(self._delay(attempt, response))
        raise error

    def synthesize_all(self, text: str, options: TtsOptions) -> AudioChunk:
        chunks = list(self.synthesize(text, options))
        if not chunks:
            raise BackendUnavailable("tts service returned no audio")
        return AudioChunk(pcm=b"".join(c.pcm for c in chunks), sample_rate=chunks[0].sample_rate, text=text)


# --------------------------------------------------------------------------- pipeline stages over HTTP


def _audio_bytes(audio: Any) -> tuple[str, bytes]:
    """(filename, bytes) for any AudioInput: encoded bytes and files go as they are, arrays as WAV."""
    from pathlib import Path

    if isinstance(audio, np.ndarray):
        return "audio.wav", wav_bytes(audio)
    if isinstance(audio, bytes):
        return "audio", audio
    path = Path(audio)
    try:
        return path.name, path.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"cannot read audio file {path}: {exc.strerror}", param="file") from exc


class HttpAsrStage:
    """pipeline.AsrStage over the ASR service."""

    def __init__(self, client: AsrClient, options: AsrOptions):
        self.client, self.options = client, options

    def transcribe(self, audio: Any) -> Transcript:
        from cascade.types import StageInfo

        start = time.perf_counter()
        name, data = _audio_bytes(audio)
        fields = self.options.model_dump_json(exclude=_RUNTIME_FIELDS)
        response = self.client.request("POST", "/v1/nbest", files={"file": (name, data)}, data={"options": fields})
        transcript = self.client.parse(response, Transcript)
        info = StageInfo(stage="asr:http", model=transcript.model, seconds=time.perf_counter() - start,
                         options={"url": self.client.url})
        return transcript.model_copy(update={"stages": (*transcript.stages, info)})


class HttpCorrectStage:
    """pipeline.CorrectStage over the LLM service (/v1/correct or /v1/rescore per segment)."""

    def __init__(self, client: LlmClient, method: str):
        self.client, self.method = client, method

    def correct(self, transcript: Transcript):
        from cascade.types import CorrectedTranscript, StageInfo

        start = time.perf_counter()
        if self.method == "none":
            corrections = tuple(Correction(text=s.text, method="none", chosen=0) for s in transcript.segments)
        else:
            corrections = tuple(self.client.correct(s.nbest, self.method) for s in transcript.segments)  # type: ignore[arg-type]
        text = " ".join(c.text.strip() for c in corrections if c.text.strip())
        info = StageInfo(stage="correct", model=self.client.name, seconds=time.perf_counter() - start,
                         options={"method": self.method, "url": self.client.url})
        return CorrectedTranscript(text=text, corrections=corrections, method=self.method, info=info)  # type: ignore[arg-type]


class HttpReplyStage:
    """pipeline.ReplyStage over /v1/chat/completions (the whole reply, then its sentences)."""

    def __init__(self, client: LlmClient, options: Any, model: str):
        self.client, self.options, self.model = client, options, model

    def describe(self):
        from cascade import prompts
        from cascade.types import StageInfo

        ref = prompts.prompt_ref(self.options.prompt)
        return StageInfo(stage="reply", model=f"{self.model}@{self.client.url}",
                         options=self.options.model_dump(mode="json"), prompt_name=ref.name, prompt_hash=ref.hash)

    def stream(self, text: str, history: Sequence[Any]) -> Iterator[str]:
        from cascade.respond import build_messages
        from cascade.tts.text import complete_sentences

        messages, _ = build_messages(text, history, self.options)
        reply = self.client.chat(messages, max_tokens=self.options.max_reply_tokens,
                                 temperature=self.options.temperature, model=self.model)
        done, rest = complete_sentences(reply)
        sentences = [*done, *([" ".join(rest.split())] if rest.strip() else [])]
        yield from sentences[: self.options.max_sentences]


class HttpTtsStage:
    """pipeline.TtsStage over the TTS service: each sentence is one streamed /v1/audio/speech call."""

    def __init__(self, client: TtsClient, options: TtsOptions):
        self.client, self.options = client, options

    def describe(self):
        from cascade.types import StageInfo

        return StageInfo(stage="tts", model=f"{self.options.voice}@{self.client.url}",
                         options=self.options.model_dump(mode="json"))

    def stream(self, sentences: Any) -> Iterator[AudioChunk]:
        for sentence in sentences:
            if sentence and sentence.strip():
                for chunk in self.client.synthesize(sentence, self.options):
                    yield chunk.model_copy(update={"text": sentence})


def make_stage(kind: str, url: str, settings: Any) -> Any:
    """The HTTP-backed pipeline stage `kind` (asr, correct, reply, tts) for the service at `url`."""
    svc = settings.service
    if kind == "asr":
        return HttpAsrStage(AsrClient.from_settings(url, svc), settings.chat.turn_asr(settings.asr))  # type: ignore[arg-type]
    if kind == "correct":
        return HttpCorrectStage(LlmClient.from_settings(url, svc), settings.chat.correct)  # type: ignore[arg-type]
    if kind == "reply":
        model = settings.llm.model.rsplit("/", 1)[-1]
        return HttpReplyStage(LlmClient.from_settings(url, svc), settings.chat, model)  # type: ignore[arg-type]
    if kind == "tts":
        return HttpTtsStage(TtsClient.from_settings(url, svc), settings.tts)  # type: ignore[arg-type]
    raise InvalidInput(f"unknown stage kind {kind!r} (asr, correct, reply, tts)", param="stage")
