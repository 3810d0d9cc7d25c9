"""Faults and abuse on loopback (issue 19): memory per request, admission, degradation, prompt cap.

    python benchmarks/service_faults.py [--deadline 10] [--skip-llm]

Prints ONE JSON line. Everything is a real `cascade serve` subprocess on 127.0.0.1; the
misbehaving LLMs are services.common.testing.FaultServer doubles. Bounded: about 60 requests,
a few minutes on two busy cores.

- decode: peak RSS growth of an ASR service (VmHWM, reset before each upload) for FLACs of 1 h
  and 3 h of silence whose header carries no length, against the peer: faster-whisper's
  decode_audio of the same bytes in a fresh process (what the service did before: decode all,
  then check the duration).
- admission: MAX_CONCURRENCY=1, MAX_QUEUE=2; ten concurrent requests spelling the tiny.en
  directory differently, then twelve concurrent requests under served names; status counts,
  RSS growth and the queue series /metrics ends up with.
- faults: a gateway (local tiny.en) whose LLM is dead (closed port), closes connections,
  answers non-JSON or wrong-schema 200s, trickles its body or its headers one byte a second, or
  never answers; correct=ger, correct=rescore and the voice turn: status, seconds, correction
  status (asr_only_s: the same clip with correct=none, what the deadline adds to).
- prompt: a 3,000-token echo prompt on the LLM service (cap 2,048) against the same service
  with the cap lifted (the old behaviour): status and peak RSS growth.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from services.common.testing import FaultServer, Service, dead_url, launch, wait_ready  # noqa: E402

JFK = ROOT.parent / "shared" / "data" / "real" / "jfk.flac"
COMMON = {"OMP_NUM_THREADS": "1", "CASCADE_ASR__CPU_THREADS": "1", "CASCADE_LLM__THREADS": "1"}


def status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def reset_peak(pid: int) -> None:
    """Reset VmHWM to the current RSS (Linux: write 5 to clear_refs)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def peak_growth_mb(svc: Service, send) -> tuple[float, object]:
    time.sleep(0.5)
    reset_peak(svc.proc.pid)
    base = status_kb(svc.proc.pid, "VmRSS")
    out = send()
    return round((status_kb(svc.proc.pid, "VmHWM") - base) / 1024, 1), out


def lengthless_flac(seconds: int) -> bytes:
    return subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i",
                           "anullsrc=r=8000:cl=mono", "-t", str(seconds), "-f", "flac", "-"],
                          check=True, capture_output=True).stdout


def peer_decode_mb(path: Path) -> float:
    """Peak RSS growth of faster-whisper's decode_audio (decode everything) in a fresh process."""
    code = textwrap.dedent(f"""
        import resource, faster_whisper.audio as a
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        a.decode_audio({str(path)!r})
        print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024)
    """)
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return round(float(out.split()[-1]), 1)


def clip(seconds: float) -> bytes:
    samples, rate = sf.read(JFK, dtype="float32")
    buf = io.BytesIO()
    sf.write(buf, samples[: int(seconds * rate)], rate, format="WAV")
    return buf.getvalue()


def post_audio(url: str, data: bytes, timeout: float = 600, **fields) -> httpx.Response:
    return httpx.post(url + "/v1/audio/transcriptions", files={"file": ("a.flac", data)},
                      data={"model": "whisper-1", **fields}, timeout=timeout)


def decode_phase(tmp: Path) -> dict:
    svc = wait_ready(launch("asr", log_dir=tmp, env=COMMON))
    try:
        out = {}
        for hours in (1, 3):
            data = lengthless_flac(3600 * hours)
            path = tmp / f"{hours}h.flac"
            path.write_bytes(data)
            grown, r = peak_growth_mb(svc, lambda: post_audio(svc.url, data))
            out[f"{hours}h"] = {"bytes": len(data), "status": r.status_code, "rss_growth_mb": grown,
                                "peer_rss_growth_mb": peer_decode_mb(path)}
            out[f"{hours}h"]["ratio"] = round(out[f"{hours}h"]["peer_rss_growth_mb"] / max(grown, 1.0), 1)
        return out
    finally:
        svc.stop()


def admission_phase(tmp: Path) -> dict:
    from cascade import models
    from cascade.config import load_settings

    env = {**COMMON, "CASCADE_SERVICE__MAX_CONCURRENCY": "1", "CASCADE_SERVICE__MAX_QUEUE": "2",
           "CASCADE_SERVICE__QUEUE_TIMEOUT_S": "120"}
    svc = wait_ready(launch("asr", log_dir=tmp, env=env))
    real = models.whisper_dir("tiny.en", load_settings().home)
    spellings = [str(real), f"{real}/", f"{real}/.", f"{real}//", f"{real}/../{real.name}", f"{real}/./",
                 "/usr/lib", "/nonexistent", "../../etc", "TINY.EN"]
    names = ["tiny.en", "whisper-1", "", "default"] * 3
    data = clip(2.5)
    try:
        def burst(models_: list[str]) -> dict[str, int]:
            with ThreadPoolExecutor(len(models_)) as pool:
                codes = list(pool.map(lambda m: post_audio(svc.url, data, model=m).status_code, models_))
            return {str(c): codes.count(c) for c in sorted(set(codes))}

        rss0 = status_kb(svc.proc.pid, "VmRSS")
        spelled = burst(spellings)
        rss1 = status_kb(svc.proc.pid, "VmRSS")
        served = burst(names)
        metrics = httpx.get(svc.url + "/metrics").text
        queues = sorted({ln.split('model="')[1].split('"')[0] for ln in metrics.splitlines()
                         if ln.startswith("cascade_queue_running{")})
        return {"spellings": {"requests": len(spellings), "status": spelled,
                              "rss_growth_mb": round((rss1 - rss0) / 1024, 1)},
                "served_names": {"requests": len(names), "status": served}, "queues": queues,
                "limits": {"max_concurrency": 1, "max_queue": 2}}
    finally:
        svc.stop()


def _timed(send) -> tuple[float, httpx.Response]:
    start = time.monotonic()
    r = send()
    return round(time.monotonic() - start, 2), r


def _fault_row(url: str, data: bytes) -> dict:
    row = {}
    for mode in ("ger", "rescore"):
        took, r = _timed(lambda: post_audio(url, data, correct=mode))
        status = None
        if r.status_code == 200:
            status = r.json()["transcript"]["segments"][0]["correction"]["status"]
        row[mode] = {"status": r.status_code, "s": took, "correction": status}
    took, r = _timed(lambda: httpx.post(url + "/v1/voice/turn", files={"file": ("a.wav", data)}, timeout=600))
    row["turn"] = {"status": r.status_code, "s": took,
                   "degraded": sorted(r.json().get("degraded", {})) if r.status_code == 200 else None}
    return row


def faults_phase(tmp: Path, deadline: float) -> dict:
    env = {**COMMON, "CASCADE_SERVICE__REQUEST_TIMEOUT_S": str(deadline), "CASCADE_SERVICE__CONNECT_TIMEOUT_S": "1",
           "CASCADE_CORRECT__MODE": "ger", "CASCADE_CHAT__CORRECT": "ger",
           "CASCADE_CHAT__MAX_REPLY_TOKENS": "10"}
    data = clip(2.5)
    with FaultServer("close", interval=1.0) as upstream:
        tts = dead_url()
        gw = launch("gateway", log_dir=tmp, env=env, args=("--llm-url", upstream.url, "--tts-url", tts))
        dead = launch("gateway", log_dir=tmp, env=env, args=("--llm-url", dead_url(), "--tts-url", tts))
        try:
            wait_ready(gw), wait_ready(dead)
            rows = {"dead": _fault_row(dead.url, data)}
            dead.stop()
            baseline, _ = _timed(lambda: post_audio(gw.url, data, correct="none"))
            for fault in ("close", "garbage", "schema", "trickle", "slow_headers", "blackhole"):
                upstream.fault = fault
                rows[fault] = _fault_row(gw.url, data)
        finally:
            gw.stop()
            dead.stop()
    calls = [c for row in rows.values() for c in row.values()]
    return {"deadline_s": deadline, "asr_only_s": baseline, "by_fault": rows, "http_500": sum(c["status"] >= 500 for c in calls),
            "all_200": all(c["status"] == 200 for c in calls), "max_s": max(c["s"] for c in calls)}


def prompt_phase(tmp: Path) -> dict:
    prompt = " ".join(f"word{i % 97}" for i in range(1040))  # ~3,000 SmolLM2 tokens
    body = {"model": "smollm2", "prompt": prompt, "max_tokens": 0, "echo": True, "logprobs": 0}
    out = {}
    for name, cap in (("capped", None), ("peer_uncapped", "100000")):
        env = {**COMMON, **({"CASCADE_SERVICE__MAX_PROMPT_TOKENS": cap} if cap else {})}
        svc = wait_ready(launch("llm", log_dir=tmp, env=env), timeout=600)
        try:
            grown, r = peak_growth_mb(svc, lambda: httpx.post(svc.url + "/v1/completions", json=body, timeout=900))
            row = {"status": r.status_code, "rss_growth_mb": grown}
            if r.status_code == 200:
                row["prompt_tokens"] = r.json()["usage"]["prompt_tokens"]
            else:
                row["message"] = r.json()["error"]["message"]
            out[name] = row
        finally:
            svc.stop()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deadline", type=float, default=10.0, help="request_timeout_s of the gateway (issue: 10)")
    parser.add_argument("--skip-llm", action="store_true", help="skip the prompt phase (two LLM services)")
    args = parser.parse_args()
    if shutil.which("ffmpeg") is None:
        sys.exit("ffmpeg is needed to write FLACs without a length header")
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp_:
        tmp = Path(tmp_)
        result = {"decode": decode_phase(tmp), "admission": admission_phase(tmp),
                  "faults": faults_phase(tmp, args.deadline)}
        if not args.skip_llm:
            result["prompt"] = prompt_phase(tmp)
    result["seconds"] = round(time.monotonic() - started, 1)
    result["cpus"] = os.cpu_count()
    print(json.dumps(result))


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
