"""Our N-best decode vs faster-whisper's own beam search: speed, memory, and 1-best WER.

    python benchmarks/asr_nbest.py [--model tiny.en] [--repeats 2] [--threads N]

Audio: the 50 librispeech-test-other clips (dev 20 / test 30) and the real/
recordings in ../shared/data. Both systems get the same decoded arrays and the
same options (beam 5, VAD, no timestamps, temperature 0, no conditioning):
ours returns 5 hypotheses per segment, faster-whisper's `transcribe()` its
best path (its generator consumed). Both are warmed up, then timed in
alternating order. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import time
from pathlib import Path

import jiwer
from whisper_normalizer.english import EnglishTextNormalizer

from cascade.asr import load_model, transcribe_all
from cascade.asr.reference import faster_whisper_text
from cascade.audio import load_audio
from cascade.config import AsrOptions, load_settings

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def load_set() -> list[dict]:
    rows = []
    for line in (DATA / "librispeech-test-other" / "manifest.jsonl").read_text().splitlines():
        r = json.loads(line)
        rows.append({"id": r["id"], "split": r["split"], "ref": r["text"], "audio": load_audio(DATA / "librispeech-test-other" / r["audio"])})
    for path in sorted((DATA / "real").iterdir()):
        if path.suffix in {".wav", ".flac", ".mp3"}:
            rows.append({"id": path.stem, "split": "real", "ref": None, "audio": load_audio(path)})
    return rows


def timed(fn):
    """(wall seconds, CPU seconds of this process, result): CPU time stays meaningful on a busy machine."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, result


def run_ours(rows: list[dict], options: AsrOptions, home: Path):
    return timed(lambda: [transcribe_all(r["audio"], options, home=home).text for r in rows])


def run_fw(rows: list[dict], options: AsrOptions, home: Path):
    whisper = load_model(options, home)
    return timed(lambda: [faster_whisper_text(whisper, r["audio"], options) for r in rows])


def wer_by_split(rows: list[dict], texts: list[str]) -> dict[str, float]:
    norm = EnglishTextNormalizer()
    out = {}
    for split in ("dev", "test"):
        pairs = [(norm(r["ref"]), norm(t)) for r, t in zip(rows, texts) if r["split"] == split]
        out[split] = round(100 * jiwer.wer([p[0] for p in pairs], [p[1] for p in pairs]), 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="CTranslate2 CPU threads (0: its default)")
    args = parser.parse_args()
    cfg = load_settings()
    options = cfg.asr.model_copy(update={"model": args.model, "n_best": 5, "beam_size": 5, "cpu_threads": args.threads})
    rows = load_set()
    audio_s = sum(len(r["audio"]) for r in rows) / 16000
    run_ours(rows[:2], options, cfg.home), run_fw(rows[:2], options, cfg.home)  # warm-up
    runs: dict[str, list[tuple[float, float]]] = {"ours": [], "fw": []}
    texts: dict[str, list[str]] = {}
    for i in range(args.repeats):
        order = (("ours", run_ours), ("fw", run_fw)) if i % 2 == 0 else (("fw", run_fw), ("ours", run_ours))
        for name, fn in order:
            wall, cpu, texts[name] = fn(rows, options, cfg.home)
            runs[name].append((wall, cpu))
    norm = EnglishTextNormalizer()
    differ = [r["id"] for r, a, b in zip(rows, texts["ours"], texts["fw"]) if norm(a) != norm(b)]
    ours_s, fw_s = (statistics.median(w for w, _ in runs[k]) for k in ("ours", "fw"))
    ours_cpu, fw_cpu = (statistics.median(c for _, c in runs[k]) for k in ("ours", "fw"))
    print(json.dumps({
        "benchmark": "asr_nbest",
        "model": args.model,
        "files": len(rows),
        "audio_s": round(audio_s, 1),
        "repeats": args.repeats,
        "ours_nbest5_s": round(ours_s, 2),
        "faster_whisper_beam5_s": round(fw_s, 2),
        "ratio": round(ours_s / fw_s, 3),
        "ours_cpu_s": round(ours_cpu, 2),
        "faster_whisper_cpu_s": round(fw_cpu, 2),
        "cpu_ratio": round(ours_cpu / fw_cpu, 3),
        "ours_runs_wall_cpu_s": [[round(w, 2), round(c, 2)] for w, c in runs["ours"]],
        "faster_whisper_runs_wall_cpu_s": [[round(w, 2), round(c, 2)] for w, c in runs["fw"]],
        "rtf_ours": round(ours_s / audio_s, 4),
        "rtf_faster_whisper": round(fw_s / audio_s, 4),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "same_1best": f"{len(rows) - len(differ)}/{len(rows)}",
        "different_1best": differ,
        "wer_ours": wer_by_split(rows, texts["ours"]),
        "wer_faster_whisper": wer_by_split(rows, texts["fw"]),
        "load_avg_1min": round(os.getloadavg()[0], 1),
        "wer_data": "librispeech-test-other dev 20 / test 30, whisper_normalizer EnglishTextNormalizer, jiwer",
        "threads": options.cpu_threads or "ctranslate2 default",
    }))


if __name__ == "__main__":
    main()
