"""LLM serving: one base model, LoRA adapters selected by the request's `model` (vLLM multi-LoRA style).

The backend is cascade.llm's (transformers+peft on CPU by default); it is loaded
once in the lifespan. Completions, chat, rescoring and GER all go through it.
"""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path
from typing import Literal

from openai.types import Completion, CompletionChoice, CompletionUsage, Model
from openai.types.chat import ChatCompletion
from openai.types.completion_choice import Logprobs

from cascade.config import Settings
from cascade.types import Correction, FusionRequest, ModelNotFound, NBest
from services.llm.protocol import ChatCompletionRequest, CompletionRequest

SHIPPED_ADAPTERS = Path(__file__).resolve().parents[2] / "cascade" / "adapters"
"""Adapters the project ships (one peft directory each); served under their directory name."""


class LlmServing:
    """The loaded backend plus the served-name -> adapter table."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.base_name = Path(settings.llm.model).name
        self._backend = None
        self._lock = threading.Lock()
        self.adapters = self._adapter_table()

    def _adapter_table(self) -> dict[str, str]:
        table: dict[str, str] = {}
        if SHIPPED_ADAPTERS.is_dir():
            for d in sorted(SHIPPED_ADAPTERS.iterdir()):
                if (d / "adapter_config.json").is_file():
                    table[d.name] = str(d)
        for name, path in (("ger", self.settings.ger.adapter), ("default", self.settings.llm.adapter)):
            if path:
                table[name] = path
        return table

    @property
    def backend(self):
        """The cascade.llm backend (loaded on first use; the lifespan touches it so /readyz means loaded)."""
        with self._lock:
            if self._backend is None:
                from cascade.llm import load_backend

                self._backend = load_backend(self.settings.llm, self.settings.home)
            return self._backend

    @property
    def name(self) -> str:
        return self.base_name

    def resolve(self, model: str | None) -> str | None:
        """The adapter path a served name stands for (None: the base model); 404 for unknown names."""
        if model in (None, "", self.base_name, self.settings.llm.model, "default-base"):
            return None
        if model in self.adapters:
            return self.adapters[model]
        known = ", ".join([self.base_name, *self.adapters])
        raise ModelNotFound(f"model {model!r} is not served here (served: {known})", param="model")

    def models(self) -> list[Model]:
        now = int(time.time())
        base = Model(id=self.base_name, created=now, object="model", owned_by="cascade")
        return [base, *(Model(id=n, created=now, object="model", owned_by="cascade", parent=self.base_name, root=p)
                         for n, p in self.adapters.items())]

    # ------------------------------------------------------------------ OpenAI endpoints

    def _count(self, text: str) -> int:
        count = getattr(self.backend, "count_tokens", None)
        return count(text) if count else 0

    def _logprobs(self, full: str, prompt: str, echo: bool, adapter: str | None) -> Logprobs:
        toks = self.backend.prompt_logprobs([full], adapter=adapter)[0]
        if not echo:
            toks = [t.model_copy(update={"offset": t.offset - len(prompt)}) for t in toks if t.offset >= len(prompt)]
        tok = getattr(self.backend, "tokenizer", None)
        text = (lambda t: tok.convert_tokens_to_string([t])) if tok is not None else (lambda t: t)
        return Logprobs(tokens=[text(t.token) for t in toks], token_logprobs=[t.logprob for t in toks],
                        text_offset=[t.offset for t in toks],
                        top_logprobs=[{t.token: t.logprob} if t.logprob is not None else None for t in toks])

    def complete(self, req: CompletionRequest) -> Completion:
        adapter = self.resolve(req.model)
        prompts = req.prompts
        outs = [""] * len(prompts)
        if req.max_tokens > 0:
            outs = self.backend.generate(prompts, max_tokens=req.max_tokens, stop=req.stops,
                                         temperature=req.temperature, adapter=adapter)
        choices, n_prompt, n_out = [], 0, 0
        for i, (prompt, out) in enumerate(zip(prompts, outs)):
            used = self._count(out)
            n_prompt, n_out = n_prompt + self._count(prompt), n_out + used
            logprobs = self._logprobs(prompt + out, prompt, req.echo, adapter) if req.logprobs is not None else None
            finish: Literal["stop", "length"] = "length" if used >= req.max_tokens else "stop"
            choices.append(CompletionChoice(index=i, text=(prompt if req.echo else "") + out, logprobs=logprobs,
                                            finish_reason=finish))
        return Completion(id=f"cmpl-{uuid.uuid4().hex}", object="text_completion", created=int(time.time()),
                          model=req.model, choices=choices,
                          usage=CompletionUsage(prompt_tokens=n_prompt, completion_tokens=n_out,
                                                total_tokens=n_prompt + n_out))

    def chat(self, req: ChatCompletionRequest) -> ChatCompletion:
        adapter = self.resolve(req.model)
        prompt = self.backend.chat_template(req.as_dicts(), add_generation_prompt=True)
        text = self.backend.generate([prompt], max_tokens=req.token_cap, stop=req.stops,
                                     temperature=req.temperature, adapter=adapter)[0].strip()
        n_prompt, n_out = self._count(prompt), self._count(text)
        return ChatCompletion.model_validate({
            "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
            "model": req.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "finish_reason": "length" if n_out >= req.token_cap else "stop"}],
            "usage": {"prompt_tokens": n_prompt, "completion_tokens": n_out, "total_tokens": n_prompt + n_out}})

    # ------------------------------------------------------------------ cascade endpoints

    def rescore(self, nbest: NBest) -> Correction:
        from cascade import ger

        return ger.rescore(nbest, self.backend, self.settings.rescore)

    def correct(self, nbest: NBest, method: Literal["rescore", "ger"] = "ger", model: str | None = None) -> Correction:
        """The Corrector interface the ASR service and the gateway call in-process."""
        if method == "rescore":
            return self.rescore(nbest)
        from cascade import ger

        options = self.settings.ger
        if model is not None:
            options = options.model_copy(update={"adapter": self.resolve(model)})
        return ger.correct(nbest, self.backend, options, self.settings.rescore)

    def fuse(self, req: FusionRequest) -> Correction:
        """Multi-system fusion (cascade.fusion.fuse.fuse): rover needs no model, rescore/ger use this LLM."""
        from cascade.fusion.fuse import fuse

        backend = None if req.method == "rover" else self.backend
        adapter = self.resolve(req.adapter) if req.adapter else None
        return fuse(req.input, req.method, options=self.settings.fusion, backend=backend, ger=self.settings.ger,
                    adapter=adapter)
