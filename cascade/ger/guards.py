"""Guards around generative error correction: every decision is recorded, any failure falls back.

Order: clean the raw output (first line, tags/prefixes/quotes stripped, the hypotheses'
casing/punctuation style) -> non-empty -> length (words <= factor x longest hypothesis + 2)
-> word edit distance to the nearest hypothesis <= max_edit_distance (fraction of that
hypothesis' words, on normalised text) -> optional snap to the nearest hypothesis ->
score gate: the output's combined (1-λ)·AM + λ·LM must not fall below the rescored best's; with
a LoRA adapter the posterior gate replaces it (correct.posterior_gate: at most max_changed_words
word edits from the rescored best, and the adapter's own log-probability margin).

The output has no acoustic score of its own: its AM is the nearest hypothesis' AM minus
`output_am_penalty` x (edit distance fraction), so an output identical to a hypothesis gets
exactly that hypothesis' AM and every unseen word costs.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from cascade import metrics
from cascade.config import GerOptions

_SPECIAL = re.compile(r"<\|[^|>]*\|>|</?\s*[A-Za-z][\w.-]*\s*>")
"""Chat-control and tag-shaped tokens: `<|im_start|>`, `<file_sep>`, `<jupyter_output>`, `<hyp>`, Gemma's
`<start_of_turn>`/`<unusedN>`... Every special token of the bundled tokenizers (SmolLM2, Gemma 3) has one
of these two shapes (tests/test_hardening.py checks it against the loaded tokenizer), and speech
transcripts never hold angle-bracket tags, so none can reach a prompt as a control token."""
_PREFIX = re.compile(
    r"^\s*(?:#+\s*)?(?:the\s+)?(?:corrected|true|final|revised)?\s*"
    r"(?:transcription|transcript|response|answer|output|best[- ]hypothesis|correction|sentence)\s*[:\-]\s*",
    re.I,
)
_QUOTES = "\"'`“”‘’«»"
_PUNCT = re.compile(r"[^\w\s'-]")


class Rejected(Exception):
    """A guard refused the output; `reason` becomes Correction.fallback_reason."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def sanitize_hypothesis(text: str) -> str:
    """Hypothesis text as it goes into a prompt: no special tokens, chat-control tokens or tags, one line."""
    return " ".join(_SPECIAL.sub(" ", text).split())


def _plain_style(texts: Sequence[str]) -> bool:
    """True when the hypotheses are lower case without punctuation (HyPoradise/Kaldi style)."""
    joined = " ".join(texts)
    return joined == joined.lower() and not _PUNCT.search(joined)


def clean_output(raw: str, hypotheses: Sequence[str], log: dict[str, Any]) -> str:
    """First non-empty line, tags/prefixes/quotes stripped, the hypotheses' style applied."""
    lines = [ln for ln in (raw or "").splitlines() if ln.strip()]
    log["lines"] = len(lines)
    text = _SPECIAL.sub(" ", lines[0]) if lines else ""
    stripped = _PREFIX.sub("", text, count=1)
    log["prefix_stripped"] = stripped != text
    text = " ".join(stripped.split()).strip(_QUOTES + " ")
    if _plain_style(hypotheses):
        styled = " ".join(_PUNCT.sub(" ", text.lower()).split())
        log["style"] = "lowercase_no_punct"
        text = styled
    return text


def nearest(text: str, hypotheses: Sequence[str]) -> tuple[int, float]:
    """Index of the hypothesis nearest to `text` and the word edit distance as a fraction of its length."""
    out = metrics.normalize(text).split()
    best, best_d = 0, float("inf")
    for i, h in enumerate(hypotheses):
        ref = metrics.normalize(h).split()
        d = metrics.word_edits(ref, out) / max(len(ref), 1)
        if d < best_d:
            best, best_d = i, d
    return best, best_d


def check_length(text: str, hypotheses: Sequence[str], ger: GerOptions, log: dict[str, Any]) -> None:
    longest = max(len(h.split()) for h in hypotheses)
    cap = ger.max_new_tokens_factor * longest + 2
    log["words"], log["max_words"] = len(text.split()), cap
    if not text:
        raise Rejected("empty_output")
    if len(text.split()) > cap:
        raise Rejected("too_long")


def check_distance(text: str, hypotheses: Sequence[str], ger: GerOptions, log: dict[str, Any]) -> tuple[int, float]:
    idx, dist = nearest(text, hypotheses)
    log.update(nearest=idx, edit_distance=round(dist, 4), max_edit_distance=ger.max_edit_distance)
    if dist > ger.max_edit_distance:
        raise Rejected("too_far_from_hypotheses")
    return idx, dist


def output_am(nearest_am: float, dist: float, ger: GerOptions) -> float:
    return nearest_am - ger.output_am_penalty * dist


def check_score(combined: float, best_combined: float, ger: GerOptions, log: dict[str, Any]) -> None:
    log.update(output_score=round(combined, 4), best_score=round(best_combined, 4), score_margin=ger.score_margin)
    if combined < best_combined + ger.score_margin - 1e-9:
        raise Rejected("below_rescored_best")


def changed_words(text: str, best: str) -> int:
    """Word edits between an output and the rescored best, on normalised text."""
    return metrics.word_edits(metrics.normalize(best).split(), metrics.normalize(text).split())


def check_changes(text: str, best: str, ger: GerOptions, log: dict[str, Any]) -> None:
    """At most `max_changed_words` word edits away from the rescored best (normalised text)."""
    if ger.max_changed_words is None:
        return
    changed = changed_words(text, best)
    log.update(changed_words=changed, max_changed_words=ger.max_changed_words)
    if changed > ger.max_changed_words:
        raise Rejected("too_many_changes")
