"""WER of 1-best / rescore / GER (zero-shot, optionally + LoRA) / o_nb / o_cp on ../shared/data; ONE JSON line.

λ is tuned on the dev split (first N of every hyporadise set) and applied to both splits.
Sets: the six hyporadise sets (first N per set) and librispeech-test-other with two N-best
sources: the manifest's large-Whisper 5-best and our own tiny.en 5-best (ASR runs here).

    python benchmarks/ger_accuracy.py --per-set 30
    python benchmarks/ger_accuracy.py --per-set 30 --adapter ~/.cache/cascade/adapters/ger
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from cascade import ger, metrics
from cascade.config import load_settings
from cascade.ger.data import load_hyporadise, transcribe_manifest
from cascade.ger.rescore import tune_lambda
from cascade.llm import load_backend
from cascade.types import Utterance

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
SETS = ("atis", "chime4", "ls_clean", "swbd", "td3", "wsj_score")


def librispeech(split: str, source: str, settings, limit: int) -> list[Utterance]:
    manifest = DATA / "librispeech-test-other" / "manifest.jsonl"
    rows = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    keep = {r["id"] for r in rows if r["split"] == split}
    if source == "large":
        utts = [u for u in load_hyporadise(manifest) if u.id in keep]
    else:
        utts = [u for u in transcribe_manifest(manifest, settings.asr, settings.home) if u.id in keep]
    return utts[:limit]


def run_set(utts: list[Utterance], backend, settings, methods: list[str], adapter: str | None) -> tuple[dict, dict]:
    refs, nbs = [u.reference or "" for u in utts], [u.nbest for u in utts]
    outputs, seconds = {}, {}
    variants = [(m, settings.ger) for m in methods]
    if adapter:
        variants.append(("ger+lora", settings.ger.model_copy(update={"adapter": adapter})))
    for name, gopts in variants:
        t0 = time.perf_counter()
        method = "ger" if name.startswith("ger") else name
        res = ger.correct_many(nbs, backend, method=method, ger=gopts, rescore=settings.rescore, batch_size=settings.llm.batch_size)
        outputs[name] = [c.text for c in res]
        seconds[name] = (time.perf_counter() - t0) / max(len(utts), 1)
    rows = metrics.score_methods(refs, nbs, outputs)
    return {r.method: round(100 * r.wer, 2) for r in rows}, {k: round(v, 3) for k, v in seconds.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-set", type=int, default=30, help="first N utterances of each set and split")
    ap.add_argument("--sets", default=",".join(SETS))
    ap.add_argument("--splits", default="dev,test")
    ap.add_argument("--methods", default="rescore,ger")
    ap.add_argument("--adapter", default=None, help="LoRA adapter directory: adds a ger+lora column")
    ap.add_argument("--no-librispeech", action="store_true", help="skip librispeech-test-other (and its ASR run)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    base = load_settings({"llm": {"threads": args.threads}})
    backend = load_backend(base.llm, base.home)
    sets = [s for s in args.sets.split(",") if s]
    t0 = time.perf_counter()
    dev = [u for s in sets for u in load_hyporadise(DATA / "hyporadise" / "dev" / f"{s}.json", limit=args.per_set)]
    lam, grid = tune_lambda([u.nbest for u in dev], [u.reference or "" for u in dev], backend, base.rescore, [i / 20 for i in range(21)])
    settings = base.model_copy(update={"rescore": base.rescore.model_copy(update={"lam": lam})})
    out: dict = {"benchmark": "ger_accuracy", "per_set": args.per_set, "lam": lam, "tune_seconds": round(time.perf_counter() - t0, 1),
                 "lam_grid_dev_wer": {str(g): round(100 * w, 2) for g, w in grid}, "wer": {}, "seconds_per_utt": {}}
    methods = [m for m in args.methods.split(",") if m]
    for split in args.splits.split(","):
        for s in sets:
            utts = load_hyporadise(DATA / "hyporadise" / split / f"{s}.json", limit=args.per_set)
            out["wer"][f"{split}/{s}"], out["seconds_per_utt"][f"{split}/{s}"] = run_set(utts, backend, settings, methods, args.adapter)
        if not args.no_librispeech:
            for source in ("large", "tiny.en"):
                utts = librispeech(split, source, settings, args.per_set)
                key = f"{split}/ls-other-{source}"
                out["wer"][key], out["seconds_per_utt"][key] = run_set(utts, backend, settings, methods, args.adapter)
    for split in args.splits.split(","):
        rows = [v for k, v in out["wer"].items() if k.startswith(split + "/")]
        out[f"mean_{split}"] = {m: round(sum(r[m] for r in rows) / len(rows), 2) for m in rows[0]} if rows else {}
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    sys.exit(main())
