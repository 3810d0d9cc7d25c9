"""Spoken-turn latency: per-stage seconds and time to first audio, streamed vs the naive sequential turn.

Utterances of about 5 s are synthesized with piper from Harvard sentences (two sentences
each, from ../shared/data/text), so the input is speech the recogniser can follow. Each
utterance runs through the same stages twice, in alternating order: streamed (TTS starts
on the first reply sentence while the rest is generated) and sequential (the peer: reply
fully generated, then fully synthesized); then live (cascade.live.replay: 20 ms frames paced
at real time, windows decoded while "spoken", the VAD's trailing silence ends the turn, the
reply speculated at the last pause). Streamed and sequential times run from the moment the
whole utterance is handed over; live times (`ttfa_live_s`) from the arrival of the last
frame the VAD calls speech, so they include the silence wait (live.silence_ms) that a real
spoken turn needs before it knows the user is done. Also the TTS real-time factor per engine
(piper, espeak; coqui in its own venv when it exists, on an untrained VITS of the default
architecture size, since no pretrained Coqui model can be downloaded here).

Prints ONE JSON line. Run: ~/.cache/cascade/venv/bin/python benchmarks/turn_latency.py [--n 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HARVARD = ROOT.parent / "shared" / "data" / "text" / "harvard-sentences.txt"
COQUI_PY = Path("~/.cache/cascade/venv-coqui/bin/python").expanduser()
RTF_TEXT = "The birch canoe slid on the smooth planks. Glue the sheet to the dark blue background. It's easy to tell the depth of a well."


def utterances(n: int, home: Path):
    """(text, 16 kHz samples) pairs of about 5 s: two Harvard sentences spoken by piper."""
    import numpy as np

    from cascade.config import TtsOptions
    from cascade.tts import synthesize_all

    lines = HARVARD.read_text().splitlines()[200:]
    out = []
    for i in range(n):
        text = " ".join(lines[2 * i : 2 * i + 2])
        chunk = synthesize_all(text, TtsOptions(sample_rate=16000), home=home)
        out.append((text, np.frombuffer(chunk.pcm, dtype="<i2").astype(np.float32) / 32768.0))
    return out


def rtf(engine: str, home: Path, reps: int = 3) -> float:
    from cascade.config import TtsOptions
    from cascade.tts import synthesize_all

    options = TtsOptions(engine=engine)
    synthesize_all("Warm up.", options, home=home)
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        audio = synthesize_all(RTF_TEXT, options, home=home)
        best = min(best, (time.perf_counter() - start) / audio.duration)
    return round(best, 4)


def coqui_rtf() -> float:
    """Run inside the Coqui venv: RTF of an untrained default-size VITS through the user-checkpoint path."""
    import torch
    from TTS.config.shared_configs import BaseAudioConfig
    from TTS.tts.configs.shared_configs import CharactersConfig
    from TTS.tts.configs.vits_config import VitsArgs, VitsConfig
    from TTS.tts.models.vits import Vits

    chars = CharactersConfig(
        characters_class="TTS.tts.models.vits.VitsCharacters", pad="_", eos="", bos="", blank=None,
        characters="abcdefghijklmnopqrstuvwxyz", punctuations=".,!?'- ", phonemes=None, is_unique=True, is_sorted=True,
    )
    config = VitsConfig(model_args=VitsArgs(init_discriminator=False, use_sdp=False), audio=BaseAudioConfig(
        sample_rate=22050, fft_size=1024, win_length=1024, hop_length=256, num_mels=80, do_trim_silence=False),
        use_phonemes=False, text_cleaner="english_cleaners", characters=chars)
    model = Vits(config)
    with torch.no_grad():  # about 6 frames per character, like a trained English voice
        model.duration_predictor.proj.weight.zero_()
        model.duration_predictor.proj.bias.fill_(1.8)
    out = Path(tempfile.mkdtemp())
    torch.save({"model": model.state_dict(), "config": config.to_dict()}, out / "best_model.pth")
    config.save_json(str(out / "config.json"))
    from cascade.config import TtsOptions
    from cascade.tts import synthesize_all

    options = TtsOptions(engine="coqui", coqui_model=str(out))
    synthesize_all("Warm up.", options, home=out)
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        audio = synthesize_all(RTF_TEXT, options, home=out)
        best = min(best, (time.perf_counter() - start) / audio.duration)
    return round(best, 4)


def run_coqui_rtf() -> float | None:
    if not COQUI_PY.exists():
        return None
    proc = subprocess.run([str(COQUI_PY), __file__, "--coqui-rtf"], capture_output=True, text=True, timeout=900, check=False,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    if proc.returncode != 0:
        print(proc.stderr[-2000:], file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])["coqui_rtf"]


def _median(rows: list[dict], key: str) -> float:
    return round(statistics.median(r[key] for r in rows), 3)


def live_turn(turn, samples, options) -> dict:
    """One paced live replay: its `done` timings (seconds from the end of speech)."""
    from cascade.live import replay

    done = None
    for event in replay(turn, samples, options, pace=True):
        if event.type == "error":
            raise RuntimeError(event.message)
        done = event if event.type == "done" else done
    return {k: v for k, v in done.timings.items() if k != "asr_windows"}


def turns(n: int, live: bool = True) -> dict:
    from cascade.config import load_settings
    from cascade.pipeline import build_turn

    settings = load_settings()
    turn = build_turn(settings)
    data = utterances(n, settings.home)
    turn.run(data[0][1], stream=True)  # warm-up: every model loaded before timing
    rows: dict[str, list[dict]] = {"streamed": [], "sequential": []}
    for i, (_, samples) in enumerate(data):
        order = ("streamed", "sequential") if i % 2 == 0 else ("sequential", "streamed")
        for mode in order:
            r = turn.run(samples, stream=mode == "streamed")
            rows[mode].append({**r.timings, "ttfa": r.time_to_first_audio,
                               "first_sentence": r.reply.first_sentence_s or 0.0,
                               "reply_words": len(r.reply.text.split()), "speech_s": r.speech.duration})
    if live:
        live_turn(turn, data[0][1], settings.live)  # warm-up of the VAD and the live path
        rows["live"] = [live_turn(turn, samples, settings.live) for _, samples in data]
    summary = {mode: {k: _median(v, k) for k in v[0]} for mode, v in rows.items()}
    return {
        "utterances": n,
        "utterance_s": round(statistics.mean(len(s) / 16000 for _, s in data), 2),
        "config": {"asr": settings.asr.model, "n_best": settings.asr.n_best, "beam": settings.asr.beam_size,
                   "correction": settings.correct.mode, "llm": f"{settings.llm.backend}:{settings.llm.model}",
                   "max_reply_tokens": settings.chat.max_reply_tokens, "max_sentences": settings.chat.max_sentences,
                   "tts": settings.tts.engine, "live_silence_ms": settings.live.silence_ms,
                   "live_pause_ms": settings.live.pause_ms, "live_cut_ms": settings.live.cut_ms,
                   "live_speculate": settings.live.speculate, "live_early_reply": settings.live.early_reply},
        **summary,
        **({"ttfa_live_s": summary["live"]["first_audio"],
            "ttfa_live_minus_silence_wait_s": round(summary["live"]["first_audio"] - settings.live.silence_ms / 1000, 3),
            "goal_live_met": summary["live"]["first_audio"] <= 1.0} if live else {}),
        "ttfa_ratio_sequential_over_streamed": round(summary["sequential"]["ttfa"] / summary["streamed"]["ttfa"], 2),
        "goal_ttfa_s": 1.0,
        "goal_met": summary["streamed"]["ttfa"] <= 1.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5, help="utterances (each run streamed and sequential)")
    parser.add_argument("--coqui-rtf", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--no-live", action="store_true", help="skip the live (WebSocket-path) turns")
    parser.add_argument("--no-rtf", action="store_true", help="skip the TTS real-time factors")
    args = parser.parse_args()
    if args.coqui_rtf:
        print(json.dumps({"coqui_rtf": coqui_rtf()}))
        return
    from cascade.config import load_settings

    home = load_settings().home
    result = turns(args.n, live=not args.no_live)
    if not args.no_rtf:
        result["tts_rtf"] = {"piper": rtf("piper", home), "espeak": rtf("espeak", home),
                             "coqui_vits_untrained": run_coqui_rtf()}
    result["cpus"] = os.cpu_count()
    result["load_avg_1m"] = round(os.getloadavg()[0], 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
