"""WER of 1-best / rescore / rerank [/ GER / GER + adapter] / o_nb / o_cp per set and split; ONE JSON line.

Nothing is tuned here: rescoring uses the style profiles of the config (chosen on dev by `cascade tune`), the
reranker its own dev-chosen margin (`cascade train-rerank`, out of fold on dev). Only the adapter's gate
(posterior margin, max changed words) is chosen here, on the dev split, and applied unchanged to test.
Sets: the six HyPoradise sets (first N per split; the files are pre-shuffled) and librispeech-test-other with
two N-best sources: the manifest's large-Whisper 5-best and our own tiny.en lists (decoded as `cascade transcribe
--n-best 5` does; ASR runs once, cached under CASCADE_HOME/bench). LLM scores are
computed once per text (CASCADE_HOME/rerank cache); s/utt is timed separately with the live LLM.

    python benchmarks/ger_accuracy.py --per-set 100
    python benchmarks/ger_accuracy.py --per-set 100 --reranker DIR      # e.g. an ATIS-adapted reranker
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from cascade import ger, metrics
from cascade.config import load_settings
from cascade.formats.hyporadise import load_hyporadise
from cascade.ger import guards, rerank
from cascade.ger.features import CachedBackend, LmCache
from cascade.llm import load_backend
from cascade.types import Correction, Utterance

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
SETS = ("atis", "chime4", "ls_clean", "swbd", "td3", "wsj_score")
MARGINS = (0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0)
CHANGES = (1, 2, 3, 4, None)
ACCEPT_ALL = -1e9


def own_lists(settings) -> Path:  # noqa: ANN001
    """Our own N-best on the 50 clips, decoded once and cached, exactly as `cascade transcribe --n-best 5` decodes:
    faster-whisper's beam-5 1-best per segment and the wide decode's distinct hypotheses (asr.nbest_beam_size).
    A clip's k-th hypothesis joins its segments' k-th (or last); it keeps the summed token log-prob (am_score)
    and its mean (avg_logprob)."""
    from cascade.asr import transcribe_all
    from cascade.ger.features import distinct
    from cascade.types import Hypothesis, NBest

    manifest = DATA / "librispeech-test-other" / "manifest.jsonl"
    asr = settings.asr
    cache = settings.home / "bench" / f"ls-other-{asr.model}-nb{asr.n_best}w{asr.nbest_beam_size}.json"
    if cache.exists():
        return cache
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
        nb = distinct(NBest(hypotheses=tuple(hyps) or (Hypothesis(text=""),)), asr.n_best)
        records.append({"id": rec["id"], "split": rec["split"], "output": rec["text"],
                        "input": [h.model_dump(include={"text", "am_score", "avg_logprob"}) for h in nb.hypotheses]})
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(records, indent=1))
    return cache


def own_split(settings, split: str) -> Path:  # noqa: ANN001
    """The cached own lists of one split (train-rerank reads the dev file; test is only for reporting)."""
    path = own_lists(settings)
    out = path.with_name(f"{path.stem}-{split}.json")
    if not out.exists():
        out.write_text(json.dumps([r for r in json.loads(path.read_text()) if r["split"] == split], indent=1))
    return out


def load_sets(split: str, args, settings) -> dict[str, list[Utterance]]:  # noqa: ANN001
    out = {s: load_hyporadise(DATA / "hyporadise" / split / f"{s}.json", limit=args.per_set) for s in args.sets.split(",") if s}
    if not args.no_librispeech:
        manifest = DATA / "librispeech-test-other" / "manifest.jsonl"
        keep = {json.loads(line)["id"] for line in manifest.read_text().splitlines() if json.loads(line)["split"] == split}
        out["ls-other-large"] = [u for u in load_hyporadise(manifest) if u.id in keep]
        out[f"ls-other-{settings.asr.model}"] = load_hyporadise(own_split(settings, split))
    return out


def run(utts: list[Utterance], backend, method: str, settings, gopts=None, adapter: str | None = None) -> tuple[list[Correction], float]:  # noqa: ANN001
    t0 = time.perf_counter()
    res = list(ger.correct_many([u.nbest for u in utts], backend, method=method, ger=gopts or settings.ger, rescore=settings.rescore,
                                batch_size=settings.correct.batch_size, adapter=adapter, rerank=settings.rerank))
    return res, (time.perf_counter() - t0) / max(len(utts), 1)


def timing(data: dict[str, list[Utterance]], backend, settings, methods: list[str], n: int) -> dict[str, float]:  # noqa: ANN001
    """Seconds per list of each method with the live LLM (no score cache), over the first n lists of every set."""
    utts = [u for us in data.values() for u in us[:n]]
    return {m: round(run(utts, backend, m, settings)[1], 3) for m in methods} if utts and n else {}


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
    """Lowest mean dev WER with no dev set worse than GER's base (the reranked best with rerank.ger_base, else the
    rescored best); ties keep the more cautious gate."""
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
    ap.add_argument("--per-set", type=int, default=100, help="first N lists of each HyPoradise set and split")
    ap.add_argument("--sets", default=",".join(SETS))
    ap.add_argument("--methods", default="rescore,rerank", help="rescore, rerank, ger (zero-shot GER, from the reranked best)")
    ap.add_argument("--reranker", default=None, help="reranker name or directory (default: rerank.model of the config)")
    ap.add_argument("--adapter", default=None, help="LoRA adapter directory: adds a ger+lora column (gate chosen on dev)")
    ap.add_argument("--dump", type=Path, default=None, help="write one JSON line per utterance here")
    ap.add_argument("--splits", default="dev,test")
    ap.add_argument("--no-librispeech", action="store_true", help="skip librispeech-test-other (and its ASR run)")
    ap.add_argument("--timing-lists", type=int, default=5, help="lists per set timed with the live LLM (s/utt)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    over = {"llm": {"threads": args.threads}, **({"rerank": {"model": args.reranker}} if args.reranker else {})}
    settings = load_settings(over)
    live = load_backend(settings.llm, settings.home)
    backend = CachedBackend(LmCache(live, settings.home))  # every method sees the live model's scores, computed once
    methods = [m for m in args.methods.split(",") if m]
    splits = [s for s in ("dev", "test") if s in args.splits.split(",")]
    data = {split: load_sets(split, args, settings) for split in {"dev", *splits} if split in splits or args.adapter}
    t0 = time.perf_counter()
    backend.cache.get([h.text for d in data.values() for us in d.values() for u in us for h in u.nbest.hypotheses])
    model = rerank.load_model(settings.rerank.model)
    out: dict = {"benchmark": "ger_accuracy", "per_set": args.per_set, "reranker": model.name, "rerank_margins": model.margins,
                 "profiles": {k: p.model_dump() for k, p in settings.rescore.profiles.items()}, "adapter": args.adapter,
                 "llm_scoring_s": round(time.perf_counter() - t0, 1), "wer": {}, "changed": {}}
    dump = args.dump.open("w") if args.dump else None
    kept: dict = {}
    for split in splits:
        for name, utts in data[split].items():
            key = f"{split}/{name}"
            refs, first = [u.reference or "" for u in utts], [u.nbest.texts[0] for u in utts]
            texts = {m: [c.text for c in run(utts, backend, m, settings)[0]] for m in methods}
            if args.adapter:
                rescored = run(utts, backend, "rerank" if settings.rerank.ger_base else "rescore", settings)[0]  # GER's base
                gopts = settings.ger.model_copy(update={"posterior_margin": ACCEPT_ALL, "max_changed_words": None})
                kept[key] = {"refs": refs, "lora": run(utts, backend, "ger", settings, gopts, args.adapter)[0], "rescore": rescored,
                             "rescore_wer": pct(refs, [c.text for c in rescored])}
            rows = {r.method: round(100 * r.wer, 2) for r in metrics.score_methods(refs, [u.nbest for u in utts], texts)}
            out["wer"][key] = {"n": len(utts), **rows}
            out["changed"][key] = {m: sum(a != b for a, b in zip(t, first)) for m, t in texts.items()}
            for i, u in enumerate(utts) if dump else ():
                dump.write(json.dumps({"key": key, "id": u.id, "ref": u.reference, "1-best": first[i], **{m: t[i] for m, t in texts.items()}}) + "\n")
            print(json.dumps({"partial": key, **out["wer"][key]}), file=sys.stderr, flush=True)
    if dump:
        dump.close()
    if args.adapter:
        gate, out["gate_grid_dev_mean_wer"] = choose_gate({k: d for k, d in kept.items() if k.startswith("dev/")})
        out["margin"], out["max_changed_words"] = gate
        for key, d in kept.items():
            out["wer"][key]["ger+lora"] = pct(d["refs"], with_gate(d["lora"], d["rescore"], *gate))
    summarise(out, splits, args.sets.split(","))
    out["seconds_per_utt"] = timing(data[splits[-1]], live, settings, methods, args.timing_lists)
    out["seconds_note"] = "live LLM on a shared 2-core machine: timings inflated by load; accuracy is not"
    print(json.dumps(out), flush=True)


def summarise(out: dict, splits: list[str], hypo_sets: list[str]) -> None:
    """Per split: mean WER over the HyPoradise sets, relative change vs the 1-best, sets made worse by each method."""
    for split in splits:
        rows = [v for k, v in out["wer"].items() if k.split("/")[0] == split and k.split("/")[1] in hypo_sets]
        if not rows:
            continue
        mean = {m: round(sum(r[m] for r in rows) / len(rows), 3) for m in rows[0] if m != "n"}
        out[f"mean_hyporadise_{split}"] = mean
        out[f"rel_change_pct_{split}"] = {m: round(100 * (v - mean["1-best"]) / mean["1-best"], 2) for m, v in mean.items()
                                          if m not in ("1-best", "o_nb", "o_cp")}
        out[f"worse_than_1best_{split}"] = {m: [k for k, r in out["wer"].items() if k.startswith(split + "/") and r[m] > r["1-best"]]
                                            for m in mean if m not in ("1-best", "o_nb", "o_cp")}


if __name__ == "__main__":
    sys.exit(main())
