"""End of turn: a pause ends the user's turn only when the words so far read as finished.

Silence alone cuts a sentence at its natural pauses ("And so, my fellow Americans, | ask not ..."), and
a long silence threshold makes every reply late. So the turn waits `quick_silence_ms` after words that read as
finished for sure, `silence_ms` after words that read as finished, and `max_silence_ms` after words that do not
(`wait_ms`). Whether they read as finished is the LLM's
own judgement, under the turn's chat template and history (LiveKit's turn detector is the same idea, a
fine-tuned SmolLM2): the probability that the user's message ends, or its sentence does, right after the
words, log p(. | ? | ! | <end-of-message> | words). Whisper ends nearly every window with a full stop
("And so am I fellow Americans."), which the base model takes as the end, so the words are read without
their final punctuation; a trailing comma, dash or ellipsis from Whisper still says "more follows".
The "margin" reading (live.end_reading) tells the model it reads a live transcript that may stop mid-sentence
(prompts/live/end_of_turn.jinja, in place of the template's own system line) and reads the ending's probability
against the likeliest other next token: log p(end) - log max p(other), > 0 where ending is the likeliest.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from cascade.prompts import render
from cascade.types import ChatMessage

logger = logging.getLogger(__name__)

_MARK = "\x00words\x00"
_GOES_ON = (",", "-", "\u2014", "...", "\u2026", ":", ";")
_FINAL = '.?!" '
_ENDS = (".", "?", "!")


class EndOfTurn:
    """log p(the user's message ends after `text`) under an LLM backend (any with prompt_logprobs).

    A local backend reads it from one pass over the prompt (the next token's distribution: each ending is
    one token), its system line's state kept by CTranslate2, in the reply's compute type (int8 on ct2): on
    the dev recordings the same turns cut early as float32 scoring of each ending (2.6 %), fewer finished
    ones kept waiting (26.3 -> 21.1 %), and ~1/8 of its time (0.13 vs 1.2 s a reading at load 6 on 2 cores).
    """

    def __init__(self, backend: Any, history_messages: int = 2, reading: str = "logprob"):
        self.backend, self.history_messages, self.reading = backend, history_messages, reading
        self._static: str | None = None  # the prompt before the words with no history (its system line)
        self._system = ([{"role": "system", "content": render("live/end_of_turn")[0]}] if reading == "margin"
                        else [])

    def _split(self, history: Sequence[ChatMessage]) -> tuple[str, str]:
        """The prompt before the user's words and the end-of-message marker after them (the template's own)."""
        messages = [{"role": m.role, "content": m.content} for m in history[len(history) - self.history_messages:]
                    if self.history_messages and m.role in ("user", "assistant")]
        rendered = self.backend.chat_template([*self._system, *messages, {"role": "user", "content": _MARK}],
                                              add_generation_prompt=False)
        before, _, after = rendered.partition(_MARK)
        end = after.split("\n")[0] or after
        return before, end

    def logprob(self, text: str, history: Sequence[ChatMessage] = ()) -> float:
        """The reading (log p(end), or with reading "margin" log p(end) - log max p(other); a backend without
        next-token log-probs reads log p(end)): 0.0 for no words (nothing to wait for); -inf when Whisper's
        punctuation says the phrase goes on."""
        text = " ".join(text.split())
        if text.endswith(_GOES_ON):
            return -math.inf
        words = text.rstrip(_FINAL).rstrip()
        if not words:
            return 0.0
        before, end = self._split(history)
        endings = [*_ENDS, *([end] if end.strip() else [])]
        tokens = self._one_token_each(endings)
        if tokens is not None:
            if self._static is None:
                self._static = self._split(())[0]
            margin = self.reading == "margin"
            scores = self.backend.next_logprobs(before + words, tokens, static=self._static, reply=True,
                                                others=margin)
            if margin:
                return float(np.logaddexp.reduce(scores[:-1]) - scores[-1])
        else:
            scores = [s.logprob for s in self.backend.score(endings, prefix=before + words)]
        return float(np.logaddexp.reduce(scores))

    def _one_token_each(self, endings: Sequence[str]) -> list[str] | None:
        """The endings as single tokens where the backend reads next-token log-probs (else None: scored)."""
        tokenizer = getattr(self.backend, "tokenizer", None)
        if tokenizer is None or not hasattr(self.backend, "next_logprobs"):
            return None
        pieces = [tokenizer.tokenize(e) for e in endings]
        return [p[0] for p in pieces] if all(len(p) == 1 for p in pieces) else None


def wait_ms(logprob: float | None, options: Any, words: bool = True) -> float:
    """The silence after words read at `logprob` (None: not read yet) that ends the turn (LiveOptions): dev
    recordings chose three steps, since a finished-looking fragment ("And so am I fellow Americans", Whisper's
    mishearing) reads like a plain finished sentence, and only the surest readings can end a turn sooner.
    No words yet (a breath before them) never end it sooner than silence_ms."""
    if logprob is not None and logprob >= options.quick_logprob and words:
        return min(options.quick_silence_ms, options.silence_ms)
    if logprob is not None and logprob >= options.end_logprob:
        return options.silence_ms
    return max(options.max_silence_ms, options.silence_ms)


def build_detector(settings: Any) -> EndOfTurn | None:
    """The end-of-turn reader for these settings: the reply's LLM in a backend instance of its own (one more
    int8 copy of the small model, ~0.15 GB), so a reading runs beside the reply it speculates instead of
    queuing behind it on one CTranslate2 generator; None where the LLM is a remote service or
    live.end_of_turn is "pause"."""
    if settings.live.end_of_turn != "llm" or settings.service.llm_url or settings.llm.backend == "openai":
        return None
    from cascade.llm import load_backend

    return EndOfTurn(load_backend(settings.chat.turn_llm(settings.llm), settings.home, instance="end-of-turn"),
                     reading=settings.live.end_reading)
