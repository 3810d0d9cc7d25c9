"""The spoken turn's decode three ways: with Whisper's timestamp tokens, without them (chat.without_timestamps),
and without them with the encoder fed the window's own length (chat.encoder_min_s, the default): WER and time.

A live window is one short utterance and nothing reads times inside it, so the turn may decode it as one
piece of text, and its encoder need not read 30 s of padding. Clips: the dev (default) or test split of speechocean762 (every --step-th clip: non-native
speakers, short sentences) and LibriSpeech test-other, each decoded with the spoken turn's ASR options
(chat.turn_asr: Silero VAD, beam 5, no N-best with chat.correct none) each way, in the same process.
Decode times are medians per clip (inflated on a loaded machine; compare the two, not across runs).

Prints ONE JSON line. Run: ~/.cache/cascade/venv/bin/python benchmarks/turn_asr_accuracy.py [--split dev] [--step 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
SETS = ("speechocean762", "librispeech-test-other")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", default="dev", choices=["dev", "test"])
    parser.add_argument("--step", type=int, default=3, help="every k-th speechocean762 clip of the split")
    args = parser.parse_args()

    from cascade.audio import load_audio
    from cascade.config import load_settings
    from cascade.metrics import wer
    from cascade.pipeline import LocalAsr

    clips = []
    for name in SETS:
        rows = [json.loads(line) for line in (DATA / name / "manifest.jsonl").read_text().splitlines() if line.strip()]
        rows = [r for r in rows if r["split"] == args.split][:: args.step if name == "speechocean762" else 1]
        clips += [(name, DATA / name / r["audio"], r["text"]) for r in rows]
    settings = load_settings()
    ways = {"with_timestamps": {"without_timestamps": False},
            "without_timestamps": {"without_timestamps": True, "encoder_min_s": None},
            "short_encoder": {"without_timestamps": True, "encoder_min_s": settings.chat.encoder_min_s or 15.0}}
    modes = {way: LocalAsr(settings.model_copy(update={"chat": settings.chat.model_copy(update=update)}))
             for way, update in ways.items()}
    hyps: dict[str, list[str]] = {way: [] for way in ways}
    secs: dict[str, list[float]] = {way: [] for way in ways}
    for _, path, _ in clips:
        samples = load_audio(path)
        for way, asr in modes.items():
            began = time.perf_counter()
            hyps[way].append(asr.transcribe(samples).text)
            secs[way].append(time.perf_counter() - began)
    out: dict = {"split": args.split, "clips": {n: sum(c[0] == n for c in clips) for n in SETS}}
    for way in ways:
        row = {}
        for name in SETS:
            idx = [i for i, c in enumerate(clips) if c[0] == name]
            row[f"{name}_wer"] = round(100 * wer([clips[i][2] for i in idx], [hyps[way][i] for i in idx]), 2)
        row["decode_median_s"] = round(statistics.median(secs[way]), 3)
        out[way] = row
    out["encoder_min_s"] = ways["short_encoder"]["encoder_min_s"]
    out["texts_changed"] = sum(a != b for a, b in zip(hyps["with_timestamps"], hyps["without_timestamps"]))
    out["texts_changed_short_encoder"] = sum(a != b for a, b in zip(hyps["without_timestamps"], hyps["short_encoder"]))
    out["load_avg_1m"] = round(os.getloadavg()[0], 2)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
