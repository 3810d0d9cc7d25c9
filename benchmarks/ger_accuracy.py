"""WER of 1-best / rescore / rerank [/ GER / GER + adapter] / o_nb / o_cp per set and split; ONE JSON line.

Nothing is tuned here: rescoring uses the style profiles of the config (chosen on dev by `cascade tune`), the
reranker its own dev-chosen margin (`cascade train-rerank`, out of fold on dev). An adapter that ships its own gate
(gate.json, e.g. cascade/adapters/ger-own: chosen on held-out dev speakers by benchmarks/own_ger.py) is run as GER
runs it (`ger+lora`); for any other adapter the gate (posterior margin, max changed words) is chosen here, on the dev
split, and applied unchanged to test.
Sets: the six HyPoradise sets (first N per split; the files are pre-shuffled), librispeech-test-other with
two N-best sources (the manifest's large-Whisper 5-best, `ls-other-large`, and our own, `ls-other-tiny.en`) and
speechocean762 (our own lists, `so762-tiny.en`, with its children and adults apart). Our own lists are decoded as
`cascade transcribe --n-best 5` does by benchmarks/own_lists.py (once, cached under CASCADE_HOME/bench/own).
LLM scores are computed once per text (CASCADE_HOME/rerank cache); s/utt is timed separately with the live LLM.

    python benchmarks/ger_accuracy.py --per-set 100
    python benchmarks/ger_accuracy.py --per-set 100 --reranker DIR      # e.g. an ATIS-adapted reranker
    python benchmarks/ger_accuracy.py --per-set 0 --methods rerank,ger   # our own lists only
    python benchmarks/ger_accuracy.py --per-set 20 --methods rerank --adapter cascade/adapters/ger-own
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
from cascade.ger import features, guards, rerank
from cascade.ger.correct import adapter_styles, gate_file
from cascade.ger.features import CachedBackend, LmCache
from cascade.llm import load_backend
from cascade.types import Correction, Utterance

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
SETS = ("atis", "chime4", "ls_clean", "swbd", "td3", "wsj_score")
MARGINS = (0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0)
CHANGES = (1, 2, 3, 4, None)
ACCEPT_ALL = -1e9


OWN = {"librispeech-test-other": "ls-other", "speechocean762": "so762"}


def load_sets(split: str, args, settings) -> dict[str, list[Utterance]]:  # noqa: ANN001
    """{set: lists} of one split; our own lists' conditions (children, adults) are subsets reported apart."""
    import own_lists  # benchmarks/own_lists.py, beside this script

    out = {s: load_hyporadise(DATA / "hyporadise" / split / f"{s}.json", limit=args.per_set) for s in args.sets.split(",") if s and args.per_set}
    if not args.no_librispeech:
        manifest = DATA / "librispeech-test-other" / "manifest.jsonl"
        keep = {json.loads(line)["id"] for line in manifest.read_text().splitlines() if json.loads(line)["split"] == split}
        out["ls-other-large"] = [u for u in load_hyporadise(manifest) if u.id in keep]
    own = [o for o in args.own.split(",") if o]
    for name, files in own_lists.ensure(settings, own).items():
        if split in files:
            out[f"{OWN[name]}-{settings.asr.model}"] = load_hyporadise(files[split])[: args.own_limit]
    return out


def conditions(split: str, settings, data: dict[str, list[Utterance]]) -> dict[str, list[int]]:  # noqa: ANN001
    """{"<set>/<condition>": indices into that set's lists} for our own lists whose speakers have an age."""
    import own_lists

    out = {}
    for name, short in OWN.items():
        key = f"{short}-{settings.asr.model}"
        if key not in data:
            continue
        path = own_lists.cache_path(settings.home, name, settings.asr)
        cond = {r["id"]: own_lists.condition(r) for r in own_lists.read_rows(path)}
        for c in sorted({v for v in cond.values() if v}):
            out[f"{key}/{c}"] = [i for i, u in enumerate(data[key]) if cond.get(u.id) == c]
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


class LoraCache:
    """GER + adapter outputs with every change accepted (text, posterior gain) per set and list id, in a JSONL file."""

    def __init__(self, path: Path | None) -> None:
        self.path, self.rows = path, {}
        if path and path.is_file():
            for line in path.read_text().splitlines():
                r = json.loads(line)
                self.rows[(r["key"], r["id"])] = r

    def get(self, key: str, ids: list[str]) -> list[dict] | None:
        got = [self.rows.get((key, i)) for i in ids]
        return got if all(got) else None

    def put(self, key: str, rows: list[dict]) -> None:
        if self.path:
            with self.path.open("a") as f:
                f.writelines(json.dumps({"key": key, **r}) + "\n" for r in rows)
        self.rows.update({(key, r["id"]): r for r in rows})


def own_lora(key: str, utts: list[Utterance], backend, settings, adapter: str, cache: LoraCache) -> tuple[list[Correction], list[Correction]]:  # noqa: ANN001
    """(GER + adapter with every change accepted, GER's base) for an adapter with its own gate: lists of a style its gate
    was not chosen on keep the base, as GER does (with_gate then applies the gate, as GER would)."""
    base = run(utts, backend, "rerank" if settings.rerank.ger_base else "rescore", settings)[0]
    rows = cache.get(key, [u.id for u in utts])
    if rows is None:
        gopts = settings.ger.model_copy(update={"posterior_margin": ACCEPT_ALL, "max_changed_words": None, "adapter_gate": False,
                                                "adapter_picks": True})
        styles = adapter_styles(adapter)
        todo = [i for i, u in enumerate(utts) if not styles or features.detect_style(u.nbest.texts) in styles]
        done = dict(zip(todo, run([utts[i] for i in todo], backend, "ger", settings, gopts, adapter)[0])) if todo else {}
        rows = [{"id": u.id, "text": done[i].text if i in done else base[i].text,
                 "gain": done[i].guards.get("posterior_gain") if i in done else None} for i, u in enumerate(utts)]
        cache.put(key, rows)
    lora = [Correction(text=r["text"], method="ger", guards={} if r["gain"] is None else {"posterior_gain": r["gain"]}) for r in rows]
    return lora, base


def adapter_gate(adapter: str) -> tuple[float, int | None]:
    path = gate_file(adapter)
    if path is None:
        sys.exit(f"{adapter} has no gate.json yet: run benchmarks/own_ger.py gate --adapter {adapter} first")
    gate = json.loads(path.read_text())
    return gate["posterior_margin"], gate["max_changed_words"]


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
    ap.add_argument("--no-librispeech", action="store_true", help="skip the manifest's large-Whisper librispeech-test-other lists")
    ap.add_argument("--own", default=",".join(OWN), help="our own lists (benchmarks/own_lists.py): librispeech-test-other, speechocean762")
    ap.add_argument("--own-limit", type=int, default=None, help="first N of our own lists per set and split")
    ap.add_argument("--timing-lists", type=int, default=5, help="lists per set timed with the live LLM (s/utt)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--gate", choices=("dev", "own"), default=None,
                    help="the adapter's gate: own = its gate.json (default when it has one), dev = chosen here on the dev split")
    ap.add_argument("--lora-cache", type=Path, default=None,
                    help="own gate: keep (and reuse) the adapter's every-change-accepted outputs here, one JSON line per list")
    ap.add_argument("--fill-cache", action="store_true", help="own gate: only run the adapter into --lora-cache (e.g. while "
                    "benchmarks/own_ger.py still chooses its gate)")
    args = ap.parse_args()

    over = {"llm": {"threads": args.threads}, **({"rerank": {"model": args.reranker}} if args.reranker else {})}
    settings = load_settings(over)
    live = load_backend(settings.llm, settings.home)
    backend = CachedBackend(LmCache(live, settings.home))  # every method sees the live model's scores, computed once
    methods = [m for m in args.methods.split(",") if m]
    splits = [s for s in ("dev", "test") if s in args.splits.split(",")]
    own_gate = bool(args.adapter) and (args.gate == "own" if args.gate else gate_file(args.adapter) is not None)
    choose_here = bool(args.adapter) and not own_gate
    cache = LoraCache(args.lora_cache)
    data = {split: load_sets(split, args, settings) for split in {"dev", *splits} if split in splits or choose_here}
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
            if own_gate:
                lora, rescored = own_lora(key, utts, backend, settings, args.adapter, cache)
                if args.fill_cache:
                    continue
                texts["ger+lora"] = with_gate(lora, rescored, *adapter_gate(args.adapter))
            elif args.adapter:
                rescored = run(utts, backend, "rerank" if settings.rerank.ger_base else "rescore", settings)[0]  # GER's base
                gopts = settings.ger.model_copy(update={"posterior_margin": ACCEPT_ALL, "max_changed_words": None})
                kept[key] = {"refs": refs, "lora": run(utts, backend, "ger", settings, gopts, args.adapter)[0], "rescore": rescored,
                             "rescore_wer": pct(refs, [c.text for c in rescored])}
            rows = {r.method: round(100 * r.wer, 2) for r in metrics.score_methods(refs, [u.nbest for u in utts], texts)}
            out["wer"][key] = {"n": len(utts), **rows}
            out["changed"][key] = {m: sum(a != b for a, b in zip(t, first)) for m, t in texts.items()}
            for sub, idx in conditions(split, settings, {name: utts}).items():
                pick = lambda xs, idx=idx: [xs[i] for i in idx]  # noqa: E731
                sub_rows = metrics.score_methods(pick(refs), pick([u.nbest for u in utts]), {m: pick(t) for m, t in texts.items()})
                out["wer"][f"{split}/{sub}"] = {"n": len(idx), **{r.method: round(100 * r.wer, 2) for r in sub_rows}}
            for i, u in enumerate(utts) if dump else ():
                dump.write(json.dumps({"key": key, "id": u.id, "ref": u.reference, "1-best": first[i], **{m: t[i] for m, t in texts.items()}}) + "\n")
            print(json.dumps({"partial": key, **out["wer"][key]}), file=sys.stderr, flush=True)
    if dump:
        dump.close()
    if args.fill_cache:
        print(json.dumps({"benchmark": "ger_accuracy", "filled": str(args.lora_cache), "lists": len(cache.rows)}), flush=True)
        return
    if own_gate:
        out["adapter_gate"] = json.loads(gate_file(args.adapter).read_text())
        out["adapter_gate"].pop("grid", None)
    elif args.adapter:
        gate, out["gate_grid_dev_mean_wer"] = choose_gate({k: d for k, d in kept.items() if k.startswith("dev/")})
        out["margin"], out["max_changed_words"] = gate
        for key, d in kept.items():
            out["wer"][key]["ger+lora"] = pct(d["refs"], with_gate(d["lora"], d["rescore"], *gate))
    summarise(out, splits, args.sets.split(","))
    out["seconds_per_utt"] = timing(data[splits[-1]], live, settings, methods, args.timing_lists)
    if own_gate and args.timing_lists:
        utts = [u for key, us in data[splits[-1]].items() if not key.startswith(tuple(SETS)) for u in us[: args.timing_lists]]
        out["seconds_per_utt"]["ger+lora"] = round(run(utts, live, "ger", settings, adapter=args.adapter)[1], 3) if utts else None
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
