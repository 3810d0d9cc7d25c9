"""Short recordings packed into shared 30-s Whisper windows (`asr.pack_clips`, `cascade transcribe --batched *.flac`).

Whisper's encoder always reads a 30-s window, so a 4-s clip decoded alone pays for 26 s of padding: on many short
files the encoder dominates. Here consecutive clips are laid one after another with `pack_gap_s` of silence between
them, up to `pack_s` seconds and `pack_clips` clips per window, and the windows go through the batched decode with
timestamps, the rests and the fallback (batched.transcribe_clips, like_alone). Whisper often runs one segment over
the gaps, so each segment is cut at the clips by its words' times (a word in a gap goes to the nearer clip) and goes
back to its clip in that clip's times. A clip that cannot be given its text cleanly (a word reaching well into two
clips, a segment still looping after the fallback, no words at all) is decoded again on its own, as unpacked, so
no text is lost or given to the wrong file. Longer clips (over `pack_clip_s`) are not packed. Inside a window the
decoder reads the earlier clips' text (one decode: no prompt reset per clip). Dev choice of the gap:
docs/guides/transcribe.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from cascade.config import AsrOptions
from cascade.types import NBest, Segment, Word

SAMPLE_RATE = 16000


def windows(durations: list[float], options: AsrOptions) -> list[list[int]]:
    """Clip indices per window, in order: consecutive clips of at most pack_clip_s share a window while they fit in
    pack_s seconds (gaps included) and pack_clips clips; a longer clip is a window of its own."""
    out: list[list[int]] = []
    used, limit = 0.0, min(options.pack_s, options.chunk_length)
    for i, d in enumerate(durations):
        fits = out and len(out[-1]) < options.pack_clips and used + options.pack_gap_s + d <= limit
        if d > options.pack_clip_s:
            out.append([i])
            used = limit  # nothing joins a long clip
        elif fits:
            out[-1].append(i)
            used += options.pack_gap_s + d
        else:
            out.append([i])
            used = d
    return out


def transcribe_packed(whisper, clips: list[np.ndarray], options: AsrOptions, home: Path | None = None,
                      like_alone: bool = False) -> tuple[list[list[Segment]], Any]:
    """batched.transcribe_clips' answer (each clip's segments in its own times; the pipeline's info), with the
    short clips packed into shared windows. like_alone: how a clip that is not packed, or is decoded again, is
    decoded (batched.transcribe_clips)."""
    from cascade.asr.batched import transcribe_clips

    groups = windows([len(c) / SAMPLE_RATE for c in clips], options)
    packs = [g for g in groups if len(g) > 1]
    out: list[list[Segment] | None] = [None] * len(clips)
    info = None
    if packs:
        gap = np.zeros(int(options.pack_gap_s * SAMPLE_RATE), np.float32)
        audio = [np.concatenate([p for i in g for p in (clips[i], gap)][:-1]) for g in packs]
        timed = options.model_copy(update={"word_timestamps": True})  # segments are cut at the clips by word times
        decoded, info = transcribe_clips(whisper, audio, timed, home, like_alone=True)
        for g, segments in zip(packs, decoded):
            for i, got in zip(g, assign(segments, [len(clips[i]) / SAMPLE_RATE for i in g], options.pack_gap_s)):
                out[i] = got if got is None or options.word_timestamps else [
                    s.model_copy(update={"words": None}) for s in got]
    alone = [i for i, o in enumerate(out) if not o]
    if alone:
        decoded, info = transcribe_clips(whisper, [clips[i] for i in alone], options, home, like_alone)
        for i, segments in zip(alone, decoded):
            out[i] = segments
    return [o or [] for o in out], info


OVERLAP_S = 0.2
"""A word reaching at least this far into two clips cannot be given to one of them."""


def assign(segments: list[Segment], durations: list[float], gap: float) -> list[list[Segment] | None]:
    """Each clip's segments from one window's (window times -> clip times, ids from 0), cut at the clips by their
    words' times (Whisper often runs one segment over the gap); None for a clip that must be decoded again: a word
    reaches well into it and into another clip, a segment in it still loops after the fallback, or it got no words."""
    starts = np.cumsum([0.0] + [d + gap for d in durations[:-1]])
    spans = [(float(a), float(a + d)) for a, d in zip(starts, durations)]
    pieces: list[list[tuple[Segment, list[Word]]]] = [[] for _ in durations]
    bad: set[int] = set()
    for seg in segments:
        by_clip: dict[int, list[Word]] = {}
        for w in seg.words or ():
            overlaps = [max(0.0, min(w.end, b) - max(w.start, a)) for a, b in spans]
            inside = [k for k, o in enumerate(overlaps) if o >= OVERLAP_S]
            if len(inside) > 1:
                bad.update(inside)
            mid = (w.start + w.end) / 2  # a word in a gap (or at its edge) goes to the nearest clip
            k = int(np.argmin([0.0 if a <= mid <= b else min(abs(mid - a), abs(mid - b)) for a, b in spans]))
            by_clip.setdefault(k, []).append(w)
        if "looped" in seg.flags:  # still repeating after the fallback: the clips it covers get their own decode
            bad.update(by_clip)
        for k, words in by_clip.items():
            pieces[k].append((seg, words))
    out: list[list[Segment] | None] = []
    for k, got in enumerate(pieces):
        out.append(None if k in bad or not got else
                   [_piece(seg, words, n, spans[k], len(words) == len(seg.words)) for n, (seg, words) in enumerate(got)])
    return out


def _piece(seg: Segment, words: list[Word], index: int, span: tuple[float, float], whole: bool) -> Segment:
    """The words of one segment that fall in one clip, as a segment in that clip's times (clamped to the clip)."""
    offset, length = span[0], span[1] - span[0]

    def at(t: float) -> float:
        return round(min(max(t - offset, 0.0), length), 3)

    moved = tuple(Word(start=at(w.start), end=at(w.end), word=w.word, probability=w.probability) for w in words)
    start, end = (at(seg.start), at(seg.end)) if whole else (moved[0].start, moved[-1].end)
    hyps = seg.nbest.hypotheses
    if not whole:  # the part of the 1-best in this clip (no tokens: they are the whole segment's)
        text = " ".join("".join(w.word for w in words).split())
        hyps = (hyps[0].model_copy(update={"text": text, "tokens": None}),)
    nbest = NBest(hypotheses=hyps, language=seg.nbest.language, start=start, end=end, id=str(index))
    return seg.model_copy(update={"id": index, "start": start, "end": end, "words": moved, "text": hyps[0].text,
                                  "nbest": nbest})
