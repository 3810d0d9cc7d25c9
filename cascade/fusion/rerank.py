"""Fusion that knows which system to trust: rerank ROVER's output and each system's text against a fallback.

ROVER's majority vote is wrong where one system is far better than the rest: the others outvote it
word by word (on the shared LibriSpeech outputs without DeepSpeech, ROVER 15.6 % against Google's 10.9 %).
So each corpus is first read whole to estimate every system's reliability without references
(cascade.fusion.reliability): vote weights, and the fallback (the system estimated best, or the weighted
ROVER output where the estimate ranks it above that system). Each utterance's candidates (ROVER's output,
every distinct system text) are scored by a linear model over features that mean the same on any corpus
(weighted support and similarity, length against the median, how contested the vote was, the estimated WER
of the candidate's author, how far the best system stands from the others, optionally the LLM's log-prob)
and never by who wrote it: which vendor is best changes from corpus to corpus, so there is no per-vendor
prior. Every row is relative to the fallback's row, so the fallback scores 0 and another candidate is returned
only when it beats it by the dev-chosen margin (otherwise: "abstained", the fallback's text).

Training reuses the N-best reranker's MWER machinery (cascade.ger.rerank: fit, out-of-fold choice of
L2 and margin so that no dev group gets worse than its fallback); a group is one subset of systems (pairs,
triples, all four), so dev teaches both the case where ROVER is right and the case where one system should
be trusted.
"""

from __future__ import annotations

import functools
import math
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cascade.ger import rerank as nbest_rerank
from cascade.ger.features import LmCache
from cascade.llm.base import TextScore
from cascade.metrics import normalize, word_edits
from cascade.types import CandidateScore, Correction, InvalidInput, Record

_Prepared = Any
"""cascade.fusion.fuse._Prepared (one utterance: systems' words, weights, ROVER's words, candidates ROVER first,
the fallback's index); not imported, since fuse imports this module."""

FEATURES = (
    "rover",       # 1 for ROVER's output (when no system wrote exactly it)
    "support",     # weighted share of the systems that wrote exactly this candidate
    "similarity",  # weighted mean word similarity (1 - edits / longer length) to the systems that wrote something else
    "len_ratio",   # log((words + 1) / (median words of the systems + 1))
    "weak_vote",   # rover x fraction of ROVER's slots won without a strict majority (a contested vote)
    "est_wer",     # estimated WER (x10) of the most reliable system that wrote it (ROVER's output: the best system's)
    "rover_gap",   # rover x (the best system's estimated WER / the others' mean): small where one system is far better
    "rover_second",  # rover x (the best system's estimated WER / the second best's): near 1 where two strong systems vote
    "n_systems",   # rover x log(number of systems): more voters, a better vote
    "lm_tok",      # LLM log-prob per token (0 without an LLM: no LM scores given)
    "lm_sum",      # LLM total log-prob / 10
)
DEFAULT_MODEL = "fusion-mwer"
L2S = (1e-3, 1e-2, 1e-1)
STYLE = "fusion"
"""The one 'style' key of a fusion model's per-style weights/margins (the N-best reranker keys by input style)."""


def _similarity(a: Sequence[str], b: Sequence[str]) -> float:
    return 1.0 - word_edits(a, b) / max(len(a), len(b), 1)


def contested(systems: Sequence[Sequence[str]], weights: Sequence[float] | None = None, tail: float = 1.0) -> float:
    """Fraction of ROVER's slots whose winner (a word or a null) has no strict majority of the (weighted) votes."""
    from cascade.fusion.rover import rover

    return rover(systems, weights, tail=tail).weak


def order(p: _Prepared) -> list[int]:
    """Candidate indices with the fallback (p.base: the estimated best system's text, or ROVER's) first."""
    return [p.base] + [k for k in range(len(p.candidates)) if k != p.base]


def candidate_features(p: _Prepared, lm: dict[str, TextScore]) -> np.ndarray:
    """[candidates in `order(p)`, FEATURES] for one utterance, each row minus the fallback's (row 0), so it scores 0."""
    from cascade.fusion.reliability import wer_of

    keep = [k for k, s in enumerate(p.systems) if s] or list(range(len(p.systems)))
    systems = [p.systems[k] for k in keep]
    weights = [1.0] * len(keep) if p.weights is None else [p.weights[k] for k in keep]
    wers = [wer_of(w) for w in weights]
    total = sum(weights) or 1.0
    median = statistics.median(len(s) for s in systems)
    votes = getattr(p, "votes", None)
    weak = contested(systems, None if votes is None else [votes[k] for k in keep], getattr(p, "tail_vote", 1.0))
    best = min(range(len(keep)), key=lambda k: (wers[k], k))
    others = [e for k, e in enumerate(wers) if k != best]
    gap = wers[best] / (sum(others) / len(others)) if others and sum(others) > 0 else 1.0
    second = wers[best] / min(others) if others and min(others) > 0 else 1.0
    rows = []
    for k in order(p):
        cand = p.candidates[k]
        authors = [i for i, s in enumerate(systems) if s == cand]
        is_rover = 1.0 if not authors else 0.0
        rest = [i for i in range(len(systems)) if i not in authors]
        rest_w = sum(weights[i] for i in rest)
        score = lm.get(" ".join(cand))
        rows.append((
            is_rover,
            sum(weights[i] for i in authors) / total,
            sum(weights[i] * _similarity(cand, systems[i]) for i in rest) / rest_w if rest and rest_w > 0 else 1.0,
            math.log((len(cand) + 1) / (median + 1)),
            is_rover * weak,
            10 * (min(wers[i] for i in authors) if authors else wers[best]),
            is_rover * gap,
            is_rover * second,
            is_rover * math.log(len(systems)),
            score.logprob / max(score.n_tokens, 1) if score else -20.0,
            (score.logprob if score else -200.0) / 10,
        ))
    x = np.array(rows, dtype=float)
    return x - x[0]


def uses_lm(model: nbest_rerank.RerankModel) -> bool:
    """Whether the model weighs the LLM features at all (a model trained without LM scores needs no LLM)."""
    w = model.weights.get(STYLE, ())
    return any(abs(w[FEATURES.index(f)]) > 0 for f in ("lm_tok", "lm_sum")) if w else False


def lm_scores(prepared: Sequence[_Prepared], backend: Any, home: Path | None = None) -> dict[str, TextScore]:
    """LLM scores of every candidate text (one batched call; cached in CASCADE_HOME when `home` is given)."""
    texts = [" ".join(c) for p in prepared for c in p.candidates]
    if home is not None:
        return LmCache(backend, home).get(texts)
    from cascade.ger.rescore import score_texts

    return score_texts(texts, backend)


# --------------------------------------------------------------------------- the model


@functools.lru_cache(maxsize=4)
def load_model(name: str = DEFAULT_MODEL) -> nbest_rerank.RerankModel:
    """A trained fusion reranker: shipped name (cascade/rerankers/<name>) or a directory with model.json."""
    path = nbest_rerank.resolve_model(name)
    try:
        model = nbest_rerank.RerankModel.model_validate_json(path.read_text())
    except ValueError as exc:
        raise InvalidInput(f"{path} is not a reranker model: {str(exc).splitlines()[0]}", param="reranker") from None
    if tuple(model.features) != FEATURES or len(model.weights.get(STYLE, ())) != len(FEATURES):
        raise InvalidInput(f"{path} is not a fusion reranker (its features are not {', '.join(FEATURES)})",
                           param="reranker")
    return model


def pick(p: _Prepared, feats: np.ndarray, model: nbest_rerank.RerankModel, margin: float | None) -> Correction:
    """The fallback's text (the estimated best system's, or ROVER's without weights) unless another candidate
    scores more than the margin above it."""
    scores = feats @ np.array(model.weights[STYLE])
    scores[0] = 0.0
    m = model.margins.get(STYLE, float("inf")) if margin is None else margin
    chosen_row, top_row = nbest_rerank.decide(scores, m)
    rows = order(p)
    chosen, top = rows[chosen_row], rows[top_row]
    by_candidate = dict(zip(rows, scores))
    texts = [" ".join(c) for c in p.candidates]
    first = " ".join(p.systems[0]) if p.systems else ""
    system = next((i for i, s in enumerate(p.systems) if s == p.candidates[chosen]), None)
    cands = tuple(CandidateScore(text=t, combined=round(float(by_candidate[k]), 4), source="rover" if k == 0 else "hypothesis")
                  for k, t in enumerate(texts))
    return Correction(text=texts[chosen], method="fusion", chosen=system, changed=texts[chosen] != first, scores=cands,
                      fallback_reason="abstained" if top != chosen else None,
                      guards={"picked": p.sources[chosen], "base": p.sources[p.base], "top": p.sources[top],
                              "top_gain": round(float(scores[top_row]), 4), "margin": m, "reranker": model.name})


def rerank(prepared: Sequence[_Prepared], backend: Any, *, model: str = DEFAULT_MODEL,
           margin: float | None = None) -> list[Correction]:
    """Fuse a batch of prepared utterances with the trained reranker (one LLM scoring call for all, if the
    model uses LM features)."""
    trained = load_model(model)
    lm = lm_scores(prepared, backend) if uses_lm(trained) and backend is not None else {}
    return [pick(p, candidate_features(p, lm), trained, margin) for p in prepared]


# --------------------------------------------------------------------------- training


def list_data(group: str, p: _Prepared, lm: dict[str, TextScore]) -> nbest_rerank.ListData:
    """One utterance as MWER training data: features, and each candidate's word errors against the reference."""
    if p.inp.reference is None:
        raise InvalidInput(f"utterance {p.inp.id} has no reference to train on", param="input")
    ref = normalize(p.inp.reference).split()
    feats = candidate_features(p, lm)
    return nbest_rerank.ListData(group=group, style=STYLE, feats=tuple(map(tuple, feats.tolist())),
                                 errors=tuple(float(word_edits(ref, p.candidates[k])) for k in order(p)),
                                 ref_words=max(len(ref), 1))


def oof_scores(data: Sequence[nbest_rerank.ListData], keys: Sequence[str], l2: float, folds: int = 5) -> list[np.ndarray]:
    """Out-of-fold scores with folds by utterance (`keys`): one utterance's lists for several subsets of systems
    share texts and errors, so splitting them across folds would leak and flatter the dev figures."""
    import zlib

    fold = np.array([zlib.crc32(k.encode()) % folds for k in keys])
    out: list[np.ndarray] = [np.zeros(0)] * len(data)
    for k in range(folds):
        w = nbest_rerank.fit([d for d, f in zip(data, fold) if f != k], l2=l2)
        for i in np.flatnonzero(fold == k):
            out[i] = np.array(data[i].feats) @ w
    return out


def choose(data: Sequence[nbest_rerank.ListData], keys: Sequence[str], l2s: Sequence[float],
           margins: Sequence[float] = nbest_rerank.MARGINS) -> tuple[float, float, dict[str, dict[str, float]]]:
    """(l2, margin, {"base", "chosen"}): lowest mean out-of-fold WER over the groups with none worse than its
    fallback; ties keep the larger margin. Nothing safe: margin inf (always the fallback)."""
    base = nbest_rerank.group_wer(data, None, 0.0)
    best = None
    for l2 in l2s:
        scores = oof_scores(data, keys, l2)
        for m in margins:
            g = nbest_rerank.group_wer(data, scores, m)
            key = (round(sum(g.values()) / len(g), 6), -m)
            if all(g[k] <= base[k] + 1e-9 for k in g) and (best is None or key < best[0]):
                best = (key, l2, m, g)
    if best is None:
        return l2s[0], float("inf"), {"base": base, "chosen": base}
    return best[1], best[2], {"base": base, "chosen": best[3]}


class FusionTraining(Record):
    """What training chose, with the out-of-fold dev WER per group (the fallback, in `rover`, and rerank at the
    chosen margin)."""

    model: nbest_rerank.RerankModel
    rover: dict[str, float]
    rerank: dict[str, float]


def train(groups: dict[str, Sequence[_Prepared]], lm: dict[str, TextScore], *, name: str = DEFAULT_MODEL,
          llm: str = "smollm2", sources: Sequence[str] = (),
          l2s: Sequence[float] = L2S) -> FusionTraining:
    """MWER-train on {group: prepared utterances with references}; L2 and margin chosen out of fold."""
    data = [list_data(g, p, lm) for g, ps in groups.items() for p in ps]
    keys = [str(p.inp.id) for ps in groups.values() for p in ps]
    if len(data) < 10:
        raise InvalidInput(f"too little training data for the fusion reranker ({len(data)} utterances)", param="data")
    l2, margin, report = choose(data, keys, l2s)
    weights = nbest_rerank.fit(data, l2=l2) if np.isfinite(margin) else np.zeros(len(FEATURES))
    dev = {g: {"lists": sum(d.group == g for d in data), "1-best": round(report["base"][g], 3),
               "rerank": round(report["chosen"][g], 3)} for g in sorted(report["base"])}
    model = nbest_rerank.RerankModel(name=name, features=FEATURES, weights={STYLE: tuple(float(w) for w in weights)},
                                     margins={STYLE: float(margin) if np.isfinite(margin) else 1e9}, llm=llm,
                                     l2={STYLE: l2}, dev=dev, data=tuple(sources))
    return FusionTraining(model=model, rover={g: v["1-best"] for g, v in dev.items()},
                          rerank={g: v["rerank"] for g, v in dev.items()})


def model_card(model: nbest_rerank.RerankModel) -> str:
    """README.md of a trained fusion reranker: data, features and weights, out-of-fold dev WER per subset."""
    rows = "\n".join(f"| {g} | {int(v['lists'])} | {v['1-best']:.2f} | {v['rerank']:.2f} |" for g, v in model.dev.items())
    feats = "\n".join(f"| {f} | {w:+.4f} |" for f, w in zip(model.features, model.weights[STYLE]))
    data = "\n".join(f"- `{s}`" for s in model.data) or "- (not recorded)"
    return f"""# Fusion reranker `{model.name}`

Picks the fallback (the system estimated best, or the weighted ROVER output where the reference-free estimate ranks
it above that system: cascade.fusion.reliability) or another candidate (ROVER's output, a system's text) per
utterance (cascade.fusion.rerank, `--join --correct rerank`): a linear model over features relative to the
fallback's candidate, MWER-trained (cascade.ger.rerank). No feature names a system; the systems' reliability is
estimated on each corpus from how they disagree, without references, so which vendor is best may change from
corpus to corpus. A candidate replaces the fallback only when it scores more than the margin
**{model.margins[STYLE]:g}** above it (chosen out of fold on dev so that no subset of systems got worse than its
fallback); L2 {model.l2[STYLE]:g}; LLM features from `{model.llm}` (`none`: the model reads no LLM score and
fusion loads no LLM for it).

## Data (dev only, never test)

Every subset of at least two of the four systems, one group each, each weighted by its own estimate:

{data}

## Dev figures (5-fold out of fold, folds by utterance, WER %, normalised)

| systems | utterances | fallback | rerank |
|---|---|---|---|
{rows}

## Features and weights (score = w · f, f relative to the fallback's candidate)

| feature | weight |
|---|---|
{feats}

Retrain: `python benchmarks/fusion_accuracy.py --lm-n 0 --llm-n 0 --rerank --save cascade/rerankers/{model.name}`
(add `--rerank-lm` for LLM features).
"""
