"""Training data for GER: real or synthesized speech -> degraded audio -> Whisper N-best (HyPoradise JSON).

A text corpus becomes speech with piper (the bundled voice) or espeak-ng (several voices,
speeds and pitches), then a seeded chain of degradations (speed change, telephone band,
reverberation from a synthetic impulse response, additive noise at a chosen SNR) makes the
recogniser err the way real audio does. Every record says where its text came from, what was
done to the audio and which ASR model decoded it (`data_source`, `asr_model`).

Text from any test split is refused: paths inside a `test` folder are rejected and every
sentence that also occurs (normalised) in a test split is dropped.
"""

from __future__ import annotations

import io
import json
import logging
import re
import subprocess
import wave
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cascade.config import AsrOptions, SynthOptions
from cascade.types import InvalidInput

logger = logging.getLogger(__name__)

SR = 16000
N_BEST = 5


@dataclass(frozen=True)
class TextItem:
    """One sentence to speak (or one recording with its reference when `audio` is set)."""

    id: str
    text: str
    source: str
    audio: Path | None = None


# --------------------------------------------------------------------------- inputs


def _norm_key(text: str) -> str:
    """Light key for dedup / test-overlap checks: lower case, letters, digits and apostrophes."""
    return " ".join(re.sub(r"[^\w' ]+", " ", text.lower()).split())


def _reject_test_path(path: Path) -> None:
    if "test" in {p.lower() for p in path.resolve().parent.parts}:
        raise InvalidInput(f"{path} lies in a test split: never train on test data", param="input")


def read_items(path: Path) -> list[TextItem]:
    """Sentences or (audio, reference) pairs from a text file, HyPoradise JSON or a JSONL manifest.

    .txt and other plain files: one sentence a line. .json (HyPoradise): the `output` references.
    .jsonl: records with `text` (or `reference`), and `audio` (relative to the file) for real speech.
    """
    if not path.is_file():
        raise InvalidInput(f"input not found: {path}", param="input")
    _reject_test_path(path)
    name = path.stem
    try:
        raw = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{path} is not UTF-8 text", param="input") from exc
    if path.suffix == ".json":
        items = [TextItem(f"{name}-{i}", str(r.get("output", "")), f"{name}.json") for i, r in enumerate(_json(raw, path))]
    elif path.suffix == ".jsonl":
        items = [_manifest_item(json.loads(line), i, path) for i, line in enumerate(raw.splitlines()) if line.strip()]
    else:
        items = [TextItem(f"{name}-{i}", line.strip(), path.name) for i, line in enumerate(raw.splitlines())]
    items = [it for it in items if it.text.strip()]
    if not items:
        raise InvalidInput(f"{path} holds no sentences", param="input")
    return items


def _json(raw: str, path: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"{path} is not valid JSON: {exc}", param="input") from exc
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise InvalidInput(f"{path} must hold a JSON list of records", param="input")
    return data


def _manifest_item(rec: dict[str, Any], i: int, path: Path) -> TextItem:
    text = rec.get("text") or rec.get("reference") or ""
    audio = rec.get("audio")
    if rec.get("split") == "test":
        raise InvalidInput(f"{path} record {i} is from the test split: never train on test data", param="input")
    return TextItem(str(rec.get("id", f"{path.stem}-{i}")), str(text), path.name, (path.parent / audio) if audio else None)


def test_sentences(shared_data: Path) -> set[str]:
    """Normalised sentences of every test split under ../shared/data (to keep them out of training)."""
    keys: set[str] = set()
    for f in shared_data.glob("hyporadise/test/*.json"):
        keys.update(_norm_key(r.get("output", "")) for r in json.loads(f.read_text()))
    for f in shared_data.glob("*/manifest.jsonl"):
        for line in f.read_text().splitlines():
            rec = json.loads(line) if line.strip() else {}
            if rec.get("split") == "test":
                keys.update(_norm_key(rec.get(k) or "") for k in ("text", "translation", "source_text"))
    for f in shared_data.glob("asr-outputs/*/test/*.csv"):
        import csv

        with f.open(newline="", encoding="utf-8") as fh:
            keys.update(_norm_key(row.get("actual") or "") for row in csv.DictReader(fh))
    keys.discard("")
    return keys


def drop_test_overlap(items: list[TextItem], banned: set[str]) -> list[TextItem]:
    kept = [it for it in items if _norm_key(it.text) not in banned]
    if len(kept) < len(items):
        logger.info("dropped %d sentences that also occur in a test split", len(items) - len(kept))
    return kept


# --------------------------------------------------------------------------- speech


def _resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Band-limit (FFT) then interpolate: adequate for 16 kHz ASR input, no scipy needed."""
    if sr_in == sr_out or len(x) == 0:
        return x.astype(np.float32)
    if sr_out < sr_in:
        x = _bandpass(x, sr_in, 0.0, 0.45 * sr_out)
    n_out = int(round(len(x) * sr_out / sr_in))
    t = np.linspace(0, len(x) - 1, n_out)
    return np.interp(t, np.arange(len(x)), x).astype(np.float32)


def _bandpass(x: np.ndarray, sr: int, lo: float, hi: float) -> np.ndarray:
    spec = np.fft.rfft(x)
    freqs = np.fft.rfftfreq(len(x), 1.0 / sr)
    spec[(freqs < lo) | (freqs > hi)] = 0
    return np.fft.irfft(spec, n=len(x)).astype(np.float32)


def speak_piper(voice: Any, text: str, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    from piper import SynthesisConfig

    length = float(rng.uniform(0.8, 1.3))
    noise = float(rng.uniform(0.4, 0.9))
    cfg = SynthesisConfig(length_scale=length, noise_scale=noise, noise_w_scale=float(rng.uniform(0.5, 1.0)))
    chunks = [c.audio_float_array for c in voice.synthesize(text, syn_config=cfg)]
    audio = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    return _resample(audio, voice.config.sample_rate, SR), f"piper(len={length:.2f},noise={noise:.2f})"


def speak_espeak(text: str, rng: np.random.Generator, voices: tuple[str, ...]) -> tuple[np.ndarray, str]:
    voice = str(rng.choice(voices))
    speed, pitch = int(rng.integers(130, 200)), int(rng.integers(25, 75))
    out = subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "--stdout", text],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    with wave.open(io.BytesIO(out)) as wav:  # espeak streams a header with a bogus length
        sr = wav.getframerate()
    pcm = np.frombuffer(out[44:], dtype=np.int16).astype(np.float32) / 32768.0
    return _resample(pcm, sr, SR), f"espeak({voice},s={speed},p={pitch})"


def degrade(x: np.ndarray, rng: np.random.Generator, opts: SynthOptions) -> tuple[np.ndarray, list[str]]:
    """A seeded chain of realistic degradations; returns the audio and what was done."""
    steps: list[str] = []
    if rng.random() < opts.clean_fraction:
        return x, ["clean"]
    if rng.random() < opts.p_speed:
        factor = float(rng.choice([0.85, 0.9, 1.1, 1.15]))
        x = _resample(x, int(SR * factor), SR)  # sox-style speed: tempo and pitch together
        steps.append(f"speed({factor})")
    if rng.random() < opts.p_reverb:
        rt60 = float(rng.uniform(0.2, 0.7))
        x = _reverb(x, rt60, rng)
        steps.append(f"reverb(rt60={rt60:.2f})")
    if rng.random() < opts.p_telephone:
        x = _resample(_resample(_bandpass(x, SR, 300.0, 3400.0), SR, 8000), 8000, SR)
        steps.append("telephone")
    snr = float(rng.choice(opts.snr_db))
    kind = str(rng.choice(["white", "pink", "babble"]))
    x = _add_noise(x, snr, kind, rng)
    steps.append(f"{kind}(snr={snr:g})")
    peak = float(np.max(np.abs(x))) if len(x) else 0.0
    return (x / peak * 0.9 if peak > 0 else x).astype(np.float32), steps


def _reverb(x: np.ndarray, rt60: float, rng: np.random.Generator) -> np.ndarray:
    """Convolve with exponentially decaying noise (a synthetic room impulse response)."""
    n = int(rt60 * SR)
    t = np.arange(n) / SR
    ir = rng.standard_normal(n) * np.exp(-6.9 * t / rt60)
    ir[0] = 1.0
    ir /= np.sqrt(np.sum(ir**2))
    size = len(x) + n - 1
    y = np.fft.irfft(np.fft.rfft(x, size) * np.fft.rfft(ir, size), size)[: len(x)]
    return y.astype(np.float32)


def _add_noise(x: np.ndarray, snr_db: float, kind: str, rng: np.random.Generator) -> np.ndarray:
    noise = rng.standard_normal(len(x))
    if kind == "pink":
        spec = np.fft.rfft(noise)
        spec /= np.sqrt(np.maximum(np.arange(len(spec)), 1))
        noise = np.fft.irfft(spec, len(x))
    elif kind == "babble":  # a few time-reversed, shifted copies of speech-band noise modulated like syllables
        env = np.abs(np.sin(np.arange(len(x)) / SR * np.pi * rng.uniform(3, 6)))
        noise = _bandpass(noise, SR, 200.0, 4000.0) * env
    p_sig = float(np.mean(x**2)) + 1e-12
    p_noise = float(np.mean(noise**2)) + 1e-12
    return (x + noise * np.sqrt(p_sig / (p_noise * 10 ** (snr_db / 10)))).astype(np.float32)


# --------------------------------------------------------------------------- N-best


def nbest_record(segments: Iterable[Any], n: int = N_BEST) -> tuple[list[str], list[float]]:
    """Join segment N-bests into utterance hypotheses, dedup (light normalisation) and pad like HyPoradise."""
    per_seg = [list(seg.nbest.hypotheses) for seg in segments]
    if not per_seg:
        return [""] * n, [0.0] * n
    texts: list[str] = []
    scores: list[float] = []
    seen: set[str] = set()
    for k in range(max(len(h) for h in per_seg)):
        parts = [hyps[min(k, len(hyps) - 1)] for hyps in per_seg]
        text = " ".join(h.text.strip() for h in parts).strip()
        key = _norm_key(text)
        if key in seen:
            continue
        seen.add(key)
        texts.append(text)
        # HyPoradise's am_score is the length-normalised log-prob (mean per token)
        scores.append(float(np.mean([h.avg_logprob if h.avg_logprob is not None else 0.0 for h in parts])))
    while len(texts) < n:  # HyPoradise pads short lists by repeating hypotheses
        texts.append(texts[0])
        scores.append(scores[0])
    return texts[:n], scores[:n]


def synth_options_desc(asr: AsrOptions) -> str:
    return f"{asr.model}(beam={asr.beam_size},n={asr.n_best})"


def make_nbest(
    items: list[TextItem], synth: SynthOptions, asr: AsrOptions, *, home: Path
) -> Iterator[dict[str, Any]]:
    """Yield one HyPoradise record per item (work happens during iteration, one item at a time)."""
    from cascade.asr import transcribe

    voice = _load_piper() if "piper" in synth.engines and any(it.audio is None for it in items) else None
    for item in items:
        # per-item stream from (seed, id): an interrupted run continues with the same choices
        item_rng = np.random.default_rng([synth.seed, zlib.crc32(item.id.encode())])
        if item.audio is not None:
            audio, steps = str(item.audio), ["recorded"]
        else:
            engine = str(item_rng.choice(synth.engines))
            clean, spoken = (
                speak_piper(voice, item.text, item_rng)
                if engine == "piper"
                else speak_espeak(item.text, item_rng, synth.espeak_voices)
            )
            audio, steps = degrade(clean, item_rng, synth)
            steps = [spoken, *steps]
        segments, _info = transcribe(audio, asr, home=home)
        texts, scores = nbest_record(segments, asr.n_best)
        if item.audio is None and not any(t.strip() for t in texts):
            # degraded past recognition (VAD heard nothing): an empty list would teach the LLM to invent the
            # reference, so this sentence is decoded from its clean rendering instead
            texts, scores = nbest_record(transcribe(clean, asr, home=home)[0], asr.n_best)
            steps = [steps[0], "clean(degraded unrecognisable)"]
        yield {
            "id": item.id,
            "input": texts,
            "output": item.text,
            "am_score": scores,
            "data_source": f"{item.source}|{'+'.join(steps)}",
            "asr_model": synth_options_desc(asr),
        }


def _load_piper() -> Any:
    from piper import PiperVoice

    from cascade.models import piper_voice

    onnx, config = piper_voice("en_US-joe-medium")
    return PiperVoice.load(onnx, config_path=config)
