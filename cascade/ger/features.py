"""Per-hypothesis features for the N-best reranker, relative to the 1-best, and the LLM-score cache.

Every feature of hypothesis i is a difference (or ratio) against hypothesis 0, so the 1-best's
feature row is all zeros and a linear model's score of the 1-best is 0: a positive score means
"better than the 1-best", which is what the abstention margin compares against.

Input style matters more than anything: SmolLM2 scores cased, punctuated Whisper output sensibly
and lower-case unpunctuated (HyPoradise/Kaldi-style) text badly, and the two kinds of list come from
very different recognisers, so the reranker keeps one weight vector and one margin per style.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from cascade import metrics
from cascade.ger.domain_lm import DomainScore, in_domain
from cascade.llm.base import LlmBackend, TextScore
from cascade.types import NBest

Style = Literal["plain", "cased", "domain"]
_SENTENCE_END = re.compile(r"\w[.?!]\s*$")

FEATURES = (
    "rank",        # i (0 for the 1-best)
    "am_avg",      # Δ mean token log-prob of the recogniser (0 where the list has no AM scores)
    "am_sum",      # Δ summed token log-prob / 10
    "am_rank",     # i where the list has AM scores (lets the rank weigh less when the AM speaks)
    "lm_tok",      # Δ LLM log-prob per token
    "lm_sum",      # Δ LLM total log-prob / 10
    "words",       # Δ word count
    "len_ratio",   # log(words_i / words_0)
    "support",     # Δ mean word overlap (1 - normalised edit distance) with the other hypotheses
    "votes",       # Δ fraction of the list normalising to the same words
    "edits",       # word edits from the 1-best (normalised)
    "lm_tok_am",   # Δ LLM log-prob per token where the list has AM scores (the LLM then only refines the AM)
    "lm_words_am", # Δ LLM log-prob per word, the same lists
    "lm_x_fluency",  # Δ LLM log-prob per token x how fluent the 1-best already reads to the LLM (its own per-token log-prob)
    "lm_x_length",   # Δ LLM log-prob per token x log(words of the 1-best): the LLM judges long lists better
    "dlm_sum",       # Δ domain n-gram log-prob / 10 on in-domain lists (0 without a domain LM; cascade.ger.domain_lm)
    "dlm_word",      # Δ domain n-gram log-prob per word, the same lists
    "lm_x_doubt",    # Δ LLM log-prob per token x how unsure the recogniser is of its 1-best (minus its mean token log-prob)
    "am_x_doubt",    # Δ mean token log-prob of the recogniser x the same doubt
    "dropped",       # share of the 1-best's words a shorter hypothesis leaves out (0 for a longer one)
    "dropped_x_sure",  # the same x how sure the recogniser is of its 1-best (exp of its mean token log-prob)
    "am2_avg",       # Δ mean token log-prob under a second recogniser, teacher-forced (Hypothesis.second_score; 0 where
                     # a hypothesis of the list has none: lists without audio, such as HyPoradise's)
    "am2_sum",       # Δ summed token log-prob under the second recogniser / 10, the same lists
    "am2_x_doubt",   # Δ mean token log-prob under the second recogniser x the first's doubt in its 1-best
)
SECOND_FEATURES = frozenset(f for f in FEATURES if f.startswith("am2"))
"""The features that need a second recogniser's score of every hypothesis (the audio, at correction time)."""


def detect_style(texts: Sequence[str]) -> Style:
    """"cased" when a hypothesis has a capital letter or ends a sentence with . ? ! (a recogniser that writes case
    and punctuation, like Whisper), else "plain" (lower-case HyPoradise/Kaldi style, whose number renderings
    may still hold "," or "$")."""
    cased = any(ch.isupper() for t in texts for ch in t) or any(_SENTENCE_END.search(t) for t in texts)
    return "cased" if cased else "plain"


def distinct(nbest: NBest, n: int | None = None) -> NBest:
    """The hypotheses that differ after normalisation (first kept, rank order), at most n."""
    seen: set[str] = set()
    keep = []
    for h in nbest.hypotheses:
        key = metrics.normalize(h.text)
        if key in seen and keep:
            continue
        seen.add(key)
        keep.append(h)
    return nbest.model_copy(update={"hypotheses": tuple(keep[:n] if n else keep)})


class LmCache:
    """LLM log-probs of texts, kept in CASCADE_HOME/rerank/lm-<model>.jsonl so re-training is fast.

    Only texts without a prefix or adapter are cached (that is all the reranker scores).
    """

    def __init__(self, backend: LlmBackend, home: Path | None):
        self.backend = backend
        self.scores: dict[str, TextScore] = {}
        self.path = None
        if home is not None:
            slug = hashlib.sha1(str(getattr(backend, "name", "llm")).encode()).hexdigest()[:10]
            self.path = Path(home) / "rerank" / f"lm-{slug}.jsonl"
            if self.path.exists():
                for line in self.path.read_text(encoding="utf-8").splitlines():
                    try:
                        rec = json.loads(line)
                        self.scores[rec["t"]] = TextScore(logprob=rec["lp"], n_tokens=rec["n"])
                    except (ValueError, KeyError):
                        continue  # a torn last line from an interrupted run

    def get(self, texts: Sequence[str], chunk: int = 256) -> dict[str, TextScore]:
        """Scores of the distinct non-empty texts, scoring (and caching) only the unseen ones."""
        unique = list(dict.fromkeys(t for t in texts if t.strip()))
        todo = [t for t in unique if t not in self.scores]
        for b in range(0, len(todo), chunk):
            part = todo[b : b + chunk]
            got = self.backend.score(part)
            self.scores.update(zip(part, got))
            if self.path is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                lines = "".join(json.dumps({"t": t, "lp": s.logprob, "n": s.n_tokens}, ensure_ascii=False) + "\n" for t, s in zip(part, got))
                with self.path.open("a", encoding="utf-8") as sink:  # one write: other processes may append too
                    sink.write(lines)
        return {t: self.scores[t] for t in unique}


class CachedBackend:
    """A backend whose plain `score` calls (no prefix, no adapter) go through an LmCache; the rest passes through.

    For benchmarks and training: every method sees the very scores the live backend gives, computed once."""

    def __init__(self, cache: LmCache):
        self.cache, self.inner = cache, cache.backend
        self.name = getattr(self.inner, "name", "llm")

    def __getattr__(self, item: str):
        return getattr(self.inner, item)

    def score(self, texts: Sequence[str], *, adapter: str | None = None, prefix: str = "") -> list[TextScore]:
        if adapter or prefix:
            return self.inner.score(texts, adapter=adapter, prefix=prefix)
        got = self.cache.get(texts)
        return [got.get(t, TextScore(logprob=0.0, n_tokens=0)) for t in texts]


def _am(h, n_tok: int) -> tuple[float, float] | None:
    if h.avg_logprob is None and h.am_score is None:
        return None
    if h.avg_logprob is not None:
        avg = h.avg_logprob
        total = h.am_score if h.am_score is not None else avg * n_tok
    else:
        total = h.am_score
        avg = total / max(len(h.tokens) if h.tokens else n_tok, 1)
    return avg, total


def list_features(nbest: NBest, lm: dict[str, TextScore] | None,
                  domain: dict[str, DomainScore] | None = None, style: Style | None = None) -> tuple[np.ndarray, Style]:
    """Feature matrix [n_hypotheses, len(FEATURES)] of one list, each row relative to the 1-best, and its style.

    `domain`: the texts' scores under a domain n-gram LM (a domain-adapted reranker); without it those features are 0.
    With it, a list that reads as in the domain (domain_lm.in_domain) is of style "domain": its own weights and
    margin, so in-domain evidence never has to be traded against the other domains' no-worse margin; the domain
    features are non-zero on those lists only. `style`: the list's style when the caller already has it."""
    style = style or list_style(nbest, domain)
    hyps = nbest.hypotheses
    norm = [metrics.normalize(h.text).split() for h in hyps]
    n = len(hyps)
    lm = lm or {}
    raw = np.zeros((n, 10))
    am_known = True
    for i, h in enumerate(hyps):
        s = lm.get(h.text)
        n_tok = s.n_tokens if s is not None else max(len(h.text) // 4, 1)
        am = _am(h, n_tok)
        am_known &= am is not None
        words = max(len(norm[i]), 1)
        overlap = [1 - min(metrics.word_edits(norm[j], norm[i]) / max(len(norm[j]), 1), 1.0) for j in range(n) if j != i]
        raw[i] = (
            am[0] if am else 0.0,
            (am[1] if am else 0.0) / 10,
            s.logprob / max(s.n_tokens, 1) if s else -20.0,
            (s.logprob if s else -200.0) / 10,
            words,
            math.log(words),
            float(np.mean(overlap)) if overlap else 1.0,
            sum(norm[j] == norm[i] for j in range(n)) / n,
            metrics.word_edits(norm[0], norm[i]),
            (s.logprob if s else -200.0) / words,
        )
    rel = raw - raw[0]
    am2 = _second(hyps)
    dropped = np.clip(-rel[:, 4], 0.0, None) / raw[0, 4]
    rank = np.arange(n, dtype=float)
    am_on = 1.0 if am_known else 0.0
    feats = np.stack([rank, rel[:, 0] * am_on, rel[:, 1] * am_on, rank * am_on, rel[:, 2], rel[:, 3],
                      rel[:, 4], rel[:, 5], rel[:, 6], rel[:, 7], raw[:, 8], rel[:, 2] * am_on, rel[:, 9] * am_on,
                      rel[:, 2] * (raw[0, 2] + 4.0), rel[:, 2] * raw[0, 5],
                      *_domain_columns(hyps, domain if style == "domain" else None),
                      rel[:, 2] * -raw[0, 0] * am_on, rel[:, 0] * -raw[0, 0] * am_on,
                      dropped, dropped * math.exp(raw[0, 0]) * am_on,
                      am2[:, 0], am2[:, 1], am2[:, 0] * -raw[0, 0] * am_on], axis=1)
    return feats, style


def _second(hyps) -> np.ndarray:
    """[n, 2]: (Δ mean, Δ sum / 10) of the second recogniser's token log-probs against the 1-best; zeros unless every
    hypothesis with text has its score (an empty one, never chosen, gets the 1-best's)."""
    n = len(hyps)
    known = [h.second_score is not None and h.second_tokens for h in hyps]
    if not known[0] or not all(k or not h.text.strip() for h, k in zip(hyps, known)):
        return np.zeros((n, 2))
    vals = np.array([(h.second_score / h.second_tokens, h.second_score / 10) if k else (hyps[0].second_score / hyps[0].second_tokens,
                      hyps[0].second_score / 10) for h, k in zip(hyps, known)])
    return vals - vals[0]


def uses_second(weights: Sequence[float], features: Sequence[str]) -> bool:
    """Whether a weight vector reads any second-recogniser feature (a non-zero weight on one)."""
    return any(w != 0.0 and f in SECOND_FEATURES for w, f in zip(weights, features))


def list_style(nbest: NBest, domain: dict[str, DomainScore] | None = None) -> Style:
    """The detected style, or "domain" where a domain model's LM reads the list as in its domain (in_domain)."""
    if domain and nbest.hypotheses and in_domain([domain.get(t) for t in nbest.texts]):
        return "domain"
    return detect_style(nbest.texts)


def _domain_columns(hyps, domain: dict[str, DomainScore] | None) -> tuple[np.ndarray, np.ndarray]:
    """(Δ log-prob / 10, Δ log-prob per word) under the domain LM (zeros without one)."""
    n = len(hyps)
    if not domain:
        return np.zeros(n), np.zeros(n)
    got = [domain.get(h.text) for h in hyps]
    lp = np.array([s.logprob if s else 0.0 for s in got])
    per_word = np.array([s.logprob / max(s.words, 1) if s else 0.0 for s in got])
    return (lp - lp[0]) / 10, per_word - per_word[0]


def word_errors(reference: str, nbest: NBest) -> np.ndarray:
    """Word errors of each hypothesis against the reference (normalised text): the MWER target."""
    ref = metrics.normalize(reference).split()
    return np.array([metrics.word_edits(ref, metrics.normalize(h.text).split()) for h in nbest.hypotheses], dtype=float)
