"""N-best rescoring: Y* = argmax_i (1-λ)·AM_i + λ·LM_i.

Length normalisation (`RescoreOptions.length_norm`) puts both terms on one scale:
- "tokens": AM = mean token log-prob (avg_logprob, or am_score / tokens), LM = log p_LLM / LLM tokens;
- "words":  both sums divided by the number of words;
- "none":   raw sums (AM = avg_logprob x tokens when only the mean is known).
Where a hypothesis carries no token count the LLM's token count stands in for the recogniser's.
Without AM scores (plain text N-best) the recogniser's ranking is the prior: AM_i = -rank_prior·i.
An empty hypothesis cannot be scored and ranks last. Ties go to the better-ranked hypothesis.
With λ = 0 no LLM call is made.

Profiles (RescoreOptions.profile/profiles): SmolLM2 helps on cased, punctuated Whisper output and
hurts on lower-case unpunctuated lists, so λ and the length normalisation are chosen on dev per
input style and picked per list by the style detected in its text (`effective`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from cascade.config import RescoreOptions, RescoreProfile
from cascade.llm.base import LlmBackend, TextScore
from cascade.types import CandidateScore, Correction, Hypothesis, InvalidInput, NBest, StageInfo

logger = logging.getLogger(__name__)

EMPTY_SCORE = float("-inf")


def effective(options: RescoreOptions, nbest: NBest) -> RescoreOptions:
    """The options that apply to one list: its style's profile (profile "auto"), a named one, or as given ("none")."""
    if options.profile != "auto":
        return for_style(options, options.profile)
    from cascade.ger.features import detect_style

    return for_style(options, detect_style(nbest.texts))


def for_style(options: RescoreOptions, style: str) -> RescoreOptions:
    """The options for lists of `style` (profile "auto"; a named profile or "none" ignore the style)."""
    if options.profile == "none":
        return options
    name = style if options.profile == "auto" else options.profile
    prof = options.profiles.get(name)
    if prof is None:
        if options.profile != "auto":
            raise InvalidInput(f"unknown rescoring profile {name!r} (known: {', '.join(options.profiles) or 'none'})", param="profile")
        return options
    return options.model_copy(update={"lam": prof.lam, "length_norm": prof.length_norm, "profile": name})


def needs_llm(options: RescoreOptions) -> bool:
    """Whether rescoring with these options can call the LLM (some list's effective λ > 0)."""
    if options.profile == "none":
        return options.lam > 0
    if options.profile == "auto":
        return options.lam > 0 or any(p.lam > 0 for p in options.profiles.values())
    return options.profiles[options.profile].lam > 0 if options.profile in options.profiles else options.lam > 0


def has_am(nbest: NBest) -> bool:
    return all(h.am_score is not None or h.avg_logprob is not None for h in nbest.hypotheses)


def am_term(h: Hypothesis, rank: int, n_tokens: int, options: RescoreOptions, use_scores: bool) -> float:
    """The acoustic term of one hypothesis under the options' length normalisation (see module doc)."""
    if not options.use_am:
        return 0.0
    if not use_scores:
        return -options.rank_prior * rank
    n_tok = max(len(h.tokens) if h.tokens else n_tokens, 1)
    n_words = max(len(h.text.split()), 1)
    total = h.am_score if h.am_score is not None else h.avg_logprob * n_tok  # type: ignore[operator]
    if options.length_norm == "tokens":
        return h.avg_logprob if h.avg_logprob is not None else total / n_tok
    if options.length_norm == "words":
        return total / n_words
    return total


def lm_term(text: str, score: TextScore | None, options: RescoreOptions) -> float | None:
    if score is None:
        return None
    if options.length_norm == "tokens":
        return score.logprob / max(score.n_tokens, 1)
    if options.length_norm == "words":
        return score.logprob / max(len(text.split()), 1)
    return score.logprob


def combine(am: float, lm: float | None, lam: float) -> float:
    return (1.0 - lam) * am + (lam * lm if lm is not None else 0.0)


def score_texts(texts: Sequence[str], backend: LlmBackend, adapter: str | None = None) -> dict[str, TextScore]:
    """LLM scores of the distinct non-empty texts, in one batched call."""
    unique = list(dict.fromkeys(t for t in texts if t.strip()))
    if not unique:
        return {}
    return dict(zip(unique, backend.score(unique, adapter=adapter)))


def candidate_scores(nbest: NBest, lm: dict[str, TextScore] | None, options: RescoreOptions) -> list[CandidateScore]:
    """Scores of every hypothesis (lm None: λ = 0, AM only)."""
    use_scores = has_am(nbest)
    out = []
    for i, h in enumerate(nbest.hypotheses):
        s = lm.get(h.text) if lm is not None else None
        n_tok = s.n_tokens if s is not None else max(len(h.text) // 4, 1)
        am = am_term(h, i, n_tok, options, use_scores)
        lmv = lm_term(h.text, s, options)
        combined = combine(am, lmv, options.lam) if h.text.strip() else EMPTY_SCORE
        out.append(CandidateScore(text=h.text, am=am, lm=lmv, combined=combined))
    return out


def pick(scores: Sequence[CandidateScore]) -> int:
    """Index of the best combined score (first on ties)."""
    def value(s: CandidateScore) -> float:
        return s.combined if s.combined is not None else EMPTY_SCORE

    best = 0
    for i, s in enumerate(scores):
        if value(s) > value(scores[best]):
            best = i
    return best


def check_nbest(nbest: NBest) -> None:
    if not nbest.hypotheses:
        raise InvalidInput("empty N-best list: nothing to rescore or correct", param="hypotheses")


def rescore_many(nbests: Sequence[NBest], backend: LlmBackend | None, options: RescoreOptions, *, adapter: str | None = None,
                 score_single: bool = True) -> list[Correction]:
    """Rescore several lists with one batched LLM call (none when λ = 0).

    `score_single=False`: a list with one distinct text has nothing to choose, so its text is not scored (a batch of
    a deployed recogniser's 1-best records costs no LLM call); GER keeps the default, its score gate reads those scores."""
    for nb in nbests:
        check_nbest(nb)
    t0 = time.perf_counter()
    per_list = [effective(options, nb) for nb in nbests]
    if not score_single:
        per_list = [o if len(set(nb.texts)) > 1 else o.model_copy(update={"lam": 0.0}) for nb, o in zip(nbests, per_list)]
    lm = None
    if any(o.lam > 0 for o in per_list):
        if backend is None:
            raise InvalidInput("rescoring with λ > 0 needs an LLM backend", param="lam")
        lm = score_texts([h.text for nb, o in zip(nbests, per_list) if o.lam > 0 for h in nb.hypotheses], backend, adapter)
    seconds = (time.perf_counter() - t0) / max(len(nbests), 1)
    info = StageInfo(
        stage="rescore",
        model=getattr(backend, "name", None) if lm is not None else None,
        seconds=seconds,
        options=options.model_dump(),
    )
    out = []
    for nb, opts in zip(nbests, per_list):
        scores = candidate_scores(nb, lm if opts.lam > 0 else None, opts)
        # λ = 0 keeps the recogniser's own choice: its 1-best comes from faster-whisper's beam, while the
        # alternatives' AM scores come from a wider decode, so an AM-only argmax could overrule the 1-best.
        i = pick(scores) if opts.lam > 0 else 0
        text = nb.hypotheses[i].text
        out.append(
            Correction(
                text=text, method="rescore", chosen=i, changed=text != nb.hypotheses[0].text,
                scores=tuple(scores), info=info,
                guards={"profile": opts.profile, "lam": opts.lam, "length_norm": opts.length_norm} if opts is not options else {},
            )
        )
    return out


def rescore(nbest: NBest, backend: LlmBackend | None, options: RescoreOptions, *, adapter: str | None = None) -> Correction:
    """Pick the hypothesis maximising (1-λ)·AM + λ·LM (see the module doc for the terms)."""
    return rescore_many([nbest], backend, options, adapter=adapter)[0]


def tune_lambda(
    nbests: Sequence[NBest], refs: Sequence[str], backend: LlmBackend, options: RescoreOptions, grid: Sequence[float]
) -> tuple[float, list[tuple[float, float]]]:
    """Grid-search λ for the lowest normalised WER (LLM scores computed once); ties keep the smaller λ."""
    from cascade import metrics

    lm = score_texts([h.text for nb in nbests for h in nb.hypotheses], backend)
    table = []
    for lam in grid:
        opts = options.model_copy(update={"lam": float(lam)})
        picks = [nb.hypotheses[pick(candidate_scores(nb, lm if lam > 0 else None, opts))].text for nb in nbests]
        table.append((float(lam), metrics.wer(refs, picks)))
    best = min(table, key=lambda row: (round(row[1], 12), row[0]))
    return best[0], table


NORMS = ("tokens", "words", "none")


def tune_profiles(
    nbests: Sequence[NBest], refs: Sequence[str], lm: dict[str, TextScore], options: RescoreOptions,
    grid: Sequence[float], *, groups: Sequence[str] | None = None, norms: Sequence[str] = NORMS,
) -> dict[str, tuple[RescoreProfile, dict[str, float]]]:
    """Per detected style: the (λ, length_norm) with the lowest mean dev WER that makes no group (data set) worse
    than λ = 0; among tied λ the middle one (λ = 0 wins only when nothing beats it). Returns {style: (profile, {"λ/norm": WER %})}; `lm` holds the LLM scores."""
    from cascade import metrics
    from cascade.config import RescoreProfile
    from cascade.ger.features import detect_style

    groups = list(groups) if groups is not None else ["all"] * len(nbests)
    by_style: dict[str, list[int]] = {}
    for i, nb in enumerate(nbests):
        by_style.setdefault(detect_style(nb.texts), []).append(i)
    out = {}
    for style, idx in by_style.items():
        def wers(lam: float, norm: str) -> dict[str, float]:
            opts = options.model_copy(update={"lam": float(lam), "length_norm": norm, "profile": "none"})
            picks = {i: nbests[i].hypotheses[pick(candidate_scores(nbests[i], lm if lam > 0 else None, opts))].text for i in idx}
            return {g: 100 * metrics.wer([refs[i] for i in idx if groups[i] == g], [picks[i] for i in idx if groups[i] == g])
                    for g in sorted({groups[i] for i in idx})}

        base = wers(0.0, "tokens")
        table, safe = {}, [(round(sum(base.values()) / len(base), 9), 0.0, "tokens")]
        for norm in norms:
            for lam in grid:
                w = wers(lam, norm)
                mean = sum(w.values()) / len(w)
                table[f"{lam}/{norm}"] = round(mean, 3)
                if lam > 0 and all(w[g] <= base[g] + 1e-9 for g in w):
                    safe.append((round(mean, 9), float(lam), norm))
        low = min(safe)[0]
        norm = min(r for r in safe if r[0] == low)[2]
        tied = sorted(r[1] for r in safe if r[0] == low and r[2] == norm)
        best = (low, tied[(len(tied) - 1) // 2], norm)  # the middle of a flat dev optimum, not its edge
        if low >= safe[0][0]:
            best = safe[0]  # nothing beats λ = 0 on dev
        n = len(idx)
        note = f"dev: {n} lists, WER {sum(base.values()) / len(base):.2f} -> {best[0]:.2f} (mean over {len(base)} sets)"
        out[style] = (RescoreProfile(lam=best[1], length_norm=best[2], note=note), table)  # type: ignore[arg-type]
    return out
