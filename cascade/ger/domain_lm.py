"""An in-domain n-gram LM built from a user's own text: the reranker's domain-adaptation feature.

A 135M general LLM does not know that "a list of flights from" is what flight-booking users say; a
Kneser-Ney trigram (nltk) fitted on a few thousand in-domain sentences does, in milliseconds per
hypothesis. It is stored as its normalised sentences (`domain.txt` beside a reranker's model.json)
and refitted when loaded (about 2 s for 4,000 sentences), so nothing pickled is ever read.

A domain model scores only lists that read as its domain (`in_domain`) with its domain weights
(style "domain"); every other list gets the general weights, so it keeps its hands off other
domains' text. The two thresholds were read off dev (HyPoradise dev, ATIS train text): a hypothesis
>= 90 % in vocabulary in 94 % of the ATIS lists against 1-6 % of the other five sets' lists; the
best hypothesis's per-word log-prob is above -7.8 in 95 % of ATIS lists and below -8 in most of the
other sets' lists that pass the first test (short conversational turns such as "i think so too").
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path

from cascade import metrics
from cascade.types import InvalidInput, Record

ORDER = 3
MIN_IN_VOCAB = 0.9
MIN_WORD_LOGPROB = -8.0
FLOOR = -16.0
"""log-prob of a word the LM gives no mass (nltk's unknown-word path can return 0)."""


class DomainScore(Record):
    """One text under the domain LM."""

    logprob: float
    words: int
    in_vocab: float
    """Fraction of the text's words seen in the domain text."""


class DomainLm:
    """Interpolated Kneser-Ney n-gram over normalised words, scores memoised per n-gram."""

    def __init__(self, sentences: Iterable[str], order: int = ORDER, *, normalized: bool = False):
        from nltk.lm import KneserNeyInterpolated
        from nltk.lm.preprocessing import padded_everygram_pipeline

        norm = (lambda t: " ".join(t.split())) if normalized else metrics.normalize  # normalising twice is not idempotent
        self.sentences = sorted({s for s in map(norm, sentences) if s})
        if len(self.sentences) < 10:
            raise InvalidInput(f"too little domain text for an n-gram LM ({len(self.sentences)} distinct sentences; need >= 10)",
                               param="domain_text")
        self.order = order
        train, vocab = padded_everygram_pipeline(order, [s.split() for s in self.sentences])
        self.lm = KneserNeyInterpolated(order)
        self.lm.fit(train, vocab)
        self.vocab = {w for s in self.sentences for w in s.split()}
        self._memo: dict[tuple[str, ...], float] = {}

    @classmethod
    def from_file(cls, path: Path) -> DomainLm:
        return cls(Path(path).read_text(encoding="utf-8").splitlines(), normalized=True)

    def save(self, path: Path) -> Path:
        Path(path).write_text("\n".join(self.sentences) + "\n", encoding="utf-8")
        return Path(path)

    def _logprob(self, word: str, context: tuple[str, ...]) -> float:
        key = (*context, word)
        if key not in self._memo:
            p = self.lm.score(word if word in self.vocab else "<UNK>", list(context))
            self._memo[key] = math.log(p) if p > 0 else FLOOR
        return self._memo[key]

    def score(self, text: str) -> DomainScore:
        words = metrics.normalize(text).split()
        padded = ["<s>"] * (self.order - 1) + words + ["</s>"]
        lp = sum(self._logprob(padded[i], tuple(padded[i - self.order + 1 : i])) for i in range(self.order - 1, len(padded)))
        iv = sum(w in self.vocab for w in words) / len(words) if words else 0.0
        return DomainScore(logprob=lp, words=len(words), in_vocab=iv)

    def scores(self, texts: Iterable[str]) -> dict[str, DomainScore]:
        return {t: self.score(t) for t in dict.fromkeys(texts)}


def in_domain(scores: Sequence[DomainScore | None]) -> bool:
    """Whether a list reads as the domain's: some hypothesis >= MIN_IN_VOCAB in the vocabulary and one at least
    MIN_WORD_LOGPROB per word. Any hypothesis, not the 1-best: a misrecognised word is what drags a 1-best out."""
    got = [s for s in scores if s is not None and s.words]
    return bool(got) and max(s.in_vocab for s in got) >= MIN_IN_VOCAB and max(s.logprob / s.words for s in got) >= MIN_WORD_LOGPROB
