"""Speech translation accuracy: BLEU/chrF of Whisper base's 1-best translation beside LLM rescoring,
N-best fusion (GER, guarded) and the two-stage path (transcribe -> LLM translation), on the
non-English FLEURS clips of ../shared/data (dev 6 / test 16). Prints ONE JSON line.

    ~/.cache/cascade/venv/bin/python benchmarks/translate_accuracy.py [--splits dev,test] [--via-correct none]

Settings (thresholds, λ) come from configs/default.yaml + CASCADE_* env like everywhere else; they
were chosen on dev only. Seconds per utterance include the Whisper decode each method needs.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import time
from pathlib import Path

from cascade.config import load_settings
from cascade.translate import speech as T

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "fleurs" / "manifest.jsonl"
REFERENCE = {"dev": {"bleu": 18.8, "chrf": 47.8}, "test": {"bleu": 18.7, "chrf": 47.8}}
"""../shared/data/README.md: Whisper base translate, beam 5 (the 1-best row must match these)."""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--splits", default="dev,test")
    ap.add_argument("--methods", default="none,rescore,ger,via")
    ap.add_argument("--via-correct", default="none", choices=["none", "rescore", "ger"],
                    help="correction of the source-language N-best before the LLM translates it")
    ap.add_argument("--manifest", type=Path, default=DATA)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    cfg = load_settings({"asr": {"model": "base", "n_best": 5, "beam_size": 5}})
    started = time.perf_counter()
    out: dict = {"benchmark": "translate_accuracy", "data": "../shared/data/fleurs (non-English clips)",
                 "asr": "whisper base int8, beam 5, 5-best", "llm": f"{cfg.llm.backend}:{cfg.llm.model}",
                 "via_correct": args.via_correct, "translate_options": cfg.translate.model_dump(),
                 "rescore_lam": T.stage_options(cfg)[1].lam, "max_edit_distance": T.stage_options(cfg)[0].max_edit_distance,
                 "reference_1best": REFERENCE, "cpu_threads": os.cpu_count(), "machine": platform.machine()}
    for split in args.splits.split(","):
        items = T.load_manifest(args.manifest, split=split)
        report = T.evaluate(items, cfg, methods=tuple(args.methods.split(",")), via_method=args.via_correct)
        base = report.methods[0]
        out[split] = {"n": report.n, **{m.method: {
            "bleu": m.bleu, "chrf": m.chrf, "seconds_per_utt": m.seconds_per_utt, "changed": m.changed,
            "fallbacks": m.fallbacks, "reasons": m.reasons, "bleu_delta": round(m.bleu - base.bleu, 2), "chrf_delta": round(m.chrf - base.chrf, 2),
        } for m in report.methods}}
    out["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
