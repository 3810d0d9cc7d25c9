"""Chat beyond plain text: tool calls, JSON output and token log-probs, on the in-process backends.

The model sees its tools in the system message in SmolLM2's function-calling format (prompts/chat/tools.jinja)
and answers `<tool_call>[...]</tool_call>`, constrained by a grammar (cascade.llm.constrain) so every call
names a given function and its arguments match that function's JSON schema. Under tool_choice "auto" the
model decides: the grammar allows the empty list, which means "no call", and the reply is then written as
text without the tools. Earlier calls and tool results become text the model reads (`as_prompt_messages`).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from cascade.llm.constrain import Choice, Decoder, json_grammar, tool_call_grammar
from cascade.llm.hf_backend import PROMPTS
from cascade.types import InvalidInput, Unsupported

TOOLS_PROMPT = "chat/tools"
CALL_OPEN, CALL_CLOSE = "<tool_call>", "</tool_call>"


@dataclass
class Decoded:
    """A decoded completion: its text, the tokens with their scores, and why it ended."""

    text: str
    choices: list[Choice] = field(default_factory=list)
    finish: str = "stop"
    """stop (an end token or stop string), length (the token cap)."""


@dataclass
class ToolCall:
    """One call as OpenAI reports it: `arguments` is JSON text."""

    name: str
    arguments: str
    id: str = field(default_factory=lambda: f"call_{uuid.uuid4().hex[:24]}")

    def as_openai(self) -> dict:
        return {"id": self.id, "type": "function", "function": {"name": self.name, "arguments": self.arguments}}


def _guided(backend: Any) -> Any:
    if not hasattr(backend, "guided"):
        raise Unsupported(f"tools, response_format and logprobs need an in-process LLM backend (transformers or "
                          f"ct2); {type(backend).__name__} has none", param="llm.backend")
    return backend


def _ends(backend: Any) -> list[int]:
    tok = backend.tokenizer
    names = getattr(backend, "_ends", None) or [tok.eos_token]
    return [i for i in tok.convert_tokens_to_ids(list(names)) if i is not None]


def decode(backend: Any, prompt: str, *, grammar: str | None = None, max_tokens: int, temperature: float = 0.0,
           top_logprobs: int | None = None, stop: Sequence[str] = (), adapter: str | None = None) -> Decoded:
    """One completion of `prompt` token by token, constrained by `grammar` (None: free), keeping log-probs
    (with `top_logprobs` alternatives) when that is not None; cut at the first stop string."""
    backend = _guided(backend)
    decoder = Decoder(backend.tokenizer, grammar, ends=_ends(backend), temperature=temperature,
                      top_logprobs=top_logprobs)
    stops = [s for s in stop if s]
    if stops:
        decoder.should_stop = _stop_check(backend.tokenizer, decoder, stops)
    ids = backend.guided(prompt, decoder, max_tokens=max_tokens, temperature=temperature, adapter=adapter)
    text = backend.tokenizer.decode(ids, skip_special_tokens=True)
    finish = "stop" if decoder.ended else "length"
    if stops:
        from cascade.llm.hf_backend import split_at_stop

        cut = split_at_stop(text, stops)
        if len(cut) < len(text):
            text, finish = cut, "stop"
            kept = []
            for c in decoder.choices:  # the tokens whose text lies before the stop string
                if len(backend.tokenizer.decode([*[k.token for k in kept], c.token], skip_special_tokens=True)) > len(cut):
                    break
                kept.append(c)
            decoder.choices = kept
    choices = [c for c in decoder.choices if c.token not in decoder.ends]
    return Decoded(text=text, choices=choices, finish=finish)


def _stop_check(tokenizer: Any, decoder: Decoder, stops: list[str]) -> Callable[[], bool]:
    window = max(len(s) for s in stops) + 8

    def check() -> bool:
        tail = tokenizer.decode(decoder.tokens[-window:], skip_special_tokens=True)
        return any(s in tail for s in stops)

    return check


# --------------------------------------------------------------------------- JSON mode


def json_reply(backend: Any, prompt: str, schema: dict | None, **kwargs: Any) -> Decoded:
    """A reply that is one JSON object: any object (`schema` None, json_object) or one valid against `schema`."""
    return decode(backend, prompt, grammar=json_grammar(schema), **kwargs)


# --------------------------------------------------------------------------- tools


def as_prompt_messages(messages: Sequence[dict], *, calls_as_text: bool = True) -> list[dict[str, str]]:
    """OpenAI chat messages as plain {role, content} turns any chat template renders (developer -> system).

    With `calls_as_text` (the prompt that shows the tools), an assistant's calls are its `<tool_call>[...]` text
    and a result is a user turn holding `<tool_response>` (Qwen's convention). Without (the prompt of a text
    answer), calls are left out and each result joins the user's turn as "name returned: ...": a small model
    shown the tags answers with more tags, shown the result beside the question it answers with it.
    """
    names = {c.get("id"): c["function"]["name"] for m in messages for c in m.get("tool_calls") or ()}
    out: list[dict[str, str]] = []
    for m in messages:
        role, content = m["role"], m.get("content") or ""
        if role == "developer":
            role = "system"
        if role == "assistant" and m.get("tool_calls"):
            if not calls_as_text:
                if content:
                    out.append({"role": role, "content": content})
                continue
            calls = [{"name": c["function"]["name"], "arguments": _loads(c["function"].get("arguments") or "{}")}
                     for c in m["tool_calls"]]
            content = (content + "\n" if content else "") + CALL_OPEN + json.dumps(calls) + CALL_CLOSE
        if role == "tool":
            role = "user"
            name = names.get(m.get("tool_call_id"), "the tool")
            content = (f"<tool_response>\n{content}\n</tool_response>" if calls_as_text
                       else f"({name} returned: {content})")
        if out and out[-1]["role"] == role == "user":  # results join the turn they answer
            out[-1] = {"role": role, "content": out[-1]["content"] + "\n\n" + content}
        else:
            out.append({"role": role, "content": content})
    return out


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def tools_prompt(backend: Any, messages: Sequence[dict], functions: Sequence[dict]) -> str:
    """The chat prompt with the tools described in the system message (the caller's system text kept first)."""
    import jinja2

    turns = as_prompt_messages(messages)
    system = "\n\n".join(t["content"] for t in turns if t["role"] == "system")
    template = jinja2.Template((PROMPTS / f"{TOOLS_PROMPT}.jinja").read_text(encoding="utf-8"))
    shown = [{"name": f["name"], "description": f.get("description", ""),
              "parameters": f.get("parameters") or {"type": "object", "properties": {}}} for f in functions]
    head = {"role": "system", "content": template.render(system=system, tools=json.dumps(shown)).strip()}
    return backend.chat_template([head, *(t for t in turns if t["role"] != "system")], add_generation_prompt=True)


def _answered(messages: Sequence[dict]) -> set[tuple[str, str]]:
    """(name, canonical arguments) of the calls in the history that already have a result."""
    done = {m.get("tool_call_id") for m in messages if m["role"] == "tool"}
    out = set()
    for m in messages:
        for c in m.get("tool_calls") or ():
            if c.get("id") in done:
                out.add((c["function"]["name"], _canonical(c["function"].get("arguments") or "{}")))
    return out


def _canonical(arguments: str) -> str:
    return json.dumps(_loads(arguments), sort_keys=True)


def choose_tools(backend: Any, messages: Sequence[dict], functions: Sequence[dict], choice: str | dict, *,
                 parallel: bool = True, max_tokens: int = 256, temperature: float = 0.0,
                 adapter: str | None = None) -> tuple[list[ToolCall], Decoded | None]:
    """The calls the model makes (empty: answer in text) and the decoded call text.

    choice: "auto" (the model may answer `[]`), "required" (at least one call), "none" (no call), or
    {"type": "function", "function": {"name": ...}} (exactly that function). Under "auto", a call the history
    already holds a result for (same function, same arguments) is dropped: a small model tends to repeat
    the call it has just been answered, and an agent loop would then never end.
    """
    if choice == "none" or not functions:
        return [], None
    named = None
    if isinstance(choice, dict):
        named = choice.get("function", {}).get("name")
        functions = [f for f in functions if f["name"] == named]
        if not functions:
            raise InvalidInput(f"tool_choice: no tool named {named!r} in tools", param="tool_choice")
    grammar = tool_call_grammar(functions, at_least_one=choice != "auto", parallel=parallel and named is None)
    prompt = tools_prompt(backend, messages, functions)
    out = decode(backend, prompt, grammar=grammar, max_tokens=max_tokens, temperature=temperature, adapter=adapter)
    calls = parse_calls(out.text)
    if choice == "auto":
        seen = _answered(messages)
        calls = [c for c in calls if (c.name, _canonical(c.arguments)) not in seen]
    return calls, out


def parse_calls(text: str) -> list[ToolCall]:
    """The calls in `<tool_call>[...]</tool_call>` text ([] for an empty or unfinished list)."""
    body = text.strip().removeprefix(CALL_OPEN).removesuffix(CALL_CLOSE)
    try:
        items = json.loads(body)
    except ValueError:
        return []  # cut by the token cap before the list closed
    return [ToolCall(name=i["name"], arguments=json.dumps(i.get("arguments", {}))) for i in items
            if isinstance(i, dict) and "name" in i]
