"""Fuse several recognisers' transcripts of the same utterances into one.

`join` lines the systems' files up by utterance id (in the order the files are
given; a system without an id contributes nothing to it), and estimates each
system's reliability from the whole joined input without references
(cascade.fusion.reliability): its vote weight. `fuse` combines one utterance's outputs:

- `rover`: NIST ROVER vote (cascade.fusion.rover), each system's vote weighted and
  its silence after its last word counted at options.tail_vote (weights None and
  tail_vote 1: SCTK's majority vote exactly), no model;
- `rescore`: pick among the candidates (ROVER's output first, then each
  system's) by weighted agreement with the systems (-edit distance / words) plus
  `lm_weight` times the LLM's log-prob per word (weight tuned on dev);
- `rerank`: a trained MWER reranker (cascade.fusion.rerank) over agreement, length
  and reliability features picks ROVER's output or one system's text;
- `ger`: the LLM reads every system's output and ROVER's combination and
  writes the transcript; guards (token cap, first line, edit distance to the
  candidates, agreement with the systems no worse than the fallback's, optional LM
  score gate) send anything doubtful back, saying why.

With weights, what every method falls back to (abstains to) is the system estimated
best, or the weighted ROVER output where the estimate ranks it above that system
(FusionOptions.fallback, chosen by the join); without weights, ROVER's output.
Words are compared after `cascade.metrics.normalize` (FusionOptions.normalize),
so 'Mr.'/'mister' and '7'/'seven' vote together; fused text is in that form.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from more_itertools import chunked

from cascade.config import FusionOptions, GerOptions
from cascade.fusion.reliability import vote_weights
from cascade.fusion.rover import rover, tokens
from cascade.metrics import word_edits
from cascade.types import (
    CandidateScore,
    Correction,
    FusionInput,
    InvalidInput,
    NBest,
    Record,
    StageInfo,
    SystemText,
)

logger = logging.getLogger(__name__)

FusionMethod = Literal["rover", "rescore", "rerank", "ger"]
METHODS: tuple[str, ...] = ("rover", "rescore", "rerank", "ger")


# --------------------------------------------------------------------------- fuse


def _words(text: str, options: FusionOptions) -> list[str]:
    if options.normalize:
        from cascade.metrics import normalize

        return normalize(text).split()
    return tokens(text)


def agreement(candidate: Sequence[str], systems: Sequence[Sequence[str]], weights: Sequence[float] | None = None) -> float:
    """-(word edits to every system) / (their words), each system counted by its weight: 0 when all systems
    wrote exactly the candidate."""
    w = list(weights) if weights is not None else [1.0] * len(systems)
    total = sum(wk * len(s) for wk, s in zip(w, systems)) or 1
    return -sum(wk * word_edits(candidate, s) for wk, s in zip(w, systems)) / total


@dataclass
class _Prepared:
    """One utterance's systems as words, ROVER's output and the distinct candidates (ROVER first).

    `weights` are the systems' vote weights (None: not known, equal votes); `base` is the candidate that
    fusion falls back to: the estimated best system's text when weights are known, else ROVER's output."""

    inp: FusionInput
    systems: list[list[str]]
    rover_words: list[str]
    candidates: list[list[str]]
    sources: list[str]
    agreements: list[float]
    weights: list[float] | None = None
    base: int = 0
    best_system: int | None = None
    """Index (in `systems`) of the system estimated best; None without weights."""
    tail_vote: float = 1.0
    """What each system's silence after its last word counted in ROVER's vote (FusionOptions.tail_vote)."""
    votes: list[float] | None = None
    """The weights ROVER's votes counted with (weights and FusionOptions.best_bonus)."""


def system_weights(inp: FusionInput, options: FusionOptions) -> list[float] | None:
    """Each output's vote weight from options.weights (a system it does not name gets their median)."""
    if not options.weights:
        return None
    known = sorted(options.weights.values())
    median = known[len(known) // 2]
    return [float(options.weights.get(o.system, median)) for o in inp.outputs]


def _prepare(inp: FusionInput, options: FusionOptions) -> _Prepared:
    if not inp.outputs:
        raise InvalidInput(f"utterance {inp.id or ''} has no system outputs to fuse", param="input")
    systems = [_words(o.text, options) for o in inp.outputs]
    weights = system_weights(inp, options)
    votes = None if weights is None else vote_weights(weights, options.best_bonus)
    voted = list(rover(systems, votes, tail=options.tail_vote).words)
    candidates, sources = [voted], ["rover"]
    for out, words in zip(inp.outputs, systems):
        if words and words not in candidates:
            candidates.append(words)
            sources.append(out.system)
    nonempty = [k for k, s in enumerate(systems) if s] or list(range(len(systems)))
    w = None if weights is None else [weights[k] for k in nonempty]
    agree = [agreement(c, [systems[k] for k in nonempty], w) for c in candidates]
    p = _Prepared(inp, systems, voted, candidates, sources, agree, weights, tail_vote=options.tail_vote,
                  votes=votes)
    if weights is not None:
        best = max(nonempty, key=lambda k: (weights[k], -k))
        p.best_system = best
        p.base = 0 if options.fallback == "rover" or not systems[best] else candidates.index(systems[best])
    return p


def _score(cands: list[list[str]], source: list[str], agree: list[float], lm: list[float] | None,
           weight: float) -> tuple[int, tuple[CandidateScore, ...]]:
    combined = [a + weight * (lm[i] if lm else 0.0) for i, a in enumerate(agree)]
    best = max(range(len(cands)), key=lambda i: (combined[i], -i))
    scores = tuple(
        CandidateScore(text=" ".join(c), lm=lm[i] if lm else None, combined=combined[i],
                       source="rover" if source[i] == "rover" else "hypothesis")
        for i, c in enumerate(cands))
    return best, scores


def _lm_per_word(backend: Any, texts: list[str], adapter: str | None) -> list[float]:
    scored = backend.score(texts, adapter=adapter)
    return [s.logprob / max(len(t.split()), 1) for s, t in zip(scored, texts)]


def fuse(inp: FusionInput, method: FusionMethod = "rover", *, options: FusionOptions | None = None,
         backend: Any = None, ger: GerOptions | None = None, adapter: str | None = None) -> Correction:
    """Fuse one utterance's system outputs (see the module doc); `backend` is needed for rescore/ger."""
    return next(fuse_many([inp], method, options=options, backend=backend, ger=ger, adapter=adapter))


def fuse_many(inputs: Iterable[FusionInput], method: FusionMethod = "rover", *, options: FusionOptions | None = None,
              backend: Any = None, ger: GerOptions | None = None, adapter: str | None = None,
              batch_size: int = 8) -> Iterator[Correction]:
    """Fuse a stream of utterances, with the LLM called once per batch of `batch_size`."""
    options = options or FusionOptions()
    ger = ger or GerOptions()
    if method not in METHODS:
        raise InvalidInput(f"unknown fusion method {method!r}; expected one of {', '.join(METHODS)}", param="method")
    if method != "rover" and backend is None and not _runs_without_llm(method, options):
        raise InvalidInput(f"fusion method {method!r} needs an LLM backend", param="method")
    for batch in chunked(inputs, batch_size):
        yield from _fuse_batch(batch, method, options, backend, ger, adapter)


def _runs_without_llm(method: str, options: FusionOptions) -> bool:
    """rescore at lm_weight 0, and rerank with a model that weighs no LM feature, read no LLM score."""
    if method == "rescore":
        return options.lm_weight == 0
    if method == "rerank":
        from cascade.fusion.rerank import load_model, uses_lm

        return not uses_lm(load_model(options.reranker))
    return False


def needs_llm(method: str, options: FusionOptions) -> bool:
    """Whether fusing with `method` reads the LLM at all (rover never; see _runs_without_llm)."""
    return method != "rover" and not _runs_without_llm(method, options)


def _fuse_batch(batch: list[FusionInput], method: str, options: FusionOptions, backend: Any, ger: GerOptions,
                adapter: str | None) -> list[Correction]:
    start = time.monotonic()
    prepared = [_prepare(inp, options) for inp in batch]
    if method == "rover":
        out = [_rover_correction(p) for p in prepared]
    elif method == "rescore":
        out = [_rescore(p, backend, options, adapter) for p in prepared]
    elif method == "rerank":
        from cascade.fusion.rerank import rerank

        out = rerank(prepared, backend, model=options.reranker, margin=options.rerank_margin)
    else:
        out = _llm_fuse(prepared, backend, options, ger, adapter)
    seconds = (time.monotonic() - start) / max(len(batch), 1)
    info = StageInfo(stage="fusion", model=getattr(backend, "name", None), seconds=round(seconds, 4),
                     options={**options.model_dump(), "method": method},
                     prompt_name=options.prompt if method == "ger" else None)
    return [c.model_copy(update={"info": info}) for c in out]


def _rover_correction(p: _Prepared) -> Correction:
    text = " ".join(p.rover_words)
    first = " ".join(p.systems[0]) if p.systems else ""
    chosen = next((i for i, s in enumerate(p.systems) if s == p.rover_words), None)
    return Correction(text=text, method="rover", chosen=chosen, changed=text != first,
                      scores=(CandidateScore(text=text, combined=p.agreements[0], source="rover"),))


def _rescore(p: _Prepared, backend: Any, options: FusionOptions, adapter: str | None) -> Correction:
    texts = [" ".join(c) for c in p.candidates]
    lm = _lm_per_word(backend, texts, adapter) if options.lm_weight > 0 and len(texts) > 1 else None
    best, scores = _score(p.candidates, p.sources, p.agreements, lm, options.lm_weight)
    reason = None
    if p.weights is not None and best != p.base and scores[best].combined < scores[p.base].combined + options.min_agreement_gain:
        best, reason = p.base, "abstained"  # the estimated best system's text unless a candidate beats it by the gain
    first = " ".join(p.systems[0]) if p.systems else ""
    chosen = next((i for i, s in enumerate(p.systems) if s == p.candidates[best]), None)
    return Correction(text=texts[best], method="fusion", chosen=chosen, changed=texts[best] != first, scores=scores,
                      fallback_reason=reason,
                      guards={"picked": p.sources[best], "base": p.sources[p.base],
                              "agreement": [round(a, 4) for a in p.agreements]})


# --------------------------------------------------------------------------- LLM fusion


class FusionCandidates(Record):
    """Every candidate for one utterance with the features the final pick uses (kept for tuning on dev)."""

    texts: tuple[str, ...]
    sources: tuple[str, ...]
    """'rover', a system name, or 'llm' (last, when the LLM's output passed the hard guards)."""
    agreement: tuple[float, ...]
    lm: tuple[float, ...]
    """LLM log-prob per word."""
    raw_output: str | None = None
    rejected: str | None = None
    """Why the LLM's output was not even a candidate (hard guards)."""


def _llm_fuse(prepared: list[_Prepared], backend: Any, options: FusionOptions, ger: GerOptions,
              adapter: str | None) -> list[Correction]:
    cands = llm_candidates(prepared, backend, options, ger, adapter)
    return [pick(c, p, options) for c, p in zip(cands, prepared)]


def llm_candidates(prepared: list[_Prepared], backend: Any, options: FusionOptions, ger: GerOptions,
                   adapter: str | None) -> list[FusionCandidates]:
    """Ask the LLM for each utterance's transcript (one batched call), apply GER's text guards, score all.

    The prompt sees ROVER's output as `best` and the systems as the other `hypotheses`, so
    `cascade train-ger` (with ger.prompt = options.prompt) trains on exactly this prompt.
    """
    from cascade.ger.correct import RESPONSE_END, render_prompt, token_cap

    fusion_ger = ger.model_copy(update={"prompt": options.prompt})
    nbests = [fusion_nbest(p) for p in prepared]
    prompts = [render_prompt(nb, fusion_ger)[0] for nb in nbests]
    cap = max(token_cap(nb, backend, fusion_ger) for nb in nbests)
    # no "\n" stop: small models often write "The transcription is:" on a line of its own first
    raws = backend.generate(prompts, max_tokens=cap + 16, stop=[RESPONSE_END], temperature=0.0, adapter=adapter)
    rows = []
    for p, raw in zip(prepared, raws):
        texts, sources = [" ".join(c) for c in p.candidates], list(p.sources)
        agree = list(p.agreements)
        words, rejected = _guarded_output(raw or "", texts, ger, options)
        if rejected is None and " ".join(words) not in texts:
            texts.append(" ".join(words))
            sources.append("llm")
            keep = [k for k, s in enumerate(p.systems) if s] or list(range(len(p.systems)))
            agree.append(agreement(words, [p.systems[k] for k in keep],
                                   None if p.weights is None else [p.weights[k] for k in keep]))
        rows.append((texts, sources, agree, raw, rejected))
    flat = [t for texts, *_ in rows for t in texts]
    lm_all = iter(_lm_per_word(backend, flat, adapter))  # one scoring pass for the whole batch
    return [FusionCandidates(texts=tuple(texts), sources=tuple(sources), agreement=tuple(agree),
                             lm=tuple(next(lm_all) for _ in texts), raw_output=raw, rejected=rejected)
            for texts, sources, agree, raw, rejected in rows]


def fusion_nbest(p: _Prepared) -> NBest:
    """The LLM's view of one utterance: ROVER's output first, then each system's (normalised) text."""
    return NBest.from_texts([" ".join(p.rover_words)] + [" ".join(s) for s in p.systems], id=p.inp.id)


def _guarded_output(raw: str, texts: list[str], ger: GerOptions, options: FusionOptions) -> tuple[list[str], str | None]:
    """GER's guards (clean first line, length cap, edit distance to the nearest candidate): words or why not."""
    from cascade.ger import guards

    log: dict[str, Any] = {}
    lines = [ln for ln in raw.splitlines() if ln.strip() and not ln.rstrip().endswith(":")]
    try:
        out = guards.clean_output(lines[0] if lines else "", texts, log)
        guards.check_length(out, [t for t in texts if t.strip()] or [""], ger, log)
        guards.check_distance(out, texts, ger, log)
    except guards.Rejected as rej:
        return [], rej.reason
    return _words(out, options), None


def pick(c: FusionCandidates, p: _Prepared, options: FusionOptions) -> Correction:
    """The candidate with the best agreement + lm_weight * LM; the LLM's own output needs a margin on top."""
    combined = [a + options.lm_weight * lm for a, lm in zip(c.agreement, c.lm)]
    others = [i for i, s in enumerate(c.sources) if s != "llm"]
    best = max(others, key=lambda i: (combined[i], -i))
    if p.weights is not None and combined[best] < combined[p.base] + options.min_agreement_gain:
        best = p.base  # the estimated best system's text unless another candidate beats it by the gain
    llm = next((i for i, s in enumerate(c.sources) if s == "llm"), None)
    reason = c.rejected
    if llm is not None:
        if combined[llm] >= combined[best] + options.min_agreement_gain:
            best, reason = llm, None
        else:
            reason = f"LLM output scored below {c.sources[best]!r} ({combined[llm]:.3f} < {combined[best]:.3f})"
    scores = tuple(CandidateScore(text=t, lm=lm, combined=x,
                                  source="llm" if s == "llm" else ("rover" if s == "rover" else "hypothesis"))
                   for t, s, lm, x in zip(c.texts, c.sources, c.lm, combined))
    first = " ".join(p.systems[0]) if p.systems else ""
    status = "ok" if reason is None else "fallback"
    chosen = None if c.sources[best] == "llm" else next(
        (i for i, s in enumerate(p.systems) if " ".join(s) == c.texts[best]), None)
    return Correction(text=c.texts[best], method="fusion", status=status, chosen=chosen,
                      changed=c.texts[best] != first, scores=scores, fallback_reason=reason,
                      guards={"picked": c.sources[best], "agreement": [round(a, 4) for a in c.agreement],
                              "lm_weight": options.lm_weight,
                              "min_agreement_gain": options.min_agreement_gain},
                      raw_output=c.raw_output)


# --------------------------------------------------------------------------- N-best lists as fusion inputs


def nbest_input(nbest: NBest, systems: Sequence[str] | None = None, options: FusionOptions | None = None) -> FusionInput:
    """A batch-engine N-best list (one hypothesis per system) as a FusionInput; the systems are named by
    `systems`, else by options.systems less those options.absent lists for this id (set by --join)."""
    if systems is None and options is not None and options.systems:
        gone = set(options.absent.get(nbest.id or "", ()))
        systems = [n for n in options.systems if n not in gone]
        if len(systems) != len(nbest.hypotheses):
            systems = None
    names = list(systems or [f"system{i + 1}" for i in range(len(nbest.hypotheses))])
    return FusionInput(id=nbest.id, outputs=tuple(SystemText(system=n, text=h.text)
                                                  for n, h in zip(names, nbest.hypotheses)))
