"""LlmBackend over any OpenAI-compatible server (vLLM on GPU, or cascade's own LLM service).

Scoring: POST /completions with `echo=true, logprobs=1, max_tokens=0` returns the prompt's own
token log-probs (vLLM semantics; the first token has none, so a text scored without a prefix
loses its first token there, while cascade's service conditions it on the document start).
Generation: POST /completions. A LoRA adapter is selected by `model` name, as vLLM's
multi-LoRA serving (`--lora-modules ger=...`) expects. Connection failures, 429 and 5xx are
retried with backoff, then raise BackendUnavailable; 4xx become InvalidInput/ModelNotFound.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from typing import Any

from cascade.config import LlmOptions, redact
from cascade.llm.base import TextScore, TokenLogprob
from cascade.llm.hf_backend import score_from_tokens, split_at_stop
from cascade.types import BackendUnavailable, InvalidInput, ModelNotFound

logger = logging.getLogger(__name__)

_CHATML_START, _CHATML_END = "<|im_start|>", "<|im_end|>"


class OpenAIBackend:
    """HTTP client backend (httpx), batched by LlmOptions.batch_size prompts per request."""

    def __init__(self, options: LlmOptions):
        import httpx

        if not options.base_url:
            raise InvalidInput("the openai LLM backend needs llm.base_url (e.g. http://127.0.0.1:8001/v1)", param="base_url")
        self.options = options
        self.name = options.model
        headers = {"Authorization": f"Bearer {options.api_key.get_secret_value()}"} if options.api_key else {}
        self._client = httpx.Client(base_url=options.base_url.rstrip("/"), timeout=options.timeout_s, headers=headers)

    def close(self) -> None:
        self._client.close()

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        import httpx

        delay, last = 0.5, "no attempt"
        for attempt in range(self.options.max_retries + 1):
            try:
                r = self._client.post(path, json=body)
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}: {exc}"
            else:
                if r.status_code < 400:
                    body = _json_object(r)
                    if body is not None:
                        return body
                    raise BackendUnavailable(f"LLM server at {redact(self.options.base_url)} answered "
                                             f"{r.status_code} with a body that is not a completion")
                message = redact(_error_message(r))
                if r.status_code == 404:
                    raise ModelNotFound(f"LLM server: {message}", param="model")
                if r.status_code < 500 and r.status_code != 429:
                    raise InvalidInput(f"LLM server rejected the request: {message}")
                last = f"HTTP {r.status_code}: {message}"
            if attempt < self.options.max_retries:
                logger.warning("LLM request to %s failed (%s); retry %d", path, last, attempt + 1)
                time.sleep(delay)
                delay *= 2
        raise BackendUnavailable(f"LLM server at {redact(self.options.base_url)} unavailable ({redact(last)})")

    def _model(self, adapter: str | None) -> str:
        return adapter or self.options.model

    def prompt_logprobs(self, texts: Sequence[str], *, adapter: str | None = None) -> list[list[TokenLogprob]]:
        out: list[list[TokenLogprob]] = []
        bs = self.options.batch_size
        for b in range(0, len(texts), bs):
            chunk = list(texts[b : b + bs])
            body = {"model": self._model(adapter), "prompt": chunk, "max_tokens": 0, "echo": True, "logprobs": 1, "temperature": 0.0}
            choices = sorted(self._post("/completions", body)["choices"], key=lambda c: c["index"])
            for text, choice in zip(chunk, choices):
                lp = choice.get("logprobs") or {}
                rows = zip(lp.get("tokens") or [], lp.get("text_offset") or [], lp.get("token_logprobs") or [])
                out.append([TokenLogprob(token=t, offset=o, logprob=v) for t, o, v in rows if o < len(text)])
        return out

    def score(self, texts: Sequence[str], *, adapter: str | None = None, prefix: str = "") -> list[TextScore]:
        full = [prefix + t if t else "" for t in texts]
        nonempty = [f for f in full if f]
        per_token = iter(self.prompt_logprobs(nonempty, adapter=adapter)) if nonempty else iter(())
        return [score_from_tokens(next(per_token), len(prefix), len(f)) if f else TextScore(logprob=0.0, n_tokens=0) for f in full]

    def generate(
        self,
        prompts: Sequence[str],
        *,
        max_tokens: int,
        stop: Sequence[str] = (),
        temperature: float = 0.0,
        adapter: str | None = None,
        drafts: Sequence[str | None] = (),
    ) -> list[str]:
        out: list[str] = []  # `drafts` unused: the server decodes
        stops = [s for s in stop if s][:4]  # the OpenAI API takes at most 4 stop strings
        bs = self.options.batch_size
        for b in range(0, len(prompts), bs):
            body: dict[str, Any] = {"model": self._model(adapter), "prompt": list(prompts[b : b + bs]), "max_tokens": max_tokens, "temperature": temperature}
            if stops:
                body["stop"] = stops
            choices = sorted(self._post("/completions", body)["choices"], key=lambda c: c["index"])
            out.extend(split_at_stop(c.get("text") or "", stops) for c in choices)
        return out

    def chat_completion(self, body: dict[str, Any], *, adapter: str | None = None) -> dict[str, Any]:
        """One chat completion as the server answers it (its own tools, response_format and logprobs: vLLM's
        tool parsers and guided decoding), `model` set to the served model or adapter."""
        return self._post("/chat/completions", {**body, "model": self._model(adapter), "stream": False})

    def count_tokens(self, text: str) -> int:
        """An estimate (about 3 characters a token): the client has no tokenizer, and caps only need a bound."""
        return max(1, math.ceil(len(text) / 3)) if text else 0

    def chat_template(self, messages: Sequence[dict[str, str]], *, add_generation_prompt: bool = True) -> str:
        """ChatML, the template of the SmolLM2 family that the served models share (raw-prompt callers only)."""
        text = "".join(f"{_CHATML_START}{m['role']}\n{m['content']}{_CHATML_END}\n" for m in messages)
        return text + (f"{_CHATML_START}assistant\n" if add_generation_prompt else "")


def _json_object(response: Any) -> dict[str, Any] | None:
    """The body as a JSON object with a `choices` list, or None (a misbehaving server: degrade, never a 500)."""
    try:
        body = response.json()
    except ValueError:
        return None
    if not isinstance(body, dict) or not isinstance(body.get("choices"), list):
        return None
    if not all(isinstance(c, dict) and isinstance(c.get("index"), int) for c in body["choices"]):
        return None
    return body


def _error_message(response: Any) -> str:
    try:
        body = response.json()
        err = body.get("error", body)
        return str(err.get("message") if isinstance(err, dict) else err)[:300]
    except ValueError:
        return response.text[:300]
