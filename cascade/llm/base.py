"""The one LLM interface every stage uses (GER, rescoring, replies, fusion, training eval)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from cascade.types import Record


class TextScore(Record):
    """Total log-probability of a text under the LLM (natural log) and how many tokens it took."""

    logprob: float
    n_tokens: int


class TokenLogprob(Record):
    """One prompt token as an OpenAI-style `echo` + `logprobs` response reports it."""

    token: str
    offset: int
    """Character offset of the token in the prompt text."""
    logprob: float | None
    """None for the first token (nothing conditions it)."""


@runtime_checkable
class LlmBackend(Protocol):
    """Implemented by the transformers(+peft), CTranslate2 and OpenAI-compatible HTTP backends.

    `adapter` selects a LoRA adapter per call: a peft directory for local backends, a served
    model name for vLLM-style servers. None uses the base model.
    """

    name: str
    """Model identifier echoed into StageInfo."""

    def score(self, texts: Sequence[str], *, adapter: str | None = None, prefix: str = "") -> list[TextScore]:
        """Log-prob of each text (optionally conditioned on a shared `prefix`, which is not scored)."""
        ...

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
        """Completions for raw prompts (chat templates already applied by the caller).

        `drafts`: per prompt, a text the completion probably starts with (GER: the best hypothesis). A hint
        only: a backend may check it in one pass instead of decoding it token by token; the result is the same.
        """
        ...

    def chat_template(self, messages: Sequence[dict[str, str]], *, add_generation_prompt: bool = True) -> str:
        """Render chat messages into a raw prompt with the model's own template."""
        ...

    def count_tokens(self, text: str) -> int:
        """Tokens of `text` (token caps, length guards); an estimate where the backend has no tokenizer."""
        ...

    def prompt_logprobs(self, texts: Sequence[str], *, adapter: str | None = None) -> list[list[TokenLogprob]]:
        """Every token of each text with its log-prob given the tokens before it (OpenAI's echo + logprobs)."""
        ...
