"""Batch-correction throughput and memory: prints ONE JSON line.

- none mode (format conversion, no LLM) on a generated 1,000,000-line input and on
  100,000 lines: records/s and peak RSS (equal peaks = memory does not grow with input);
- rescore and GER with the bundled SmolLM2 at --workers 1 and 2 on a generated
  10k-record N-best input (real HyPoradise dev 5-best lists, cycled with fresh ids).
  On 2 CPU cores the LLM modes would take hours on all 10k, so each runs on a prefix
  whose size is reported (`records`).

Every run is the real `cascade correct-batch` in a subprocess; peak RSS is sampled
over the whole process tree (workers included) every 0.1 s with psutil.

    python benchmarks/batch_throughput.py [--rescore-n 200] [--ger-n 24] [--lines 1000000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
DEV = ROOT.parent / "shared" / "data" / "hyporadise" / "dev"


def run(args: list[str], env: dict[str, str] | None = None) -> dict[str, float]:
    """Run `cascade correct-batch ...`; return wall seconds and the peak RSS of the process tree."""
    start = time.monotonic()
    proc = psutil.Popen([sys.executable, "-m", "cascade", "correct-batch", *args], env={**os.environ, **(env or {})},
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = 0
    while proc.poll() is None:
        try:
            tree = [proc, *proc.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
        except psutil.Error:
            pass
        time.sleep(0.1)
    out, err = proc.communicate()
    if proc.returncode:
        raise SystemExit(f"correct-batch {' '.join(args)} failed: {err.strip().splitlines()[-1:]}")
    return {"seconds": round(time.monotonic() - start, 2), "peak_rss_mb": round(peak / 2**20, 1), "summary": out.strip()}


def nbest_input(path: Path, n: int) -> None:
    """n N-best records cycled from the six HyPoradise dev sets, ids made unique."""
    pool = [rec for f in sorted(DEV.glob("*.json")) for rec in json.loads(f.read_text())]
    with open(path, "w") as fh:
        for i in range(n):
            rec = pool[i % len(pool)]
            fh.write(json.dumps({"id": f"r{i:06d}", "hypotheses": rec["input"], "reference": rec["output"]}) + "\n")


def head(src: Path, dst: Path, n: int) -> None:
    with open(src) as fi, open(dst, "w") as fo:
        for _ in range(n):
            fo.write(fi.readline())


def llm_runs(tmp: Path, mode: str, n: int, batch_size: int, lam: float) -> dict[str, object]:
    src = tmp / f"{mode}-{n}.jsonl"
    head(tmp / "nbest-10k.jsonl", src, n)
    out: dict[str, object] = {"records": n, "of": 10_000, "batch_size": batch_size, "lam": lam}
    for workers in (1, 2):
        r = run([str(src), "--out", str(tmp / f"{mode}-w{workers}.jsonl"), "--mode", mode,
                 "--workers", str(workers), "--batch-size", str(batch_size)], {"CASCADE_RESCORE__LAM": str(lam)})
        out[f"workers{workers}"] = {"records_per_s": round(n / r["seconds"], 3), **r}
    a, b = (tmp / f"{mode}-w1.jsonl").read_text(), (tmp / f"{mode}-w2.jsonl").read_text()
    out["workers2_output_identical"] = a == b
    return out


def none_runs(tmp: Path, lines: int) -> dict[str, object]:
    """Format conversion only: the same peak RSS at 1/10 and all of the lines means flat memory."""
    big = tmp / "big.txt"
    with open(big, "w") as fh:
        for i in range(lines):
            fh.write(f"this is generated utterance number {i} for the batch benchmark\n")
    small = tmp / "small.txt"
    head(big, small, lines // 10)
    none: dict[str, object] = {}
    for name, path, n in (("lines_tenth", small, lines // 10), ("lines_full", big, lines)):
        r = run([str(path), "--out", str(tmp / f"{name}.jsonl"), "--mode", "none"])
        none[name] = {"records": n, "records_per_s": round(n / r["seconds"]), **r}
    return none


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--rescore-n", type=int, default=200)
    ap.add_argument("--ger-n", type=int, default=24)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--lam", type=float, default=0.3, help="rescoring weight (λ = 0 would not run the LLM)")
    ap.add_argument("--skip-none", action="store_true")
    args = ap.parse_args()
    result: dict[str, object] = {"cpu_cores": psutil.cpu_count(), "data": "hyporadise/dev (cycled)"}
    with tempfile.TemporaryDirectory(prefix="cascade-bench-") as d:
        tmp = Path(d)
        if not args.skip_none:
            result["none"] = none_runs(tmp, args.lines)
        nbest_input(tmp / "nbest-10k.jsonl", 10_000)
        result["rescore"] = llm_runs(tmp, "rescore", args.rescore_n, args.batch_size, args.lam)
        result["ger"] = llm_runs(tmp, "ger", args.ger_n, args.batch_size, args.lam)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
