"""Render a Transcript as txt, json, srt, vtt or tsv (`all`: every one of them).

JSON is the Transcript record itself (N-best per segment, scores, language and its probability,
provenance). SRT/VTT cues are cut from word timestamps by cascade.formats.subtitles.
HyPoradise records are what the GER tools read: one per segment,
`{"id", "input": [N hypotheses], "output": null, "am_score": [N]}`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from cascade.config import SubtitleOptions
from cascade.formats.subtitles import to_srt, to_vtt
from cascade.types import Transcript

Format = Literal["txt", "json", "srt", "vtt", "tsv"]
FORMATS: tuple[str, ...] = ("txt", "json", "srt", "vtt", "tsv")
SUBTITLE_FORMATS: tuple[str, ...] = ("srt", "vtt")
"""Formats whose cues need word timestamps."""


def timestamp(seconds: float, *, decimal: str = ",", hours: bool = True) -> str:
    """HH:MM:SS,mmm (SRT) or HH:MM:SS.mmm (VTT)."""
    millis = max(int(round(seconds * 1000)), 0)
    h, rest = divmod(millis, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    head = f"{h:02d}:" if hours or h else ""
    return f"{head}{m:02d}:{s:02d}{decimal}{ms:03d}"


def to_txt(t: Transcript) -> str:
    return "".join(f"{s.text}\n" for s in t.segments)


def to_json(t: Transcript) -> str:
    return t.model_dump_json(indent=2) + "\n"


def to_tsv(t: Transcript) -> str:
    """start and end in integer milliseconds, as openai-whisper writes TSV."""
    rows = [f"{round(s.start * 1000)}\t{round(s.end * 1000)}\t{s.text.replace(chr(9), ' ')}\n" for s in t.segments]
    return "start\tend\ttext\n" + "".join(rows)


WRITERS: dict[str, Callable[[Transcript], str]] = {
    "txt": to_txt,
    "json": to_json,
    "srt": to_srt,
    "vtt": to_vtt,
    "tsv": to_tsv,
}


def render(t: Transcript, fmt: str, subtitles: SubtitleOptions | None = None, *, drop_invented: bool = False) -> str:
    """The transcript in one format; `subtitles` sets how srt/vtt cues are cut (default: SubtitleOptions()).
    `drop_invented` (asr.hallucinations=drop) leaves segments flagged as invented out of every format but json,
    which keeps them with their flag."""
    if drop_invented and fmt != "json":
        t = t.without_invented()
    if fmt == "srt":
        return to_srt(t, subtitles)
    if fmt == "vtt":
        return to_vtt(t, subtitles)
    return WRITERS[fmt](t)
