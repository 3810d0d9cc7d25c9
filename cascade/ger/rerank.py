"""A trained N-best reranker: a linear model over features relative to the 1-best, MWER-trained, with abstention.

score_i = w_style · f_i (cascade.ger.features; f_0 = 0, so the 1-best scores 0), one weight vector and one
margin per input style (plain HyPoradise/Kaldi-style lists, cased Whisper output). Training minimises the
expected word errors under softmax(score) over each list (MWER), each data set weighted by its
reference words so that every set counts alike, plus an L2 penalty. The reranker returns the
top-scoring hypothesis only when it beats the 1-best by `margin` (chosen on dev, out of fold, so
that no dev set gets worse; out-of-fold splits keep each speaker's lists together, and a style's margin may be
per word of the 1-best); otherwise it keeps the 1-best and says "abstained".

    model = load_model("smollm2-mwer")                     # shipped in cascade/rerankers/
    rerank_many(nbests, backend, model, RerankOptions())   # -> list[Correction], method "rerank"
    fit(groups, ...) -> RerankModel                         # `cascade train-rerank`
"""

from __future__ import annotations

import functools
import logging
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cascade.config import GerOptions, RerankOptions
from cascade.ger.domain_lm import DomainLm, DomainScore
from cascade.ger.features import (
    FEATURES,
    LmCache,
    list_features,
    list_style,
    word_errors,
)
from cascade.ger.guards import nearest, output_am
from cascade.ger.rescore import check_nbest, score_texts
from cascade.llm.base import LlmBackend, TextScore
from cascade.types import (
    CandidateScore,
    Correction,
    Hypothesis,
    InvalidInput,
    ModelNotFound,
    NBest,
    Record,
    StageInfo,
)

logger = logging.getLogger(__name__)
RERANKERS = Path(__file__).resolve().parent.parent / "rerankers"
MODEL_FILE = "model.json"


class RerankModel(Record):
    """Weights of a trained reranker (model.json) and what it was chosen with."""

    name: str
    features: tuple[str, ...]
    weights: dict[str, tuple[float, ...]]
    """Per style ("plain", "cased", "domain" for a domain model's in-domain lists): one weight per feature. A style without weights keeps the 1-best."""
    margins: dict[str, float] = {}
    """Per style: keep the 1-best unless the top hypothesis scores this much above it (chosen on dev)."""
    per_word: tuple[str, ...] = ()
    """Styles whose margin is per word of the 1-best (the gain divided by its word count): a long list then needs
    more evidence to change (chosen on dev with the margin; our own long LibriSpeech lists needed it)."""
    llm: str = "smollm2"
    """The LLM whose log-probs the LM features were trained on (scores from another model do not transfer)."""
    l2: dict[str, float] = {}
    dev: dict[str, dict[str, float | int | str]] = {}
    """Out-of-fold dev WER per set: 1-best and rerank at the chosen margin."""
    data: tuple[str, ...] = ()
    domain_text: str | None = None
    """File (beside model.json) of the domain n-gram LM's sentences: a domain-adapted reranker (`--domain-text`)."""


class ListData(Record):
    """One training/evaluation list as arrays: features [n, F] and word errors [n] (and the ref's length)."""

    group: str
    style: str
    fold: str = ""
    """What out-of-fold splits keep together: the speaker where the list names one (no speaker is in two folds),
    else the list's own id ("" : the list alone)."""
    feats: tuple[tuple[float, ...], ...]
    errors: tuple[float, ...]
    ref_words: int
    words0: int = 1
    """Words of the 1-best (normalised): what a per-word margin divides the gain by."""


def resolve_model(name: str) -> Path:
    """A shipped reranker name (cascade/rerankers/<name>) or a directory/model.json path."""
    path = Path(name).expanduser()
    for cand in (path, path / MODEL_FILE, RERANKERS / name / MODEL_FILE):
        if cand.is_file():
            return cand
    shipped = sorted(p.name for p in RERANKERS.iterdir() if (p / MODEL_FILE).is_file()) if RERANKERS.is_dir() else []
    raise ModelNotFound(f"no reranker {name!r} (shipped: {', '.join(shipped) or 'none'}; or a directory with {MODEL_FILE})", param="model")


@functools.lru_cache(maxsize=8)
def load_model(name: str) -> RerankModel:
    """The reranker `name` (see resolve_model), read once per process."""
    path = resolve_model(name)
    try:
        model = RerankModel.model_validate_json(path.read_text())
    except ValueError as exc:
        raise InvalidInput(f"{path} is not a reranker model: {str(exc).splitlines()[0]}", param="model") from None
    unknown = set(model.features) - set(FEATURES)
    if unknown or any(len(w) != len(model.features) for w in model.weights.values()):
        raise InvalidInput(f"{path}: features {sorted(unknown)} unknown or weights/features mismatch", param="model")
    return model


@functools.lru_cache(maxsize=4)
def load_domain(name: str) -> DomainLm | None:
    """The domain n-gram LM of reranker `name` (fitted once per process), None for a general model."""
    model = load_model(name)
    if not model.domain_text:
        return None
    path = resolve_model(name).parent / model.domain_text
    if not path.is_file():
        raise ModelNotFound(f"reranker {name!r} names domain text {model.domain_text!r}, but {path} is missing", param="model")
    return DomainLm.from_file(path)


def save_model(model: RerankModel, out: Path, domain: DomainLm | None = None) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    if domain is not None:
        domain.save(out / (model.domain_text or "domain.txt"))
    (out / MODEL_FILE).write_text(model.model_dump_json(indent=1) + "\n")
    return out / MODEL_FILE


def _weights(model: RerankModel, style: str) -> np.ndarray | None:
    """The model's weights for `style` in FEATURES order (a feature it was not trained on gets 0); None: no model."""
    if style not in model.weights:
        return None
    w = dict(zip(model.features, model.weights[style]))
    return np.array([w.get(f, 0.0) for f in FEATURES])


def second_model(model: RerankModel, options: RerankOptions) -> str | None:
    """The second recogniser to read each hypothesis with (options.second_model) when some style's weights use its
    score; None: nothing to read (a model without am2 weights, or the option off)."""
    from cascade.ger.features import uses_second

    if not options.second_model:
        return None
    return options.second_model if any(uses_second(w, model.features) for w in model.weights.values()) else None


def words0(nbest: NBest) -> int:
    """Words of the 1-best (normalised, at least 1): the unit of a per-word margin."""
    from cascade import metrics

    return max(len(metrics.normalize(nbest.texts[0]).split()), 1) if nbest.hypotheses else 1


def decide(scores: np.ndarray, margin: float) -> tuple[int, int]:
    """(returned index, preferred index): the top hypothesis if it beats the 1-best by `margin`, else 0."""
    top = int(np.argmax(scores))  # first on ties
    return (top if scores[top] - scores[0] > margin + 1e-12 else 0), top


def rerank_many(
    nbests: Sequence[NBest], backend: LlmBackend | None, model: RerankModel, options: RerankOptions | None = None,
    *, lm: dict[str, TextScore] | None = None, domain: DomainLm | None = None,
) -> list[Correction]:
    """Rerank several lists (one batched LLM call for all their hypotheses); input order, one Correction each.

    `domain`: the model's domain n-gram LM (load_domain), for a domain-adapted reranker."""
    options = options or RerankOptions()
    for nb in nbests:
        check_nbest(nb)
    t0 = time.perf_counter()
    dscores = domain.scores(h.text for nb in nbests for h in nb.hypotheses) if domain is not None else None
    styles = [list_style(nb, dscores) for nb in nbests]
    if lm is None:  # lists of a style the model has no weights for keep their 1-best and need no LLM call
        todo = [nb for nb, style in zip(nbests, styles) if style in model.weights]
        if todo and backend is None:
            raise InvalidInput("the reranker needs an LLM backend (its features include LLM log-probs)", param="correct")
        lm = score_texts([h.text for nb in todo for h in nb.hypotheses], backend) if todo else {}
    info = StageInfo(stage="rerank", model=f"{model.name}({getattr(backend, 'name', model.llm)})",
                     seconds=(time.perf_counter() - t0) / max(len(nbests), 1), options=options.model_dump())
    return [_one(nb, style, model, options, lm, info, dscores) for nb, style in zip(nbests, styles)]


def _one(nb: NBest, style: str, model: RerankModel, options: RerankOptions, lm: dict[str, TextScore],
         info: StageInfo, domain: dict[str, DomainScore] | None = None) -> Correction:
    if style not in model.weights:
        return Correction(text=nb.texts[0], method="rerank", chosen=0, guards={"style": style, "model_for_style": False},
                          fallback_reason="no_model_for_style", info=info)
    feats, _ = list_features(nb, lm, domain, style)
    w = _weights(model, style)
    margin = options.margin if options.margin is not None else model.margins.get(style, float("inf"))
    scores = feats @ w if w is not None else np.zeros(len(nb.hypotheses))
    scores[[not h.text.strip() for h in nb.hypotheses]] = -np.inf  # an empty hypothesis is never chosen
    scores[0] = 0.0
    unit = words0(nb) if style in model.per_word else 1
    chosen, top = decide(scores / unit, margin)
    cands = tuple(
        CandidateScore(text=h.text, am=h.avg_logprob, lm=(lm[h.text].logprob / max(lm[h.text].n_tokens, 1)) if h.text in lm else None,
                       combined=float(s) if np.isfinite(s) else None)
        for h, s in zip(nb.hypotheses, scores)
    )
    guards = {"style": style, "margin": margin, "top": top, "top_gain": round(float(scores[top] / unit), 4),
              **({"margin_per_word": True} if style in model.per_word else {})}
    abstained = top != 0 and chosen == 0
    text = nb.hypotheses[chosen].text
    return Correction(text=text, method="rerank", chosen=chosen, changed=text != nb.hypotheses[0].text, scores=cands,
                      guards=guards, fallback_reason="abstained" if abstained else None, info=info)


def output_gain(nbest: NBest, text: str, base: int, backend: LlmBackend, model: RerankModel,
                options: RerankOptions | None = None, *, ger: GerOptions | None = None,
                domain: DomainLm | None = None) -> tuple[float, float] | None:
    """(gain, margin): how far the reranker scores `text` (an output GER wrote, not in the list) above hypothesis
    `base` (GER's starting point), and the margin a change must beat; None where the model has no weights for the
    list's style (then no change can be judged, and GER keeps its base).

    The text joins the list as one more hypothesis; it has no acoustic score of its own, so it gets its nearest
    hypothesis' less ger.output_am_penalty x its word edit fraction (as GER's score gate does, cascade.ger.guards)."""
    idx, dist = nearest(text, nbest.texts)
    near = nbest.hypotheses[idx]
    avg = output_am(near.avg_logprob, dist, ger or GerOptions()) if near.avg_logprob is not None else None
    total = avg * near.am_score / near.avg_logprob if avg is not None and near.am_score is not None and near.avg_logprob else None
    second = second_tokens = None
    if near.second_score is not None and near.second_tokens:  # the second recogniser's score, penalised alike
        second_tokens = near.second_tokens
        second = output_am(near.second_score / second_tokens, dist, ger or GerOptions()) * second_tokens
    ext = nbest.model_copy(update={"hypotheses": (*nbest.hypotheses, Hypothesis(text=text, am_score=total, avg_logprob=avg,
                                                                                 second_score=second, second_tokens=second_tokens))})
    texts = ext.texts
    dscores = domain.scores(texts) if domain is not None else None
    style = list_style(nbest, dscores)
    w = _weights(model, style)
    if w is None:
        return None
    feats, _ = list_features(ext, score_texts(texts, backend), dscores, style)
    scores = feats @ w
    options = options or RerankOptions()
    margin = options.margin if options.margin is not None else model.margins.get(style, float("inf"))
    unit = words0(nbest) if style in model.per_word else 1
    return float(scores[-1] - scores[base]) / unit, float(margin)


# --------------------------------------------------------------------------- training


def list_data(group: str, nbest: NBest, reference: str, lm: dict[str, TextScore],
              domain: dict[str, DomainScore] | None = None, fold: str = "") -> ListData:
    from cascade import metrics

    feats, style = list_features(nbest, lm, domain)
    return ListData(group=group, style=style, feats=tuple(map(tuple, feats.tolist())), errors=tuple(word_errors(reference, nbest).tolist()),
                    ref_words=max(len(metrics.normalize(reference).split()), 1), fold=fold, words0=words0(nbest))


def fold_key(group: str, utt) -> str:  # noqa: ANN001
    """The unit out-of-fold splits keep whole: the speaker (within its data set) where known, else the list itself."""
    return f"{group}/speaker/{utt.speaker}" if utt.speaker is not None else f"{group}/{utt.id}"


def build_data(groups: dict[str, list], backend: LlmBackend, home: Path | None, domain: DomainLm | None = None) -> list[ListData]:
    """ListData for {group: [Utterance]} (LLM scores through the CASCADE_HOME cache)."""
    cache = LmCache(backend, home)
    texts = [h.text for us in groups.values() for u in us for h in u.nbest.hypotheses]
    lm = cache.get(texts)
    dscores = domain.scores(texts) if domain is not None else None
    return [list_data(g, u.nbest, u.reference or "", lm, dscores, fold_key(g, u)) for g, us in groups.items() for u in us
            if u.reference is not None and u.nbest.hypotheses]


def _tensors(data: Sequence[ListData]):
    import torch

    n = max(len(d.errors) for d in data)
    F = len(data[0].feats[0])
    X = torch.zeros(len(data), n, F, dtype=torch.float64)
    E = torch.zeros(len(data), n, dtype=torch.float64)
    M = torch.zeros(len(data), n, dtype=torch.bool)
    for k, d in enumerate(data):
        m = len(d.errors)
        X[k, :m], E[k, :m], M[k, :m] = torch.tensor(d.feats, dtype=torch.float64), torch.tensor(d.errors, dtype=torch.float64), True
    groups = sorted({d.group for d in data})
    words = {g: sum(d.ref_words for d in data if d.group == g) for g in groups}
    W = torch.tensor([1.0 / (words[d.group] * len(groups)) for d in data], dtype=torch.float64)  # each group alike
    return X, E, M, W


def expected_errors(w, X, E, M, W):
    """The MWER objective: Σ_lists weight · Σ_i softmax(score)_i · errors_i (a group's weights sum to 1/groups)."""
    import torch

    s = (X @ w).masked_fill(~M, float("-inf"))
    p = torch.softmax(s, dim=1)
    return (W * (p * E).sum(1)).sum()


def fit(data: Sequence[ListData], *, l2: float = 1e-3, steps: int = 200) -> np.ndarray:
    """MWER-trained weights (L-BFGS on the smooth objective, from zero: the 1-best's ranking as a start)."""
    import torch

    X, E, M, W = _tensors(data)
    scale = X.abs().flatten(0, 1)[M.flatten()].std(0).clamp_min(1e-6)  # features on one scale for the L2 term
    Xs = X / scale
    w = torch.zeros(X.shape[-1], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w], lr=0.5, max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = expected_errors(w, Xs, E, M, W) * 100 + l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return (w.detach() / scale).numpy()


def training_loss(weights: np.ndarray, data: Sequence[ListData]) -> float:
    """Expected word errors (weighted as in training, x100 ≈ a WER in %) of `weights` on `data`."""
    import torch

    X, E, M, W = _tensors(data)
    return float(expected_errors(torch.tensor(weights, dtype=torch.float64), X, E, M, W)) * 100


def fold_of(data: Sequence[ListData], folds: int = 5, seed: int = 0) -> np.ndarray:
    """Fold number of every list: its fold key's (speaker's) place in a seeded permutation of the keys, mod `folds`,
    so one speaker's lists are always in one fold (a list without a key is a unit of its own)."""
    keys = [d.fold or f"#{i}" for i, d in enumerate(data)]
    units = sorted(set(keys))
    place = {u: int(k) for u, k in zip(units, np.random.default_rng(seed).permutation(len(units)))}
    return np.array([place[k] % folds for k in keys])


def oof_scores(data: Sequence[ListData], l2: float, folds: int = 5, seed: int = 0) -> list[np.ndarray]:
    """Out-of-fold scores of every list (k-fold by speaker, each fold trained on the others): dev without training on it
    nor on its speaker's other lists."""
    fold = fold_of(data, folds, seed)
    out: list[np.ndarray] = [np.zeros(0)] * len(data)
    for k in range(folds):
        rest = [d for d, f in zip(data, fold) if f != k]
        w = fit(rest, l2=l2) if rest else np.zeros(len(data[0].feats[0]))  # one speaker only: nothing to learn from
        for i in np.flatnonzero(fold == k):
            out[i] = np.array(data[i].feats) @ w
    return out


def group_wer(data: Sequence[ListData], scores: Sequence[np.ndarray] | None, margin: float,
              per_word: bool = False) -> dict[str, float]:
    """WER (%) per group when each list returns decide(scores, margin) (scores None: the 1-best; `per_word`: the
    margin is per word of the 1-best)."""
    errs: dict[str, float] = {}
    words: dict[str, int] = {}
    for i, d in enumerate(data):
        j = 0 if scores is None else decide(_masked(scores[i], d) / (d.words0 if per_word else 1), margin)[0]
        errs[d.group] = errs.get(d.group, 0.0) + d.errors[j]
        words[d.group] = words.get(d.group, 0) + d.ref_words
    return {g: 100 * errs[g] / words[g] for g in errs}


def _masked(s: np.ndarray, d: ListData) -> np.ndarray:
    s = np.array(s, dtype=float)
    s[0] = 0.0
    return s


MIN_STYLE_LISTS = 10
"""A style with fewer training lists gets no weights (two ATIS lists that happen to be cased are no model of Whisper's
own output)."""
MIN_GROUP_LISTS = 20
"""Data sets with fewer lists of a style are pooled for its no-worse check: three lists cannot veto a model."""


def pool_small_groups(part: Sequence[ListData]) -> list[ListData]:
    """The lists of one style with every group of fewer than MIN_GROUP_LISTS lists merged into one "other" group."""
    small = {g for g, n in Counter(d.group for d in part).items() if n < MIN_GROUP_LISTS}
    if len(small) < 2:
        return list(part)
    name = "other (" + "+".join(sorted(small)) + ")"
    return [d.model_copy(update={"group": name}) if d.group in small else d for d in part]


MARGINS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)
MARGINS_PER_WORD = (0.02, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0)
L2S = (1e-4, 1e-3, 1e-2, 1e-1)


def choose(data: Sequence[ListData], l2s: Sequence[float] = L2S, margins: Sequence[float] = MARGINS,
           repeats: int = 3, margins_per_word: Sequence[float] = ()) -> tuple[float, float, dict]:
    """(l2, margin, table): the lowest mean out-of-fold dev WER with no group worse than its 1-best; ties: larger margin.

    Out-of-fold WER is averaged over `repeats` differently seeded 5-fold splits by speaker (small dev sets make one
    split noisy). `margins_per_word`: also try margins per word of the 1-best (table["per_word"] says which won)."""
    base = group_wer(data, None, 0.0)
    best, table = None, {}
    grid = [(m, False) for m in margins] + [(m, True) for m in margins_per_word]
    for l2 in l2s:
        runs = [oof_scores(data, l2, seed=r) for r in range(repeats)]
        for m, pw in grid:
            per = [group_wer(data, scores, m, pw) for scores in runs]
            g = {k: sum(p[k] for p in per) / len(per) for k in per[0]}
            mean = sum(g.values()) / len(g)
            table[f"{l2}/{m}{'/word' if pw else ''}"] = round(mean, 3)
            if all(g[k] <= base[k] + 1e-9 for k in g):
                key = (round(mean, 6), -m)
                if best is None or key < best[0]:
                    best = (key, l2, m, g, pw)
    if best is None:  # nothing safe: abstain always
        return l2s[0], float("inf"), {"table": table, "base": base, "chosen": base, "per_word": False}
    return best[1], best[2], {"table": table, "base": base, "chosen": best[3], "per_word": best[4]}


def train(
    groups: dict[str, list], backend: LlmBackend, *, name: str, home: Path | None = None,
    l2s: Sequence[float] = L2S, margins: Sequence[float] = MARGINS, sources: Sequence[str] = (),
    domain: DomainLm | None = None, general: RerankModel | None = None, styles: Sequence[str] | None = None,
) -> RerankModel:
    """Train on {group: [Utterance]} (a group is one data set: the margin keeps each no worse out of fold).

    One model per detected style; its l2 and margin are chosen by 5-fold out-of-fold dev WER (`choose`), and
    the final weights use every list of that style. With `general` (a domain model on top of a general one) only
    the "domain" style is trained; the other styles are the general model's, so out-of-domain lists are
    reranked exactly as the general model does. `styles` (with `general`): train only these styles (e.g. "cased" on
    our own recogniser's lists) and keep the general model's weights, margins and dev figures for the others.
    """
    data = build_data(groups, backend, home, domain)
    if len(data) < 10:
        raise InvalidInput(f"too little training data for the reranker ({len(data)} lists with references; need >= 10)", param="data")
    weights, margin_of, l2_of, dev, per_word = {}, {}, {}, {}, []
    if general is not None:
        only = set(styles or ("domain",))
        kept = [st for st in general.weights if st not in only]
        for style in kept:
            weights[style] = tuple(float(x) for x in _weights(general, style))
            margin_of[style], l2_of[style] = general.margins.get(style, float("inf")), general.l2.get(style, 0.0)
            per_word += [style] if style in general.per_word else []
        dev.update({f"{g} (general {general.name})" if not styles else g: v for g, v in general.dev.items() if v.get("style") in kept})
        data = [d for d in data if d.style in only]
    for style in sorted({d.style for d in data}):
        part = [d for d in data if d.style == style]
        if len(part) < MIN_STYLE_LISTS:
            logger.info("style %s: only %d lists (< %d): its lists keep the 1-best", style, len(part), MIN_STYLE_LISTS)
            continue
        part = pool_small_groups(part)
        l2, margin, report = choose(part, l2s, margins, margins_per_word=MARGINS_PER_WORD)
        if not np.isfinite(margin):
            continue  # nothing safe for this style: its lists keep the 1-best
        weights[style] = tuple(float(x) for x in fit(part, l2=l2))
        margin_of[style], l2_of[style] = float(margin), float(l2)
        if report["per_word"]:
            per_word.append(style)
        dev.update({(g if g not in dev else f"{g} ({style})"): {"style": style, "lists": sum(d.group == g for d in part), "1-best": round(report["base"][g], 3),
                        "rerank": round(report["chosen"][g], 3)} for g in sorted(report["base"])})
    if general is not None and styles:  # the kept styles' data (a source whose lists were all of a retrained style goes), then this run's
        gone = {g.split(" (")[0] for g, v in general.dev.items() if v.get("style") in only} - {
            g.split(" (")[0] for g, v in general.dev.items() if v.get("style") not in only}
        sources = (*(s for s in general.data if s not in sources and Path(s.partition("@")[0]).stem not in gone), *sources)
    elif general is not None:
        sources = (*sources, f"general: {general.name}")
    sources = tuple(sources)
    return RerankModel(name=name, features=FEATURES, weights=weights, margins=margin_of, llm=str(getattr(backend, "name", "llm")),
                       l2=l2_of, dev=dev, data=sources, domain_text="domain.txt" if domain is not None else None,
                       per_word=tuple(per_word))


def model_card(model: RerankModel) -> str:
    """README.md of a trained reranker: data, features + weights, the out-of-fold dev figures."""
    rows = "\n".join(f"| {g} | {v['style']} | {v['lists']} | {v['1-best']:.2f} | {v['rerank']:.2f} |" for g, v in model.dev.items())
    mean = lambda k: sum(v[k] for v in model.dev.values()) / max(len(model.dev), 1)  # noqa: E731
    styles = sorted(model.weights)
    feats = "\n".join(f"| {f} | " + " | ".join(f"{model.weights[st][i]:+.4f}" for st in styles) + " |" for i, f in enumerate(model.features))
    data = "\n".join(f"- `{s}`" for s in model.data) or "- (not recorded)"
    domain = ("; `domain`: lists that read as the domain of its n-gram LM, `" + model.domain_text + "` beside this card "
              "(cascade.ger.domain_lm), whatever their style") if model.domain_text else ""
    return f"""# Reranker `{model.name}`

A linear N-best reranker (cascade.ger.rerank) over features relative to the 1-best (cascade.ger.features),
trained with an expected-WER (MWER) loss; LLM features from `{model.llm}`. It returns another hypothesis only
when that one scores more than a margin above the 1-best, a margin chosen out of fold on
the training (dev) data so that no data set got worse. One weight vector and margin per input style
(`plain`: lower-case unpunctuated lists, HyPoradise/Kaldi style; `cased`: Whisper's own output{domain}).
Margins: {", ".join(f"{k} {v:g}" + (" per word of the 1-best" if k in model.per_word else "") for k, v in model.margins.items())}; L2: {", ".join(f"{k} {v:g}" for k, v in model.l2.items())}.

## Data (dev and training splits only, never test)

{data}

## Dev figures (5-fold out of fold, WER %, normalised)

| set | style | lists | 1-best | rerank |
|---|---|---|---|---|
{rows}
| mean | | | {mean('1-best'):.2f} | {mean('rerank'):.2f} |

## Features and weights (score = w · f, f relative to the 1-best)

| feature | {" | ".join(styles)} |
|---|{"---|" * len(styles)}
{feats}

Retrain: `cascade train-rerank FILES... --out DIR` (see docs/guides/training.md).
"""
