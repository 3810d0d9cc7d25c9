"""The Coqui engine, tested in its own environment (torch 2.9.1 + torchaudio), from the main suite.

`make test` builds ~/.cache/cascade/venv-coqui first (`make coqui-env`: tests/extra_env.sh); this test runs
tests/coqui_engine_check.py there as a subprocess and requires every test in it to pass:
a missing environment is a failure, not a skip.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
from pathlib import Path

import pytest

from cascade.config import TtsOptions
from cascade.tts import synthesize_all
from cascade.types import ModelNotFound, Unsupported

ROOT = Path(__file__).resolve().parent.parent
COQUI_PY = Path(os.environ.get("CASCADE_COQUI_VENV", "~/.cache/cascade/venv-coqui")).expanduser() / "bin" / "python"


def test_coqui_engine_passes_in_its_environment() -> None:
    assert COQUI_PY.exists(), f"the Coqui environment is missing ({COQUI_PY}): run `make coqui-env`"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [str(COQUI_PY), "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/coqui_engine_check.py"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    tail = (proc.stdout + proc.stderr)[-4000:]
    assert proc.returncode == 0, tail
    summary = re.search(r"(\d+) passed", proc.stdout)
    assert summary and int(summary.group(1)) >= 4, tail
    assert "skipped" not in proc.stdout and "deselected" not in proc.stdout, tail


@pytest.mark.skipif(importlib.util.find_spec("TTS") is not None, reason="checks an environment without coqui-tts")
def test_coqui_without_its_environment_names_the_extra(tmp_path: Path) -> None:
    """In the main venv coqui-tts is absent: a clear error naming the extra, after the checkpoint checks."""
    ckpt = tmp_path / "model.pth"
    ckpt.write_bytes(b"not loaded")
    (tmp_path / "config.json").write_text('{"model": "vits"}')
    with pytest.raises(Unsupported, match=r"cascade\[coqui\].*make coqui-env"):
        synthesize_all("Hello.", TtsOptions(engine="coqui", coqui_model=str(ckpt)), home=tmp_path)
    with pytest.raises(ModelNotFound, match="not found"):
        synthesize_all("Hello.", TtsOptions(engine="coqui", coqui_model=str(tmp_path / "missing")), home=tmp_path)
