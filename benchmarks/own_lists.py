"""Our own N-best lists of real speech (speechocean762, librispeech-test-other), decoded as `cascade transcribe
--n-best 5` decodes them; ONE JSON line of figures (1-best WER, o_nb, clips, s/clip).

Each clip goes through the library's own path (`cascade.asr.transcribe_all` with the configured AsrOptions), so the
lists follow the decoder when rebuilt. A clip's k-th hypothesis joins its segments' k-th (or last); it keeps the
recogniser's summed token log-prob (`am_score`), its mean (`avg_logprob`) and its token count (`n_tokens`), and the
list keeps the 1-best's per-word probabilities (`word_probs`, faster-whisper's word timestamps: the decoder's own
per-word confidence) when `--words` is given. Clips are appended one JSON line each to
CASCADE_HOME/bench/own/<set>-<model>-nb<N>w<W>-<search>.jsonl as they finish, so an interrupted run resumes where it stopped;
the HyPoradise files per split (`...-dev.json`, `...-test.json`: `input` as objects, `output`, `id`, `speaker`,
`age`) are written from it at the end. Each hypothesis also carries its score under a second recogniser (`--second`,
default the multilingual Whisper base: `second_score`, `second_tokens`, cascade.asr.logprobs.second_scores), read in
the same run, so the figures give its cost beside the decode's (`second_s_per_clip`, `second_vs_decode`). The cache
file is named by the decoder settings that shape the lists (model, N-best size and beam, `asr.nbest_search`).

    python benchmarks/own_lists.py                       # both sets, tiny.en, resumes
    python benchmarks/own_lists.py --limit 20 --sets speechocean762   # a timing probe
    python benchmarks/own_lists.py --rebuild             # decode again (after a decoder change)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
SETS = {"speechocean762": DATA / "speechocean762" / "manifest.jsonl",
        "librispeech-test-other": DATA / "librispeech-test-other" / "manifest.jsonl"}
CHILD_AGE = 16
"""speechocean762 speakers below this age are children (the corpus has none aged 16-18)."""


def manifest(name: str) -> list[dict]:
    recs = [json.loads(line) for line in SETS[name].read_text().splitlines() if line.strip()]
    for r in recs:
        r.setdefault("speaker", r["id"].split("-")[0])  # LibriSpeech ids start with the speaker
    return recs


def cache_path(home: Path, name: str, asr) -> Path:  # noqa: ANN001
    """The set's cache under the decoder settings that shape its lists (model, n_best, N-best beam, N-best search):
    a list decoded otherwise is never read as this decoder's."""
    return home / "bench" / "own" / f"{name}-{asr.model}-nb{asr.n_best}w{asr.nbest_beam_size}-{asr.nbest_search}.jsonl"


SECOND = "base"
"""The second recogniser whose teacher-forced score of every hypothesis is kept (`second_score`, `second_tokens`):
the multilingual Whisper base beside tiny.en (the reranker's am2 features)."""


def decode_clip(path: Path, asr, home: Path, words: bool, second: str | None = SECOND) -> dict:  # noqa: ANN001
    """One clip's list: hypotheses (text, am_score, avg_logprob, n_tokens; second_score, second_tokens under the
    `second` recogniser), best first, distinct after normalisation. `seconds`: the decode's time, `second_seconds`:
    the second recogniser's (what `--correct rerank` adds when its model reads it)."""
    from faster_whisper.audio import decode_audio

    from cascade.asr import transcribe_all
    from cascade.asr.logprobs import second_scores
    from cascade.ger.features import distinct
    from cascade.types import Hypothesis, NBest

    t0 = time.perf_counter()
    tr = transcribe_all(path, asr.model_copy(update={"word_timestamps": words}), home=home)
    t1 = time.perf_counter()
    if second:
        tr = second_scores(decode_audio(str(path), sampling_rate=16000), tr, second, asr, home)
    t2 = time.perf_counter()
    segs = [s for s in tr.segments if s.nbest.hypotheses]
    depth = max((len(s.nbest.hypotheses) for s in segs), default=0)
    hyps, counts = [], {}
    for k in range(depth):
        parts = [s.nbest.hypotheses[min(k, len(s.nbest.hypotheses) - 1)] for s in segs]
        am = sum(p.am_score or 0.0 for p in parts)
        toks = sum(len(p.tokens or ()) for p in parts)
        text = " ".join(p.text for p in parts)
        counts[text] = toks
        got2 = [(p.second_score, p.second_tokens) for p in parts if p.text.strip()]
        known = bool(got2) and all(sc is not None for sc, _ in got2)
        hyps.append(Hypothesis(text=text, am_score=am, avg_logprob=am / max(toks, 1),
                               second_score=sum(sc for sc, _ in got2) if known else None,
                               second_tokens=sum(n for _, n in got2) if known else None))
    nb = distinct(NBest(hypotheses=tuple(hyps) or (Hypothesis(text=""),)), asr.n_best)
    rec = {"input": [{**h.model_dump(include={"text", "am_score", "avg_logprob"}), "n_tokens": counts.get(h.text, 0),
                      **({"second_score": h.second_score, "second_tokens": h.second_tokens} if h.second_score is not None else {})}
                     for h in nb.hypotheses],
           "segments": len(segs), "temperature": max((s.temperature or 0.0 for s in segs), default=0.0),
           "seconds": round(t1 - t0, 3), "duration": tr.duration,
           **({"second": second, "second_seconds": round(t2 - t1, 3)} if second else {})}
    if words:
        rec["word_probs"] = [round(w.probability, 4) for s in segs for w in (s.words or ())]
    return rec


def done_ids(path: Path) -> set[str]:
    done = set()
    for line in path.read_text().splitlines() if path.exists() else ():
        try:
            done.add(json.loads(line)["id"])
        except (ValueError, KeyError):
            continue  # a torn last line
    return done


def decode_set(name: str, settings, limit: int | None, rebuild: bool, words: bool,  # noqa: ANN001
               split: str | None = None, reverse: bool = False, second: str | None = SECOND, start: int | None = None) -> Path:
    """Decode the set's clips not yet in its cache file, appending one line per clip (resumable; a second process
    may decode the same set, e.g. `--reverse`: each clip is checked against the file just before it is decoded)."""
    out = cache_path(settings.home, name, settings.asr)
    out.parent.mkdir(parents=True, exist_ok=True)
    if rebuild and out.exists():
        out.unlink()
    done = done_ids(out)
    recs = [r for r in manifest(name)[:limit] if split is None or r["split"] == split]
    todo = [r for r in recs if r["id"] not in done][:: -1 if reverse else 1]
    if start is not None:  # a third process from the middle, forward until it meets a clip another one decoded
        todo = [r for r in recs[start:] if r["id"] not in done]
    with out.open("a", encoding="utf-8") as sink:
        for i, r in enumerate(todo):
            if r["id"] in done_ids(out):
                if start is not None:
                    break
                continue
            got = decode_clip(SETS[name].parent / r["audio"], settings.asr, settings.home, words, second)
            row = {"id": r["id"], "split": r["split"], "speaker": r["speaker"], "age": r.get("age"), "output": r["text"], **got}
            sink.write(json.dumps(row, ensure_ascii=False) + "\n")
            sink.flush()
            if (i + 1) % 25 == 0:
                print(f"{name}: {len(done) + i + 1}/{len(recs)}", file=sys.stderr, flush=True)
    return out


def read_rows(path: Path) -> list[dict]:
    rows = {}
    for line in path.read_text().splitlines():
        try:
            r = json.loads(line)
            rows[r["id"]] = r
        except (ValueError, KeyError):
            continue
    return list(rows.values())


def condition(row: dict) -> str | None:
    return None if row.get("age") is None else ("children" if row["age"] < CHILD_AGE else "adults")


def split_files(path: Path) -> dict[str, Path]:
    """HyPoradise JSON per split beside the cache (`<stem>-dev.json`, `<stem>-test.json`), and per split and
    condition where speakers have an age (`<stem>-dev-children.json`, ...: one data set each for train-rerank)."""
    rows = read_rows(path)
    parts: dict[str, list[dict]] = {}
    for r in rows:
        parts.setdefault(r["split"], []).append(r)
        if condition(r):
            parts.setdefault(f"{r['split']}-{condition(r)}", []).append(r)
    out = {}
    for key, rs in sorted(parts.items()):
        keep = [{k: r[k] for k in ("id", "speaker", "age", "input", "output") if k in r} for r in rs]
        out[key] = path.with_name(f"{path.stem}-{key}.json")
        out[key].write_text(json.dumps(keep, indent=1, ensure_ascii=False) + "\n")
    return out


def ensure(settings, sets=tuple(SETS), limit: int | None = None) -> dict[str, dict[str, Path]]:  # noqa: ANN001
    """{set: {split: HyPoradise file}}, decoding whatever is missing first (what other benchmarks call)."""
    return {name: split_files(decode_set(name, settings, limit, False, False)) for name in sets}


def figures(path: Path) -> dict:
    from cascade import metrics

    rows = read_rows(path)
    out = {}
    parts = {}
    for r in rows:
        parts.setdefault(r["split"], []).append(r)
        if condition(r):
            parts.setdefault(f"{r['split']}/{condition(r)}", []).append(r)
    for key, rs in sorted(parts.items()):
        refs = [r["output"] for r in rs]
        first = [r["input"][0]["text"] for r in rs]
        oracle = [min((h["text"] for h in r["input"]), key=lambda t, ref=r["output"]: metrics.wer([ref], [t])) for r in rs]
        out[key] = {"n": len(rs), "1-best": round(100 * metrics.wer(refs, first), 2), "o_nb": round(100 * metrics.wer(refs, oracle), 2),
                    "hyps_per_list": round(sum(len(r["input"]) for r in rs) / len(rs), 2),
                    "s_per_clip": round(sum(r["seconds"] for r in rs) / len(rs), 3),
                    **({"second_s_per_clip": round(sum(r.get("second_seconds", 0.0) for r in rs) / len(rs), 3),
                        "second_vs_decode": round(sum(r.get("second_seconds", 0.0) for r in rs) / max(sum(r["seconds"] for r in rs), 1e-9), 3)}
                       if any("second" in r for r in rs) else {})}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", default=",".join(SETS))
    ap.add_argument("--model", default=None, help="ASR model (default: asr.model of the config)")
    ap.add_argument("--limit", type=int, default=None, help="first N clips of each manifest (a timing probe)")
    ap.add_argument("--rebuild", action="store_true", help="decode every clip again")
    ap.add_argument("--words", action="store_true", help="also keep the 1-best's word probabilities (word timestamps)")
    ap.add_argument("--split", default=None, help="decode only this split's clips")
    ap.add_argument("--reverse", action="store_true", help="decode from the last clip (a second process beside a first)")
    ap.add_argument("--start", type=int, default=None, help="begin at this clip of the split and stop at the first "
                    "one already decoded (a third process between a forward and a --reverse one)")
    ap.add_argument("--second", default=SECOND, help="second recogniser scoring every hypothesis ('' : none)")
    args = ap.parse_args()
    from cascade.config import load_settings

    settings = load_settings({"asr": {"model": args.model}} if args.model else {})
    out = {"benchmark": "own_lists", "model": settings.asr.model, "n_best": settings.asr.n_best, "load": os.getloadavg()[0], "sets": {}}
    for name in [s for s in args.sets.split(",") if s]:
        path = decode_set(name, settings, args.limit, args.rebuild, args.words, args.split, args.reverse, args.second or None, args.start)
        files = split_files(path)
        out["sets"][name] = {"cache": str(path), "files": {k: str(v) for k, v in files.items()}, "wer": figures(path)}
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    sys.exit(main())
