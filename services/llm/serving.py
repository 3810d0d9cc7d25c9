"""LLM serving: one base model, LoRA adapters selected by the request's `model` (vLLM multi-LoRA style).

The backend is cascade.llm's (transformers+peft on CPU by default); it is loaded
once in the lifespan. Completions, chat, rescoring and GER all go through it.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Literal

from openai.types import Completion, CompletionChoice, CompletionUsage, Model
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.completion_choice import Logprobs

from cascade.config import Settings
from cascade.types import Correction, FusionRequest, InvalidInput, ModelNotFound, NBest
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
        for name, path in (("ger", self.settings.correct.adapter),):  # the one home of the GER adapter
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
        return [base, *(Model(id=n, created=now, object="model", owned_by="cascade", parent=self.base_name, root=n)
                         for n in self.adapters)]  # by name: a path on this machine means nothing to a client

    # ------------------------------------------------------------------ OpenAI endpoints

    def _count(self, text: str) -> int:
        return self.backend.count_tokens(text)

    def check_prompt(self, text: str, param: str = "prompt") -> None:
        """400 for a prompt above ServiceSettings.max_prompt_tokens (a long echo prompt costs GBs).

        A text too long for the cap at 16 characters a token is refused without tokenising it.
        """
        cap = self.settings.service.max_prompt_tokens
        if len(text) > 16 * cap:
            raise InvalidInput(f"{param}: {len(text)} characters is above the {cap}-token prompt limit", param=param)
        if (n := self._count(text)) > cap:
            raise InvalidInput(f"{param}: {n} tokens is above the {cap}-token prompt limit", param=param)

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
        for prompt in prompts:
            self.check_prompt(prompt)
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
        self.check_prompt(prompt, "messages")
        text = self.backend.generate([prompt], max_tokens=req.token_cap, stop=req.stops,
                                     temperature=req.temperature, adapter=adapter)[0].strip()
        n_prompt, n_out = self._count(prompt), self._count(text)
        return ChatCompletion.model_validate({
            "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
            "model": req.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "finish_reason": "length" if n_out >= req.token_cap else "stop"}],
            "usage": {"prompt_tokens": n_prompt, "completion_tokens": n_out, "total_tokens": n_prompt + n_out}})

    def chat_stream(self, req: ChatCompletionRequest) -> Iterator[ChatCompletionChunk]:
        """`stream=true`: OpenAI's chunks (the role, content deltas, the finish reason, usage if asked).
        The deltas concatenate to what chat() answers: same greedy tokens, same stops, same strip."""
        adapter = self.resolve(req.model)
        prompt = self.backend.chat_template(req.as_dicts(), add_generation_prompt=True)
        self.check_prompt(prompt, "messages")
        cid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())

        def chunk(delta: dict | None, finish: str | None = None, usage: dict | None = None) -> ChatCompletionChunk:
            choices = [] if delta is None else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
            body = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": req.model,
                    "choices": choices, **({"usage": usage} if usage else {})}
            return ChatCompletionChunk.model_validate(body)

        yield chunk({"role": "assistant", "content": ""})
        if adapter is None:
            from cascade.respond import stream_text

            pieces = stream_text(self.backend, prompt, max_tokens=req.token_cap, temperature=req.temperature)
        else:  # adapters stream as one piece (the token streams run the base model)
            pieces = iter(self.backend.generate([prompt], max_tokens=req.token_cap, stop=req.stops,
                                                temperature=req.temperature, adapter=adapter))
        text = ""
        for delta in stripped_deltas(pieces, req.stops):
            text += delta
            yield chunk({"content": delta})
        n_prompt, n_out = self._count(prompt), self._count(text)
        yield chunk({}, "length" if n_out >= req.token_cap else "stop")
        if req.stream_options and req.stream_options.include_usage:
            yield chunk(None, usage={"prompt_tokens": n_prompt, "completion_tokens": n_out,
                                     "total_tokens": n_prompt + n_out})

    # ------------------------------------------------------------------ cascade endpoints

    def rescore(self, nbest: NBest) -> Correction:
        return self.correct(nbest, "rescore")

    def correct(self, nbest: NBest, method: str = "ger", model: str | None = None) -> Correction:
        """One N-best list through the correction seam (cascade.correct) on this service's LLM.

        `model` names a served adapter for GER (None: the configured correct.adapter)."""
        from cascade.correct import build_corrector

        self.check_prompt("\n".join(nbest.texts), "input")
        settings = self.settings
        if model is not None:
            settings = settings.model_copy(update={"correct": settings.correct.model_copy(update={"adapter": self.resolve(model)})})
        corrector = build_corrector(settings, method, backend=self.backend)
        return next(iter(corrector.correct([nbest])))

    def fuse(self, req: FusionRequest) -> Correction:
        """Multi-system fusion (cascade.fusion.fuse.fuse): rover needs no model, rescore/ger use this LLM."""
        from cascade.fusion.fuse import fuse

        backend = None if req.method == "rover" else self.backend
        if backend is not None:
            self.check_prompt("\n".join(o.text for o in req.input.outputs), "input")
        adapter = self.resolve(req.adapter) if req.adapter else None
        return fuse(req.input, req.method, options=self.settings.fusion, backend=backend, ger=self.settings.ger,
                    adapter=adapter)


def stripped_deltas(pieces: Iterable[str], stops: list[str]) -> Iterator[str]:
    """Streamed text cut at the first stop string and stripped like a whole reply: leading blanks are
    dropped, trailing blanks and a possible stop prefix are held back until later text shows they stay."""
    from cascade.llm.hf_backend import split_at_stop

    hold = max((len(s) for s in stops), default=1) - 1
    text, sent = "", 0
    for piece in pieces:
        text += piece
        cut = split_at_stop(text, stops)
        if len(cut) < len(text):  # a stop string arrived: the rest is never sent
            text = cut
            break
        body = text.lstrip()
        safe = body[: max(0, len(body) - hold)].rstrip()  # a stop can only begin in the last `hold` chars
        if len(safe) > sent:
            yield safe[sent:]
            sent = len(safe)
    final = text.strip()
    if len(final) > sent:
        yield final[sent:]
