"""Generative error correction (hypotheses-to-transcription) with guards, batched.

The prompt is a template file (prompts/ger/*.jinja, ChatML as SmolLM2 expects); the model's
answer is the text after the prompt up to RESPONSE_END (training puts its loss there only).
Hypotheses go into the prompt as delimited data (<hyp>...</hyp>, control tokens removed):
they are never instructions, and the guards (see guards.py) reject any output that is not
close to one of them or that scores below the rescored best.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

from more_itertools import chunked

from cascade import prompts
from cascade.config import GerOptions, RerankOptions, RescoreOptions
from cascade.ger import guards
from cascade.ger.rescore import check_nbest, combine, effective, lm_term, rescore_many, score_texts
from cascade.llm.base import LlmBackend
from cascade.types import BackendUnavailable, CandidateScore, Correction, NBest, StageInfo

logger = logging.getLogger(__name__)

RESPONSE_END = "<|im_end|>"
"""What ends the model's answer (SmolLM2's EOS); the answer starts right after the prompt, which
ends by opening a <hyp> tag (a training target is `reference + RESPONSE_END`)."""
STOP = ("</hyp>", "\n", RESPONSE_END)
"""The prompt ends by opening <hyp>: the answer is one delimited line, like the hypotheses."""
MAX_TOKEN_CAP = 512


def prompt_variables(nbest: NBest) -> dict[str, Any]:
    """Template variables: `best`, `others` (distinct, in rank order) and `hypotheses` (all, sanitised)."""
    texts = [guards.sanitize_hypothesis(t) for t in nbest.texts]
    best = texts[0] if texts else ""
    others = [t for t in dict.fromkeys(texts[1:]) if t and t != best]
    return {"best": best, "others": others, "hypotheses": texts}


def build_prompt(nbest: NBest, ger: GerOptions) -> str:
    """The raw prompt for one N-best list (training uses this very function; see render_prompt for provenance)."""
    return render_prompt(nbest, ger)[0]


def render_prompt(nbest: NBest, ger: GerOptions) -> tuple[str, prompts.PromptRef]:
    """The raw prompt and the template's name + hash."""
    return prompts.render(ger.prompt, **prompt_variables(nbest))


def build_training_example(nbest: NBest, reference: str, ger: GerOptions) -> tuple[str, str]:
    """(prompt, response) where the response is the reference followed by RESPONSE_END."""
    return build_prompt(nbest, ger), reference.strip() + RESPONSE_END


def token_cap(nbest: NBest, backend: LlmBackend, ger: GerOptions) -> int:
    """max_new_tokens for one list: factor x the longest hypothesis in tokens, floored and bounded."""
    longest = max(backend.count_tokens(t) for t in nbest.texts)
    return min(MAX_TOKEN_CAP, max(ger.min_new_tokens, math.ceil(ger.max_new_tokens_factor * longest)))


def _fallback(base: Correction, reason: str, log: dict[str, Any], raw: str | None, info: StageInfo, status: str = "fallback") -> Correction:
    return base.model_copy(update={"method": "ger", "status": status, "fallback_reason": reason, "guards": log, "raw_output": raw, "info": info})


def _guarded(nbest: NBest, raw: str, base: Correction, ger: GerOptions, log: dict[str, Any]) -> tuple[str, int, float]:
    """Run the text guards; returns (output, nearest index, distance) or raises guards.Rejected."""
    texts = [t for t in nbest.texts]
    out = guards.clean_output(raw, texts, log)
    guards.check_length(out, [t for t in texts if t.strip()], ger, log)
    idx, dist = guards.check_distance(out, texts, ger, log)
    if ger.constrained:
        log["snapped_to"] = idx
        out, dist = texts[idx], 0.0
    return out, idx, dist


def _gate(out: str, idx: int, dist: float, base: Correction, lm_scores: dict, ger: GerOptions, rescore: RescoreOptions, log: dict[str, Any],
          reranked: tuple[NBest, LlmBackend, RerankOptions] | None = None) -> CandidateScore:
    """Score the output like a hypothesis and check it against the rescored best (with `reranked`, a base the
    reranker chose: a new text must win the reranker's own comparison instead, see rerank_gate)."""
    if dist == 0.0 and base.scores[idx].text == out:  # a hypothesis verbatim: its own scores, not a re-score
        known = base.scores[idx]
        cand = CandidateScore(text=out, am=known.am, lm=known.lm, combined=known.combined, source="llm")
        if ger.score_gate:
            guards.check_score(known.combined, base.scores[base.chosen or 0].combined, ger, log)  # type: ignore[arg-type]
        return cand
    am = guards.output_am(base.scores[idx].am if base.scores[idx].am is not None else 0.0, dist, ger)
    lm = lm_term(out, lm_scores.get(out), rescore) if rescore.lam > 0 else None
    cand = CandidateScore(text=out, am=am, lm=lm, combined=combine(am, lm, rescore.lam), source="llm")
    if ger.score_gate and reranked is not None:
        rerank_gate(out, base, ger, log, *reranked)
    elif ger.score_gate:
        guards.check_score(cand.combined, base.scores[base.chosen or 0].combined, ger, log)  # type: ignore[arg-type]
    return cand


def rerank_gate(out: str, base: Correction, ger: GerOptions, log: dict[str, Any], nbest: NBest, backend: LlmBackend,
                rerank: RerankOptions) -> None:
    """GER's score gate where the reranker chose its base: the output joins the list and must beat the base by the
    reranker's own margin for the list's style (chosen out of fold on dev). It never reads a rescoring profile (the
    `cased` one hurt held-out own lists), and a style the reranker has no weights for keeps the base."""
    from cascade.ger.rerank import load_domain, load_model, output_gain

    got = output_gain(nbest, out, base.chosen or 0, backend, load_model(rerank.model), rerank, ger=ger,
                      domain=load_domain(rerank.model))
    if got is None:
        log["gate"] = "rerank: no weights for this style"
        raise guards.Rejected("no_reranker_for_style")
    gain, margin = got
    log.update(gate="rerank", rerank_gain=round(gain, 4), rerank_margin=margin)
    if not gain > margin + ger.score_margin + 1e-12:
        raise guards.Rejected("below_reranked_best")


GATE_NAME = "gate.json"
"""Beside an adapter's weights: the posterior margin and max changed words chosen for it on held-out dev speakers."""


def gate_file(adapter: str | None) -> Path | None:
    """The adapter's own gate (GATE_NAME in its directory), if it ships one."""
    path = Path(adapter).expanduser() / GATE_NAME if adapter else None
    return path if path is not None and path.is_file() else None


def adapter_styles(adapter: str | None) -> tuple[str, ...] | None:
    """The input styles an adapter's own gate was chosen on (None: any); a list of another style keeps GER's base."""
    path = gate_file(adapter)
    styles = json.loads(path.read_text()).get("styles") if path is not None else None
    return tuple(styles) if styles else None


def with_adapter_gate(ger: GerOptions, adapter: str | None) -> GerOptions:
    """The options with the adapter's own gate when it ships one and ger.adapter_gate."""
    path = gate_file(adapter) if ger.adapter_gate else None
    if path is None:
        return ger
    gate = json.loads(path.read_text())
    return ger.model_copy(update={k: gate[k] for k in ("posterior_margin", "max_changed_words") if k in gate})


def uses_posterior_gate(ger: GerOptions, adapter: str | None) -> bool:
    """An adapter with a posterior margin is judged by its own log-probabilities, not by the score gate."""
    return bool(adapter) and ger.posterior_margin is not None


def apply_guards(
    nbest: NBest, raw: str, base: Correction, ger: GerOptions, rescore: RescoreOptions, backend: LlmBackend,
    info: StageInfo | None = None, prompt: str | None = None, adapter: str | None = None,
    rerank: RerankOptions | None = None,
) -> Correction:
    """Turn one raw LLM output into a Correction: accepted, or the rescored best `base` with the reason.

    With an adapter the posterior gate replaces the score gate; it scores against `prompt` (rendered
    here when the caller has not rendered it already). `rerank`: the base is the reranker's pick, and the
    reranker is the score gate (rerank_gate).
    """
    log: dict[str, Any] = {"decoding": "greedy"}
    posterior = uses_posterior_gate(ger, adapter)
    text_ger = ger.model_copy(update={"score_gate": False}) if posterior else ger
    try:
        out, idx, dist = _guarded(nbest, raw, base, text_ger, log)
        verbatim = out in nbest.texts
        by_rerank = rerank is not None and not verbatim
        lm_scores = score_texts([out], backend) if rescore.lam > 0 and text_ger.score_gate and not verbatim and not by_rerank else {}
        cand = _gate(out, idx, dist, base, lm_scores, text_ger, rescore, log, (nbest, backend, rerank) if by_rerank else None)
    except guards.Rejected as rej:
        log["accepted"] = False
        return _fallback(base, rej.reason, log, raw, info)
    log["accepted"] = True
    chosen = next((i for i, t in enumerate(nbest.texts) if t == out), None)
    corr = Correction(
        text=out, method="ger", status="ok", chosen=chosen, changed=out != nbest.texts[0],
        scores=(*base.scores, cand), guards=log, raw_output=raw, info=info,
    )
    return posterior_gate(prompt or build_prompt(nbest, ger), corr, base, backend, ger, adapter) if posterior else corr


def posterior_gate(prompt: str, corr: Correction, base: Correction, backend: LlmBackend, ger: GerOptions,
                   adapter: str | None) -> Correction:
    """Keep an accepted change only when it is small (`max_changed_words`) and the adapter prefers it to the
    rescored best by `posterior_margin` nats.

    Both texts are scored as the answer to the very prompt the adapter was trained on (text +
    RESPONSE_END, as in training), so the margin is the GER model's own confidence in the change.
    """
    if corr.status != "ok" or corr.text == base.text:
        return corr
    log = dict(corr.guards)
    try:
        guards.check_changes(corr.text, base.text, ger, log)
    except guards.Rejected as rej:
        return _fallback(base, rej.reason, {**log, "accepted": False}, corr.raw_output, corr.info)
    best, out = backend.score([base.text + RESPONSE_END, corr.text + RESPONSE_END], prefix=prompt, adapter=adapter)
    gain = out.logprob - best.logprob
    log.update(posterior_gain=round(gain, 4), posterior_margin=ger.posterior_margin)
    if gain < (ger.posterior_margin or 0.0) - 1e-9:
        return _fallback(base, "below_posterior_margin", {**log, "accepted": False}, corr.raw_output, corr.info)
    return corr.model_copy(update={"guards": log})


def reranked_bases(chunk: Sequence[NBest], bases: list[Correction], backend: LlmBackend, rerank: RerankOptions) -> list[Correction]:
    """The rescored bases with the reranker's choice as their text: GER then starts from (and its guards
    compare against) the reranked best, while the scores stay on the rescoring scale the score gate uses."""
    from cascade.ger.rerank import load_domain, load_model, rerank_many

    picks = rerank_many(chunk, backend, load_model(rerank.model), rerank, domain=load_domain(rerank.model))
    return [b if p.chosen == b.chosen else b.model_copy(update={
        "text": p.text, "chosen": p.chosen, "changed": p.changed, "guards": {**b.guards, "rerank": p.guards}})
        for b, p in zip(bases, picks)]


def _ger_chunk(chunk: Sequence[NBest], backend: LlmBackend, ger: GerOptions, rescore: RescoreOptions,
               adapter: str | None = None, rerank: RerankOptions | None = None) -> list[Correction]:
    bases = rescore_many(chunk, backend, rescore)
    ger = with_adapter_gate(ger, adapter)
    picks = uses_posterior_gate(ger, adapter) and (gate_file(adapter) is not None if ger.adapter_picks is None else ger.adapter_picks)
    reranked = rerank is not None and rerank.ger_base
    if reranked:
        bases = reranked_bases(chunk, bases, backend, rerank)  # type: ignore[arg-type]
    t0 = time.perf_counter()
    todo = [i for i, nb in enumerate(chunk) if any(t.strip() for t in nb.texts)]
    from cascade.ger.features import detect_style

    styles = adapter_styles(adapter) if ger.adapter_gate else None
    other = {i for i in todo if styles and detect_style(chunk[i].texts) not in styles}
    todo = [i for i in todo if i not in other]
    rendered = [render_prompt(chunk[i], ger) for i in todo]
    ref = prompts.prompt_ref(ger.prompt)
    info = StageInfo(stage="ger", model=getattr(backend, "name", None), options={**ger.model_dump(), "adapter": adapter},
                     prompt_name=ref.name, prompt_hash=ref.hash)
    out: list[Correction] = [_fallback(b, "adapter_not_for_style" if i in other else "all_hypotheses_empty", {}, None, info)
                             for i, b in enumerate(bases)]
    if not todo:
        return out
    cap = max(token_cap(chunk[i], backend, ger) for i in todo)
    try:
        drafts = [prompt_variables(chunk[i])["best"] for i in todo]  # the answer usually copies the best: ct2 checks it in one pass
        raws = backend.generate([p for p, _ in rendered], max_tokens=cap, stop=STOP, temperature=0.0, adapter=adapter, drafts=drafts)
    except BackendUnavailable as exc:
        for i in todo:
            out[i] = _fallback(bases[i], f"llm_unavailable: {exc.message}", {}, None, info, status="unavailable")
        return out
    info = info.model_copy(update={"seconds": (time.perf_counter() - t0) / len(todo)})
    for i, (prompt, _), raw in zip(todo, rendered, raws):
        # the list's own rescoring options (its style profile): the score gate compares on the bases' scale
        out[i] = apply_guards(chunk[i], raw or "", bases[i], ger, effective(rescore, chunk[i]), backend, info, prompt, adapter,
                              rerank if reranked else None)
        if reranked and not picks and out[i].chosen is not None and out[i].chosen != bases[i].chosen:
            # the reranker already chose among the hypotheses: GER may write something new, not pick another one
            # (unless an adapter's own gate, chosen on held-out speakers with picks allowed, judges its pick)
            out[i] = _fallback(bases[i], "reranker_preferred_base", {**out[i].guards, "accepted": False}, raw, info)
    return out


def correct(nbest: NBest, backend: LlmBackend, ger: GerOptions, rescore: RescoreOptions, *,
            adapter: str | None = None, rerank: RerankOptions | None = None) -> Correction:
    """GER for one N-best list; a rejected output falls back to the rescored (or, with `rerank`, reranked) best."""
    check_nbest(nbest)
    return _ger_chunk([nbest], backend, ger, rescore, adapter, rerank)[0]


def _error(nbest: NBest, method: str, reason: str) -> Correction:
    return Correction(text="", method=method, status="error", fallback_reason=reason)  # type: ignore[arg-type]


def correct_many(
    nbests: Iterable[NBest],
    backend: LlmBackend | None,
    *,
    method: Literal["none", "rescore", "rerank", "ger"] = "ger",
    ger: GerOptions | None = None,
    rescore: RescoreOptions | None = None,
    batch_size: int = 8,
    adapter: str | None = None,
    rerank: RerankOptions | None = None,
) -> Iterator[Correction]:
    """Corrections in input order, `batch_size` lists per LLM call; an empty list yields status "error".

    `rerank`: the reranker's options (method "rerank"; with method "ger" its pick is GER's starting point)."""
    ger, rescore = ger or GerOptions(), rescore or RescoreOptions()
    for batch in chunked(nbests, batch_size):
        yield from _run(batch, backend, method, ger, rescore, adapter, rerank)


def _run(batch: list[NBest], backend: LlmBackend | None, method: str, ger: GerOptions, rescore: RescoreOptions,
         adapter: str | None, rerank: RerankOptions | None = None) -> Iterator[Correction]:
    valid = [nb for nb in batch if nb.hypotheses]
    if method == "none":
        done = [Correction(text=nb.texts[0], method="none", chosen=0) for nb in valid]
    elif method == "rescore":
        done = rescore_many(valid, backend, rescore, score_single=False)
    elif method == "rerank":
        from cascade.ger.rerank import load_domain, load_model, rerank_many

        opts = rerank or RerankOptions()
        done = rerank_many(valid, backend, load_model(opts.model), opts, domain=load_domain(opts.model)) if valid else []
    else:
        done = _ger_chunk(valid, backend, ger, rescore, adapter, rerank)  # type: ignore[arg-type]
    it = iter(done)
    for nb in batch:
        yield next(it) if nb.hypotheses else _error(nb, method, "empty N-best list")
