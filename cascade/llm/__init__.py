"""LLM backends behind one interface (see base.py): transformers(+peft), CTranslate2, OpenAI-compatible HTTP.

`load_backend(options, home)` is the entry point; backends are cached in cascade.models.
"""

from __future__ import annotations

from pathlib import Path

from cascade.config import LlmOptions
from cascade.llm.base import LlmBackend, TextScore, TokenLogprob
from cascade.types import InvalidInput

__all__ = ["LlmBackend", "TextScore", "TokenLogprob", "load_backend"]


def load_backend(options: LlmOptions, home: Path, *, adapter: str | None = None, instance: str = "llm") -> LlmBackend:
    """The (cached) backend for `options`; model loading/conversion happens on first use of a key.

    `adapter` makes it a default for every call (scoring included); correction passes its adapter
    per call instead (CorrectOptions.adapter), so rescoring stays on the base model.
    `instance`: another name loads a copy of its own, whose calls never queue behind the shared one's (the
    live turn's end-of-turn reader runs beside the reply it speculates).
    """
    from cascade import models

    key = (options.backend, options.model, options.threads, options.base_url, options.batch_size, options.compute_type,
           options.reply_compute_type, str(home))
    backend = models.cached(instance, key, lambda: _create_backend(options, Path(home)))
    if adapter:
        if options.backend != "openai":
            from cascade.llm.hf_backend import adapter_dir

            adapter_dir(adapter)
        return WithAdapter(backend, adapter)
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

    def generate(self, prompts, *, max_tokens, stop=(), temperature=0.0, adapter=None, drafts=()):
        return self._backend.generate(prompts, max_tokens=max_tokens, stop=stop, temperature=temperature,
                                      adapter=adapter or self.adapter, drafts=drafts)

    def chat_template(self, messages, *, add_generation_prompt=True):
        return self._backend.chat_template(messages, add_generation_prompt=add_generation_prompt)

    def count_tokens(self, text):
        return self._backend.count_tokens(text)


def _create_backend(options: LlmOptions, home: Path) -> LlmBackend:
    """Build an uncached backend (called by cascade.models, which owns the cache)."""
    if options.backend == "transformers":
        from cascade.llm.hf_backend import TransformersBackend

        return TransformersBackend.load(options, home)
    if options.backend == "ct2":
        from cascade.llm.ct2_backend import CT2Backend

        return CT2Backend.load(options, home)
    if options.backend == "openai":
        from cascade.llm.openai_backend import OpenAIBackend

        return OpenAIBackend(options)
    raise InvalidInput(f"unknown LLM backend {options.backend!r}", param="backend")
