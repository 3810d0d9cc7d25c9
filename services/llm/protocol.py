"""Wire types of the LLM service: OpenAI's completions/chat shapes, vLLM's multi-LoRA `model` selection.

Responses reuse openai.types (Completion, ChatCompletion, Model). cascade's own
endpoints (/v1/rescore, /v1/correct) take and return cascade.types records.
"""

from __future__ import annotations

import logging
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from cascade.types import CorrectionMode

logger = logging.getLogger(__name__)

MAX_TOKENS = 8192
"""The largest token cap a request may ask for (the prompt cap keeps prompt plus reply within the context)."""


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
    max_tokens: int = Field(16, ge=0, le=MAX_TOKENS)
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


class ChatMessageIn(BaseModel):
    """One message of OpenAI's chat history: text (a string or text content parts), an assistant's tool calls,
    or a tool's result (`tool_call_id`)."""

    model_config = ConfigDict(extra="allow")
    role: Literal["system", "user", "assistant", "developer", "tool"]
    content: str | list[dict] | None = None
    tool_calls: list[dict] | None = None
    tool_call_id: str | None = None

    @field_validator("content")
    @classmethod
    def _text_only(cls, content: str | list[dict] | None) -> str | list[dict] | None:
        """Content parts must be text: an image or audio part is refused with a message that says so."""
        for part in content if isinstance(content, list) else ():
            kind = part.get("type")
            if kind != "text" or not isinstance(part.get("text"), str):
                raise ValueError(f"{kind!r} content parts are not supported: this model reads text only "
                                 "(send text parts, or describe the image in words)")
        return content

    @property
    def text(self) -> str:
        """The message's text: a plain string, or its text parts joined by newlines (OpenAI's content parts)."""
        if isinstance(self.content, list):
            return "\n".join(p["text"] for p in self.content)
        return self.content or ""


class StreamOptions(BaseModel):
    include_usage: bool = False
    """Send a last chunk with `usage` (and no choices) before [DONE], as OpenAI does."""


class FunctionDef(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    description: str | None = None
    parameters: dict | None = None
    """The arguments' JSON schema: every call is decoded under it (grammar-constrained)."""
    strict: bool | None = None


class ToolDef(BaseModel):
    type: Literal["function"] = "function"
    function: FunctionDef


class NamedToolChoice(BaseModel):
    type: Literal["function"] = "function"
    function: dict[str, str]


class JsonSchemaFormat(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)
    name: str = "response"
    schema_: dict | None = Field(None, alias="schema")
    strict: bool | None = None


class ResponseFormat(BaseModel):
    type: Literal["text", "json_object", "json_schema"] = "text"
    json_schema: JsonSchemaFormat | None = None

    @model_validator(mode="after")
    def _check(self) -> ResponseFormat:
        if self.type == "json_schema" and self.json_schema is None:
            raise ValueError("response_format: type json_schema needs a json_schema object")
        return self


class ChatCompletionRequest(OpenAIRequest):
    model: str
    messages: list[ChatMessageIn] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1, le=MAX_TOKENS)
    max_completion_tokens: int | None = Field(None, ge=1, le=MAX_TOKENS)
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    stop: str | list[str] | None = None
    n: int = Field(1, ge=1, le=1)
    stream: bool = False
    """True answers server-sent events: `chat.completion.chunk` objects, then `data: [DONE]`."""
    stream_options: StreamOptions | None = None
    tools: list[ToolDef] | None = None
    """Functions the model may call; each call is decoded under the function's parameter schema."""
    tool_choice: Literal["auto", "none", "required"] | NamedToolChoice | None = None
    """auto (default with tools: the model decides), none, required, or one named function."""
    parallel_tool_calls: bool = True
    response_format: ResponseFormat | None = None
    """json_object / json_schema: the reply is decoded under the JSON grammar (always parses)."""
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=20)

    @model_validator(mode="after")
    def _check(self) -> ChatCompletionRequest:
        if self.top_logprobs is not None and not self.logprobs:
            raise ValueError("top_logprobs: needs logprobs=true")
        if isinstance(self.tool_choice, NamedToolChoice) or self.tool_choice == "required":
            if not self.tools:
                raise ValueError("tool_choice: naming or requiring a tool needs `tools`")
        return self

    @property
    def token_cap(self) -> int:
        return self.max_completion_tokens or self.max_tokens or 256

    @property
    def stops(self) -> list[str]:
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])

    @property
    def choice(self) -> str | dict:
        """tool_choice as cascade.llm.chat takes it ("auto" when tools are given without one)."""
        if self.tool_choice is None:
            return "auto"
        return self.tool_choice if isinstance(self.tool_choice, str) else self.tool_choice.model_dump()

    @property
    def functions(self) -> list[dict]:
        return [t.function.model_dump(exclude_none=True) for t in self.tools or ()]

    @property
    def json_schema(self) -> dict | None | bool:
        """False: free text; None: any JSON object (json_object); else the schema to decode under."""
        fmt = self.response_format
        if fmt is None or fmt.type == "text":
            return False
        if fmt.type == "json_object":
            return None
        return fmt.json_schema.schema_ or {"type": "object"}  # type: ignore[union-attr]

    def openai_messages(self) -> list[dict]:
        """The history as plain dicts (text joined), what cascade.llm.chat reads."""
        return [{"role": m.role, "content": m.text, "tool_calls": m.tool_calls, "tool_call_id": m.tool_call_id}
                for m in self.messages]

    def as_dicts(self) -> list[dict[str, str]]:
        from cascade.llm.chat import as_prompt_messages

        return as_prompt_messages(self.openai_messages(), calls_as_text=False)


class CorrectParams(BaseModel):
    """Query parameters of /v1/correct: the method and (optionally) which served adapter to use."""

    method: CorrectionMode = "ger"
    """Any list mode of cascade.correct (rescore, rerank, ger, ...)."""
    model: str | None = None
    """A served adapter name (GET /v1/models); None uses the configured GER adapter."""
