"""`cascade transcribe` against faster-whisper, whole processes as a user runs them (issue 24's "Measure").

    nice -n 5 python benchmarks/asr_speed.py [--model tiny.en] [--short 100] [--repeats 1] [--batch-size 8]

Long file: the 50 librispeech-test-other clips (../shared/data, dev and test, 6.4 min) concatenated into one
FLAC. Short files: the first --short speechocean762 dev clips (up to 200). Each row is one process, timed
wall-clock from start to exit (imports, model load, audio decode, decode, output), in the same run,
alternating order across repeats (medians): faster-whisper `WhisperModel.transcribe(beam_size=5)` and
`BatchedInferencePipeline.transcribe(beam_size=5, batch_size=B)` (scripts below, int8 on CPU as cascade's
default), `cascade transcribe --format txt` (the default command), `-n 1`, `--format json` (the default
5-best), `--batched` (txt and json). Short files: a faster-whisper loop in one process against one
`cascade transcribe *.flac -o DIR`, --batched (short clips packed into shared 30-s windows, asr.pack_clips) and
--batched with a window per clip (CASCADE_ASR__PACK_CLIPS=1). Ratios are wall time over faster-whisper sequential's
(batched rows: over faster-whisper batched's); short files: files per second over the loop's. WER with
cascade.metrics.normalize (whisper-normalizer) and jiwer; o_nb: the oracle WER when each segment may pick
any of its hypotheses (coordinate descent, benchmarks/asr_nbest.py). cpu_s: the process' user + system CPU
seconds (steadier than wall time while others load the machine). Prints one JSON line, with the load.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jiwer
import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent))
from asr_nbest import oracle  # noqa: E402

from cascade.audio import load_audio  # noqa: E402
from cascade.config import load_settings  # noqa: E402
from cascade.metrics import normalize  # noqa: E402
from cascade.models import whisper_dir  # noqa: E402
from cascade.types import Transcript  # noqa: E402

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
BIN = Path(sys.executable).parent

FASTER_WHISPER = """
import json, sys
from faster_whisper import BatchedInferencePipeline, WhisperModel
model_dir, batch, files = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
model = WhisperModel(model_dir, device="cpu", compute_type="int8")
run = BatchedInferencePipeline(model) if batch else model
for path in files:
    kwargs = {"batch_size": batch} if batch else {}
    segments, _ = run.transcribe(path, beam_size=5, **kwargs)
    print(json.dumps({"file": path, "text": " ".join(s.text.strip() for s in segments)}), flush=True)
"""


def long_file(tmp: Path) -> tuple[Path, str, float]:
    rows = [json.loads(x) for x in (DATA / "librispeech-test-other" / "manifest.jsonl").read_text().splitlines()]
    audio = np.concatenate([load_audio(DATA / "librispeech-test-other" / r["audio"]) for r in rows])
    path = tmp / "long.flac"
    sf.write(path, audio, 16000)
    return path, " ".join(r["text"] for r in rows), len(audio) / 16000


def short_files(limit: int, split: str = "dev") -> tuple[list[Path], list[str], float]:
    rows = [json.loads(x) for x in (DATA / "speechocean762" / "manifest.jsonl").read_text().splitlines()]
    rows = [r for r in rows if r["split"] == split][:limit]
    paths = [DATA / "speechocean762" / r["audio"] for r in rows]
    return paths, [r["text"] for r in rows], sum(sf.info(p).duration for p in paths)


CPU: dict[str, list[float]] = {}
"""CPU seconds (user + system) of each run's process: steadier than wall time on a machine others load."""


ENV: dict[str, dict[str, str]] = {"cascade_batched_unpacked_txt": {"CASCADE_ASR__PACK_CLIPS": "1"}}
"""Settings of a run (by name) laid on the environment: --batched with a window per clip."""


def timed(cmd: list[str], name: str = "") -> tuple[float, str]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **ENV.get(name, {})})
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    CPU.setdefault(name, []).append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    if done.returncode:
        raise SystemExit(f"{' '.join(cmd[:4])}... failed: {done.stderr[-2000:]}")
    return wall, done.stdout


def cpu(name: str) -> float:
    return statistics.median(CPU[name])


def wer(refs: list[str], hyps: list[str]) -> float:
    return round(100 * jiwer.wer([normalize(r) for r in refs], [normalize(h) or "-" for h in hyps]), 2)


def o_nb(ref: str, t: Transcript) -> float:
    best = oracle(normalize(ref), [s.nbest.texts for s in t.segments])
    return round(100 * jiwer.wer(normalize(ref), best or "-"), 2)


def load() -> float:
    return round(os.getloadavg()[0], 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--short", type=int, default=100, help="speechocean762 clips (at most 200; 0: none)")
    parser.add_argument("--short-split", default="dev", choices=["dev", "test"], help="their split (test: reporting)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--no-long", action="store_true")
    args = parser.parse_args()
    cfg = load_settings()
    model_dir = str(whisper_dir(args.model, cfg.home))
    fw = [str(BIN / "python"), "-c", FASTER_WHISPER, model_dir]
    cascade = [str(BIN / "cascade"), "transcribe", "--model", args.model, "--correct", "none"]
    tmp = Path(tempfile.mkdtemp(prefix="asr_speed_"))
    out: dict = {"benchmark": "asr_speed", "model": args.model, "batch_size": args.batch_size, "cpus": os.cpu_count(),
                 "load_before": load()}
    if not args.no_long:
        path, ref, seconds = long_file(tmp)
        runs = {
            "faster_whisper": fw + ["0", str(path)],
            "faster_whisper_batched": fw + [str(args.batch_size), str(path)],
            "txt": cascade + [str(path)],
            "txt_n1": cascade + [str(path), "-n", "1"],
            "json_n5": cascade + [str(path), "--format", "json", "-n", "5"],
            "batched_txt": cascade + [str(path), "--batched"],
            "batched_json_n5": cascade + [str(path), "--batched", "--format", "json", "-n", "5"],
        }
        out["long"] = {"audio_s": round(seconds, 1), **rows(runs, ref, args.repeats)}
    if args.short:
        out["short"] = short_rows(fw, cascade, min(args.short, 200), args.batch_size, tmp, args.repeats, args.short_split)
    out["load_after"] = load()
    print(json.dumps(out))


def rows(runs: dict[str, list[str]], ref: str, repeats: int) -> dict:
    walls: dict[str, list[float]] = {k: [] for k in runs}
    texts: dict[str, str] = {}
    for i in range(repeats):
        for name in (list(runs) if i % 2 == 0 else list(runs)[::-1]):
            wall, stdout = timed(runs[name], name)
            walls[name].append(wall)
            texts[name] = stdout
    result = {}
    for name, stdout in texts.items():
        wall = statistics.median(walls[name])
        peer = "faster_whisper_batched" if "batched" in name else "faster_whisper"
        row: dict = {"wall_s": round(wall, 1), "ratio": round(wall / statistics.median(walls[peer]), 3),
                     "cpu_s": round(cpu(name), 1), "cpu_ratio": round(cpu(name) / cpu(peer), 3)}
        if name.startswith("faster_whisper"):
            row["wer"] = wer([ref], [json.loads(stdout.splitlines()[-1])["text"]])
        elif "json" in name:
            t = Transcript.model_validate_json(stdout)
            row |= {"wer": wer([ref], [t.text]), "o_nb": o_nb(ref, t), "segments": len(t.segments),
                    "distinct_per_segment": round(sum(len(s.nbest.hypotheses) for s in t.segments) / len(t.segments), 2)}
        else:
            row["wer"] = wer([ref], [stdout])
        result[name] = row
    return result


def short_rows(fw: list[str], cascade: list[str], limit: int, batch: int, tmp: Path, repeats: int,
               split: str = "dev") -> dict:
    paths, refs, seconds = short_files(limit, split)
    files = [str(p) for p in paths]
    runs = {"faster_whisper_loop": fw + ["0"] + files, "cascade_txt": cascade + files + ["-o", str(tmp / "cascade_txt")],
            "cascade_batched_txt": cascade + files + ["--batched", "-o", str(tmp / "cascade_batched_txt")],
            "cascade_batched_unpacked_txt": cascade + files + ["--batched", "-o", str(tmp / "cascade_batched_unpacked_txt")]}
    walls: dict[str, list[float]] = {k: [] for k in runs}
    outputs: dict[str, str] = {}
    for i in range(repeats):
        for name in (list(runs) if i % 2 == 0 else list(runs)[::-1]):
            wall, outputs[name] = timed(runs[name], name)
            walls[name].append(wall)
    fw_text = {json.loads(x)["file"]: json.loads(x)["text"] for x in outputs["faster_whisper_loop"].splitlines()}
    fw_wall = statistics.median(walls["faster_whisper_loop"])
    result: dict = {"split": split, "files": len(paths), "audio_s": round(seconds, 1),
                    "faster_whisper_loop": {"wall_s": round(fw_wall, 1), "files_per_s": round(len(paths) / fw_wall, 2),
                                            "cpu_s": round(cpu("faster_whisper_loop"), 1),
                                            "wer": wer(refs, [fw_text[f] for f in files])}}
    for name in ("cascade_txt", "cascade_batched_txt", "cascade_batched_unpacked_txt"):
        wall = statistics.median(walls[name])
        ours = [(tmp / name / f"{p.stem}.txt").read_text() for p in paths]
        result[name] = {"wall_s": round(wall, 1), "files_per_s": round(len(paths) / wall, 2),
                        "speedup": round(fw_wall / wall, 3), "cpu_s": round(cpu(name), 1),
                        "cpu_speedup": round(cpu("faster_whisper_loop") / cpu(name), 3), "wer": wer(refs, ours)}
    return result

if __name__ == "__main__":
    main()
