"""The spoken turn's decode with and without Whisper's timestamp tokens (chat.without_timestamps): WER and time.

A live window is one short utterance and nothing reads times inside it, so the turn may decode it as one
piece of text. Clips: the dev (default) or test split of speechocean762 (every --step-th clip: non-native
speakers, short sentences) and LibriSpeech test-other, each decoded with the spoken turn's ASR options
(chat.turn_asr: Silero VAD, beam 5, no N-best with chat.correct none) both ways, in the same process.
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
    modes = {flag: LocalAsr(settings.model_copy(update={"chat": settings.chat.model_copy(
        update={"without_timestamps": flag})})) for flag in (False, True)}
    hyps: dict[bool, list[str]] = {False: [], True: []}
    secs: dict[bool, list[float]] = {False: [], True: []}
    for _, path, _ in clips:
        samples = load_audio(path)
        for flag, asr in modes.items():
            began = time.perf_counter()
            hyps[flag].append(asr.transcribe(samples).text)
            secs[flag].append(time.perf_counter() - began)
    out: dict = {"split": args.split, "clips": {n: sum(c[0] == n for c in clips) for n in SETS}}
    for flag in (False, True):
        row = {}
        for name in SETS:
            idx = [i for i, c in enumerate(clips) if c[0] == name]
            row[f"{name}_wer"] = round(100 * wer([clips[i][2] for i in idx], [hyps[flag][i] for i in idx]), 2)
        row["decode_median_s"] = round(statistics.median(secs[flag]), 3)
        out["without_timestamps" if flag else "with_timestamps"] = row
    out["texts_changed"] = sum(a != b for a, b in zip(hyps[False], hyps[True]))
    out["load_avg_1m"] = round(os.getloadavg()[0], 2)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
