"""GER with a LoRA adapter vs zero-shot GER vs 1-best on ../shared/data; prints ONE JSON line.

    python benchmarks/ger_lora.py --adapter cascade/adapters/ger-smollm2 --split test --per-set 20

Sets: the six HyPoradise domains (first N lists of each file: the files are pre-shuffled, so
the first N are a fair sample) and librispeech-test-other decoded here with the bundled
Whisper tiny.en (N=5). `dev` is for choices, `test` only for reporting. WER uses the
project's one normaliser (cascade.metrics). Methods run on the same lists, in one process.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from cascade.config import AsrOptions, load_settings
from cascade.ger import correct_many
from cascade.ger.data import load_hyporadise
from cascade.llm import load_backend
from cascade.metrics import oracle_composition, oracle_nbest, wer
from cascade.types import NBest, Utterance

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
HYPO_SETS = ("atis", "chime4", "ls_clean", "swbd", "td3", "wsj_score")


def tiny_en_lists(split: str, home: Path, limit: int) -> list[Utterance]:
    """librispeech-test-other clips of `split`, decoded with tiny.en 5-best (cached in CASCADE_HOME/bench)."""
    from cascade.asr import transcribe_all
    from cascade.ger.data import load_hyporadise, utterance_to_record

    cache = home / "bench" / f"ls_other_tiny_{split}_{limit}.json"
    if cache.exists():
        return load_hyporadise(cache)

    opts = AsrOptions(model="tiny.en", n_best=5, beam_size=5, vad_filter=False)
    out = []
    for line in (DATA / "librispeech-test-other" / "manifest.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if rec["split"] != split or len(out) >= limit:
            continue
        tr = transcribe_all(str(DATA / "librispeech-test-other" / rec["audio"]), opts, home=home)
        segs = tr.segments
        nb = segs[0].nbest if len(segs) == 1 else NBest.from_texts([tr.text])
        out.append(Utterance(id=rec["id"], nbest=nb, reference=rec["text"], source="ls-other/tiny.en"))
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps([utterance_to_record(u) for u in out]))
    return load_hyporadise(cache)  # the same lists on the first and every later run


def run_set(utts: list[Utterance], backend, methods: list[str], adapter: str | None, settings) -> dict:  # noqa: ANN001
    refs = [u.reference or "" for u in utts]
    nbs = [u.nbest for u in utts]
    row: dict = {"n": len(utts), "o_nb": round(100 * oracle_nbest(refs, nbs), 2), "o_cp": round(100 * oracle_composition(refs, nbs), 2)}
    for name in methods:
        method = "ger" if name.startswith("ger") else name
        ger = settings.ger.model_copy(update={"adapter": adapter if name == "ger_lora" else None})
        t0 = time.perf_counter()
        outs = list(correct_many(nbs, backend, method=method, ger=ger, rescore=settings.rescore, batch_size=8))
        row[name] = round(100 * wer(refs, [c.text for c in outs]), 2)  # percent
        row[f"{name}_s_per_utt"] = round((time.perf_counter() - t0) / max(1, len(utts)), 3)
        if method == "ger":
            row[f"{name}_changed"] = sum(c.changed for c in outs)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--adapter", default="cascade/adapters/ger-smollm2")
    ap.add_argument("--split", choices=["dev", "test"], default="dev")
    ap.add_argument("--per-set", type=int, default=20)
    ap.add_argument("--sets", default=",".join(("ls_other_tiny", *HYPO_SETS)))
    ap.add_argument("--methods", default="none,rescore,ger,ger_lora")
    ap.add_argument("--no-score-gate", action="store_true", help="Edit-distance guard only (shows what the adapter writes).")
    args = ap.parse_args()
    settings = load_settings({"ger": {"score_gate": False}} if args.no_score_gate else None)
    backend = load_backend(settings.llm, settings.home)
    methods = args.methods.split(",")
    rows, allrefs = {}, {m: [] for m in methods}
    for name in args.sets.split(","):
        if name == "ls_other_tiny":
            utts = tiny_en_lists(args.split, settings.home, args.per_set)
        else:
            utts = load_hyporadise(DATA / "hyporadise" / args.split / f"{name}.json")[: args.per_set]
        rows[name] = run_set(utts, backend, methods, args.adapter, settings)
        print(json.dumps({"partial": name, **rows[name]}), file=sys.stderr, flush=True)
        for m in methods:
            allrefs[m].append((rows[name][m], rows[name]["n"]))
    total = {m: round(sum(w * n for w, n in v) / max(1, sum(n for _, n in v)), 2) for m, v in allrefs.items()}
    rel = {m: round(100 * (total["none"] - total[m]) / total["none"], 1) for m in methods if "none" in total and total["none"]}
    print(json.dumps({"benchmark": "ger_lora", "split": args.split, "per_set": args.per_set, "score_gate": not args.no_score_gate,
                      "adapter": args.adapter, "lam": settings.rescore.lam, "sets": rows, "mean_wer_by_set": total,
                      "rel_reduction_pct": rel}))  # fmt: skip


if __name__ == "__main__":
    main()
