"""Batch correction with the real SmolLM2: kill -9 at random moments then resume, and the Ray engine.

Both compare bytes with one uninterrupted single-process run of the same job (rescoring with
λ = 0.3, so every record is scored by the LLM).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cascade.batch import correct_file
from cascade.config import load_settings

LAM = 0.3
BATCH = 2
N = 12
N_KILL = 48
SETTINGS = load_settings({"correct": {"mode": "rescore", "batch_size": BATCH}, "rescore": {"lam": LAM, "profile": "none"}})


def _job(tmp: Path, shared_data: Path, n: int) -> tuple[Path, bytes]:
    """A HyPoradise file of n real ATIS dev 5-best lists and its uninterrupted rescored output."""
    src = tmp / "atis.json"
    src.write_text(json.dumps(json.loads((shared_data / "hyporadise/dev/atis.json").read_text())[:n]))
    ref = tmp / "ref.jsonl"
    summary = correct_file(src, ref, SETTINGS)
    assert summary.done == n and summary.errors == 0
    recs = [json.loads(x) for x in ref.read_text().splitlines()]
    choice = [len({h["text"] for h in r["scores"]}) > 1 for r in recs]  # one distinct text: nothing to score
    assert any(choice) and all(r["method"] == "rescore" and (r["scores"][0]["lm"] is not None) == c
                               for r, c in zip(recs, choice)), "the LLM scored the lists with a choice"
    return src, ref.read_bytes()


@pytest.fixture(scope="module")
def job(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> tuple[Path, bytes]:
    return _job(tmp_path_factory.mktemp("batch_llm"), shared_data, N)


@pytest.fixture(scope="module")
def long_job(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> tuple[Path, bytes]:
    """Long enough (N_KILL records) that an idle machine does not finish it between kills."""
    return _job(tmp_path_factory.mktemp("batch_llm_kill"), shared_data, N_KILL)


def test_kill_9_at_random_moments_then_resume_is_byte_identical(long_job: tuple[Path, bytes], tmp_path: Path) -> None:
    src, ref = long_job
    out = tmp_path / "out.jsonl"
    cmd = [sys.executable, "-m", "cascade", "correct-batch", str(src), "--out", str(out), "--mode", "rescore",
           "--batch-size", str(BATCH)]
    env = {**os.environ, "CASCADE_RESCORE__LAM": str(LAM), "CASCADE_RESCORE__PROFILE": "none"}
    rng = random.Random(20261123)
    sizes = []
    for attempt in range(5):
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        before = out.stat().st_size if out.exists() else 0
        if attempt % 2:  # kill while it writes: after it has appended something, at a random moment
            deadline = time.monotonic() + 120
            while proc.poll() is None and time.monotonic() < deadline and (out.stat().st_size if out.exists() else 0) <= before:
                time.sleep(0.05)
            time.sleep(rng.uniform(0.0, 0.3))
        else:  # anywhere: during start-up, model load or scoring
            time.sleep(rng.uniform(0.3, 4.0))
        if proc.poll() is not None:
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        sizes.append(out.stat().st_size if out.exists() else 0)
    assert len(sizes) >= 3, f"the job finished before it could be killed enough ({sizes})"
    assert any(0 < s < len(ref) for s in sizes), f"no kill landed mid-output: {sizes}"
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"done {N_KILL}" in done.stdout
    assert out.read_bytes() == ref


def test_ray_engine_on_a_local_cluster_equals_single_process(job: tuple[Path, bytes], tmp_path: Path) -> None:
    ray = pytest.importorskip("ray")
    src, ref = job
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        s = SETTINGS.model_copy(update={"batch": SETTINGS.batch.model_copy(update={"engine": "ray", "workers": 1})})
        out = tmp_path / "ray.jsonl"
        summary = correct_file(src, out, s)
        assert summary.done == N and summary.engine == "ray"
        assert out.read_bytes() == ref
        assert not list(tmp_path.glob(".cascade-ray-*")), "input shards are removed"
    finally:
        ray.shutdown()
