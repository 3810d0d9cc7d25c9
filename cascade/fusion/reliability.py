"""How reliable is each recogniser? Estimated from the joined corpus alone, without references.

Which vendor is best changes from corpus to corpus, so fusion cannot carry a per-vendor prior; it
reads the whole joined input once and estimates each system's word error rate from how the systems
disagree with one another (Sheng et al.'s "wisdom of crowds" / Dawid-Skene line of work estimates
annotator error rates from pairwise agreement under an independence assumption; here per error type):

- substitutions: for every pair of systems, the substitutions of their alignment are (about) the
  sum of their own substitutions, S_ij = s_i + s_j. With three or more systems this system of
  equations is solved by least squares (non-negative); with two, the count is split evenly.
- deletions and insertions: a word that system j has and system i lacks is i's deletion or j's
  insertion. Recognisers rarely invent words (on the shared LibriSpeech outputs deletions outnumber
  insertions up to 15 to 1), so every such word is counted against i, and i's deletions are the most
  that any other system shows it missing: d_i = max_j X_ji. The maximum, not a least-squares
  split, because the plain independence estimate fails exactly where it matters: two systems that
  drop the same words (Azure and Watson stop early on the same long utterances) agree with each
  other and would look best; one system that keeps those words exposes both.

The estimate is normalised by the utterances' longest output (a stand-in for the reference length).
It ranks the shared systems correctly in 10 of 11 subsets on dev and on test (the miss each time
is a near tie). A vote weight follows from each rate as in weighted majority voting for independent
voters, log((1 - e) / e) (Nitzan and Paroush 1982), tempered to its square root (weight_of: the systems' errors
are not independent): the weight ROVER's votes, the reranker's features and the abstention fallback (the
estimated best system) use.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Mapping, Sequence

import numpy as np

from cascade.types import FusionInput, InvalidInput, Record

MIN_WER, MAX_WER = 0.005, 0.45
"""Estimates are clipped here before they become weights (a rate of 0 would give an infinite weight)."""


class SystemReliability(Record):
    """One system's estimated (or given) error rate and the vote weight fusion gives it."""

    system: str
    wer: float
    """Estimated word error rate (fraction); for given weights, the rate that weight stands for."""
    weight: float
    substitutions: float | None = None
    deletions: float | None = None
    utterances: int = 0
    """Utterances the system has an output for."""


class Reliability(Record):
    """Every system's reliability, in the order the systems were given, and where it came from."""

    systems: tuple[SystemReliability, ...]
    method: str
    """'pairwise' (estimated from the corpus), 'given' (--weights) or 'equal' (too little to estimate)."""
    utterances: int = 0
    fallback: str = "best"
    """What fusion falls back to: 'best' (the system estimated best) or 'rover' (the weighted vote, where it is
    estimated better than that system; see choose_fallback)."""
    rover_wer: float | None = None
    """The weighted vote's output scored as one more system (a ranking figure: it agrees with its own voters, so
    it reads low; only its order against the best system is used)."""

    @property
    def weights(self) -> dict[str, float]:
        return {s.system: s.weight for s in self.systems}

    @property
    def best(self) -> str:
        """The system estimated best (the highest weight; the first given on ties)."""
        return max(self.systems, key=lambda s: (s.weight, -self.systems.index(s))).system

    def describe(self) -> str:
        """One line for the CLI: each system's estimated WER and weight, the estimated best marked."""
        best = self.best
        parts = [f"{s.system}{' (best)' if s.system == best else ''} {100 * s.wer:.1f} % / w {s.weight:.2f}"
                 for s in self.systems]
        what = {"pairwise": f"estimated from {self.utterances} utterances without references",
                "given": "given by --weights", "equal": "equal (too few systems or utterances to estimate)"}[self.method]
        fallback = (f"; fallback: weighted ROVER (ranked above {best})" if self.fallback == "rover"
                    else f"; fallback: {best}")
        return f"system reliability (WER / vote weight), {what}: " + ", ".join(parts) + fallback


def weight_of(wer: float) -> float:
    """Vote weight of a system with error rate `wer`: the square root of its log-odds of being right (clipped to a
    finite range). Plain log-odds (optimal for independent voters) let one system outvote two whose errors the
    estimate overstates; on dev every power from 0 (count the votes, break ties by reliability) to 0.5 fuses alike,
    and log-odds itself loses 1.9 points summed over the dev subsets (speaker halves); 0.5 keeps a system far better
    than the rest able to outvote two poor ones (the synthetic check)."""
    e = min(max(wer, MIN_WER), MAX_WER)
    return math.sqrt(math.log((1 - e) / e))


def wer_of(weight: float) -> float:
    """The error rate a vote weight stands for (inverse of weight_of)."""
    return 1.0 / (1.0 + math.exp(weight * abs(weight)))


def vote_weights(weights: Sequence[float], best_bonus: float = 0.0) -> list[float]:
    """The weights ROVER's votes count with: each system's weight, and `best_bonus` more for the highest (the first
    such). Where two pairs of systems split a slot, their summed weights differ by less than the estimates' noise;
    the system the estimate ranks first, the most robust thing it finds, then decides (FusionOptions.best_bonus)."""
    out = [float(w) for w in weights]
    if out and best_bonus:
        out[out.index(max(out))] += best_bonus
    return out


def _words(text: str, normalize: bool) -> list[str]:
    return list(_cached_words(text, normalize))


@functools.lru_cache(maxsize=1 << 16)
def _cached_words(text: str, normalize: bool) -> tuple[str, ...]:
    """Normalised words (the whisper normaliser is slow, and the estimates read every text several times)."""
    if normalize:
        from cascade.metrics import normalize as norm

        return tuple(norm(text).split())
    from cascade.fusion.rover import tokens

    return tuple(tokens(text))


def estimate(inputs: Sequence[FusionInput], systems: Sequence[str] | None = None, *,
             normalize: bool = True) -> Reliability:
    """Estimate every system's WER from the joined corpus (see the module doc); no reference is read."""
    import kaldialign

    names = list(systems) if systems is not None else list(dict.fromkeys(o.system for i in inputs for o in i.outputs))
    k = len(names)
    if k == 0:
        raise InvalidInput("no systems to estimate reliability for", param="join")
    index = {n: i for i, n in enumerate(names)}
    subs, extra = np.zeros((k, k)), np.zeros((k, k))
    present, length = np.zeros(k, dtype=int), 0.0
    for inp in inputs:
        words: dict[int, list[str]] = {}
        for o in inp.outputs:
            if o.system in index:
                words[index[o.system]] = _words(o.text, normalize)
        if len(words) < 2:
            continue
        for i in words:
            present[i] += 1
        length += max(len(w) for w in words.values())
        for i, j in itertools.combinations(sorted(words), 2):
            d = kaldialign.edit_distance(words[i], words[j])
            subs[i, j] = subs[j, i] = subs[i, j] + d["sub"]
            extra[i, j] += d["del"]  # words i has that j lacks
            extra[j, i] += d["ins"]  # words j has that i lacks
    n_utts = int(max(present.max(initial=0), 0))
    if k < 2 or length == 0:
        return equal(names, n_utts)
    sub = _split_substitutions(subs)
    dele = extra.max(axis=0)  # the most words any other system shows j missing
    wers = (sub + dele) / length
    rows = tuple(SystemReliability(system=n, wer=round(float(wers[i]), 5), weight=round(weight_of(float(wers[i])), 4),
                                   substitutions=round(float(sub[i] / length), 5),
                                   deletions=round(float(dele[i] / length), 5), utterances=int(present[i]))
                 for i, n in enumerate(names))
    return Reliability(systems=rows, method="pairwise", utterances=n_utts)


def _split_substitutions(subs: np.ndarray) -> np.ndarray:
    """Per-system substitutions from pairwise counts S_ij = s_i + s_j: least squares (k >= 3), a system solved
    below zero fixed at zero and the rest solved again."""
    k = len(subs)
    if k == 2:
        return np.full(2, subs[0, 1] / 2)
    pairs = list(itertools.combinations(range(k), 2))
    a = np.zeros((len(pairs), k))
    for row, (i, j) in enumerate(pairs):
        a[row, i] = a[row, j] = 1.0
    y = np.array([subs[i, j] for i, j in pairs])
    free = np.ones(k, dtype=bool)
    out = np.zeros(k)
    for _ in range(k):
        out = np.zeros(k)
        out[free] = np.linalg.lstsq(a[:, free], y, rcond=None)[0]
        if (out >= 0).all():
            break
        free &= out > 0
    return np.clip(out, 0.0, None)


def equal(names: Sequence[str], utterances: int = 0) -> Reliability:
    """Every system weighted 1 (plain majority vote): nothing to estimate from."""
    return Reliability(systems=tuple(SystemReliability(system=n, wer=round(wer_of(1.0), 5), weight=1.0) for n in names),
                       method="equal", utterances=utterances)


def given(weights: Mapping[str, float], names: Sequence[str]) -> Reliability:
    """Reliability from user weights (--weights); every system must have one."""
    missing = [n for n in names if n not in weights]
    unknown = [n for n in weights if n not in names]
    if missing or unknown:
        what = f"no weight for {', '.join(missing)}" if missing else f"no system named {', '.join(unknown)}"
        raise InvalidInput(f"--weights: {what} (systems: {', '.join(names)})", param="weights")
    bad = [n for n in names if not math.isfinite(weights[n]) or weights[n] <= 0]
    if bad:
        raise InvalidInput(f"--weights: the weight of {bad[0]} must be a positive number", param="weights")
    return Reliability(systems=tuple(SystemReliability(system=n, wer=round(wer_of(weights[n]), 5), weight=weights[n])
                                     for n in names), method="given")


def parse_weights(spec: str) -> dict[str, float]:
    """'google=2,azure=1' -> {'google': 2.0, 'azure': 1.0}; a one-line error for anything else."""
    out: dict[str, float] = {}
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        name, sep, value = part.rpartition("=")
        try:
            if not sep or not name.strip():
                raise ValueError
            out[name.strip()] = float(value)
        except ValueError:
            raise InvalidInput(f"--weights: expected NAME=NUMBER[,NAME=NUMBER...], got {part!r}", param="weights") from None
    if not out:
        raise InvalidInput("--weights: expected NAME=NUMBER[,NAME=NUMBER...]", param="weights")
    return out


ROVER_RATIO = 0.75
"""choose_fallback keeps the weighted vote only where its estimate is below this share of the best system's. As a
pseudo-system the vote agrees with its own voters, so its estimate reads low: on dev, where the vote beat the best
system (every subset of >= 3 real systems, each speaker half) it read 0.20-0.47 of it, and 0.37-0.67 in the
synthetic cases where it won by points; where it lost (Watson intact, Google and Azure degraded: two poor systems
that agree outvote it) 0.85-0.96, and where it won by a few tenths 0.91-0.95."""

FALLBACK_SAMPLE = 400
"""Utterances (evenly spaced) on which choose_fallback runs ROVER: a corpus statistic, and ROVER's alignment
is the costly part of fusion (pure Python)."""


def choose_fallback(inputs: Sequence[FusionInput], rel: Reliability, *, normalize: bool = True,
                    sample: int = FALLBACK_SAMPLE, tail: float | None = None, best_bonus: float | None = None) -> Reliability:
    """Decide what fusion falls back to: the weighted ROVER output joins the systems as one more (pseudo) system
    and everything is estimated again (on at most `sample` utterances, evenly spaced); ROVER is the fallback where
    it ranks clearly above the best system there (ROVER_RATIO). `tail`, `best_bonus`: the vote as fusion casts it
    (default: FusionOptions' tail_vote and best_bonus).

    On the shared LibriSpeech dev outputs this picks the weighted vote for every subset of three or four systems,
    where it is better; in the synthetic cases it picks the best system where that one alone was left intact."""
    from cascade.config import FusionOptions
    from cascade.fusion.rover import rover
    from cascade.types import SystemText

    defaults = FusionOptions()
    tail = defaults.tail_vote if tail is None else tail
    best_bonus = defaults.best_bonus if best_bonus is None else best_bonus
    names = [s.system for s in rel.systems]
    if len(names) < 3 or rel.method == "equal":
        return rel  # with two systems the weighted vote is the better system's text
    weights = rel.weights
    pseudo = "(rover)"
    while pseudo in names:
        pseudo += "'"
    extended = []
    for inp in inputs[:: max(1, len(inputs) // sample)]:
        outs = [o for o in inp.outputs if o.system in weights]
        if len(outs) < 2:
            continue
        votes = vote_weights([weights[o.system] for o in outs], best_bonus)
        voted = rover([_words(o.text, normalize) for o in outs], votes, tail=tail).text
        extended.append(inp.model_copy(update={"outputs": (*outs, SystemText(system=pseudo, text=voted))}))
    joint = {s.system: s.wer for s in estimate(extended, [*names, pseudo], normalize=normalize).systems}
    rover_wer = joint[pseudo]
    fallback = "rover" if rover_wer < ROVER_RATIO * joint[rel.best] else "best"
    return rel.model_copy(update={"fallback": fallback, "rover_wer": round(rover_wer, 5)})
