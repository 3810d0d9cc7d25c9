"""Load on the ASR service over loopback: requests/s and p50/p95 latency at several client
concurrencies, and the overhead of HTTP against calling cascade.asr in-process on the same clip.

    python benchmarks/service_load.py [--clip PATH] [--levels 1,4,16] [--requests 8]

Prints ONE JSON line. The service is a real `cascade serve asr` subprocess (tiny.en, int8, CPU)
with a queue deep enough that no request is turned away, so the figures are service time, not 429s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CLIP = ROOT.parent / "shared" / "data" / "real" / "LJ050-0131.wav"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def load_level(url: str, data: bytes, clients: int, per_client: int) -> dict:
    def worker(_: int) -> list[tuple[float, int]]:
        out = []
        with httpx.Client(timeout=1800) as http:
            for _ in range(per_client):
                t = time.perf_counter()
                r = http.post(url, files={"file": ("clip.wav", data)}, data={"response_format": "json"})
                out.append((time.perf_counter() - t, r.status_code))
        return out

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = [x for chunk in pool.map(worker, range(clients)) for x in chunk]
    wall = time.perf_counter() - start
    ok = [s for s, code in results if code == 200]
    return {"clients": clients, "requests": len(results), "errors": len(results) - len(ok),
            "rps": round(len(ok) / wall, 3), "p50_s": round(pct(ok, 0.5), 3), "p95_s": round(pct(ok, 0.95), 3)}


def overhead(url: str, data: bytes, repeats: int) -> tuple[float, float]:
    """Median seconds of (HTTP request, in-process decode + transcribe_all) on the same clip.

    The two are interleaved pair by pair so both see the same machine load; the in-process
    model is loaded (and one call discarded) before timing.
    """
    from cascade.asr import transcribe_all
    from cascade.audio import load_audio
    from cascade.config import load_settings

    s = load_settings()
    transcribe_all(load_audio(data), s.asr, home=s.home)
    http_s, local_s = [], []
    with httpx.Client(timeout=1800) as http:
        for _ in range(repeats):
            t = time.perf_counter()
            http.post(url, files={"file": ("clip.wav", data)}, data={"response_format": "json"}).raise_for_status()
            http_s.append(time.perf_counter() - t)
            t = time.perf_counter()
            transcribe_all(load_audio(data), s.asr, home=s.home)
            local_s.append(time.perf_counter() - t)
    return statistics.median(http_s), statistics.median(local_s)


def main() -> None:
    from services.common.testing import launch, wait_ready

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clip", type=Path, default=DEFAULT_CLIP)
    ap.add_argument("--levels", default="1,4,16")
    ap.add_argument("--requests", type=int, default=8, help="requests per level (at least one per client)")
    ap.add_argument("--max-concurrency", type=int, default=2, help="the service's running slots")
    ap.add_argument("--log-dir", type=Path, default=None, help="keep the service's log here")
    ap.add_argument("--overhead-pairs", type=int, default=6, help="interleaved HTTP/in-process pairs")
    args = ap.parse_args()
    data = args.clip.read_bytes()
    levels = [int(x) for x in args.levels.split(",")]
    env = {"CASCADE_SERVICE__MAX_CONCURRENCY": str(args.max_concurrency),
           "CASCADE_SERVICE__MAX_QUEUE": str(max(levels) * 2), "CASCADE_SERVICE__QUEUE_TIMEOUT_S": "600"}
    with tempfile.TemporaryDirectory() as tmp:
        svc = wait_ready(launch("asr", log_dir=args.log_dir or Path(tmp), env=env))
        try:
            url = svc.url + "/v1/audio/transcriptions"
            load_level(url, data, 1, 1)  # warm-up
            results = [load_level(url, data, c, max(1, args.requests // c)) for c in levels]
            http_p50, inproc = overhead(url, data, args.overhead_pairs)
        finally:
            svc.stop()
    print(json.dumps({
        "benchmark": "service_load", "clip": args.clip.name, "clip_bytes": len(data),
        "service_max_concurrency": args.max_concurrency, "levels": results,
        "overhead_pairs": args.overhead_pairs, "in_process_p50_s": round(inproc, 3),
        "http_p50_s": round(http_p50, 3), "http_over_in_process": round(http_p50 / inproc, 3),
        "cpu_cores": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2),
    }))


if __name__ == "__main__":
    main()
