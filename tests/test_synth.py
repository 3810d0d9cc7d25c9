"""make-nbest: real piper/espeak-ng speech, real degradations, real Whisper tiny.en N-best."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cascade.cli import app
from cascade.config import SynthOptions
from cascade.ger import synth

runner = CliRunner()


def test_make_nbest_writes_hyporadise_records(tmp_path: Path, shared_data: Path) -> None:
    sentences = (shared_data / "text" / "harvard-sentences.txt").read_text().splitlines()[10:13]
    src = tmp_path / "three.txt"
    src.write_text("\n".join(sentences) + "\n")
    out = tmp_path / "nbest.json"
    res = runner.invoke(app, ["make-nbest", str(src), "--out", str(out), "--seed", "3"])
    assert res.exit_code == 0, res.output
    records = json.loads(out.read_text())
    assert [r["output"] for r in records] == sentences
    for rec in records:
        assert len(rec["input"]) == 5 and len(rec["am_score"]) == 5
        assert all(isinstance(h, str) and h.strip() for h in rec["input"])
        distinct = list(dict.fromkeys(synth._norm_key(h) for h in rec["input"]))
        # deduplicated first, then padded by repeating the 1-best (as HyPoradise does)
        assert [synth._norm_key(h) for h in rec["input"][: len(distinct)]] == distinct
        assert all(synth._norm_key(h) == distinct[0] for h in rec["input"][len(distinct) :])
        assert rec["data_source"].startswith("three.txt|") and ("piper(" in rec["data_source"] or "espeak(" in rec["data_source"])
        assert rec["asr_model"].startswith("tiny.en")
    # degraded synthetic speech makes tiny.en produce real alternatives
    assert max(len(set(r["input"])) for r in records) >= 2


def test_degradations_do_what_they_say() -> None:
    rng = np.random.default_rng(0)
    t = np.arange(16000) / 16000
    tone = (0.5 * np.sin(2 * np.pi * 440 * t) + 0.3 * np.sin(2 * np.pi * 6000 * t)).astype(np.float32)
    noisy = synth._add_noise(tone, 10.0, "white", rng)
    snr = 10 * np.log10(np.mean(tone**2) / np.mean((noisy - tone) ** 2))
    assert abs(snr - 10.0) < 0.1
    phone = synth._bandpass(tone, 16000, 300.0, 3400.0)
    spec = np.abs(np.fft.rfft(phone))
    assert spec[6000] < 1e-3 * spec[440]
    wet = synth._reverb(tone, 0.5, rng)
    assert len(wet) == len(tone) and not np.allclose(wet, tone)
    out, steps = synth.degrade(tone, np.random.default_rng(1), SynthOptions(clean_fraction=0.0))
    assert steps and "snr=" in steps[-1] and out.dtype == np.float32 and np.max(np.abs(out)) <= 0.91


def test_test_split_text_is_never_used(tmp_path: Path, shared_data: Path) -> None:
    test_ref = json.loads((shared_data / "hyporadise" / "test" / "ls_clean.json").read_text())[0]["output"]
    src = tmp_path / "mixed.txt"
    src.write_text(f"The birch canoe slid on the smooth planks.\n{test_ref.upper()}\n")
    kept = synth.drop_test_overlap(synth.read_items(src), synth.test_sentences(shared_data))
    assert [k.text for k in kept] == ["The birch canoe slid on the smooth planks."]
    res = runner.invoke(app, ["make-nbest", str(shared_data / "hyporadise" / "test" / "atis.json"), "-o", str(tmp_path / "x.json")])
    assert res.exit_code == 1 and "test split" in res.output and "Traceback" not in res.output


@pytest.mark.parametrize("content", [None, "", "\n  \n"])
def test_bad_input_is_one_line_error(tmp_path: Path, content: str | None) -> None:
    src = tmp_path / "in.txt"
    if content is not None:
        src.write_text(content)
    res = runner.invoke(app, ["make-nbest", str(src), "-o", str(tmp_path / "x.json")])
    assert res.exit_code == 1
    assert res.output.strip().startswith("error:") and len(res.output.strip().splitlines()) == 1
