"""Short files packed into shared Whisper windows (`--batched *.flac`, asr.pack_clips; issue 24): real tiny.en on
real speechocean762 dev clips, each file's text its own."""

from __future__ import annotations

import json
from pathlib import Path

import jiwer
import numpy as np
import pytest
from typer.testing import CliRunner

from cascade.asr import best_only, load_model, transcribe_many
from cascade.asr import packed
from cascade.audio import load_audio
from cascade.cli import app
from cascade.metrics import normalize
from cascade.types import NBest, Hypothesis, Segment, Transcript, Word


@pytest.fixture(scope="module")
def paths(shared_data: Path) -> list[Path]:
    """Six dev clips of six different sentences (one speaker): tiny.en runs some of them into one segment when they
    share a window, so the packed decode's segments are cut at the clips by word times."""
    rows = [json.loads(x) for x in (shared_data / "speechocean762" / "manifest.jsonl").read_text().splitlines()]
    return [shared_data / "speechocean762" / r["audio"] for r in rows if r["split"] == "dev"][100:106]


@pytest.fixture()
def options(settings):
    return best_only(settings.asr.model_copy(update={"model": "tiny.en", "batched": True, "batch_size": 8}))


def wer(a: str, b: str) -> float:
    return jiwer.wer(normalize(a) or "-", normalize(b) or "-")


def test_packed_files_keep_their_own_text(settings, options, paths: list[Path], monkeypatch) -> None:
    """Six clips, 2 s apart: five fit in one window, the sixth is decoded alone. One Transcript per file, in the
    unpacked one's format, each file's words close to its own unpacked transcription (and not to another file's),
    times inside each file."""
    clips = [load_audio(p) for p in paths]
    sources = [str(p) for p in paths]
    windows: list[list[Segment]] = []
    assign = packed.assign
    monkeypatch.setattr(packed, "assign", lambda segs, *a: windows.append(segs) or assign(segs, *a))  # a spy
    packs = transcribe_many(clips, options, home=settings.home, sources=sources)
    alone = transcribe_many(clips, options.model_copy(update={"pack_clips": 1}), home=settings.home, sources=sources)
    assert packed.windows([len(c) / 16000 for c in clips], options) == [[0, 1, 2, 3, 4], [5]]
    assert len(windows) == 1 and len(windows[0]) < 5  # one window; Whisper ran clips into one segment
    assert len(packs) == len(alone) == len(clips)
    for i, (p, a) in enumerate(zip(packs, alone)):
        assert isinstance(p, Transcript) and p.source == a.source and p.duration == a.duration
        assert set(p.model_dump()) == set(a.model_dump()) and set(p.segments[0].model_dump()) == set(a.segments[0].model_dump())
        assert p.text == " ".join(s.text for s in p.segments) and [s.id for s in p.segments] == list(range(len(p.segments)))
        assert all(0 <= s.start <= s.end <= p.duration for s in p.segments)
        assert p.segments[0].words is None  # word times were only used to cut: not asked for, not given
        own = wer(a.text, p.text)
        assert own <= 0.6, (a.text, p.text)
        assert all(own < wer(b.text, p.text) for j, b in enumerate(alone) if j != i), (i, p.text)


def test_words_stay_inside_each_file(settings, options, paths: list[Path]) -> None:
    """word_timestamps (srt/vtt): each file's words in its own times, inside it."""
    clips = [load_audio(p) for p in paths[:3]]
    got = transcribe_many(clips, options.model_copy(update={"word_timestamps": True}), home=settings.home)
    for t in got:
        words = [w for s in t.segments for w in s.words]
        assert words and all(0 <= w.start <= w.end <= t.duration for w in words)
        assert normalize("".join(w.word for w in words)) == normalize(t.text)


def test_a_clip_that_cannot_be_assigned_is_decoded_alone(settings, options, paths: list[Path], monkeypatch) -> None:
    """A clip the window's words cannot be given to cleanly (here: its result dropped, as a straddling segment drops
    it) gets the unpacked decode of its own; the others keep their packed text."""
    clips = [load_audio(p) for p in paths[:3]]
    assign = packed.assign
    monkeypatch.setattr(packed, "assign", lambda *a: [None if k == 1 else got for k, got in enumerate(assign(*a))])
    got = transcribe_many(clips, options, home=settings.home)
    monkeypatch.setattr(packed, "assign", assign)
    alone = transcribe_many(clips, options.model_copy(update={"pack_clips": 1}), home=settings.home)
    assert got[1].text == alone[1].text  # decoded again alone: the unpacked text exactly
    assert all(t.text.strip() for t in got)


def segment(start: float, end: float, words: list[tuple[float, float, str]]) -> Segment:
    text = "".join(w for _, _, w in words)
    return Segment(id=0, start=start, end=end, text=text.strip(), avg_logprob=-0.3,
                   nbest=NBest(hypotheses=(Hypothesis(text=text.strip(), tokens=(1, 2)),), start=start, end=end),
                   words=tuple(Word(start=a, end=b, word=w, probability=0.9) for a, b, w in words))


def test_assign_cuts_at_the_clips_and_refuses_a_straddle() -> None:
    """Clips of 3 s and 2 s, 1 s apart (the second at 4-6 s of the window)."""
    run_on = segment(0.0, 6.0, [(0.2, 1.0, " Billy"), (1.0, 2.5, " can,"), (3.6, 3.9, " so"), (4.2, 5.0, " home.")])
    got = packed.assign([run_on], [3.0, 2.0], 1.0)
    assert [s.text for s in got[0]] == ["Billy can,"] and [s.text for s in got[1]] == ["so home."]  # a word in the gap: nearest clip
    assert got[1][0].start == 0.0 and got[1][0].end == 1.0 and got[1][0].words[0].word == " so"
    assert got[0][0].nbest.hypotheses[0].tokens is None  # a cut segment's tokens are the whole segment's: dropped
    whole = packed.assign([segment(0.1, 2.9, [(0.2, 2.8, " Billy")]), segment(4.0, 6.0, [(4.1, 5.9, " home")])], [3.0, 2.0], 1.0)
    assert whole[0][0].nbest.hypotheses[0].tokens == (1, 2) and whole[1][0].start == 0.0
    straddle = segment(2.0, 5.0, [(2.5, 4.5, " everything")])  # 0.5 s into each clip
    assert packed.assign([straddle], [3.0, 2.0], 1.0) == [None, None]
    assert packed.assign([segment(0.0, 2.0, [(0.2, 1.0, " Billy")])], [3.0, 2.0], 1.0)[1] is None  # no text: alone


def test_windows_hold_short_clips_up_to_the_limits(options) -> None:
    o = options.model_copy(update={"pack_s": 30.0, "pack_gap_s": 1.0, "pack_clips": 3, "pack_clip_s": 15.0})
    assert packed.windows([4.0, 4.0, 4.0, 4.0, 20.0, 3.0, 14.0, 14.0], o) == [[0, 1, 2], [3], [4], [5, 6], [7]]


def test_cli_writes_one_file_per_input(paths: list[Path], tmp_path: Path) -> None:
    """`cascade transcribe --batched a.flac b.flac ... -o DIR`: one srt per input, the packed path's output."""
    import pysubs2

    result = CliRunner().invoke(app, ["transcribe", *map(str, paths[:3]), "--batched", "--format", "srt", "-o", str(tmp_path)])
    assert result.exit_code == 0, result.output
    for p in paths[:3]:
        subs = pysubs2.load(str(tmp_path / f"{p.stem}.srt"))
        assert len(subs) >= 1 and all(0 <= e.start < e.end <= 1000 * len(load_audio(p)) / 16000 + 1 for e in subs)


def test_the_asr_service_packs_batched_requests_when_told(settings, paths: list[Path], monkeypatch) -> None:
    """service.asr_batch_pack: the clips of requests the service batches share a window (each answer its own text);
    off (the default) they are decoded as alone."""
    from services.asr.serving import LocalRecognizer

    clips = [load_audio(p) for p in paths[:3]]
    options = best_only(settings.asr.model_copy(update={"model": "tiny.en"}))  # a request's options: not --batched
    windows: list[list[Segment]] = []
    assign = packed.assign
    monkeypatch.setattr(packed, "assign", lambda segs, *a: windows.append(segs) or assign(segs, *a))
    alone = LocalRecognizer(settings).transcribe_many(clips, options)
    assert not windows
    told = settings.model_copy(update={"service": settings.service.model_copy(update={"asr_batch_pack": True})})
    got = LocalRecognizer(told).transcribe_many(clips, options)
    assert len(windows) == 1 and len(got) == 3
    for i, t in enumerate(got):
        assert wer(alone[i].text, t.text) < min(wer(b.text, t.text) for j, b in enumerate(alone) if j != i)
