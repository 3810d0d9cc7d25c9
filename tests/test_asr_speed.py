"""Pay for what you use: CTranslate2 calls counted on the real tiny.en model; times inside the audio;
alternatives that differ in words (issue 24)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cascade.asr import best_only, load_model, transcribe_all
from cascade.asr.reference import faster_whisper_segments
from cascade.asr.segments import _key
from cascade.audio import load_audio
from cascade.cli import app
from cascade.config import AsrOptions

TINY = AsrOptions(model="tiny.en")


class Counting:
    """The real CTranslate2 Whisper handle, counting its generate calls (everything runs as it would)."""

    def __init__(self, model):
        self.model, self.generates, self.encodes = model, 0, 0

    def __getattr__(self, name):
        return getattr(self.model, name)

    def encode(self, *args, **kwargs):
        self.encodes += 1  # faster-whisper encodes each 30 s window once
        return self.model.encode(*args, **kwargs)

    def generate(self, *args, **kwargs):
        self.generates += 1
        return self.model.generate(*args, **kwargs)


@pytest.fixture()
def counted(settings, monkeypatch) -> Counting:
    """The cached tiny.en model (the one the library and the CLI load) with its generate calls counted."""
    whisper = load_model(settings.asr, settings.home)
    counting = Counting(whisper.model)
    monkeypatch.setattr(whisper, "model", counting)
    return counting


@pytest.fixture(scope="module")
def clip(shared_data: Path) -> Path:
    """A dev clip of librispeech-test-other with two segments in its window (so a wide N-best costs extra calls)."""
    rows = [json.loads(x) for x in (shared_data / "librispeech-test-other" / "manifest.jsonl").read_text().splitlines()]
    return shared_data / "librispeech-test-other" / rows[0]["audio"]


def faster_whisper_calls(counted: Counting, settings, audio) -> int:
    before = counted.generates
    faster_whisper_segments(load_model(settings.asr, settings.home), audio)
    return counted.generates - before


def calls(counted: Counting, fn) -> int:
    before = counted.generates
    fn()
    return counted.generates - before


def test_one_best_costs_what_faster_whisper_costs(counted: Counting, settings, clip: Path) -> None:
    audio = load_audio(clip)
    options = settings.asr.model_copy(update={"model": "tiny.en"})
    peer = faster_whisper_calls(counted, settings, audio)
    assert peer >= 1
    for one in (best_only(options), options.model_copy(update={"n_best": 1})):  # -n 1 never runs the wide beam
        t = None

        def run(one=one):
            nonlocal t
            t = transcribe_all(audio, one, home=settings.home)

        assert calls(counted, run) == peer
        assert all(len(s.nbest.hypotheses) == 1 for s in t.segments)
    assert calls(counted, lambda: transcribe_all(audio, options, home=settings.home)) > peer  # the N-best's decodes


def test_cli_decodes_alternatives_only_when_read(counted: Counting, settings, clip: Path, tmp_path: Path) -> None:
    peer = faster_whisper_calls(counted, settings, load_audio(clip))
    runner = CliRunner()

    def cli(*args) -> int:
        before = counted.generates
        result = runner.invoke(app, ["transcribe", str(clip), "--correct", "none", *args])
        assert result.exit_code == 0, result.output
        return counted.generates - before

    assert cli("--format", "txt") == peer  # plain text: faster-whisper's calls, no more
    assert cli("--format", "tsv") == peer
    assert cli("--format", "json", "-n", "1") == peer
    assert cli("--format", "json") > peer  # json carries every segment's N-best
    assert cli("--format", "txt", "--hyporadise", tmp_path / "h.json") > peer


def test_times_stay_inside_the_audio(shared_data: Path, settings) -> None:
    """Dev clip 14 of librispeech-test-other (8.3 s): faster-whisper ends its last segment at 12.52 s."""
    row = json.loads((shared_data / "librispeech-test-other" / "manifest.jsonl").read_text().splitlines()[14])
    audio = load_audio(shared_data / "librispeech-test-other" / row["audio"])
    duration = len(audio) / 16000
    whisper = load_model(settings.asr, settings.home)
    assert faster_whisper_segments(whisper, audio)[-1][1] > duration + 1  # the peer's last end: past the audio
    t = transcribe_all(audio, TINY.model_copy(update={"n_best": 2, "word_timestamps": True}), home=settings.home)
    assert len(t.segments) >= 2 and t.duration == pytest.approx(duration, abs=0.01)
    for seg in t.segments:
        assert 0 <= seg.start <= seg.end <= t.duration and seg.nbest.end == seg.end
        assert all(0 <= w.start <= w.end <= t.duration for w in seg.words)
    plain = transcribe_all(audio, TINY, home=settings.home)
    assert plain.segments[-1].end == round(duration, 3)  # clamped, not dropped


def test_punctuation_and_case_variants_fold() -> None:
    same = ["and you couldn't hear yourself think for the noise.", "And you couldn't hear yourself think for the noise...",
            "and you couldn't hear yourself think for the noise…", "and you could not hear yourself think, for the noise"]
    assert len({_key(x) for x in same}) == 1
    assert _key("It is 3.5 metres.") != _key("It is 35 metres.")
    assert _key("for the noise") != _key("for the noises")


def test_nbest_words_differ_on_real_speech(shared_data: Path, settings) -> None:
    """Dev clips whose beam-10 decode holds "he said." beside "he said..." and "he said…": one of them is kept."""
    rows = [json.loads(x) for x in (shared_data / "librispeech-test-other" / "manifest.jsonl").read_text().splitlines()]
    for row in rows[6:9]:
        t = transcribe_all(shared_data / "librispeech-test-other" / row["audio"], TINY, home=settings.home)
        for seg in t.segments:
            ends = [h.text.rstrip(".…?!, ").lower() for h in seg.nbest.hypotheses]
            assert len(ends) == len(set(ends)), ends


@pytest.mark.parametrize(("fields", "n_best"), [
    ({"response_format": "text"}, 1), ({"response_format": "verbose_json"}, 1),
    ({"response_format": "srt", "n_best": 3}, 1),
    ({"response_format": "verbose_json", "n_best": 3}, 3), ({"response_format": "json", "n_best": 3}, 3),
    ({"response_format": "text", "correct": "ger"}, 5),  # GER reads every hypothesis
])
def test_service_decodes_alternatives_only_when_read(settings, fields: dict, n_best: int) -> None:
    """The ASR service's transcription options: the N-best only where the reply or the correction reads it."""
    from services.asr.protocol import TranscriptionForm, decoded_for

    form = TranscriptionForm(**fields)
    options = decoded_for(form, settings, form.to_asr_options(settings.asr, "transcribe"))
    assert options.n_best == n_best
    assert (options.nbest_beam_size == options.beam_size) == (n_best == 1)


@pytest.fixture(scope="module")
def long_file(shared_data: Path, tmp_path_factory) -> Path:
    """About 40 s: four dev clips of librispeech-test-other with 1 s of silence between them (two 30 s windows)."""
    import soundfile as sf

    rows = [json.loads(x) for x in (shared_data / "librispeech-test-other" / "manifest.jsonl").read_text().splitlines()]
    gap = np.zeros(16000, np.float32)
    audio = np.concatenate([p for r in rows[:4] for p in (load_audio(shared_data / "librispeech-test-other" / r["audio"]), gap)])
    path = tmp_path_factory.mktemp("long") / "long.flac"
    sf.write(path, audio, 16000)
    return path


def test_batched_mode_costs_what_the_batched_pipeline_costs(counted: Counting, settings, long_file: Path) -> None:
    from faster_whisper import BatchedInferencePipeline

    audio = load_audio(long_file)
    whisper = load_model(settings.asr, settings.home)
    before = counted.generates
    peer = [s.text for s in BatchedInferencePipeline(whisper).transcribe(audio, beam_size=5, batch_size=8)[0]]
    peer_calls = counted.generates - before
    options = settings.asr.model_copy(update={"model": "tiny.en", "batched": True, "batch_size": 8,
                                              "batch_timestamps": False})
    before = counted.generates
    one = transcribe_all(audio, best_only(options), home=settings.home)
    assert counted.generates - before == peer_calls >= 1  # -n 1: the pipeline's calls, no more
    assert [s.text for s in one.segments] == [" ".join(t.split()) for t in peer if t.strip()]
    before = counted.generates
    five = transcribe_all(audio, options, home=settings.home)
    assert counted.generates - before == 2 * peer_calls  # one wide call per batch fills every chunk's N-best
    assert five.text == one.text and max(len(s.nbest.hypotheses) for s in five.segments) >= 2


def test_batched_timestamps_keep_the_rest_of_each_chunk(counted: Counting, settings, shared_data: Path) -> None:
    """With timestamps (batch_timestamps, the default) Whisper ends a chunk by opening a segment it leaves to the next
    window; the pipeline drops that speech, ours decodes it in one more call per batch over the same encoder output."""
    from faster_whisper import BatchedInferencePipeline

    rows = [json.loads(x) for x in (shared_data / "librispeech-test-other" / "manifest.jsonl").read_text().splitlines()]
    audio = np.concatenate([load_audio(shared_data / "librispeech-test-other" / r["audio"]) for r in rows[:4]])
    whisper = load_model(settings.asr, settings.home)
    before = counted.generates
    peer = [s.text.strip() for s in BatchedInferencePipeline(whisper).transcribe(
        audio, beam_size=5, batch_size=8, without_timestamps=False)[0]]
    peer_calls, encodes = counted.generates - before, counted.encodes
    options = best_only(settings.asr.model_copy(update={"model": "tiny.en", "batched": True, "batch_size": 8}))
    before = counted.generates
    ours = transcribe_all(audio, options, home=settings.home)
    assert counted.generates - before == peer_calls + 1 and counted.encodes - encodes == peer_calls  # no new encode
    texts = iter(s.text for s in ours.segments)
    assert all(" ".join(t.split()) in texts for t in peer) and len(ours.segments) > len(peer)  # theirs, in order, + rests
    assert "so silly" in ours.text and "silly" not in " ".join(peer)  # the end of chunk 1, which the pipeline drops
    assert all(0 <= s.start <= s.end <= ours.duration for s in ours.segments)


@pytest.mark.parametrize("fmt", ["txt", "json", "srt", "vtt", "tsv"])
def test_batched_output_has_the_sequential_format(long_file: Path, fmt: str) -> None:
    """Every format through the CLI with --batched; json beside the sequential run's (the others have fixed shapes)."""
    from cascade.types import Transcript

    runner = CliRunner()
    modes = ("--sequential", "--batched") if fmt == "json" else ("--batched",)
    bodies = {}
    for mode in modes:
        result = runner.invoke(app, ["transcribe", str(long_file), "--format", fmt, "--correct", "none", mode])
        assert result.exit_code == 0, result.output
        bodies[mode] = result.stdout
    bat = bodies["--batched"]
    if fmt == "json":
        a, b = Transcript.model_validate_json(bodies["--sequential"]), Transcript.model_validate_json(bat)
        assert b.duration == a.duration and b.segments and all(s.end <= b.duration for s in b.segments)
        assert b.stages[0].options["batched"] and not a.stages[0].options["batched"]
        assert set(a.segments[0].model_dump()) == set(b.segments[0].model_dump())
        assert max(len(s.nbest.hypotheses) for s in b.segments) >= 2
    elif fmt in ("srt", "vtt"):
        import pysubs2

        subs = pysubs2.SSAFile.from_string(bat)
        assert len(subs) >= 4 and all(e.start < e.end <= 41_000 for e in subs)
    elif fmt == "tsv":
        rows = bat.splitlines()
        assert rows[0] == "start\tend\ttext" and len(rows) >= 2 and all(len(r.split("\t")) == 3 for r in rows)
    else:
        assert len(bat.split()) > 40 and "==>" not in bat


def test_short_files_are_batched_across_files(counted: Counting, settings, shared_data: Path, long_file: Path,
                                              tmp_path: Path) -> None:
    """Four speechocean762 dev clips share one CTranslate2 call; a missing file and a long one keep their own path."""
    from cascade.asr import transcribe_files

    rows = [json.loads(x) for x in (shared_data / "speechocean762" / "manifest.jsonl").read_text().splitlines()]
    clips = [shared_data / "speechocean762" / r["audio"] for r in rows if r["split"] == "dev"][:4]
    paths = [*clips[:2], tmp_path / "missing.wav", *clips[2:], long_file]
    options = best_only(settings.asr.model_copy(update={"model": "tiny.en", "batched": True, "batch_size": 8}))
    before = counted.generates
    got = list(transcribe_files(paths, options, home=settings.home))
    calls_all = counted.generates - before
    assert [p for p, _ in got] == paths
    assert isinstance(got[2][1], Exception) and "missing.wav" in str(got[2][1])
    before = counted.generates
    alone = transcribe_all(long_file, options, home=settings.home)
    assert calls_all - (counted.generates - before) in (1, 2)  # the four short files: one call (+ their rests)
    assert got[-1][1].text == alone.text
    for path, t in got[:2] + got[3:5]:
        assert t.source == str(path) and t.duration == pytest.approx(len(load_audio(path)) / 16000, abs=0.01)
        assert t.segments and all(0 <= s.start <= s.end <= t.duration for s in t.segments)


def test_segments_redecoded_only_without_alternatives(counted: Counting, settings, long_file: Path) -> None:
    """nbest_search window, nbest_redecode_below 2: a later segment gets its own forced decode only when the
    window's wide decode left it the 1-best alone; below n_best (32, the library default) any short one does."""
    audio = load_audio(long_file)
    options = TINY.model_copy(update={"n_best": 5, "nbest_search": "window"})
    spent = {}
    for below in (32, 2):
        before = counted.generates
        t = transcribe_all(audio, options.model_copy(update={"nbest_redecode_below": below}), home=settings.home)
        spent[below] = counted.generates - before
        assert all(s.nbest.hypotheses for s in t.segments) and max(len(s.nbest.hypotheses) for s in t.segments) >= 2
    assert spent[2] < spent[32]


def test_segment_alternatives_in_one_batched_call_per_window(counted: Counting, settings, long_file: Path) -> None:
    """nbest_search segments (the default): every segment of a window is decoded from its own start in one batched
    call (two where the window's first segment starts without timestamps), fewer calls than the window search; the
    1-best stays faster-whisper's and each alternative is a reading of its own segment, not of the window."""
    import jiwer

    from cascade.asr.reference import faster_whisper_text
    from cascade.metrics import normalize

    audio = load_audio(long_file)
    whisper = load_model(settings.asr, settings.home)
    encodes, before = counted.encodes, counted.generates
    peer_text = faster_whisper_text(whisper, audio)
    peer, windows = counted.generates - before, counted.encodes - encodes
    assert windows == 2
    t = None

    def run(search: str):
        nonlocal t
        t = transcribe_all(audio, TINY.model_copy(update={"n_best": 5, "nbest_search": search}), home=settings.home)

    spent = calls(counted, lambda: run("segments"))
    assert peer < spent <= peer + 2 * windows
    assert t.text == peer_text
    hyps = [s.nbest.hypotheses for s in t.segments]
    assert sum(len(h) for h in hyps) / len(hyps) >= 2
    for seg in t.segments:
        best = normalize(seg.text)
        for alt in seg.nbest.hypotheses[1:] if len(best.split()) >= 4 else ():
            assert jiwer.wer(best, normalize(alt.text) or "-") <= 0.5, (seg.text, alt.text)
    assert calls(counted, lambda: run("window")) > spent


def test_segment_alternatives_without_timestamps(counted: Counting, settings, clip: Path) -> None:
    """without_timestamps (one segment per window): the alternatives come from one decode of the window."""
    options = TINY.model_copy(update={"without_timestamps": True})
    peer = calls(counted, lambda: transcribe_all(clip, best_only(options), home=settings.home))
    t = None

    def run():
        nonlocal t
        t = transcribe_all(clip, options, home=settings.home)

    assert calls(counted, run) == peer + 1
    assert len(t.segments) == 1 and len(t.segments[0].nbest.hypotheses) >= 2
