"""Replies for the spoken turn: the chat prompt through the LLM backend, streamed sentence by sentence.

The prompt (prompts/chat/*.jinja) holds the persona, the recent history and the
length cap as `### role` blocks; they become chat messages rendered with the
model's own chat template. `stream_reply` yields each sentence as soon as it is
complete, so speech can start while the rest of the reply is still generated.
Backends with a `stream()` method stream through it; the in-process transformers
backend streams with transformers' TextIteratorStreamer; any other backend
generates the whole reply first (same sentences, later).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import re
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

from cascade import prompts
from cascade.config import ChatOptions
from cascade.tts.text import complete_sentences, first_clause
from cascade.types import ChatMessage, InvalidInput, Reply, StageInfo

logger = logging.getLogger(__name__)

_BLOCK = re.compile(r"^### (system|user|assistant)\s*$", re.MULTILINE)


def build_messages(user: str, history: Sequence[ChatMessage], options: ChatOptions) -> tuple[list[dict[str, str]], prompts.PromptRef]:
    """Chat messages for one reply: the rendered template split at its `### role` lines."""
    if not user or not user.strip():
        raise InvalidInput("nothing to reply to: the transcript is empty", param="input")
    history = list(history)
    lead = next((i for i, m in enumerate(history) if m.role != "system"), len(history))
    # system messages leading the history (a Realtime session's instructions) stay whatever the cap cuts
    rest = history[lead:]
    recent = history[:lead] + (rest[-2 * options.history_turns :] if options.history_turns else [])
    text, ref = prompts.render(
        options.prompt, persona=options.persona, max_sentences=options.max_sentences, history=recent, user=user.strip()
    )
    parts = _BLOCK.split(text)
    messages = [
        {"role": role, "content": content.strip()} for role, content in zip(parts[1::2], parts[2::2]) if content.strip()
    ]
    if not messages or messages[-1]["role"] != "user":
        raise InvalidInput(f"prompt {options.prompt!r} must end with a '### user' block", param="prompt")
    return messages, ref


class _Finish:
    """Filled by the token streams: whether the token cap cut the generation."""

    def __init__(self) -> None:
        self.length = False


def _hf_stream(backend: Any, prompt: str, options: ChatOptions, finish: _Finish) -> Iterator[str]:
    """Tokens of a transformers backend as they are generated (generate() runs in a worker thread)."""
    import torch
    from transformers import TextIteratorStreamer

    tok = backend.tokenizer
    enc = tok(prompt, add_special_tokens=False, return_tensors="pt")
    streamer = TextIteratorStreamer(tok, skip_prompt=True, skip_special_tokens=True)
    error: list[BaseException] = []
    sampling = {"do_sample": False} if options.temperature <= 0 else {"do_sample": True, "temperature": options.temperature}
    cancel = threading.Event()
    stopping = _cancellable(cancel)

    def work() -> None:
        try:
            with backend._using(None) as model, torch.inference_mode():
                out = model.generate(
                    **enc, max_new_tokens=options.max_reply_tokens, streamer=streamer,
                    pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id,
                    eos_token_id=tok.eos_token_id, stopping_criteria=stopping, **sampling,
                )
            new = out[0, enc["input_ids"].shape[1] :]
            finish.length = len(new) >= options.max_reply_tokens and int(new[-1]) != tok.eos_token_id
        except BaseException as exc:  # noqa: BLE001 - re-raised in the consuming thread
            error.append(exc)
            streamer.end()

    worker = threading.Thread(target=work, name="reply-generate", daemon=True)
    worker.start()
    try:
        yield from streamer
    finally:
        cancel.set()  # the consumer stopped early (sentence cap, error): stop generating too
        worker.join()
    if error:
        raise error[0]


def _cancellable(cancel: threading.Event) -> Any:
    """A StoppingCriteriaList that ends generate() once `cancel` is set."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    class _Cancel(StoppingCriteria):
        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            return torch.full((input_ids.shape[0],), cancel.is_set(), dtype=torch.bool)

    return StoppingCriteriaList([_Cancel()])


def _tokens(backend: Any, prompt: str, options: ChatOptions, finish: _Finish, static: str = "") -> Iterator[str]:
    """Text pieces of the reply in order, streamed where the backend can (`static`: the prompt's unchanging
    head, whose state the backend may keep)."""
    if callable(getattr(backend, "stream", None)):
        said: list[str] = []
        with contextlib.closing(backend.stream(prompt, max_tokens=options.max_reply_tokens, temperature=options.temperature,
                                               **({"static": static} if static else {}))) as pieces:
            for piece in pieces:  # closed with the reply: a consumer that stops early stops the generation
                said.append(piece)
                yield piece
        finish.length = backend.count_tokens("".join(said)) >= options.max_reply_tokens
        return
    if hasattr(backend, "tokenizer") and hasattr(backend, "_using"):
        yield from _hf_stream(backend, prompt, options, finish)
        return
    text = backend.generate([prompt], max_tokens=options.max_reply_tokens, temperature=options.temperature)[0]
    finish.length = backend.count_tokens(text) >= options.max_reply_tokens
    yield text


def stream_text(backend: Any, prompt: str, *, max_tokens: int, temperature: float = 0.0) -> Iterator[str]:
    """Text pieces of a raw prompt's completion as they are generated (the chat endpoints' `stream=true`),
    through the same token streams the spoken turn uses."""
    options = ChatOptions.model_construct(**{**ChatOptions().model_dump(), "max_reply_tokens": max_tokens,
                                             "temperature": temperature})
    return _tokens(backend, prompt, options, _Finish())


_cancel: contextvars.ContextVar[threading.Event | None] = contextvars.ContextVar("reply_cancel", default=None)


@contextlib.contextmanager
def cancel_on(event: threading.Event) -> Iterator[None]:
    """Replies iterated inside this block stop within a token once `event` is set (not at the next sentence):
    the live turn drops a speculated reply the moment the user speaks again, freeing the CPU at once."""
    token = _cancel.set(event)
    try:
        yield
    finally:
        _cancel.reset(token)


def _sentences(pieces: Iterator[str], finish: _Finish, cap: int, clause_words: int = 0,
               phrase_words: int = 0) -> Iterator[str]:
    """Complete sentences from streamed text, at most `cap` of them (the rest is not generated). With
    `clause_words`, a first sentence still being written is yielded early up to its first clause mark (, ; :)
    once that many words precede it, or (`phrase_words`) up to a phrase break once it is that long with no
    mark (tts.text.first_clause); the rest of that sentence follows as its own piece."""
    buffer, spoken, early = "", 0, clause_words > 0
    try:
        for piece in pieces:
            stop = _cancel.get()
            if stop is not None and stop.is_set():
                return
            done, buffer = complete_sentences(buffer + piece)
            if early and not done and (split := first_clause(buffer, clause_words, phrase_words)):  # early: no sentence yet
                early = False
                head, buffer = split
                yield head
                continue
            early = early and not done
            for sentence in done[: cap - spoken]:
                spoken += 1
                yield sentence
            if spoken >= cap:
                return
    finally:
        close = getattr(pieces, "close", None)
        if close:
            close()
    tail = " ".join(buffer.split())
    if tail and not (finish.length and spoken):
        yield tail
    elif tail:
        logger.info("dropped the unfinished end of a reply cut by the token cap: %r", tail)


def stream_reply(
    user: str, history: Sequence[ChatMessage], backend: Any, options: ChatOptions
) -> Iterator[str]:
    """Sentences of the reply to `user`, each yielded as soon as it is complete (lazy; errors during iteration)."""
    messages, _ = build_messages(user, history, options)
    prompt = backend.chat_template(messages)
    # the template's own system message is the same every turn (a session's instructions come after it)
    static = backend.chat_template(messages[:1], add_generation_prompt=False) if messages[0]["role"] == "system" else ""
    finish = _Finish()
    yield from _sentences(_tokens(backend, prompt, options, finish, static), finish, options.max_sentences,
                          options.first_clause_words, options.first_phrase_words)


def reply(user: str, history: Sequence[ChatMessage], backend: Any, options: ChatOptions) -> Reply:
    """The whole reply as a record with its timing and prompt provenance."""
    start = time.perf_counter()
    messages, ref = build_messages(user, history, options)
    prompt = backend.chat_template(messages)
    finish = _Finish()
    sentences: list[str] = []
    first: float | None = None
    for sentence in _sentences(_tokens(backend, prompt, options, finish), finish, options.max_sentences):
        first = first if first is not None else time.perf_counter() - start
        sentences.append(sentence)
    return Reply(
        text=" ".join(sentences),
        sentences=tuple(sentences),
        finish_reason="empty" if not sentences else ("length" if finish.length else "stop"),
        first_sentence_s=first,
        info=stage_info(backend, options, ref, time.perf_counter() - start),
    )


def stage_info(backend: Any, options: ChatOptions, ref: prompts.PromptRef | None = None, seconds: float = 0.0) -> StageInfo:
    ref = ref or prompts.prompt_ref(options.prompt)
    return StageInfo(
        stage="reply", model=getattr(backend, "name", None), seconds=seconds,
        options=options.model_dump(mode="json"), prompt_name=ref.name, prompt_hash=ref.hash,
    )
