"""SmolLM2-135M vs Gemma 3 270M on dev only: as a scorer (LM rescoring, λ swept) and as a zero-shot GER model.

Prints ONE JSON line. Per model: load seconds (converted HF directory; the one-off GGUF conversion is not
counted), scoring seconds per list and per text, and
- rescore: WER of (1-λ)·AM + λ·LM (per-token normalisation, cascade.ger.rescore) for λ in 0..1 on two input
  styles: the six HyPoradise dev sets (lower-case, unpunctuated; first --per-set of each, pooled) and our own
  tiny.en lists of the librispeech-test-other dev clips (cased, punctuated; beam 10, 5 distinct). `best` is
  the λ with the lowest dev WER (optimistic: chosen and measured on the same lists); `cv2` chooses λ on one
  half and measures on the other, both ways round (an honest dev figure);
- ger: zero-shot GER (prompt ger/hyporadise, guards on, λ 0 as the fallback) on the first --ger-per-set lists
  of each set: WER beside the 1-best, lists changed, seconds per list;
- fusion_rerank: the fusion reranker's out-of-fold dev WER with this LLM's features (cascade.fusion.rerank,
  asr-outputs dev, every subset of >= 3 systems), beside ROVER.
Ratios gemma / smollm2 are given for WER and cost. Timings are on 2 shared CPU cores: inflated under load.

    python benchmarks/llm_compare.py --per-set 50 --ger-per-set 8
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from cascade import ger, metrics  # noqa: E402
from cascade.config import RescoreOptions, load_settings  # noqa: E402
from cascade.formats.hyporadise import load_hyporadise  # noqa: E402
from cascade.ger.features import CachedBackend, LmCache  # noqa: E402
from cascade.ger.rescore import candidate_scores, pick  # noqa: E402
from cascade.llm import load_backend  # noqa: E402
from cascade.types import Utterance  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
SETS = ("atis", "chime4", "ls_clean", "swbd", "td3", "wsj_score")
LAMS = tuple(round(i / 20, 2) for i in range(21))


def dev_lists(settings, per_set: int) -> dict[str, list[Utterance]]:  # noqa: ANN001
    """{style: utterances}: pooled HyPoradise dev lists ("plain") and our own tiny.en dev lists ("cased")."""
    from ger_accuracy import own_split

    plain = [u for s in SETS for u in load_hyporadise(DATA / "hyporadise" / "dev" / f"{s}.json", limit=per_set)]
    return {"plain": plain, "cased": load_hyporadise(own_split(settings, "dev"))}


def _wer(utts: list[Utterance], texts: list[str]) -> float:
    return round(100 * metrics.wer([u.reference or "" for u in utts], texts), 3)


def _picks(utts: list[Utterance], lm: dict, lam: float) -> list[str]:
    opts = RescoreOptions(lam=lam, length_norm="tokens")
    return [u.nbest.hypotheses[pick(candidate_scores(u.nbest, lm if lam > 0 else None, opts))].text for u in utts]


def rescore_sweep(utts: list[Utterance], lm: dict) -> dict[str, object]:
    """WER per λ, the best λ, and the 2-fold cross-validated WER (λ chosen on the other half)."""
    table = {lam: _wer(utts, _picks(utts, lm, lam)) for lam in LAMS}
    best = min(LAMS, key=lambda lam: (table[lam], lam))
    halves = [utts[0::2], utts[1::2]]
    errs = words = 0.0
    for k in (0, 1):
        train, held = halves[k], halves[1 - k]
        lam = min(LAMS, key=lambda x: (_wer(train, _picks(train, lm, x)), x))
        counts = metrics.word_errors([u.reference or "" for u in held], _picks(held, lm, lam))
        errs, words = errs + counts.errors, words + counts.ref_len
    return {"n": len(utts), "1-best": table[0.0], "best_lam": best, "best": table[best],
            "cv2": round(100 * errs / max(words, 1), 3), "lm_only": table[1.0],
            "by_lam": {str(k): v for k, v in table.items()}}


def ger_zero_shot(utts: list[Utterance], backend, settings) -> dict[str, object]:  # noqa: ANN001
    t = time.perf_counter()
    out = list(ger.correct_many([u.nbest for u in utts], backend, method="ger", ger=settings.ger,
                                rescore=RescoreOptions(lam=0.0), batch_size=8))
    secs = (time.perf_counter() - t) / max(len(utts), 1)
    return {"n": len(utts), "1-best": _wer(utts, [u.nbest.hypotheses[0].text for u in utts]),
            "ger": _wer(utts, [c.text for c in out]), "changed": sum(c.changed for c in out),
            "rejected_by_guards": sum(c.status == "fallback" for c in out), "s_per_utt": round(secs, 3)}


def fusion_rerank(backend, settings) -> dict[str, object]:  # noqa: ANN001
    """The fusion reranker trained on asr-outputs dev with this LLM's scores: out-of-fold WER vs ROVER."""
    from fusion_accuracy import DATA as FUSION_DATA
    from fusion_accuracy import SYSTEMS, label, restrict, subsets

    from cascade.batch.join import join
    from cascade.fusion import rerank

    joined = join([FUSION_DATA / "dev" / f"{n}.csv" for n in SYSTEMS])
    groups = {label(c): restrict(joined, c) for c in subsets(SYSTEMS)}
    lm = rerank.lm_scores([p for ps in groups.values() for p in ps], backend, settings.home)
    trained = rerank.train(groups, lm, llm=str(backend.name))
    mean = lambda d: round(sum(d.values()) / len(d), 3)  # noqa: E731
    return {"rover": trained.rover, "rerank": trained.rerank, "mean_rover": mean(trained.rover),
            "mean_rerank": mean(trained.rerank), "margin": trained.model.margins[rerank.STYLE]}


def evaluate(model: str, args, settings, data: dict[str, list[Utterance]]) -> dict[str, object]:  # noqa: ANN001
    t = time.perf_counter()
    live = load_backend(settings.llm.model_copy(update={"model": model, "threads": args.threads}), settings.home)
    out: dict[str, object] = {"load_s": round(time.perf_counter() - t, 1)}
    sample = [h.text for u in data["plain"][: args.timing_lists] for h in u.nbest.hypotheses]
    t = time.perf_counter()
    live.score(sample)  # uncached: the real cost of scoring one 5-best list
    secs = time.perf_counter() - t
    out["score_s_per_list"] = round(secs / max(args.timing_lists, 1), 3)
    out["score_s_per_text"] = round(secs / max(len(sample), 1), 4)
    cached = CachedBackend(LmCache(live, settings.home))
    lm = cached.cache.get([h.text for us in data.values() for u in us for h in u.nbest.hypotheses])
    out["rescore"] = {style: rescore_sweep(utts, lm) for style, utts in data.items()}
    if args.ger_per_set:
        sets = {"hyporadise": [u for s in SETS for u in load_hyporadise(DATA / "hyporadise" / "dev" / f"{s}.json",
                                                                         limit=args.ger_per_set)],
                "tiny.en": data["cased"][: args.ger_per_set * 2]}
        out["ger"] = {k: ger_zero_shot(v, cached, settings) for k, v in sets.items()}
    if not args.no_fusion:
        out["fusion_rerank"] = fusion_rerank(cached, settings)
    return out


def ratios(a: dict, b: dict) -> dict[str, float]:
    """gemma / smollm2 for the headline figures (below 1: gemma lower)."""
    def r(x: float, y: float) -> float | None:
        return round(x / y, 3) if y else None

    out = {"load_s": r(b["load_s"], a["load_s"]), "score_s_per_list": r(b["score_s_per_list"], a["score_s_per_list"])}
    for style in a["rescore"]:
        out[f"rescore_cv2_{style}"] = r(b["rescore"][style]["cv2"], a["rescore"][style]["cv2"])
    for k in a.get("ger", {}):
        out[f"ger_wer_{k}"] = r(b["ger"][k]["ger"], a["ger"][k]["ger"])
        out[f"ger_s_per_utt_{k}"] = r(b["ger"][k]["s_per_utt"], a["ger"][k]["s_per_utt"])
    if "fusion_rerank" in a:
        out["fusion_rerank_mean"] = r(b["fusion_rerank"]["mean_rerank"], a["fusion_rerank"]["mean_rerank"])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="smollm2,gemma3-270m")
    ap.add_argument("--per-set", type=int, default=50, help="HyPoradise dev lists per set for rescoring")
    ap.add_argument("--ger-per-set", type=int, default=8, help="dev lists per set for zero-shot GER (0: skip)")
    ap.add_argument("--timing-lists", type=int, default=8, help="lists scored uncached to time scoring")
    ap.add_argument("--no-fusion", action="store_true", help="skip the fusion reranker column")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    settings = load_settings()
    data = dev_lists(settings, args.per_set)
    models = args.models.split(",")
    result: dict[str, object] = {"benchmark": "llm_compare", "split": "dev", "per_set": args.per_set,
                                 "ger_per_set": args.ger_per_set, "models": {}}
    for m in models:
        result["models"][m] = evaluate(m, args, settings, data)
        print(json.dumps({"partial": m, **result["models"][m]}), file=sys.stderr, flush=True)
    if len(models) == 2:
        result["ratio_" + models[1] + "_over_" + models[0]] = ratios(*(result["models"][m] for m in models))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
