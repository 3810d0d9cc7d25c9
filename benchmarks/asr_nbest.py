"""Our N-best transcription vs faster-whisper's own `transcribe(beam_size=5)` (its defaults): same 1-best?
how much slower? how many distinct alternatives, and how good are they (o_nb)?

    python benchmarks/asr_nbest.py [--model tiny.en] [--repeats 1] [--threads N] [--limit N] [--no-long]

Audio (../shared/data): librispeech-test-other (dev 20 / test 30), real/ (4), fleurs English (6),
and a long row (the real/ recordings concatenated twice). Both systems get the same decoded arrays;
ours runs the configured defaults (configs/default.yaml: N-best 5 from a beam-10 decode per segment,
1-best from faster-whisper's beam 5), faster-whisper `WhisperModel.transcribe(audio, beam_size=5)`
with nothing else set (its generator consumed). Timed in alternating order after a warm-up.
same_1best compares every segment's text, start and end. o_nb: the oracle WER when each segment
may pick any of its hypotheses (per-segment coordinate descent on the utterance WER). WER with
cascade.metrics.normalize (whisper-normalizer) and jiwer. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import jiwer
import numpy as np

from cascade.asr import load_model, transcribe_all
from cascade.asr.reference import faster_whisper_segments
from cascade.audio import load_audio
from cascade.config import load_settings
from cascade.metrics import normalize
from cascade.types import Transcript

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def load_set(limit: int | None) -> list[dict]:
    rows = []
    ls = DATA / "librispeech-test-other"
    for line in (ls / "manifest.jsonl").read_text().splitlines()[:limit]:
        r = json.loads(line)
        rows.append({"id": r["id"], "set": "ls-other", "split": r["split"], "ref": r["text"], "audio": load_audio(ls / r["audio"])})
    for path in sorted((DATA / "real").iterdir()):
        if path.suffix in {".wav", ".flac", ".mp3"}:
            rows.append({"id": path.stem, "set": "real", "split": "real", "ref": None, "audio": load_audio(path)})
    for line in (DATA / "fleurs" / "manifest.jsonl").read_text().splitlines():
        r = json.loads(line)
        if r["lang"] == "en":
            rows.append({"id": r["id"], "set": "fleurs-en", "split": r["split"], "ref": r["text"],
                         "audio": load_audio(DATA / "fleurs" / r["audio"])})
    return rows


def timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, result


def oracle(ref: str, segments: list[list[str]]) -> str:
    """The utterance text closest to ref when each segment picks one of its hypotheses (coordinate descent)."""
    choice = [0] * len(segments)

    def text(c: list[int]) -> str:
        return normalize(" ".join(segments[i][c[i]] for i in range(len(segments))))

    for _ in range(2):
        for i in range(len(segments)):
            choice[i] = min(range(len(segments[i])), key=lambda j: jiwer.wer(ref, text(choice[:i] + [j] + choice[i + 1 :]) or "-"))
    return text(choice)


def wer(refs: list[str], hyps: list[str]) -> float:
    return round(100 * jiwer.wer([normalize(r) for r in refs], [normalize(h) or "-" for h in hyps]), 2)


def accuracy(rows: list[dict], ours: list[Transcript], fw: list[list[tuple]], split: str, subset: str) -> dict:
    picked = [(r, t, f) for r, t, f in zip(rows, ours, fw) if r["split"] == split and r["set"] == subset]
    if not picked:
        return {}
    refs = [r["ref"] for r, _, _ in picked]
    segs = [s for _, t, _ in picked for s in t.segments]
    orc = [oracle(normalize(r["ref"]), [s.nbest.texts for s in t.segments]) for r, t, _ in picked]
    return {
        "n": len(picked),
        "wer_ours": wer(refs, [t.text for _, t, _ in picked]),
        "wer_faster_whisper": wer(refs, [" ".join(x[2] for x in f) for _, _, f in picked]),
        "o_nb": round(100 * jiwer.wer([normalize(r) for r in refs], [o or "-" for o in orc]), 2),
        "segments": len(segs),
        "distinct_per_segment": round(sum(len(s.nbest.hypotheses) for s in segs) / max(len(segs), 1), 2),
    }


def long_row(rows: list[dict], options, home: Path) -> dict:
    real = [r["audio"] for r in rows if r["set"] == "real"]
    gap = np.zeros(16000, dtype=np.float32)
    audio = np.concatenate([p for _ in range(2) for a in real for p in (a, gap)])
    wall, _, t = timed(lambda: transcribe_all(audio, options, home=home))
    lengths = [s.end - s.start for s in t.segments]
    return {"audio_s": round(len(audio) / 16000, 1), "wall_s": round(wall, 1), "segments": len(t.segments),
            "mean_segment_s": round(statistics.mean(lengths), 2) if lengths else None,
            "looped": sum("looped" in s.flags for s in t.segments),
            "fallback_segments": sum((s.temperature or 0) > 0 for s in t.segments)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0, help="CTranslate2 CPU threads (0: its default)")
    parser.add_argument("--limit", type=int, default=None, help="first N librispeech clips only")
    parser.add_argument("--no-long", action="store_true")
    args = parser.parse_args()
    cfg = load_settings()
    options = cfg.asr.model_copy(update={"model": args.model, "cpu_threads": args.threads})
    whisper = load_model(options, cfg.home)
    rows = load_set(args.limit)

    def run_ours(rs):
        return [transcribe_all(r["audio"], options, home=cfg.home) for r in rs]

    def run_fw(rs):
        return [faster_whisper_segments(whisper, r["audio"]) for r in rs]

    run_ours(rows[:2]), run_fw(rows[:2])  # warm-up
    times: dict[str, list[tuple[float, float]]] = {"ours": [], "fw": []}
    out: dict[str, list] = {}
    for i in range(args.repeats):
        order = (("ours", run_ours), ("fw", run_fw)) if i % 2 == 0 else (("fw", run_fw), ("ours", run_ours))
        for name, fn in order:
            wall, cpu, out[name] = timed(lambda fn=fn: fn(rows))
            times[name].append((wall, cpu))
    ours, fw = out["ours"], out["fw"]
    same = [[(s.start, s.end, s.text) for s in t.segments] == f for t, f in zip(ours, fw)]
    same_text = [normalize(t.text) == normalize(" ".join(x[2] for x in f)) for t, f in zip(ours, fw)]
    med = {k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v)) for k, v in times.items()}
    audio_s = sum(len(r["audio"]) for r in rows) / 16000
    print(json.dumps({
        "benchmark": "asr_nbest",
        "model": args.model,
        "files": len(rows),
        "audio_s": round(audio_s, 1),
        "ours": {k: options.model_dump()[k] for k in ("n_best", "beam_size", "nbest_beam_size", "nbest_per_segment")},
        "ours_s": round(med["ours"][0], 2),
        "faster_whisper_s": round(med["fw"][0], 2),
        "ratio": round(med["ours"][0] / med["fw"][0], 3),
        "cpu_ratio": round(med["ours"][1] / med["fw"][1], 3),
        "same_1best_segments": f"{sum(same)}/{len(rows)}",
        "same_1best_text": f"{sum(same_text)}/{len(rows)}",
        "different": [r["id"] for r, s in zip(rows, same) if not s],
        "by_set": {f"{subset}/{split}": accuracy(rows, ours, fw, split, subset)
                   for subset, split in (("ls-other", "dev"), ("ls-other", "test"), ("fleurs-en", "dev"), ("fleurs-en", "test"))},
        "fallback_segments": sum((s.temperature or 0) > 0 for t in ours for s in t.segments),
        "looped_segments": sum("looped" in s.flags for t in ours for s in t.segments),
        "long": None if args.no_long else long_row(rows, options, cfg.home),
        "load_avg_1min": round(os.getloadavg()[0], 1),
        "threads": options.cpu_threads or "ctranslate2 default",
    }))


if __name__ == "__main__":
    main()
