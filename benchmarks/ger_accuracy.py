"""WER of 1-best / rescore / GER zero-shot / GER + LoRA adapter / o_nb / o_cp on ../shared/data; ONE JSON line.

Every choice is made on the dev split and applied unchanged to test: λ (rescoring weight) and,
with --adapter, the adapter's gate: GerOptions.posterior_margin (how many nats the adapter must
prefer its change over the rescored best) and max_changed_words. The pair chosen gives the lowest
mean dev WER without making any dev set worse than the rescored best (ties: the more cautious).
The shipped adapter never saw the first 60 dev lists of a set, so --per-set <= 60 keeps dev held out.
Sets: the six hyporadise sets (first N per set; the files are pre-shuffled) and
librispeech-test-other with two N-best sources: the manifest's large-Whisper 5-best and the
bundled tiny.en 5-best (ASR runs here once; cached under CASCADE_HOME/bench).

    python benchmarks/ger_accuracy.py --per-set 30
    python benchmarks/ger_accuracy.py --per-set 20 --adapter cascade/adapters/ger-smollm2
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from cascade import ger, metrics
from cascade.config import load_settings
from cascade.ger import guards
from cascade.formats.hyporadise import load_hyporadise, utterance_to_record
from cascade.ger.data import transcribe_manifest
from cascade.ger.rescore import tune_lambda
from cascade.llm import load_backend
from cascade.types import Correction, Utterance

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
SETS = ("atis", "chime4", "ls_clean", "swbd", "td3", "wsj_score")
MARGINS = (0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0)
CHANGES = (1, 2, 3, 4, None)
ACCEPT_ALL = -1e9


def librispeech(split: str, source: str, settings, limit: int) -> list[Utterance]:
    manifest = DATA / "librispeech-test-other" / "manifest.jsonl"
    rows = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    keep = {r["id"] for r in rows if r["split"] == split}
    if source == "large":
        return [u for u in load_hyporadise(manifest) if u.id in keep][:limit]
    cache = settings.home / "bench" / f"ls-other-{settings.asr.model}-n{settings.asr.n_best}.json"
    if not cache.exists():
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps([utterance_to_record(u) for u in transcribe_manifest(manifest, settings.asr, settings.home)]))
    return [u for u in load_hyporadise(cache) if u.id in keep][:limit]


OWN_BEAM, OWN_N = 10, 5


def own_lists(settings) -> Path:  # noqa: ANN001
    """Our own N-best on the 50 clips, decoded once and cached: beam OWN_BEAM, the first OWN_N hypotheses that
    differ after normalisation (a wider beam's distinct words, not case/punctuation variants of the 1-best).
    Hypotheses keep the recogniser's summed token log-prob (am_score) and its mean (avg_logprob)."""
    from cascade.asr import transcribe_all
    from cascade.ger.features import distinct
    from cascade.types import Hypothesis, NBest

    manifest = DATA / "librispeech-test-other" / "manifest.jsonl"
    cache = settings.home / "bench" / f"ls-other-{settings.asr.model}-b{OWN_BEAM}d{OWN_N}.json"
    if cache.exists():
        return cache
    asr = settings.asr.model_copy(update={"beam_size": OWN_BEAM, "n_best": OWN_BEAM})
    records = []
    for line in manifest.read_text().splitlines():
        rec = json.loads(line)
        segs = [s.nbest for s in transcribe_all(manifest.parent / rec["audio"], asr, home=settings.home).segments if s.nbest.hypotheses]
        depth = max((len(nb.hypotheses) for nb in segs), default=0)
        hyps = []
        for k in range(depth):
            parts = [nb.hypotheses[min(k, len(nb.hypotheses) - 1)] for nb in segs]
            am = sum(p.am_score or 0.0 for p in parts)
            toks = sum(len(p.tokens or ()) for p in parts)
            hyps.append(Hypothesis(text=" ".join(p.text for p in parts), am_score=am, avg_logprob=am / max(toks, 1)))
        nb = distinct(NBest(hypotheses=tuple(hyps) or (Hypothesis(text=""),)), OWN_N)
        records.append({"id": rec["id"], "split": rec["split"], "output": rec["text"],
                        "input": [h.model_dump(include={"text", "am_score", "avg_logprob"}) for h in nb.hypotheses]})
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(records, indent=1))
    return cache


def load_sets(split: str, args, settings) -> dict[str, list[Utterance]]:  # noqa: ANN001
    out = {s: load_hyporadise(DATA / "hyporadise" / split / f"{s}.json", limit=args.per_set) for s in args.sets.split(",") if s}
    if not args.no_librispeech:
        for source in ("large", "tiny.en"):
            out[f"ls-other-{source}"] = librispeech(split, source, settings, args.per_set)
    return out


def run(utts: list[Utterance], backend, method: str, gopts, settings, adapter: str | None = None) -> tuple[list[Correction], float]:  # noqa: ANN001
    t0 = time.perf_counter()
    res = list(ger.correct_many([u.nbest for u in utts], backend, method=method, ger=gopts, rescore=settings.rescore, batch_size=settings.correct.batch_size, adapter=adapter))
    return res, (time.perf_counter() - t0) / max(len(utts), 1)


def with_gate(lora: list[Correction], rescored: list[Correction], margin: float, max_changes: int | None) -> list[str]:
    """What GER + adapter returns at (margin, max_changed_words), from a run that accepted every change."""
    out = []
    for c, r in zip(lora, rescored):
        gain = c.guards.get("posterior_gain")
        ok = gain is None or (gain >= margin - 1e-9 and (max_changes is None or guards.changed_words(c.text, r.text) <= max_changes))
        out.append(c.text if ok else r.text)
    return out


def pct(refs: list[str], hyps: list[str]) -> float:
    return round(100 * metrics.wer(refs, hyps), 2)


def choose_gate(dev: dict[str, dict]) -> tuple[tuple[float, int | None], dict[str, float]]:
    """Lowest mean dev WER with no dev set worse than the rescored best; ties keep the more cautious gate."""
    grid = {}
    for m in MARGINS:
        for c in CHANGES:
            wers = {k: pct(d["refs"], with_gate(d["lora"], d["rescore"], m, c)) for k, d in dev.items()}
            if all(wers[k] <= d["rescore_wer"] for k, d in dev.items()):
                grid[(m, c)] = sum(wers.values()) / len(wers)
    best = min(grid, key=lambda g: (round(grid[g], 6), -g[0], g[1] if g[1] is not None else 99))
    return best, {f"{m}/{c}": round(v, 3) for (m, c), v in grid.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-set", type=int, default=30, help="first N utterances of each set and split")
    ap.add_argument("--sets", default=",".join(SETS))
    ap.add_argument("--methods", default="rescore,ger", help="rescore is always run (it is the fallback); ger = zero-shot GER")
    ap.add_argument("--adapter", default=None, help="LoRA adapter directory: adds a ger+lora column")
    ap.add_argument("--margin", type=float, default=None, help="posterior margin for the adapter (default: chosen on dev)")
    ap.add_argument("--max-changes", type=int, default=None, help="max changed words for the adapter (with --margin)")
    ap.add_argument("--dump", type=Path, default=None, help="write one JSON line per utterance here")
    ap.add_argument("--splits", default="dev,test", help="dev is always loaded (λ and the margin are chosen on it)")
    ap.add_argument("--no-librispeech", action="store_true", help="skip librispeech-test-other (and its ASR run)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    if args.adapter and args.margin is None and "dev" not in args.splits.split(","):
        ap.error("--adapter without --margin needs the dev split: the margin is chosen there")
    base = load_settings({"llm": {"threads": args.threads}})
    backend = load_backend(base.llm, base.home)
    t0 = time.perf_counter()
    splits = [s for s in ("dev", "test") if s in args.splits.split(",")]
    data = {split: load_sets(split, args, base) for split in {"dev", *splits}}
    hypo_dev = [u for k, us in data["dev"].items() if not k.startswith("ls-other") for u in us]
    lam, grid = tune_lambda([u.nbest for u in hypo_dev], [u.reference or "" for u in hypo_dev], backend, base.rescore, [i / 20 for i in range(21)])
    settings = base.model_copy(update={"rescore": base.rescore.model_copy(update={"lam": lam})})
    out: dict = {"benchmark": "ger_accuracy", "per_set": args.per_set, "lam": lam, "tune_seconds": round(time.perf_counter() - t0, 1),
                 "lam_grid_dev_wer": {str(g): round(100 * w, 2) for g, w in grid}, "adapter": args.adapter,
                 "wer": {}, "seconds_per_utt": {}, "changed": {}}
    zero_shot = "ger" in args.methods.split(",")
    margin, max_changes = args.margin, args.max_changes
    dump = args.dump.open("w") if args.dump else None
    for split in splits:
        kept = {}
        for name, utts in data[split].items():
            key = f"{split}/{name}"
            refs = [u.reference or "" for u in utts]
            rescored, s_rescore = run(utts, backend, "rescore", settings.ger, settings)
            rows = {r.method: round(100 * r.wer, 2) for r in metrics.score_methods(refs, [u.nbest for u in utts], {"rescore": [c.text for c in rescored]})}
            secs = {"rescore": round(s_rescore, 3)}
            if zero_shot:
                zs, secs["ger"] = run(utts, backend, "ger", settings.ger, settings)
                rows["ger"] = pct(refs, [c.text for c in zs])
            if args.adapter:
                m = margin if margin is not None else ACCEPT_ALL  # dev: accept all, log the gains, choose below
                gopts = settings.ger.model_copy(update={"posterior_margin": m, "max_changed_words": max_changes})
                lora, secs["ger+lora"] = run(utts, backend, "ger", gopts, settings, args.adapter)
                kept[key] = {"refs": refs, "lora": lora, "rescore": rescored, "rescore_wer": rows["rescore"]}
                rows["ger+lora"] = pct(refs, [c.text for c in lora])
            out["wer"][key] = rows
            for i, u in enumerate(utts) if dump else ():
                lc = kept[key]["lora"][i] if args.adapter else None
                dump.write(json.dumps({"key": key, "id": u.id, "ref": u.reference, "best": rescored[i].text, "lora": lc.text if lc else None,
                                       "gain": lc.guards.get("posterior_gain") if lc else None, "status": lc.status if lc else None}) + "\n")
            out["seconds_per_utt"][key] = {k: round(v, 3) for k, v in secs.items()}
            print(json.dumps({"partial": key, **rows}), file=sys.stderr, flush=True)
        if args.adapter and split == "dev" and margin is None:
            (margin, max_changes), out["gate_grid_dev_mean_wer"] = choose_gate(kept)
            for key, d in kept.items():
                out["wer"][key]["ger+lora"] = pct(d["refs"], with_gate(d["lora"], d["rescore"], margin, max_changes))
        for key, d in kept.items():
            texts = with_gate(d["lora"], d["rescore"], margin, max_changes)
            out["changed"][key] = sum(t != r.text for t, r in zip(texts, d["rescore"]))  # lists GER+adapter changed
    if dump:
        dump.close()
    out["margin"], out["max_changed_words"] = margin, max_changes
    for split in splits:
        rows = [v for k, v in out["wer"].items() if k.startswith(split + "/")]
        mean = {m: round(sum(r[m] for r in rows) / len(rows), 2) for m in rows[0]} if rows else {}
        out[f"mean_{split}"] = mean
        if mean.get("1-best"):
            out[f"rel_reduction_pct_{split}"] = {m: round(100 * (mean["1-best"] - v) / mean["1-best"], 1) for m, v in mean.items() if m not in ("1-best", "o_nb", "o_cp")}
        out[f"sets_worse_than_1best_{split}"] = [k for k, r in out["wer"].items() if k.startswith(split + "/") and r.get("ger+lora", 0) > r["1-best"]]
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    sys.exit(main())
