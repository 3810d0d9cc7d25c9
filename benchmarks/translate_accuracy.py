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


def _gate(split: str, items: list, report, cfg, chosen: dict | None) -> dict:  # noqa: ANN001
    """Choose the gate on this split (the first one: dev) or apply the one chosen there; BLEU/chrF under it."""
    from cascade import llm, metrics

    backend = llm.load_backend(cfg.llm, cfg.home)
    fused = next(m for m in report.methods if m.method == "ger")
    rows, base, texts = T.gate_rows(fused.transcripts, backend)
    refs = [it.reference for it in items]
    pick = chosen or T.choose_gate(rows, base, texts, refs)
    got = T.apply_gate(rows, base, texts, pick["lam"], pick["margin"])
    whisper = T.apply_gate(rows, base, texts, 0.0, None)
    opened = T.apply_gate(rows, base, texts, 0.0, -1e9)  # every LLM text that passed GER's text guards
    return {"lam": pick["lam"], "margin": pick["margin"], "chosen_on": "dev" if chosen is None else "dev (applied)",
            "split": split, "bleu": round(metrics.bleu(refs, got), 2), "chrf": round(metrics.chrf(refs, got), 2),
            "whisper_bleu": round(metrics.bleu(refs, whisper), 2), "whisper_chrf": round(metrics.chrf(refs, whisper), 2),
            "changed": sum(a != b for a, b in zip(got, whisper)),
            "open_gate": {"bleu": round(metrics.bleu(refs, opened), 2), "chrf": round(metrics.chrf(refs, opened), 2),
                          "changed": sum(a != b for a, b in zip(opened, whisper))},
            "llm_texts_past_text_guards": sum(r is not None for r_u in rows for r in r_u)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--splits", default="dev,test")
    ap.add_argument("--methods", default="none,rescore,ger,via")
    ap.add_argument("--via-correct", default="none", choices=["none", "rescore", "ger"],
                    help="correction of the source-language N-best before the LLM translates it")
    ap.add_argument("--manifest", type=Path, default=DATA)
    ap.add_argument("--choose-gate", action="store_true", help="choose the fusion gate (translate.fusion_lam / "
                    "fusion_margin) on the first split (dev) so its BLEU never drops, and apply it to the others")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    cfg = load_settings({"asr": {"model": "base", "n_best": 5, "beam_size": 5}})
    started = time.perf_counter()
    out: dict = {"benchmark": "translate_accuracy", "data": "../shared/data/fleurs (non-English clips)",
                 "asr": "whisper base int8, beam 5, 5-best", "llm": f"{cfg.llm.backend}:{cfg.llm.model}",
                 "via_correct": args.via_correct, "translate_options": cfg.translate.model_dump(),
                 "rescore_lam": T.stage_options(cfg)[1].lam, "max_edit_distance": T.stage_options(cfg)[0].max_edit_distance,
                 "reference_1best": REFERENCE, "cpu_threads": os.cpu_count(), "machine": platform.machine()}
    gate = None
    for split in args.splits.split(","):
        items = T.load_manifest(args.manifest, split=split)
        report = T.evaluate(items, cfg, methods=tuple(args.methods.split(",")), via_method=args.via_correct)
        if args.choose_gate and "ger" in args.methods.split(","):
            gate = _gate(split, items, report, cfg, gate)
            out.setdefault("gate", {})[split] = gate
        base = report.methods[0]
        out[split] = {"n": report.n, **{m.method: {
            "bleu": m.bleu, "chrf": m.chrf, "seconds_per_utt": m.seconds_per_utt, "changed": m.changed,
            "fallbacks": m.fallbacks, "reasons": m.reasons, "bleu_delta": round(m.bleu - base.bleu, 2), "chrf_delta": round(m.chrf - base.chrf, 2),
        } for m in report.methods}}
    out["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
