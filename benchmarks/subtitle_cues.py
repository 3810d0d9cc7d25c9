"""Subtitle cues on the real/ recordings: ours (cut at word times) against one cue per Whisper segment.

One cue per segment is what openai-whisper's and faster-whisper-based SRT writers produce without line
options (and what cascade wrote before cascade.formats.subtitles). Both come from the same tiny.en
decode with word timestamps; the figures are how many cues break the SubtitleOptions limits
(duration, line width, line count) and the cue lengths. Prints one JSON line.

    python benchmarks/subtitle_cues.py [--model tiny.en]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cascade.asr import transcribe_all  # noqa: E402
from cascade.config import SubtitleOptions, load_settings  # noqa: E402
from cascade.formats.subtitles import cues  # noqa: E402
from cascade.types import Cue, Transcript  # noqa: E402

REAL = ROOT.parent / "shared" / "data" / "real"


def per_segment(t: Transcript) -> list[Cue]:
    """The peer: each segment one cue, its text on one line."""
    return [Cue(start=s.start, end=s.end, lines=(s.text,)) for s in t.segments if s.text.strip()]


def figures(got: list[Cue], o: SubtitleOptions) -> dict[str, float]:
    lengths = [c.end - c.start for c in got]
    return {
        "cues": len(got),
        "mean_cue_s": round(sum(lengths) / len(lengths), 2),
        "longest_cue_s": round(max(lengths), 2),
        "widest_line": max(len(line) for c in got for line in c.lines),
        "over_duration": sum(n > o.max_duration_s + 1e-6 for n in lengths),
        "over_width": sum(any(len(line) > o.max_line_width for line in c.lines) for c in got),
        "over_lines": sum(len(c.lines) > o.max_line_count for c in got),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny.en")
    args = ap.parse_args()
    s = load_settings({"asr": {"model": args.model, "word_timestamps": True}})
    files = sorted(p for p in REAL.iterdir() if p.suffix in (".wav", ".flac", ".mp3"))
    transcripts = [transcribe_all(p, s.asr, home=s.home) for p in files]
    ours = [c for t in transcripts for c in cues(t, s.subtitles)]
    peer = [c for t in transcripts for c in per_segment(t)]
    print(json.dumps({
        "files": len(files), "audio_s": round(sum(t.duration for t in transcripts), 1), "model": args.model,
        "limits": s.subtitles.model_dump(), "ours": figures(ours, s.subtitles),
        "one_cue_per_segment": figures(peer, s.subtitles),
    }))


if __name__ == "__main__":
    main()
