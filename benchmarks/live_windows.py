"""Live windows: how early the live turn may keep a window (live.commit_s) against accuracy and the decode left.

Each LibriSpeech test-other utterance (../shared/data, dev and test speakers apart) is fed to
cascade.live.LiveTurn in 20 ms frames (unpaced: only the windows matter here; the turn is ended
by the file's end, not by a pause, so a long pause inside an utterance does not cut it) and
compared with the offline transcript of the whole file (the peer, same model and options).
Per commit_s: WER of the live text and of the offline text against the reference, decodes per
utterance, and the seconds of the decode that covers the end of speech (what the user waits for
after a pause: with a large commit_s the whole utterance is decoded again there, with a small one
only its last piece). Timings are inflated on a loaded machine; WER is not.

Prints ONE JSON line. Run: ~/.cache/cascade/venv/bin/python benchmarks/live_windows.py [--pause 250] [--commit 0,2,4,8]
[--cut 250] [--max-window 12] [--splits dev,test]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "librispeech-test-other"


def utterances(split: str, limit: int | None) -> list[dict]:
    rows = [json.loads(line) for line in (DATA / "manifest.jsonl").read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r["split"] == split]
    return rows[:limit] if limit else rows


def live_text(turn, samples: np.ndarray, options) -> tuple[str, int, float]:
    """The live transcript, the number of decodes, and the seconds of the last one (the end of speech)."""
    from cascade.live import LiveTurn

    live = LiveTurn(turn, options)
    step = 320
    tail = np.zeros(16000, dtype=np.float32)  # 1 s of silence: the last pause closes the last window
    audio = np.concatenate([samples, tail])
    try:
        for i in range(0, len(audio), step):
            live.feed(audio[i : i + step])
        live.finish()
        text = live.transcript().text
    finally:
        live.close()
    return text, len(live.decodes), (live.windows[-1].seconds if live.windows else 0.0)


def run(split: str, commits: list[float], pauses: list[int], limit: int | None, max_window: list[float],
        cuts: list[int]) -> dict:
    from cascade.asr import transcribe_all
    from cascade.audio import load_audio
    from cascade.config import load_settings
    from cascade.metrics import wer
    from cascade.pipeline import build_turn

    settings = load_settings({"live": {"silence_ms": 5000, "speculate": False}})
    turn = build_turn(settings)
    rows = utterances(split, limit)
    refs, offline, offline_s, turn_offline = [], [], [], []
    audio = {r["id"]: load_audio(DATA / r["audio"]) for r in rows}
    transcribe_all(audio[rows[0]["id"]], settings.asr, home=settings.home)  # warm-up
    for r in rows:
        start = time.perf_counter()
        offline.append(transcribe_all(audio[r["id"]], settings.asr, home=settings.home).text)
        offline_s.append(time.perf_counter() - start)
        turn_offline.append(turn.asr.transcribe(audio[r["id"]]).text)  # the spoken turn's options (VAD on)
        refs.append(r["text"])
    out = {"utterances": len(rows), "audio_s": round(statistics.mean(len(a) / 16000 for a in audio.values()), 2),
           "offline": {"wer": round(wer(refs, offline), 4), "decode_s": round(statistics.median(offline_s), 3)},
           "offline_turn_asr": {"wer": round(wer(refs, turn_offline), 4)}}
    for pause, commit, most, cut in [(p, c, m, k) for p in pauses for c in commits for m in max_window for k in cuts]:
        options = settings.live.model_copy(update={"commit_s": commit, "pause_ms": pause, "max_window_s": most,
                                                   "cut_ms": cut})
        texts, counts, last = [], [], []
        for r in rows:
            text, n, seconds = live_text(turn, audio[r["id"]], options)
            texts.append(text)
            counts.append(n)
            last.append(seconds)
        out[f"pause_{pause}_cut_{cut}_commit_{commit:g}_max_{most:g}"] = {
            "wer": round(wer(refs, texts), 4), "wer_vs_offline_text": round(wer(offline, texts), 4),
            "wer_vs_offline_turn_text": round(wer(turn_offline, texts), 4),
            "decodes_per_utterance": round(statistics.mean(counts), 2), "last_decode_s": round(statistics.median(last), 3),
            "last_over_offline": round(statistics.median(last) / statistics.median(offline_s), 3),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commit", default="0,2,4,8", help="commit_s values (seconds)")
    parser.add_argument("--pause", default="250", help="pause_ms values")
    parser.add_argument("--cut", default="250", help="cut_ms values (a pause that keeps its window)")
    parser.add_argument("--max-window", default="12", help="max_window_s values (a window cut without a pause)")
    parser.add_argument("--splits", default="dev,test")
    parser.add_argument("--limit", type=int, default=None, help="utterances per split (default: all)")
    args = parser.parse_args()
    commits = [float(c) for c in args.commit.split(",")]
    pauses = [int(p) for p in args.pause.split(",")]
    most = [float(m) for m in args.max_window.split(",")]
    cuts = [int(c) for c in args.cut.split(",")]
    result = {split: run(split, commits, pauses, args.limit, most, cuts) for split in args.splits.split(",")}
    result.update(cpus=os.cpu_count(), load_avg_1m=round(os.getloadavg()[0], 2))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
