"""Grammar-constrained decoding with llguidance: tool calls and JSON output that always parse.

A grammar (a JSON schema, or a Lark grammar with JSON schemas inside) becomes an llguidance matcher over the
model's own tokenizer. At each step the backend hands `Decoder` the next-token logits and, where it decoded
the step itself (CTranslate2), its own choice. An allowed proposal is kept; otherwise the best allowed token
replaces it (greedy) or one is drawn from the allowed ones (sampling). Keeping an allowed proposal and
redrawing a refused one from the allowed tokens is rejection sampling, so either way every token comes from
the model's distribution restricted to the grammar, and greedy decoding is the masked argmax.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cascade.types import InvalidInput, Unsupported

JSON_STYLE = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": ", "lenient": True}
"""Compact JSON as chat models write it (a free whitespace rule lets a small model loop on blanks); unknown
schema keywords are ignored rather than refused (`lenient`)."""

_LOCK = threading.Lock()


def _llguidance():
    try:
        import llguidance
        import llguidance.hf
    except ImportError as exc:  # pragma: no cover - a dependency; kept for a trimmed install
        raise Unsupported("tools and response_format need the llguidance package (pip install llguidance)",
                          param="response_format") from exc
    return llguidance


def ll_tokenizer(tokenizer: Any) -> Any:
    """The llguidance view of a HF fast tokenizer (built once per tokenizer: about a second)."""
    cached = getattr(tokenizer, "_cascade_llg", None)
    if cached is None:
        llg = _llguidance()
        with _LOCK:
            cached = getattr(tokenizer, "_cascade_llg", None)
            if cached is None:
                cached = llg.hf.from_tokenizer(tokenizer)
                tokenizer._cascade_llg = cached
    return cached


def json_grammar(schema: dict | None) -> str:
    """A grammar for one JSON value: any object (json_object) or one that validates against `schema`."""
    llg = _llguidance()
    try:
        return llg.LLMatcher.grammar_from_json_schema(schema or {"type": "object"}, overrides=JSON_STYLE)
    except ValueError as exc:
        raise InvalidInput(f"response_format.json_schema.schema: {str(exc).splitlines()[0]}",
                           param="response_format") from exc


def _schema_json(schema: dict) -> str:
    return json.dumps({**schema, "x-guidance": JSON_STYLE})


def call_schema(functions: Sequence[dict]) -> dict:
    """One call `{"name": ..., "arguments": {...}}` of any of `functions` (OpenAI function objects), the
    arguments valid against that function's parameter schema, with no argument it does not declare."""
    options = []
    for fn in functions:
        params = dict(fn.get("parameters") or {"type": "object", "properties": {}})
        if params.get("type") == "object" and "additionalProperties" not in params:
            params["additionalProperties"] = False  # only declared arguments: a small model otherwise copies the
            # schema's own keys ("type", "description") into the call (pipecat's FunctionSchema leaves this out)
        options.append({"type": "object", "properties": {"name": {"const": fn["name"]}, "arguments": params},
                        "required": ["name", "arguments"], "additionalProperties": False})
    return options[0] if len(options) == 1 else {"anyOf": options}


def tool_call_grammar(functions: Sequence[dict], *, at_least_one: bool, parallel: bool) -> str:
    """SmolLM2's tool-call format `<tool_call>[{"name": ..., "arguments": {...}}, ...]</tool_call>`: an empty
    list (no call; only where the model may decide), one call, or several when parallel calls are allowed."""
    llg = _llguidance()
    more = ' ("," NL? call)*' if parallel else ""
    calls = f"call{more}" if at_least_one else f"(call{more})?"
    lark = (f'start: "<tool_call>[" NL? {calls} NL? "]</tool_call>"\n'
            f'NL: "\\n"\n'
            f"call: %json {_schema_json(call_schema(functions))}\n")
    return llg.LLMatcher.grammar_from_lark(lark)


@dataclass
class Choice:
    """One decoded token as a response reports it: its log-prob under the model and the top alternatives."""

    token: int
    logprob: float
    top: list[tuple[int, float]] = field(default_factory=list)


class Decoder:
    """Chooses each token of one completion (see the module docstring); a backend's `guided()` drives it.

    `grammar` None decodes freely (what logprobs need: the scores of every step). `top_logprobs` None keeps no
    scores. `fast_forward` appends the tokens the grammar forces after a replaced proposal, so a backend that
    restarts on each replacement (CTranslate2) restarts once per departure, not once per forced token.
    """

    def __init__(self, tokenizer: Any, grammar: str | None, *, ends: Sequence[int], temperature: float = 0.0,
                 top_logprobs: int | None = None, seed: int | None = None):
        self.matcher = None
        if grammar is not None:
            llg = _llguidance()
            self.matcher = llg.LLMatcher(ll_tokenizer(tokenizer), grammar, log_level=0)
            if self.matcher.is_error():
                raise InvalidInput(f"cannot constrain to this schema: {self.matcher.get_error()}".splitlines()[0],
                                   param="response_format")
        self.ends = set(ends)
        self.temperature = temperature
        self.top_logprobs = top_logprobs
        self.fast_forward = top_logprobs is None
        self.rng = np.random.default_rng(seed)
        self.choices: list[Choice] = []
        self.ended = False
        self.departures = 0
        self.should_stop: Callable[[], bool] | None = None
        """Checked after each token (stop strings): True ends the completion."""

    @property
    def tokens(self) -> list[int]:
        return [c.token for c in self.choices]

    @property
    def complete(self) -> bool:
        """The grammar was satisfied (always True without a grammar)."""
        return self.matcher is None or self.matcher.is_accepting() or self.matcher.is_stopped()

    def _allowed(self, size: int) -> np.ndarray | None:
        if self.matcher is None:
            return None
        bits = np.frombuffer(self.matcher.compute_bitmask(), dtype=np.uint8)
        allowed = np.unpackbits(bits, bitorder="little").astype(bool)
        if allowed.size < size:
            allowed = np.concatenate([allowed, np.zeros(size - allowed.size, dtype=bool)])
        return allowed[:size]

    def __call__(self, logits: np.ndarray, proposed: int | None = None) -> list[int]:
        """The token ids to append after these logits ([] or an end token: the completion is over)."""
        logits = np.asarray(logits, dtype=np.float32).reshape(-1)
        allowed = self._allowed(logits.size)
        if allowed is not None and not allowed.any():
            self.ended = True
            return []
        if proposed is not None and (allowed is None or allowed[proposed]):
            token = proposed
        else:
            masked = logits if allowed is None else np.where(allowed, logits, -np.inf)
            token = int(masked.argmax()) if self.temperature <= 0 else self._sample(masked)
        self._record(logits, token)
        if token in self.ends:
            self.ended = True
            return [token]
        out = [token]
        if self.should_stop is not None and self.should_stop():
            self.ended = True
        if self.matcher is not None:
            if not self.matcher.consume_token(token):  # pragma: no cover - the mask allowed it
                raise InvalidInput(f"constrained decoding failed: {self.matcher.get_error()}")
            if proposed is not None and token != proposed:
                self.departures += 1
                if self.fast_forward:
                    forced = self.matcher.compute_ff_tokens()
                    if forced and self.matcher.consume_tokens(forced):
                        out += forced
                        self.choices += [Choice(t, 0.0) for t in forced]
        return out

    def _sample(self, masked: np.ndarray) -> int:
        z = masked / self.temperature
        p = np.exp(z - z.max())
        return int(self.rng.choice(p.size, p=p / p.sum()))

    def _record(self, logits: np.ndarray, token: int) -> None:
        if self.top_logprobs is None:
            self.choices.append(Choice(token, 0.0))
            return
        shifted = logits - logits.max()
        logp = shifted - np.log(np.exp(shifted).sum())
        top = []
        if self.top_logprobs:
            idx = np.argpartition(-logp, self.top_logprobs)[: self.top_logprobs]
            top = [(int(i), float(logp[i])) for i in idx[np.argsort(-logp[idx])]]
        self.choices.append(Choice(token, float(logp[token]), top))
