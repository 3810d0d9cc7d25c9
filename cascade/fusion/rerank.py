"""Fusion that knows which system to trust: rerank ROVER's output and each system's text, abstain to ROVER.

ROVER's majority vote is wrong where one system is far better than the rest: the others outvote it
word by word (on the shared LibriSpeech outputs without DeepSpeech, ROVER 15.6 % against Google's 10.9 %).
Here each utterance's candidates (ROVER's output first, then every distinct system text) are scored by a
linear model over features that mean the same on any corpus (how much the other systems agree with the
candidate, the LLM's log-prob, its length against the median, how contested ROVER's vote was) and
never by who wrote it: which vendor is best changes from corpus to corpus, so there is no per-vendor
prior. Every row is relative to ROVER's row, so ROVER scores 0 and a system's text is returned only when
it beats ROVER by the dev-chosen margin (otherwise: "abstained", ROVER's text).

Training reuses the N-best reranker's MWER machinery (cascade.ger.rerank: fit, out-of-fold choice of
L2 and margin so that no dev group gets worse than ROVER); a group is one subset of systems, so dev
teaches both the case where ROVER is right and the case where one system should be trusted.
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
"""cascade.fusion.fuse._Prepared (one utterance: systems' words, ROVER's words, candidates ROVER first); not
imported, since fuse imports this module."""

FEATURES = (
    "system",      # 1 for a system's text, 0 for ROVER's output (a bias: how far to trust ROVER at all)
    "support",     # fraction of the systems that wrote exactly this candidate
    "similarity",  # mean word similarity (1 - edits / longer length) to the systems that wrote something else
    "len_ratio",   # log((words + 1) / (median words of the systems + 1))
    "weak_vote",   # system x fraction of ROVER's slots won without a strict majority (a contested vote)
    "lm_tok",      # LLM log-prob per token
    "lm_sum",      # LLM total log-prob / 10
)
DEFAULT_MODEL = "fusion-mwer"
L2S = (1e-3, 1e-2, 1e-1)
STYLE = "fusion"
"""The one 'style' key of a fusion model's per-style weights/margins (the N-best reranker keys by input style)."""


def _similarity(a: Sequence[str], b: Sequence[str]) -> float:
    return 1.0 - word_edits(a, b) / max(len(a), len(b), 1)


def contested(systems: Sequence[Sequence[str]]) -> float:
    """Fraction of ROVER's slots whose winner (a word or a null) has no strict majority of the systems."""
    from cascade.fusion.rover import rover

    slots = rover(systems).slots
    n = len(systems)
    weak = sum(1 for slot in slots if max(slot.count(w) for w in set(slot)) * 2 <= n)
    return weak / max(len(slots), 1)


def candidate_features(p: _Prepared, lm: dict[str, TextScore]) -> np.ndarray:
    """[candidates, FEATURES] for one utterance, each row minus ROVER's (row 0), so ROVER's row is 0."""
    systems = [s for s in p.systems if s] or p.systems
    median = statistics.median(len(s) for s in systems)
    weak = contested(systems)
    rows = []
    for k, cand in enumerate(p.candidates):
        is_system = 0.0 if k == 0 else 1.0
        others = [s for s in systems if s != cand]
        score = lm.get(" ".join(cand))
        rows.append((
            is_system,
            sum(s == cand for s in systems) / len(systems),
            sum(_similarity(cand, s) for s in others) / len(others) if others else 1.0,
            math.log((len(cand) + 1) / (median + 1)),
            is_system * weak,
            score.logprob / max(score.n_tokens, 1) if score else -20.0,
            (score.logprob if score else -200.0) / 10,
        ))
    x = np.array(rows, dtype=float)
    return x - x[0]


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
    """ROVER's text unless a system's text scores more than the margin above it."""
    scores = feats @ np.array(model.weights[STYLE])
    scores[0] = 0.0
    m = model.margins.get(STYLE, float("inf")) if margin is None else margin
    chosen, top = nbest_rerank.decide(scores, m)
    texts = [" ".join(c) for c in p.candidates]
    first = " ".join(p.systems[0]) if p.systems else ""
    system = next((i for i, s in enumerate(p.systems) if s == p.candidates[chosen]), None)
    cands = tuple(CandidateScore(text=t, combined=round(float(s), 4), source="rover" if k == 0 else "hypothesis")
                  for k, (t, s) in enumerate(zip(texts, scores)))
    return Correction(text=texts[chosen], method="fusion", chosen=system, changed=texts[chosen] != first, scores=cands,
                      fallback_reason="abstained" if top != 0 and chosen == 0 else None,
                      guards={"picked": p.sources[chosen], "top": p.sources[top], "top_gain": round(float(scores[top]), 4),
                              "margin": m, "reranker": model.name})


def rerank(prepared: Sequence[_Prepared], backend: Any, *, model: str = DEFAULT_MODEL,
           margin: float | None = None) -> list[Correction]:
    """Fuse a batch of prepared utterances with the trained reranker (one LLM scoring call for all)."""
    trained = load_model(model)
    lm = lm_scores(prepared, backend)
    return [pick(p, candidate_features(p, lm), trained, margin) for p in prepared]


# --------------------------------------------------------------------------- training


def list_data(group: str, p: _Prepared, lm: dict[str, TextScore]) -> nbest_rerank.ListData:
    """One utterance as MWER training data: features, and each candidate's word errors against the reference."""
    if p.inp.reference is None:
        raise InvalidInput(f"utterance {p.inp.id} has no reference to train on", param="input")
    ref = normalize(p.inp.reference).split()
    feats = candidate_features(p, lm)
    return nbest_rerank.ListData(group=group, style=STYLE, feats=tuple(map(tuple, feats.tolist())),
                                 errors=tuple(float(word_edits(ref, c)) for c in p.candidates),
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
    """(l2, margin, {"base", "chosen"}): lowest mean out-of-fold WER over the groups with none worse than ROVER;
    ties keep the larger margin. Nothing safe: margin inf (always ROVER)."""
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
    """What training chose, with the out-of-fold dev WER per group (ROVER and rerank at the chosen margin)."""

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

Picks ROVER's output or one system's text per utterance (cascade.fusion.rerank, `--join --correct rerank`):
a linear model over features relative to ROVER's candidate, MWER-trained (cascade.ger.rerank). No feature
names a system, so which vendor is best may change from corpus to corpus. A system's text replaces ROVER's
only when it scores more than the margin **{model.margins[STYLE]:g}** above it (chosen out of fold on dev so that
no subset of systems got worse than ROVER); L2 {model.l2[STYLE]:g}; LLM features from `{model.llm}` (another LLM's
scores do not transfer: retrain with it).

## Data (dev only, never test)

Every subset of at least three of the four systems, one group each:

{data}

## Dev figures (5-fold out of fold, folds by utterance, WER %, normalised)

| systems | utterances | ROVER | rerank |
|---|---|---|---|
{rows}

## Features and weights (score = w · f, f relative to ROVER's candidate)

| feature | weight |
|---|---|
{feats}

Retrain: `python benchmarks/fusion_accuracy.py --lm-n 0 --llm-n 0 --rerank --save cascade/rerankers/{model.name}`.
"""
