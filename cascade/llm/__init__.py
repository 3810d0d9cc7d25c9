"""LLM backends behind one interface (see base.py): transformers(+peft), CTranslate2, OpenAI-compatible HTTP.

`load_backend(options, home)` is the entry point; backends are cached in cascade.models.
"""

from __future__ import annotations

from pathlib import Path

from cascade.config import LlmOptions
from cascade.llm.base import LlmBackend, TextScore, TokenLogprob
from cascade.types import InvalidInput, Unsupported

__all__ = ["LlmBackend", "TextScore", "TokenLogprob", "load_backend"]


def load_backend(options: LlmOptions, home: Path) -> LlmBackend:
    """The (cached) backend for `options`; model loading/conversion happens on first use of a key."""
    from cascade import models

    backend = models.load_llm_backend(options, Path(home))
    if options.adapter:
        if options.backend != "openai":
            from cascade.llm.hf_backend import adapter_dir

            adapter_dir(options.adapter)
        return WithAdapter(backend, options.adapter)
    return backend


class WithAdapter:
    """A backend whose calls default to one LoRA adapter (LlmOptions.adapter); the model stays shared."""

    def __init__(self, backend: LlmBackend, adapter: str):
        self._backend, self.adapter = backend, adapter
        self.name = f"{backend.name}+{adapter}"

    def __getattr__(self, item: str):
        return getattr(self._backend, item)

    def score(self, texts, *, adapter=None, prefix=""):
        return self._backend.score(texts, adapter=adapter or self.adapter, prefix=prefix)

    def prompt_logprobs(self, texts, *, adapter=None):
        return self._backend.prompt_logprobs(texts, adapter=adapter or self.adapter)

    def generate(self, prompts, *, max_tokens, stop=(), temperature=0.0, adapter=None):
        return self._backend.generate(prompts, max_tokens=max_tokens, stop=stop, temperature=temperature, adapter=adapter or self.adapter)

    def chat_template(self, messages, *, add_generation_prompt=True):
        return self._backend.chat_template(messages, add_generation_prompt=add_generation_prompt)


def _create_backend(options: LlmOptions, home: Path) -> LlmBackend:
    """Build an uncached backend (called by cascade.models, which owns the cache)."""
    if options.backend == "transformers":
        from cascade.llm.hf_backend import TransformersBackend

        return TransformersBackend.load(options, home)
    if options.backend == "ct2":
        raise Unsupported("the ct2 LLM backend is not implemented yet: use backend transformers or openai", param="backend")
    if options.backend == "openai":
        from cascade.llm.openai_backend import OpenAIBackend

        return OpenAIBackend(options)
    raise InvalidInput(f"unknown LLM backend {options.backend!r}", param="backend")
