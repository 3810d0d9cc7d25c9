"""Prompt templates live in prompts/<task>/<name>.jinja; code refers to them by name only.

The rendered prompt's name and the template's hash go into StageInfo so every
result says exactly which prompt produced it.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path
from typing import Any

import jinja2

from cascade.types import InvalidInput, Record

PROMPTS_DIR = Path(__file__).resolve().parent / "_prompts"
"""prompts/ of the checkout (cascade/_prompts links to it), shipped inside the wheel as package data."""


class PromptRef(Record):
    name: str
    hash: str


@functools.lru_cache(maxsize=64)
def _template(name: str, root: Path) -> tuple[jinja2.Template, PromptRef]:
    path = root / f"{name}.jinja"
    if not path.is_file():
        known = sorted(str(p.relative_to(root).with_suffix("")) for p in root.rglob("*.jinja"))
        raise InvalidInput(f"unknown prompt {name!r} (known: {', '.join(known)})", param="prompt")
    source = path.read_text(encoding="utf-8")
    # The file's final newline is dropped (keep_trailing_newline=False), so a prompt can end exactly where the
    # model must continue (e.g. "...assistant\n<hyp>"). A template that must end in a newline writes {{ "\n" }}.
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=False, autoescape=False)
    ref = PromptRef(name=name, hash=hashlib.sha256(source.encode()).hexdigest()[:12])
    return env.from_string(source), ref


def render(name: str, root: Path = PROMPTS_DIR, **variables: Any) -> tuple[str, PromptRef]:
    """Render prompts/<name>.jinja with `variables`; returns the text and its provenance."""
    template, ref = _template(name, root)
    return template.render(**variables), ref


def prompt_ref(name: str, root: Path = PROMPTS_DIR) -> PromptRef:
    return _template(name, root)[1]
