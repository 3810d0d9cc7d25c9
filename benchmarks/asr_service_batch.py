"""The ASR service under concurrent requests: batched (service.asr_batch_window_ms, asr.batch_size) against unbatched.

    python benchmarks/asr_service_batch.py [--clips 16] [--rounds 3] [--model tiny.en] [--batch-size 8]

The first --clips speechocean762 dev clips (../shared/data, short read sentences) are sent all at once, --rounds
times, by --clips client threads to a real `cascade serve asr` on loopback (its default 2 model slots; a queue long
enough for them all), with batching (asr.batch_size --batch-size), with batching and packing (service.asr_batch_pack: the clips share
Whisper windows) and without (asr.batch_size 1), --repeats times each in
alternating order (the median run is reported), each after a warm-up round; then a faster-whisper loop (`WhisperModel.transcribe(beam_size=5)`, int8, the model loaded
before timing) over the same clips in this process. Figures: requests per second (wall clock of the rounds), the
service's CPU seconds (/proc), batched decodes and the requests they answered (/metrics), WER of the answers
(whisper-normalizer, jiwer). Prints one JSON line, with the load.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import jiwer
import soundfile as sf

from cascade.config import load_settings
from cascade.metrics import normalize
from cascade.models import whisper_dir
from services.common.testing import running_service

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def clips(n: int) -> tuple[list[Path], list[str]]:
    rows = [json.loads(x) for x in (DATA / "speechocean762" / "manifest.jsonl").read_text().splitlines()]
    rows = [r for r in rows if r["split"] == "dev"][:n]
    return [DATA / "speechocean762" / r["audio"] for r in rows], [r["text"] for r in rows]


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def metric(text: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{"))


def serve(paths: list[Path], rounds: int, model: str, batch_size: int, logs: Path, pack: bool = False) -> dict:
    env = {"CASCADE_ASR__MODEL": model, "CASCADE_ASR__BATCH_SIZE": str(batch_size),
           "CASCADE_SERVICE__MAX_QUEUE": str(4 * len(paths)), "CASCADE_SERVICE__QUEUE_TIMEOUT_S": "600",
           "CASCADE_SERVICE__ASR_BATCH_PACK": str(pack).lower()}
    data = [p.read_bytes() for p in paths]
    with running_service("asr", log_dir=logs, env=env) as svc, httpx.Client(timeout=600) as client:
        def one(i: int) -> str:
            r = client.post(f"{svc.url}/v1/audio/transcriptions", files={"file": (paths[i].name, data[i])},
                            data={"response_format": "text", "model": model})
            r.raise_for_status()
            return r.text

        with ThreadPoolExecutor(len(paths)) as pool:
            list(pool.map(one, range(len(paths))))  # warm-up: model load, first calls
            before, cpu0, start = client.get(f"{svc.url}/metrics").text, cpu_s(svc.proc.pid), time.perf_counter()
            texts = [list(pool.map(one, range(len(paths)))) for _ in range(rounds)]
            wall, cpu = time.perf_counter() - start, cpu_s(svc.proc.pid) - cpu0
        after = client.get(f"{svc.url}/metrics").text
    n = rounds * len(paths)
    return {"req_per_s": round(n / wall, 2), "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
            "batches": int(metric(after, "cascade_asr_batches_total") - metric(before, "cascade_asr_batches_total")),
            "batched_requests": int(metric(after, "cascade_asr_batched_requests_total")
                                    - metric(before, "cascade_asr_batched_requests_total")),
            "texts": texts[-1]}


def faster_whisper_loop(paths: list[Path], rounds: int, model: str) -> dict:
    from faster_whisper import WhisperModel

    settings = load_settings()
    whisper = WhisperModel(str(whisper_dir(model, settings.home)), device="cpu", compute_type="int8")
    texts = []
    cpu0, start = time.process_time(), time.perf_counter()
    for _ in range(rounds):
        texts = [" ".join(s.text.strip() for s in whisper.transcribe(str(p), beam_size=5)[0]) for p in paths]
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu0
    return {"req_per_s": round(rounds * len(paths) / wall, 2), "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
            "texts": texts}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2, help="each service this many times, in alternating order")
    args = parser.parse_args()
    paths, refs = clips(args.clips)
    load0 = round(os.getloadavg()[0], 2)
    sizes = {"batched": args.batch_size, "unbatched": 1, "packed": args.batch_size}
    tried: dict[str, list[dict]] = {name: [] for name in sizes}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            for name in (list(sizes) if r % 2 == 0 else list(sizes)[::-1]):
                tried[name].append(serve(paths, args.rounds, args.model, sizes[name], Path(tmp), name == "packed"))
    runs = {name: sorted(got, key=lambda run: run["req_per_s"])[len(got) // 2] for name, got in tried.items()}
    for name, got in tried.items():
        runs[name]["req_per_s_each"] = [run["req_per_s"] for run in got]
    runs["faster_whisper_loop"] = faster_whisper_loop(paths, args.rounds, args.model)
    out: dict = {"benchmark": "asr_service_batch", "model": args.model, "clips": len(paths), "rounds": args.rounds,
                 "batch_size": args.batch_size, "audio_s": round(sum(sf.info(p).duration for p in paths), 1)}
    texts_of = {name: run.pop("texts") for name, run in runs.items()}
    for name, run in runs.items():
        texts = texts_of[name]
        run["wer"] = round(100 * jiwer.wer([normalize(r) for r in refs], [normalize(t) or "-" for t in texts]), 2)
        out[name] = run
    out["batched_vs_unbatched"] = round(runs["batched"]["req_per_s"] / runs["unbatched"]["req_per_s"], 2)
    out["batched_vs_faster_whisper"] = round(runs["batched"]["req_per_s"] / runs["faster_whisper_loop"]["req_per_s"], 2)
    out["packed_vs_faster_whisper"] = round(runs["packed"]["req_per_s"] / runs["faster_whisper_loop"]["req_per_s"], 2)
    out["same_text_batched_unbatched"] = sum(a == b for a, b in zip(texts_of["batched"], texts_of["unbatched"]))
    out["load"] = [load0, round(os.getloadavg()[0], 2)]
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    sys.exit(main())
