"""Text preparation for TTS: clean up characters engines cannot speak, split into sentences.

Sentences are the unit of streaming (the first one is spoken while the rest is
still being synthesized or generated) and very long sentences are cut at clause
or word boundaries so no engine sees more than `MAX_CHARS` at once: nothing is
ever dropped silently.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Iterator

from cascade.types import InvalidInput

logger = logging.getLogger(__name__)

MAX_CHARS = 300
"""Longest piece handed to an engine in one call (VITS-style models degrade on very long inputs)."""

MAX_TEXT_CHARS = 100_000
"""Longest text accepted at all (about 2 hours of speech)."""

_REPLACE = {
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'",
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u2033": '"', "\u00ab": '"', "\u00bb": '"',
    "\u2013": ", ", "\u2014": ", ", "\u2015": ", ", "\u2212": "-", "\u2026": "...",
    "&": " and ", "%": " percent", "+": " plus ", "@": " at ", "=": " equals ",
}
_SPOKEN_PUNCT = set(".,;:!?'\"-()/$")
_ABBREVIATIONS = {"mr", "mrs", "ms", "dr", "prof", "st", "jr", "sr", "vs", "etc", "e.g", "i.e", "no", "mt", "inc", "ltd"}
_SENTENCE_END = re.compile(r"([.!?]+[\"')\]]*)(\s+)")


def clean(text: str) -> str:
    """NFKC-normalise, map typographic characters, drop what no engine can speak (with a warning).

    Dropped: control characters, emoji and other symbols, private-use and unassigned code points.
    Letters of any script are kept (the engine's phonemizer decides how to read them).
    """
    text = unicodedata.normalize("NFKC", text)
    out: list[str] = []
    dropped: list[str] = []
    for ch in text:
        ch = _REPLACE.get(ch, ch)
        if len(ch) > 1:
            out.append(ch)
            continue
        cat = unicodedata.category(ch)
        if ch in "\n\t\r" or cat == "Zs":
            out.append(" " if ch != "\n" else "\n")
        elif cat[0] in "LN" or ch in _SPOKEN_PUNCT or cat == "Mn":
            out.append(ch)
        elif cat[0] == "P":
            out.append(" ")
        else:
            dropped.append(ch)
            out.append(" ")
    if dropped:
        shown = "".join(sorted(set(dropped)))[:20]
        logger.warning("dropped %d character(s) no voice can speak: %r", len(dropped), shown)
    lines = (" ".join(line.split()) for line in "".join(out).split("\n"))
    return "\n".join(line for line in lines if line)


def _is_abbreviation(before: str) -> bool:
    word = before.rsplit(" ", 1)[-1].lower().rstrip(".")
    return word in _ABBREVIATIONS or "." in word or (len(word) == 1 and word.isalpha())


def _ends(text: str) -> Iterator[tuple[int, int]]:
    """(end of sentence, start of next) for each sentence boundary in one line of text.

    A full stop after an abbreviation or an initial, or followed by a lower-case word, is no boundary.
    """
    start = 0
    for match in _SENTENCE_END.finditer(text):
        after = text[match.end() : match.end() + 1]
        if match.group(1).startswith(".") and len(match.group(1).rstrip("\"')]")) == 1:
            if _is_abbreviation(text[start : match.start(1)]) or after.islower():
                continue
        yield match.end(1), match.end()
        start = match.end()


def split_sentences(text: str) -> list[str]:
    """Sentences of `text` (already cleaned): split after . ! ? (not after common abbreviations) and at line breaks."""
    sentences: list[str] = []
    for line in text.split("\n"):
        start = 0
        for end, nxt in _ends(line):
            sentences.append(line[start:end].strip())
            start = nxt
        if line[start:].strip():
            sentences.append(line[start:].strip())
    return [s for s in sentences if any(ch.isalnum() for ch in s)]


def _cut(piece: str, limit: int) -> Iterator[str]:
    """Cut an over-long sentence at clause punctuation, then at word boundaries, then hard."""
    while len(piece) > limit:
        window = piece[: limit + 1]
        cut = max(window.rfind(", "), window.rfind("; "), window.rfind(": "))
        if cut < limit // 3:
            cut = window.rfind(" ")
        if cut <= 0:
            cut = limit
        yield piece[: cut + 1].strip()
        piece = piece[cut + 1 :].strip()
    if piece:
        yield piece


def pieces(text: str, *, limit: int = MAX_CHARS) -> list[str]:
    """What an engine is asked to speak, in order: cleaned sentences, none longer than `limit`.

    Raises InvalidInput for empty text, text with nothing speakable, or text above MAX_TEXT_CHARS.
    """
    if not text or not text.strip():
        raise InvalidInput("text is empty: nothing to speak", param="input")
    if len(text) > MAX_TEXT_CHARS:
        raise InvalidInput(f"text is {len(text)} characters long, above the {MAX_TEXT_CHARS} limit", param="input")
    sentences = split_sentences(clean(text))
    if not sentences:
        raise InvalidInput("text has no speakable characters (only symbols or emoji)", param="input")
    out = [p for s in sentences for p in _cut(s, limit)]
    if len(out) > len(sentences):
        logger.info("cut %d over-long sentence(s) into %d pieces", len(sentences), len(out))
    return out


def complete_sentences(buffer: str) -> tuple[list[str], str]:
    """Split a growing text buffer into finished sentences and the unfinished rest (for streaming replies).

    A boundary counts only once the next word has begun, so "Mr." or "5 p." waits for more text.
    """
    done: list[str] = []
    start = 0
    for end, nxt in _ends(buffer):
        if nxt >= len(buffer):
            break
        if buffer[start:end].strip():
            done.append(" ".join(buffer[start:end].split()))
        start = nxt
    newline = buffer.rfind("\n", start)
    if newline >= 0:
        done.extend(" ".join(line.split()) for line in buffer[start:newline].split("\n") if line.strip())
        start = newline + 1
    return done, buffer[start:]


_CLAUSE = re.compile(r"[,;:](?=\s+\S)")


_PHRASE_STARTS = frozenset(
    "and but or so because although though while when whenever where if unless until since after before as than "
    "to that which who whom whose with without for from of in on at into onto about by through during between across "
    "against among around toward towards upon within behind beyond along despite".split())
"""Function words a phrase starts with: the breaks Liberman and Church's "chinks 'n chunks" rule puts before them."""


def first_clause(buffer: str, min_words: int, phrase_words: int = 0) -> tuple[str, str] | None:
    """(clause, rest) at the first , ; or : that has at least `min_words` words before it and a word after it
    (so "1,000" never splits), else None: a voice reply speaks its first clause while the LLM writes the rest.
    With `phrase_words`: a buffer with no such mark whose first `phrase_words` words are written (a long first
    sentence) is cut before its last phrase-starting function word that has `min_words` words before it."""
    for mark in _CLAUSE.finditer(buffer):
        head = buffer[: mark.end()]
        if len(head.split()) >= min_words:
            return " ".join(head.split()), buffer[mark.end():]
    if not phrase_words:
        return None
    words = list(re.finditer(r"\S+(?=\s)", buffer))  # written words: the last one may still grow
    if len(words) < phrase_words:
        return None
    for word in reversed(words[max(min_words, 1) :]):
        if word.group().lower() in _PHRASE_STARTS:
            return " ".join(buffer[: word.start()].split()), buffer[word.start() - 1 :]
    return None
