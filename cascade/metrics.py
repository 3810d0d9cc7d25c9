"""Evaluation metrics: WER/CER (jiwer), the N-best oracles o_nb and o_cp, BLEU/chrF (sacrebleu).

`normalize` is the ONE English normaliser of the project: whisper-normalizer's
EnglishTextNormalizer (the Whisper paper's), so every WER in the project is
comparable. Corpus-level rates: total errors / total reference words.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from cascade.types import InvalidInput, NBest, Record

EPS = "<eps>"


@functools.lru_cache(maxsize=1)
def _normalizer():
    from whisper_normalizer.english import EnglishTextNormalizer

    return EnglishTextNormalizer()


def normalize(text: str) -> str:
    """Whisper-style English normalisation (case, punctuation, spelling, numbers), whitespace collapsed.

    Dots left standing alone are dropped: whisper-normalizer keeps an ellipsis ("...", "…") before a space or at
    the end as a "." word, which Whisper writes often enough to count as errors."""
    return " ".join(w for w in _normalizer()(text or "").split() if w.strip(".…"))


_norm = normalize


def _prep(refs: Sequence[str], hyps: Sequence[str], norm: bool) -> tuple[list[str], list[str]]:
    if len(refs) != len(hyps):
        raise InvalidInput(f"{len(refs)} references but {len(hyps)} hypotheses", param="hypotheses")
    f = normalize if norm else (lambda s: " ".join((s or "").split()))
    return [f(r) for r in refs], [f(h) for h in hyps]


class ErrorCounts(Record):
    """Word (or character) error counts over a corpus."""

    substitutions: int
    deletions: int
    insertions: int
    hits: int

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def ref_len(self) -> int:
        return self.substitutions + self.deletions + self.hits

    @property
    def rate(self) -> float:
        return self.errors / self.ref_len if self.ref_len else float(self.errors > 0)


def word_errors(refs: Sequence[str], hyps: Sequence[str], normalize: bool = True) -> ErrorCounts:
    """Corpus word error counts from jiwer (empty references count their hypothesis words as insertions)."""
    import jiwer

    r, h = _prep(refs, hyps, normalize)
    if not r:
        return ErrorCounts(substitutions=0, deletions=0, insertions=0, hits=0)
    out = jiwer.process_words(r, h)
    return ErrorCounts(substitutions=out.substitutions, deletions=out.deletions, insertions=out.insertions, hits=out.hits)


def wer(refs: Sequence[str], hyps: Sequence[str], normalize: bool = True) -> float:
    """Corpus WER (fraction, not percent); `normalize` applies the project's English normaliser first."""
    return word_errors(refs, hyps, normalize).rate


def cer(refs: Sequence[str], hyps: Sequence[str], normalize: bool = True) -> float:
    """Corpus character error rate via jiwer."""
    import jiwer

    r, h = _prep(refs, hyps, normalize)
    if not r:
        return 0.0
    out = jiwer.process_characters(r, h)
    ref_len = out.substitutions + out.deletions + out.hits
    errors = out.substitutions + out.deletions + out.insertions
    return errors / ref_len if ref_len else float(errors > 0)


def word_edits(a: Sequence[str], b: Sequence[str]) -> int:
    """Levenshtein distance between two word sequences (kaldialign)."""
    import kaldialign

    return int(kaldialign.edit_distance(list(a), list(b))["total"]) if (a or b) else 0


def edit_distance(a: str, b: str) -> int:
    """Word edit distance between two strings (split on whitespace)."""
    return word_edits(a.split(), b.split())


def _texts(nbest: NBest | Sequence[str]) -> list[str]:
    return list(nbest.texts if isinstance(nbest, NBest) else nbest)


def oracle_nbest(refs: Sequence[str], nbests: Sequence[NBest | Sequence[str]], normalize: bool = True) -> float:
    """o_nb: corpus WER when each utterance takes the hypothesis of its list closest to the reference."""
    picks = [oracle_nbest_pick(r, n, normalize) for r, n in zip(refs, nbests, strict=True)]
    return wer(refs, picks, normalize)


def oracle_nbest_pick(ref: str, nbest: NBest | Sequence[str], normalize: bool = True) -> str:
    texts = _texts(nbest) or [""]
    f = _norm if normalize else (lambda s: s)
    r = f(ref).split()
    return min(texts, key=lambda t: word_edits(r, f(t).split()))


def confusion_network(texts: Sequence[str]) -> list[list[tuple[str, ...]]]:
    """Slots of word-sequence alternatives, built by aligning every hypothesis to the first (kaldialign).

    Slot 2k+1 holds the alternatives for the pivot's k-th word (a substitution, the word itself, or ()
    for a deletion); slot 2k holds what hypotheses insert before it ((), or the inserted words).
    """
    import kaldialign

    pivot = texts[0].split() if texts else []
    slots: list[set[tuple[str, ...]]] = [set() for _ in range(2 * len(pivot) + 1)]
    for k, w in enumerate(pivot):
        slots[2 * k + 1].add((w,))
    for text in texts:
        ins: list[list[str]] = [[] for _ in range(len(pivot) + 1)]
        k = 0
        for a, b in kaldialign.align(pivot, text.split(), EPS):
            if a == EPS:
                ins[k].append(b)
            else:
                slots[2 * k + 1].add(() if b == EPS else (b,))
                k += 1
        for k, words in enumerate(ins):
            slots[2 * k].add(tuple(words))
    for s in slots[::2]:
        s.add(())
    return [sorted(s) for s in slots]


def oracle_composition_pick(ref: str, nbest: NBest | Sequence[str], normalize: bool = True) -> tuple[str, int]:
    """o_cp for one utterance: the path through the confusion network closest to the reference.

    Dynamic programming over (slot, reference position): each slot emits one of its alternatives
    (cost = edit distance to the reference words it covers) and reference words may be skipped
    (deletions). Returns the composed text and its word errors.
    """
    f = _norm if normalize else (lambda s: " ".join(s.split()))
    texts = [f(t) for t in _texts(nbest)] or [""]
    r = f(ref).split()
    slots = confusion_network(texts)
    inf = float("inf")
    # cost[s][j]: best cost having used slots[:s] and consumed r[:j]
    cost = [[inf] * (len(r) + 1) for _ in range(len(slots) + 1)]
    back: list[list[tuple[int, tuple[str, ...]] | None]] = [[None] * (len(r) + 1) for _ in range(len(slots) + 1)]
    cost[0][0] = 0
    for s in range(len(slots) + 1):
        for j in range(len(r) + 1):
            if j > 0 and cost[s][j - 1] + 1 < cost[s][j]:  # reference word deleted
                cost[s][j], back[s][j] = cost[s][j - 1] + 1, (j - 1, None)
            if s == len(slots) or cost[s][j] == inf:
                continue
            for alt in slots[s]:
                for k in range(j, min(len(r), j + len(alt)) + 1):
                    c = cost[s][j] + word_edits(alt, r[j:k])
                    if c < cost[s + 1][k]:
                        cost[s + 1][k], back[s + 1][k] = c, (j, alt)
    words: list[str] = []
    s, j = len(slots), len(r)
    while s > 0 or j > 0:
        prev_j, alt = back[s][j]
        if alt is None:
            j = prev_j
        else:
            words[:0] = alt
            s, j = s - 1, prev_j
    return " ".join(words), int(cost[len(slots)][len(r)])


def oracle_composition(refs: Sequence[str], nbests: Sequence[NBest | Sequence[str]], normalize: bool = True) -> float:
    """o_cp: corpus WER of the best composition of words from each N-best list (HyPoradise's compositional oracle).

    The list is turned into a confusion network by aligning every hypothesis to the 1-best; per slot
    the oracle takes the alternative that best matches the reference (see oracle_composition_pick).
    Always <= o_nb, since every hypothesis is one path through its network.
    """
    errors = ref_words = 0
    for ref, nb in zip(refs, nbests, strict=True):
        _, e = oracle_composition_pick(ref, nb, normalize)
        errors += e
        ref_words += len((_norm(ref) if normalize else ref).split())
    return errors / ref_words if ref_words else float(errors > 0)


def bleu(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """Corpus BLEU (sacrebleu defaults, 0-100)."""
    import sacrebleu

    return float(sacrebleu.corpus_bleu(list(hyps), [list(refs)]).score)


def chrf(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """Corpus chrF (sacrebleu defaults, 0-100)."""
    import sacrebleu

    return float(sacrebleu.corpus_chrf(list(hyps), [list(refs)]).score)


class MethodScore(Record):
    """WER of one method's outputs on one data set, raw and normalised (fractions)."""

    method: str
    wer: float
    wer_raw: float
    n: int


def score_methods(refs: Sequence[str], nbests: Sequence[NBest], outputs: dict[str, Sequence[str]]) -> list[MethodScore]:
    """1-best, each method's outputs and the two oracles (o_nb, o_cp) on the same references."""
    rows = [MethodScore(method="1-best", wer=wer(refs, [nb.texts[0] if nb.texts else "" for nb in nbests]),
                        wer_raw=wer(refs, [nb.texts[0] if nb.texts else "" for nb in nbests], normalize=False), n=len(refs))]
    for name, hyps in outputs.items():
        rows.append(MethodScore(method=name, wer=wer(refs, hyps), wer_raw=wer(refs, hyps, normalize=False), n=len(refs)))
    rows.append(MethodScore(method="o_nb", wer=oracle_nbest(refs, nbests), wer_raw=oracle_nbest(refs, nbests, normalize=False), n=len(refs)))
    rows.append(MethodScore(method="o_cp", wer=oracle_composition(refs, nbests),
                            wer_raw=oracle_composition(refs, nbests, normalize=False), n=len(refs)))
    return rows
