"""Wire types of the LLM service: OpenAI's completions/chat shapes, vLLM's multi-LoRA `model` selection.

Responses reuse openai.types (Completion, ChatCompletion, Model). cascade's own
endpoints (/v1/rescore, /v1/correct) take and return cascade.types records.
"""

from __future__ import annotations

import logging
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from cascade.types import CorrectionMode

logger = logging.getLogger(__name__)


class OpenAIRequest(BaseModel):
    """vLLM's OpenAIBaseModel behaviour: unknown fields are accepted and each is logged as ignored."""

    model_config = ConfigDict(extra="allow")

    @model_validator(mode="after")
    def _warn_extra(self) -> OpenAIRequest:
        for name in sorted(self.model_extra or {}):
            logger.warning("ignoring unsupported field %r", name)
        return self


class CompletionRequest(OpenAIRequest):
    model: str
    """The base model's served name, or a LoRA adapter's name (see GET /v1/models)."""
    prompt: str | list[str]
    max_tokens: int = Field(16, ge=0, le=2048)
    """0 with echo=true scores the prompt without generating (vLLM's prompt-logprobs idiom)."""
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    stop: str | list[str] | None = None
    echo: bool = False
    logprobs: int | None = Field(None, ge=0, le=5)
    """With echo: per-token log-probs of the prompt (top alternatives are not reported)."""
    n: int = Field(1, ge=1, le=1)
    stream: Literal[False] = False

    @model_validator(mode="after")
    def _check(self) -> CompletionRequest:
        if self.max_tokens == 0 and not self.echo:
            raise ValueError("max_tokens: 0 is only allowed with echo=true (prompt scoring)")
        return self

    @property
    def prompts(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)

    @property
    def stops(self) -> list[str]:
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])


class TextPart(BaseModel):
    """A content part (`[{"type": "text", "text": ...}]`); other part types (images, audio) are refused."""

    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = None

    @model_validator(mode="after")
    def _text_only(self) -> TextPart:
        if self.type != "text" or self.text is None:
            raise ValueError(f"content: only text content parts are supported (got type {self.type!r})")
        return self


class ChatMessageIn(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "user", "assistant", "developer"]
    content: str | list[TextPart] | None = None

    @property
    def text(self) -> str:
        """The message's text: a plain string, or its text parts joined by newlines (OpenAI's content parts)."""
        if isinstance(self.content, list):
            return "\n".join(p.text or "" for p in self.content)
        return self.content or ""


class StreamOptions(BaseModel):
    include_usage: bool = False
    """Send a last chunk with `usage` (and no choices) before [DONE], as OpenAI does."""


class ChatCompletionRequest(OpenAIRequest):
    model: str
    messages: list[ChatMessageIn] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1, le=2048)
    max_completion_tokens: int | None = Field(None, ge=1, le=2048)
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    stop: str | list[str] | None = None
    n: int = Field(1, ge=1, le=1)
    stream: bool = False
    """True answers server-sent events: `chat.completion.chunk` objects, then `data: [DONE]`."""
    stream_options: StreamOptions | None = None

    @property
    def token_cap(self) -> int:
        return self.max_completion_tokens or self.max_tokens or 256

    @property
    def stops(self) -> list[str]:
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])

    def as_dicts(self) -> list[dict[str, str]]:
        return [{"role": "system" if m.role == "developer" else m.role, "content": m.text} for m in self.messages]


class CorrectParams(BaseModel):
    """Query parameters of /v1/correct: the method and (optionally) which served adapter to use."""

    method: CorrectionMode = "ger"
    """Any list mode of cascade.correct (rescore, rerank, ger, ...)."""
    model: str | None = None
    """A served adapter name (GET /v1/models); None uses the configured GER adapter."""
