"""Each segment's N-best: the window's hypotheses cut where the 1-best is cut.

faster-whisper cuts a window's 1-best into segments at consecutive timestamp
tokens (`_split_segments_by_timestamps`) and drops an unfinished tail. A
segment's alternatives come from a wide beam over the window, or over the
segment when forced through the 1-best's text before it (decode.py); they are
aligned to the 1-best's text tokens (difflib) and cut where the segment ends,
so they are what each hypothesis says over that segment's stretch of audio. Within a segment only hypotheses
distinct after whisper normalisation are kept: case and punctuation variants
fold into the better-ranked one.
"""

from __future__ import annotations

from collections.abc import Sequence
from difflib import SequenceMatcher

from cascade.metrics import normalize
from cascade.types import Hypothesis


def cut_points(whisper, tokenizer, tokens: list[int]) -> list[tuple[int, int]]:
    """Token (start, end) of each segment faster-whisper makes from this window's 1-best (its own splitter)."""
    pieces, _, _ = whisper._split_segments_by_timestamps(
        tokenizer=tokenizer, tokens=tokens, time_offset=0.0, segment_size=3000, segment_duration=30.0, seek=0
    )
    spans, start = [], 0
    for piece in pieces:
        spans.append((start, start + len(piece["tokens"])))
        start += len(piece["tokens"])
    return spans


def _mapper(best: Sequence[int], other: Sequence[int], open_end: bool = True):
    """A function mapping a position in `best` to the aligned position in `other` (open_end False: `other` was
    stopped past `best`'s end, and what it adds there is left out)."""
    opcodes = SequenceMatcher(None, best, other, autojunk=False).get_opcodes()
    end = opcodes[-1][3] if not open_end and opcodes and opcodes[-1][0] == "insert" else len(other)

    def at(i: int) -> int:
        if i >= len(best):
            return end
        for tag, i1, i2, j1, j2 in opcodes:
            if i1 <= i < i2:
                if tag == "equal":
                    return j1 + (i - i1)
                return j1 + round((i - i1) * (j2 - j1) / (i2 - i1))
        return len(other)

    return at


def per_segment(tokenizer, best: tuple[list[int], float], span: tuple[int, int], n_best: int,
                alternatives: list[tuple[list[int], float]], offset: int, open_end: bool = True) -> tuple[Hypothesis, ...]:
    """One segment's hypotheses: the 1-best's piece first, then up to n_best - 1 others distinct
    after normalisation, by per-token log-prob.

    `alternatives` are (text tokens, per-token log-prob) that start `offset` text tokens into the
    window's 1-best (a prefix-forced decode starts at the segment, a whole-window one at 0). Every
    hypothesis is scored by the same decode: the 1-best takes the score of its own piece in that
    beam (its case/punctuation variant if only that is there; the beam-5 decode's if neither is).
    am_score = per-token log-prob x the piece's token count.
    """
    (best, own_lp), (a, b) = best, span
    best_text = text_tokens(tokenizer, best)
    start, end = len(text_tokens(tokenizer, best[:a])) - offset, len(text_tokens(tokenizer, best[:b])) - offset
    first = tuple(best[a:b])
    first_text = " ".join(tokenizer.decode(list(first)).split())
    first_key = _key(first_text)
    pieces: dict[str, tuple[str, tuple[int, ...], float]] = {}
    exact = None
    for tokens, per_token in alternatives:
        other = text_tokens(tokenizer, tokens)
        at = _mapper(best_text[offset:], other, open_end)
        part = tuple(other[at(start) : at(end)])
        text = " ".join(tokenizer.decode(list(part)).split())
        if exact is None and part == tuple(best_text[offset + start : offset + end]):
            exact = per_token
        if text and _key(text) not in pieces:  # beam order: the better-ranked variant is kept
            pieces[_key(text)] = (text, part, per_token)
    best_lp = exact if exact is not None else pieces.get(first_key, (None, None, own_lp))[2]
    out = [Hypothesis(text=first_text, am_score=best_lp * len(first), avg_logprob=best_lp, tokens=first)]
    others = sorted((v for k, v in pieces.items() if k != first_key), key=lambda v: -v[2])
    for text, part, per_token in others[: n_best - 1]:
        out.append(Hypothesis(text=text, am_score=per_token * len(part), avg_logprob=per_token, tokens=part))
    return tuple(out)


def _key(text: str) -> str:
    """What 'distinct' means: the whisper-normalised words (case, punctuation, spelling folded). The normaliser
    keeps a dot from "..." or "…" as a token of its own ("noise ." for "noise..."): punctuation-only tokens go."""
    words = [w for w in normalize(text).split() if any(c.isalnum() for c in w)]
    return " ".join(words) or text


def text_tokens(tokenizer, tokens: Sequence[int]) -> list[int]:
    """The text tokens (timestamps and end-of-text dropped): what alignment compares."""
    return [t for t in tokens if t < tokenizer.eot]
