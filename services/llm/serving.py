"""LLM serving: one base model, LoRA adapters selected by the request's `model` (vLLM multi-LoRA style).

The backend is cascade.llm's (transformers+peft on CPU by default); it is loaded
once in the lifespan. Completions, chat, rescoring and GER all go through it.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
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


DEFAULT_CONTEXT = 2048
"""The prompt cap where a backend does not say its context length (the OpenAI-compatible HTTP backend)."""
SCORED_TOKENS = 2048
"""Prompt log-probs (echo/logprobs on /v1/completions) hold a vocabulary-wide row per token (a 3,000-token echo
once peaked at 2.5 GB on transformers): scored prompts stay within this many tokens whatever the context."""


@dataclass
class _Answer:
    """One chat answer before it is shaped into a completion or chunks."""

    adapter: str | None = None
    calls: list = field(default_factory=list)
    text: str | None = None
    logprobs: dict | None = None
    finish: str = "stop"
    n_prompt: int = 0
    n_out: int = 0
    stream_prompt: str | None = None
    """Set when the answer is plain text to stream from this prompt (decoded as it is sent)."""
    prompt: str = ""
    tools_prompt: str | None = None
    forward: bool = False
    """Tools, JSON or log-probs asked of an HTTP backend (llm.backend openai: vLLM): the server answers them."""


KEEPALIVE_S = 2.0


def _keepalive(work: Callable[[], _Answer]) -> Iterator[_Answer | None]:
    """Run `work` in a thread: None every KEEPALIVE_S while it runs, then its result (or its exception)."""
    from concurrent.futures import ThreadPoolExecutor, TimeoutError as Pending

    with ThreadPoolExecutor(1, thread_name_prefix="chat-decode") as pool:
        future = pool.submit(work)
        while True:
            try:
                result = future.result(timeout=KEEPALIVE_S)
            except Pending:
                yield None
                continue
            yield result
            return


def _pieces(text: str, size: int = 8) -> list[str]:
    """A call's arguments in a few fragments, as OpenAI streams them."""
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


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
        """The adapter path a served name stands for (None: the base model).

        A name in service.model_aliases.chat (`default`, gpt-4.1, ...) means the base model; with
        service.strict_models off so does every other unserved name (frameworks send OpenAI's names), on: 404.
        """
        if model in (None, "", self.base_name, self.settings.llm.model, "default-base"):
            return None
        if model in self.adapters:
            return self.adapters[model]
        svc = self.settings.service
        if model in svc.model_aliases.chat or not svc.strict_models:
            return None
        known = ", ".join([self.base_name, *self.adapters, *svc.model_aliases.chat])
        raise ModelNotFound(f"model {model!r} is not served here (served: {known})", param="model")

    def served_name(self, model: str | None) -> str:
        """The real model a request ran on (what responses report): an adapter's name or the base model's."""
        return model if model in self.adapters else self.base_name  # type: ignore[return-value]

    def models(self) -> list[Model]:
        now = int(time.time())
        base = Model(id=self.base_name, created=now, object="model", owned_by="cascade")
        return [base, *(Model(id=n, created=now, object="model", owned_by="cascade", parent=self.base_name, root=n)
                         for n in self.adapters)]  # by name: a path on this machine means nothing to a client

    def model(self, model_id: str) -> Model:
        """GET /v1/models/{id}: a served name, or an alias (its `parent` is the model it means); else 404."""
        for m in self.models():
            if m.id == model_id:
                return m
        if model_id in self.settings.service.model_aliases.chat:
            return Model(id=model_id, created=int(time.time()), object="model", owned_by="cascade",
                         parent=self.base_name, root=self.base_name)
        raise ModelNotFound(f"model {model_id!r} is not served here", param="model")

    # ------------------------------------------------------------------ OpenAI endpoints

    def _count(self, text: str) -> int:
        return self.backend.count_tokens(text)

    def prompt_cap(self, reply_tokens: int = 0) -> int:
        """Prompt tokens allowed: service.max_prompt_tokens, or the model's context less the reply's cap."""
        cap = self.settings.service.max_prompt_tokens
        if cap is None:
            context = getattr(self.backend, "context_length", None) or DEFAULT_CONTEXT
            cap = max(16, context - reply_tokens)
        return cap

    def check_prompt(self, text: str, param: str = "prompt", *, reply_tokens: int = 0, cap: int | None = None) -> None:
        """400 for a prompt above the cap (prompt_cap, or `cap`: scoring keeps SCORED_TOKENS, since its memory
        grows with tokens x vocabulary). A text too long at 16 characters a token is refused untokenised."""
        cap = cap or self.prompt_cap(reply_tokens)
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
            scored = req.echo or req.logprobs is not None
            self.check_prompt(prompt, reply_tokens=req.max_tokens,
                              cap=min(SCORED_TOKENS, self.prompt_cap(req.max_tokens)) if scored else None)
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
                          model=self.served_name(req.model), choices=choices,
                          usage=CompletionUsage(prompt_tokens=n_prompt, completion_tokens=n_out,
                                                total_tokens=n_prompt + n_out))

    def _plan(self, req: ChatCompletionRequest) -> _Answer:
        """The model and the prompts, each checked against the cap: the cheap part, done before a stream's first
        chunk so that a bad request is an HTTP error, not an error inside a 200 stream."""
        from cascade.llm import chat as llm_chat

        answer = _Answer(adapter=self.resolve(req.model))
        if hasattr(self.backend, "chat_completion") and (
                (req.tools and req.choice != "none") or req.json_schema is not False or req.logprobs):
            answer.forward = True  # nothing decodes here: the server constrains (and counts) itself
            return answer
        if req.tools and req.choice != "none":
            answer.tools_prompt = llm_chat.tools_prompt(self.backend, req.openai_messages(), req.functions)
            self.check_prompt(answer.tools_prompt, "messages", reply_tokens=req.token_cap)
        answer.prompt = self.backend.chat_template(req.as_dicts(), add_generation_prompt=True)
        self.check_prompt(answer.prompt, "messages", reply_tokens=req.token_cap)
        return answer

    def _answer(self, req: ChatCompletionRequest, *, streaming: bool = False, plan: _Answer | None = None) -> _Answer:
        """What the model answers: tool calls (tools given and the model calls), JSON (response_format), text
        with log-probs, or (streaming) a plan to stream plain text."""
        from cascade.llm import chat as llm_chat

        answer = plan or self._plan(req)
        if answer.forward:
            return self._forwarded(req, answer)
        adapter, prompt = answer.adapter, answer.prompt
        if answer.tools_prompt is not None:
            calls, decoded = llm_chat.choose_tools(self.backend, req.openai_messages(), req.functions, req.choice,
                                                   parallel=req.parallel_tool_calls, max_tokens=req.token_cap,
                                                   temperature=req.temperature, adapter=adapter)
            answer.n_prompt, answer.n_out = self._count(answer.tools_prompt), len(decoded.choices) if decoded else 0
            if calls or req.choice != "auto":  # required/named: cut by the token cap, no call came out
                answer.calls = calls
                answer.finish = "tool_calls" if calls else "length"
                return answer
        answer.n_prompt += self._count(prompt)
        schema = req.json_schema
        top = (req.top_logprobs or 0) if req.logprobs else None
        if schema is not False:
            decoded = llm_chat.json_reply(self.backend, prompt, schema, max_tokens=req.token_cap,
                                          temperature=req.temperature, top_logprobs=top, adapter=adapter)
        elif top is not None:
            decoded = llm_chat.decode(self.backend, prompt, max_tokens=req.token_cap, temperature=req.temperature,
                                      top_logprobs=top, stop=req.stops, adapter=adapter)
        elif streaming:
            answer.stream_prompt = prompt
            return answer
        else:
            text = self.backend.generate([prompt], max_tokens=req.token_cap, stop=req.stops,
                                         temperature=req.temperature, adapter=adapter)[0].strip()
            n = self._count(text)
            answer.text, answer.n_out = text, answer.n_out + n
            answer.finish = "length" if n >= req.token_cap else "stop"
            return answer
        answer.text, answer.finish = decoded.text, decoded.finish
        answer.n_out += len(decoded.choices)
        if top is not None:
            answer.logprobs = self._chat_logprobs(decoded.choices)
        return answer

    def _forwarded(self, req: ChatCompletionRequest, answer: _Answer) -> _Answer:
        """The HTTP backend's server answers the request as it came (tools, tool_choice, response_format,
        logprobs): its calls, text, log-probs, finish reason and token counts, under this service's names."""
        from cascade.llm.chat import ToolCall

        body = req.model_dump(mode="json", by_alias=True, exclude_none=True,
                              exclude={"model", "stream", "stream_options"})
        out = self.backend.chat_completion(body, adapter=answer.adapter)  # type: ignore[attr-defined]
        choice = out["choices"][0]
        message = choice.get("message") or {}
        answer.calls = [ToolCall(name=c["function"]["name"], arguments=c["function"].get("arguments") or "{}",
                                 **({"id": c["id"]} if c.get("id") else {}))
                        for c in message.get("tool_calls") or ()]
        answer.text = None if answer.calls else (message.get("content") or "")
        answer.logprobs = choice.get("logprobs")
        answer.finish = choice.get("finish_reason") or ("tool_calls" if answer.calls else "stop")
        usage = out.get("usage") or {}
        answer.n_prompt, answer.n_out = usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0)
        return answer

    def _chat_logprobs(self, choices: list) -> dict:
        """OpenAI's choice.logprobs: each token's text, bytes and log-prob, with its top alternatives."""
        tok = self.backend.tokenizer

        def entry(token: int, logprob: float) -> dict:
            text = tok.decode([token])
            return {"token": text, "logprob": logprob, "bytes": list(text.encode("utf-8"))}

        return {"content": [{**entry(c.token, c.logprob), "top_logprobs": [entry(t, lp) for t, lp in c.top]}
                            for c in choices], "refusal": None}

    def chat(self, req: ChatCompletionRequest) -> ChatCompletion:
        a = self._answer(req)
        message: dict = {"role": "assistant", "content": None if a.calls else a.text}
        if a.calls:
            message["tool_calls"] = [c.as_openai() for c in a.calls]
        return ChatCompletion.model_validate({
            "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
            "model": self.served_name(req.model),
            "choices": [{"index": 0, "message": message, "finish_reason": a.finish, "logprobs": a.logprobs}],
            "usage": {"prompt_tokens": a.n_prompt, "completion_tokens": a.n_out, "total_tokens": a.n_prompt + a.n_out}})

    def chat_stream(self, req: ChatCompletionRequest) -> Iterator[ChatCompletionChunk]:
        """`stream=true`: OpenAI's chunks (the role, content or tool-call deltas, the finish reason, usage if asked).
        Plain text streams as it is decoded, and its deltas concatenate to what chat() answers (same greedy tokens,
        same stops, same strip); tool calls, JSON and log-probs are decoded whole first (constrained decoding),
        then sent in OpenAI's pieces: each call's id and name, then its arguments."""
        cid, created, model = f"chatcmpl-{uuid.uuid4().hex}", int(time.time()), self.served_name(req.model)

        def chunk(delta: dict | None, finish: str | None = None, usage: dict | None = None,
                  logprobs: dict | None = None) -> ChatCompletionChunk:
            choices = [] if delta is None else [{"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish}]
            body = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                    "choices": choices, **({"usage": usage} if usage else {})}
            return ChatCompletionChunk.model_validate(body)

        plan = self._plan(req)
        yield chunk({"role": "assistant"} if plan.tools_prompt is not None else {"role": "assistant", "content": ""})
        a = plan
        for ready in _keepalive(lambda: self._answer(req, streaming=True, plan=plan)):
            if ready is None:  # decoding a call or JSON: an empty delta keeps the stream's read timeout
                yield chunk({})  # from firing (LiveKit's is 10 s without a byte)
            else:
                a = ready
        if a.calls:
            for i, call in enumerate(a.calls):
                yield chunk({"tool_calls": [{"index": i, "id": call.id, "type": "function",
                                             "function": {"name": call.name, "arguments": ""}}]})
                for piece in _pieces(call.arguments):
                    yield chunk({"tool_calls": [{"index": i, "function": {"arguments": piece}}]})
        elif a.stream_prompt is not None:
            text = ""
            for delta in self._stream_text(req, a):
                text += delta
                yield chunk({"content": delta})
            a.n_out += self._count(text)
            a.finish = "length" if self._count(text) >= req.token_cap else "stop"
        elif a.logprobs is not None:
            for entry in a.logprobs["content"]:  # one chunk per token, its log-probs beside it
                yield chunk({"content": entry["token"]}, logprobs={"content": [entry], "refusal": None})
        elif a.text:
            yield chunk({"content": a.text})
        yield chunk({}, a.finish)
        if req.stream_options and req.stream_options.include_usage:
            yield chunk(None, usage={"prompt_tokens": a.n_prompt, "completion_tokens": a.n_out,
                                     "total_tokens": a.n_prompt + a.n_out})

    def _stream_text(self, req: ChatCompletionRequest, a: _Answer) -> Iterator[str]:
        if a.adapter is None:
            from cascade.respond import stream_text

            pieces = stream_text(self.backend, a.stream_prompt, max_tokens=req.token_cap, temperature=req.temperature)
        else:  # adapters stream as one piece (the token streams run the base model)
            pieces = iter(self.backend.generate([a.stream_prompt], max_tokens=req.token_cap, stop=req.stops,
                                                temperature=req.temperature, adapter=a.adapter))
        yield from stripped_deltas(pieces, req.stops)

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
