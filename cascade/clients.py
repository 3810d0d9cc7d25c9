"""HTTP implementations of the pipeline stages: the same types in and out as the in-process ones.

Each client talks to one cascade service (services/asr, llm, tts). Calls have a
connect timeout (a dead service is noticed in seconds) and a total timeout;
calls that are safe to repeat are retried with exponential backoff and jitter on
connection failures and on 429/502/503/504 (honouring Retry-After up to a cap).
Errors come back as the cascade error the service raised (the status code picks
the class), and an unreachable or overloaded stage is `BackendUnavailable`, which
the orchestrator turns into a degraded answer.
"""

from __future__ import annotations

import io
import logging
import random
import time
from collections.abc import Iterator, Sequence
from typing import Any, Literal

import httpx
import numpy as np

from cascade.config import AsrOptions, ServiceSettings, TtsOptions
from cascade.types import (
    AudioChunk,
    AudioDecodeError,
    BackendUnavailable,
    CascadeError,
    Correction,
    InvalidInput,
    ModelNotFound,
    NBest,
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


def error_from_response(response: httpx.Response, stage: str) -> CascadeError:
    """The cascade error a service's JSON envelope stands for (503 for anything that is not the caller's fault)."""
    try:
        info = response.json()["error"]
        message, param = str(info.get("message")), info.get("param")
    except (ValueError, KeyError, TypeError, AttributeError):
        message, param = response.text[:200] or response.reason_phrase, None
    cls = _BY_STATUS.get(response.status_code)
    if cls is None:
        return BackendUnavailable(f"{stage} service answered {response.status_code}: {message}")
    return cls(message, param=param)


class StageClient:
    """One remote stage: base URL, optional bearer key, timeouts, bounded retries with backoff."""

    stage = "stage"

    def __init__(self, base_url: str, *, api_key: str | None = None, timeout_s: float = 60.0,
                 connect_timeout_s: float = 3.0, retries: int = 2, backoff_s: float = 0.2, max_backoff_s: float = 2.0):
        self.base_url = base_url.rstrip("/")
        self.name = f"{self.stage}@{self.base_url}"
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
        """Send with retries; returns a 2xx response or raises the matching cascade error."""
        for attempt in range(self.retries + 1):
            response = None
            try:
                response = self._http.request(method, path, **kw)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                error: CascadeError = BackendUnavailable(f"{self.stage} service at {self.base_url} is unreachable ({exc})")
            except httpx.TimeoutException as exc:
                raise BackendUnavailable(f"{self.stage} service at {self.base_url} timed out ({type(exc).__name__})") from exc
            except httpx.TransportError as exc:
                error = BackendUnavailable(f"{self.stage} service at {self.base_url} failed mid-request ({exc})")
                if not idempotent:
                    raise error from exc
            else:
                if response.is_success:
                    return response
                error = error_from_response(response, self.stage)
                if response.status_code not in _RETRY_STATUS or not idempotent:
                    raise error
            if attempt < self.retries:
                delay = self._delay(attempt, response)
                logger.info("%s: %s; retry %d/%d in %.2f s", self.name, error.message, attempt + 1, self.retries, delay)
                time.sleep(delay)
        raise error

    def ready(self) -> bool:
        try:
            return self._http.get("/readyz", timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False


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

    def transcribe_all(self, samples: np.ndarray, options: AsrOptions) -> Transcript:
        fields = options.model_dump_json(exclude=_RUNTIME_FIELDS)
        response = self.request("POST", "/v1/nbest", files={"file": ("audio.wav", wav_bytes(samples), "audio/wav")},
                                data={"options": fields})
        return Transcript.model_validate_json(response.content)


class LlmClient(StageClient):
    """Rescoring/GER by the LLM service (/v1/rescore, /v1/correct) and chat replies (/v1/chat/completions)."""

    stage = "llm"

    def correct(self, nbest: NBest, method: Literal["rescore", "ger"] = "ger") -> Correction:
        path = "/v1/rescore" if method == "rescore" else "/v1/correct"
        response = self.request("POST", path, json=nbest.model_dump(mode="json"))
        return Correction.model_validate_json(response.content)

    def chat(self, messages: Sequence[dict[str, str]], *, max_tokens: int, temperature: float = 0.0,
             model: str = "default") -> str:
        body = {"model": model, "messages": list(messages), "max_tokens": max_tokens, "temperature": temperature}
        response = self.request("POST", "/v1/chat/completions", json=body)
        return response.json()["choices"][0]["message"]["content"] or ""


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
            raise BackendUnavailable(f"tts service at {self.base_url} failed mid-stream ({exc})") from exc
        finally:
            response.close()

    def _open_stream(self, body: dict[str, Any]) -> httpx.Response:
        for attempt in range(self.retries + 1):
            try:
                response = self._http.send(self._http.build_request("POST", "/v1/audio/speech", json=body), stream=True)
            except httpx.TimeoutException as exc:
                raise BackendUnavailable(f"tts service at {self.base_url} timed out") from exc
            except httpx.TransportError as exc:
                error: CascadeError = BackendUnavailable(f"tts service at {self.base_url} is unreachable ({exc})")
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
        transcript = Transcript.model_validate_json(response.content)
        info = StageInfo(stage="asr:http", model=transcript.model, seconds=time.perf_counter() - start,
                         options={"url": self.client.base_url})
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
                         options={"method": self.method, "url": self.client.base_url})
        return CorrectedTranscript(text=text, corrections=corrections, method=self.method, info=info)  # type: ignore[arg-type]


class HttpReplyStage:
    """pipeline.ReplyStage over /v1/chat/completions (the whole reply, then its sentences)."""

    def __init__(self, client: LlmClient, options: Any, model: str):
        self.client, self.options, self.model = client, options, model

    def describe(self):
        from cascade import prompts
        from cascade.types import StageInfo

        ref = prompts.prompt_ref(self.options.prompt)
        return StageInfo(stage="reply", model=f"{self.model}@{self.client.base_url}",
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

        return StageInfo(stage="tts", model=f"{self.options.voice}@{self.client.base_url}",
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
        return HttpAsrStage(AsrClient.from_settings(url, svc), settings.asr)  # type: ignore[arg-type]
    if kind == "correct":
        return HttpCorrectStage(LlmClient.from_settings(url, svc), settings.chat.correction)  # type: ignore[arg-type]
    if kind == "reply":
        model = settings.llm.model.rsplit("/", 1)[-1]
        return HttpReplyStage(LlmClient.from_settings(url, svc), settings.chat, model)  # type: ignore[arg-type]
    if kind == "tts":
        return HttpTtsStage(TtsClient.from_settings(url, svc), settings.tts)  # type: ignore[arg-type]
    raise InvalidInput(f"unknown stage kind {kind!r} (asr, correct, reply, tts)", param="stage")
