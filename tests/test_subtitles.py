"""Subtitle cues (cascade.formats.subtitles) cut from real tiny.en word timestamps of shared/data/real."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import pysubs2
import pytest

from cascade.asr import transcribe_all
from cascade.config import Settings, SubtitleOptions
from cascade.formats.subtitles import CLAUSE_END, SENTENCE_END, cues, wrap
from cascade.formats.transcript import render
from cascade.types import Cue, Transcript

FILES = ("jfk.flac", "LJ050-0131.wav", "stereo_two_speakers.wav")


@pytest.fixture(scope="module")
def transcripts(shared_data: Path, settings: Settings) -> dict[str, Transcript]:
    options = settings.asr.model_copy(update={"model": "tiny.en", "word_timestamps": True})
    return {name: transcribe_all(shared_data / "real" / name, options, home=settings.home) for name in FILES}


def _shifted(t: Transcript, by: float, first_id: int) -> tuple:
    return tuple(s.model_copy(update={
        "id": first_id + s.id, "start": s.start + by, "end": s.end + by,
        "words": tuple(w.model_copy(update={"start": w.start + by, "end": w.end + by}) for w in s.words or ())})
        for s in t.segments)


@pytest.fixture(scope="module")
def long_transcript(transcripts: dict[str, Transcript]) -> Transcript:
    """The three real transcripts one after another, four times (about 95 s of real word times)."""
    segments: tuple = ()
    offset = 0.0
    for _ in range(4):
        for t in transcripts.values():
            segments += _shifted(t, offset, len(segments))
            offset += t.duration
    return Transcript(text=" ".join(s.text for s in segments), segments=segments, language="en", model="tiny.en",
                      duration=offset)


def _without_words(t: Transcript) -> Transcript:
    return t.model_copy(update={"segments": tuple(s.model_copy(update={"words": None}) for s in t.segments)})


def _check_limits(t: Transcript, got: list[Cue], o: SubtitleOptions) -> None:
    assert got, "no cues"
    for cue in got:
        assert 0 < cue.end - cue.start <= o.max_duration_s + 1e-6, cue
        assert 1 <= len(cue.lines) <= o.max_line_count, cue
        assert all(len(line) <= o.max_line_width or " " not in line for line in cue.lines), cue
    for a, b in pairwise(got):
        assert a.start < b.start and a.end <= b.start + 1e-6, (a, b)
    shown = " ".join(s.text for s in t.segments).split()
    assert " ".join(" ".join(c.lines) for c in got).split() == shown  # every word, in order, once


@pytest.mark.parametrize("options", [SubtitleOptions(), SubtitleOptions(max_line_width=20, max_line_count=1, max_duration_s=3.0)],
                         ids=["defaults", "narrow"])
def test_cues_respect_duration_width_and_lines(transcripts, long_transcript, options: SubtitleOptions) -> None:
    for t in (*transcripts.values(), long_transcript, _without_words(long_transcript)):
        _check_limits(t, cues(t, options), options)


def test_long_segments_are_cut(long_transcript: Transcript) -> None:
    got = cues(long_transcript)
    assert max(s.end - s.start for s in long_transcript.segments) > 7.0  # JFK's first segment runs 8 s
    assert len(got) > len(long_transcript.segments)
    mean = sum(c.end - c.start for c in got) / len(got)
    assert 1.0 < mean <= 7.0


def test_cues_split_at_punctuation_segment_ends_and_pauses(transcripts) -> None:
    jfk = transcripts["jfk.flac"]
    got = cues(jfk)
    words = [w for s in jfk.segments for w in s.words or ()]
    ends = {round(s.end, 3) for s in jfk.segments}
    gaps = {round(a.end, 3) for a, b in pairwise(words) if b.start - a.end >= 0.15}
    for cue in got:  # JFK's 8 s first segment is cut after "so," (a clause mark and a pause), not mid-phrase
        assert cue.lines[-1].endswith(SENTENCE_END + CLAUSE_END) or round(cue.end, 3) in ends | gaps, cue
    assert got[0].lines[-1].endswith("so,")
    lj = cues(transcripts["LJ050-0131.wav"])
    assert lj[-1].text == "In this regard..."  # a sentence end always closes a cue
    assert all(len(c.text.split()) > 1 for c in lj[:-1])  # no one-word stub ("under.") left behind
    pause = SubtitleOptions(pause_s=0.3)  # JFK pauses 0.32 s after "so,": a pause this long starts a new cue
    assert cues(jfk, pause)[0].text == "And so,"


def test_lines_are_balanced() -> None:
    words = ["unless", "a", "system", "is", "established", "for", "the", "frequent", "formal", "review"]
    lines = wrap(words, 42, 2)
    assert len(lines) == 2 and abs(len(lines[0]) - len(lines[1])) <= 12
    assert wrap(["supercalifragilisticexpialidocious"], 10, 2) == ["supercalifragilisticexpialidocious"]


@pytest.mark.parametrize("fmt", ["srt", "vtt"])
def test_files_read_back_with_pysubs2(transcripts, fmt: str) -> None:
    t = transcripts["jfk.flac"]
    body = render(t, fmt)
    assert body.startswith("WEBVTT" if fmt == "vtt" else "1\n")
    back = pysubs2.SSAFile.from_string(body)
    want = cues(t)
    assert [(e.start, e.end) for e in back] == [(round(c.start * 1000), round(c.end * 1000)) for c in want]
    assert [e.plaintext for e in back] == [c.text for c in want]


def test_corrected_text_gets_spread_times(transcripts) -> None:
    """A correction changes the words: their times are spread over the segment, limits still hold."""
    t = transcripts["jfk.flac"]
    seg = t.segments[0].model_copy(update={"text": "And so, my fellow Americans, ask not what your country can do for you,"})
    changed = t.model_copy(update={"segments": (seg, *t.segments[1:])})
    got = cues(changed)
    _check_limits(changed, got, SubtitleOptions())
    assert got[0].start == 0.0 and got[-1].end == pytest.approx(t.segments[-1].end)


@pytest.mark.slow
def test_real_long_recording(shared_data: Path, settings: Settings) -> None:
    """The one-minute English+German recording decoded as a user would (srt turns word timestamps on)."""
    options = settings.asr.model_copy(update={"model": "tiny.en", "word_timestamps": True})
    t = transcribe_all(shared_data / "real" / "mit_license_en_de.mp3", options, home=settings.home)
    got = cues(t)
    _check_limits(t, got, SubtitleOptions())
    assert len(got) >= len(t.segments)


def test_empty_and_looping_segments(transcripts) -> None:
    """No speech gives no cues; a 29.5 s window that repeats one phrase (no word times) still gets readable cues."""
    jfk = transcripts["jfk.flac"]
    empty = jfk.model_copy(update={"segments": (), "text": ""})
    assert cues(empty) == [] and render(empty, "srt") == "" and render(empty, "vtt").startswith("WEBVTT")
    loop = jfk.segments[0].model_copy(update={"start": 0.0, "end": 29.5, "words": None, "text": "on-tai-an, " * 8})
    looped = jfk.model_copy(update={"segments": (loop,), "duration": 30.0})
    got = cues(looped)
    _check_limits(looped, got, SubtitleOptions())
    assert len(got) >= 5  # 29.5 s at most 7 s a cue


def test_language_without_spaces_is_cut_per_character(transcripts) -> None:
    text = "我们的目标是让每个人都能读懂字幕，" + "这句话很长" * 20 + "。"
    seg = transcripts["jfk.flac"].segments[0].model_copy(update={"start": 0.0, "end": 12.0, "text": text, "words": None})
    t = transcripts["jfk.flac"].model_copy(update={"segments": (seg,), "language": "zh", "duration": 12.0})
    got = cues(t)
    assert len(got) >= 2 and "".join("".join(c.lines) for c in got) == text
    assert all(len(line) <= 42 for c in got for line in c.lines) and all(c.end - c.start <= 7.0 for c in got)
