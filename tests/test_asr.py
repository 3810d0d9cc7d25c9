"""Whisper N-best recognition with the bundled tiny.en and base models on real and synthesized speech."""

from __future__ import annotations

import itertools
import json
import subprocess
from pathlib import Path

import jiwer
import numpy as np
import pytest
from whisper_normalizer.english import EnglishTextNormalizer

from cascade.asr import load_model, transcribe, transcribe_all
from cascade.asr.reference import faster_whisper_segments
from cascade.audio import load_audio
from cascade.config import AsrOptions
from cascade.formats.hyporadise import transcript_records as hyporadise_records
from cascade.formats.transcript import to_srt, to_tsv, to_vtt
from cascade.metrics import normalize
from cascade.types import Transcript, Unsupported

_norm = EnglishTextNormalizer()
TINY = AsrOptions(model="tiny.en", n_best=5, beam_size=5)
BASE = AsrOptions(model="base", n_best=5, beam_size=5)


def wer(ref: str, hyp: str) -> float:
    return jiwer.wer(_norm(ref), _norm(hyp))


@pytest.fixture(scope="module")
def home(settings) -> Path:
    return settings.home


@pytest.fixture(scope="module")
def clips(shared_data: Path) -> list[dict]:
    rows = [json.loads(x) for x in (shared_data / "librispeech-test-other" / "manifest.jsonl").read_text().splitlines()]
    for r in rows:
        r["path"] = shared_data / "librispeech-test-other" / r["audio"]
    return rows


@pytest.fixture(scope="module")
def long_audio(clips: list[dict]) -> tuple[np.ndarray, str]:
    """About 50 s: five real utterances separated by 1.5 s of silence (longer than one window)."""
    gap = np.zeros(24000, dtype=np.float32)
    picked = clips[20:25]
    audio = np.concatenate([p for c in picked for p in (load_audio(c["path"]), gap)])
    return audio, " ".join(c["text"] for c in picked)


@pytest.fixture(scope="module")
def long_transcript(long_audio, home: Path) -> Transcript:
    return transcribe_all(long_audio[0], TINY, home=home)


def test_jfk_one_best_matches_reference(jfk_path: Path, shared_data: Path, home: Path) -> None:
    ref = json.loads((shared_data / "real" / "manifest.jsonl").read_text().splitlines()[0])["text"]
    t = transcribe_all(jfk_path, TINY, home=home)
    assert t.language == "en" and t.duration == pytest.approx(11.0, abs=0.05)
    assert len(t.segments) == 2 and t.source == str(jfk_path)  # cut at Whisper's timestamps, as faster-whisper
    assert wer(ref, t.text) <= 0.05
    assert t.stages[0].stage == "asr" and t.stages[0].options["n_best"] == 5


def test_nbest_is_distinct_ranked_and_scored(clips: list[dict], home: Path) -> None:
    t = transcribe_all(clips[0]["path"], TINY, home=home)
    other = transcribe_all(clips[1]["path"], TINY, home=home)  # a segment of one of them has 5 distinct readings
    hyps = max((s.nbest.hypotheses for s in t.segments + other.segments), key=len)
    texts = [h.text for h in hyps]
    assert len(texts) == 5 and len({normalize(x) for x in texts}) == 5, "distinct after normalisation"
    ranking = [h.avg_logprob for h in hyps[1:]]  # the 1-best is faster-whisper's beam-5 result, the rest ranked
    assert ranking == sorted(ranking, reverse=True)
    for h in hyps:
        assert h.am_score < 0 and h.tokens and h.am_score == pytest.approx(h.avg_logprob * len(h.tokens))
    assert all(s.text == s.nbest.hypotheses[0].text for s in t.segments)
    assert wer(clips[0]["text"], t.text) < 0.2


def test_nbest_folds_case_and_punctuation_variants(clips: list[dict], home: Path) -> None:
    t = transcribe_all(clips[1]["path"], TINY.model_copy(update={"n_best": 8}), home=home)
    for seg in t.segments:
        keys = [normalize(h.text) for h in seg.nbest.hypotheses]
        assert len(keys) == len(set(keys)) and 1 <= len(keys) <= 8
        assert seg.temperature == 0.0 and seg.flags == ()
    assert sum(len(s.nbest.hypotheses) for s in t.segments) > len(t.segments)


def test_one_best_equals_faster_whisper_defaults(clips: list[dict], jfk_path: Path, home: Path) -> None:
    """Text, start and end of every segment are faster-whisper's `transcribe(beam_size=5)` with its defaults."""
    whisper = load_model(TINY, home)
    for source in [jfk_path, clips[2]["path"], clips[3]["path"]]:
        audio = load_audio(source)
        ours = [(s.start, s.end, s.text) for s in transcribe_all(audio, AsrOptions(model="tiny.en"), home=home).segments]
        assert ours == faster_whisper_segments(whisper, audio), source
    assert len(ours) >= 1


@pytest.fixture(scope="module")
def german_clip(shared_data: Path) -> np.ndarray:
    """47-57 s of the MIT-licence recording: German, which tiny.en cannot know; at temperature 0 it loops."""
    return load_audio(shared_data / "real" / "mit_license_en_de.mp3")[47 * 16000 : 57 * 16000]


def test_looping_window_is_flagged_and_logged(german_clip: np.ndarray, home: Path, caplog) -> None:
    no_fallback = TINY.model_copy(update={"temperature_increment": None})
    with caplog.at_level("WARNING", logger="cascade.asr"):
        t = transcribe_all(german_clip, no_fallback, home=home)
    looped = [s for s in t.segments if "looped" in s.flags]
    assert looped and all(s.compression_ratio > 2.4 and s.temperature == 0.0 for s in looped)
    assert any("flagged 'looped'" in r.getMessage() for r in caplog.records)


def test_fallback_redecodes_the_looping_window(german_clip: np.ndarray, home: Path) -> None:
    """With a temperature ladder (0, 0.5, 1.0 here, to stay quick) the looping window is decoded again hotter."""
    import ctranslate2

    ctranslate2.set_random_seed(7)
    t = transcribe_all(german_clip, TINY.model_copy(update={"temperature_increment": 0.5}), home=home)
    assert t.segments and all(s.temperature in (0.5, 1.0) for s in t.segments), [(s.temperature, s.text) for s in t.segments]
    assert not any("looped" in s.flags for s in t.segments)
    assert all(s.nbest.hypotheses[0].text == s.text and s.compression_ratio <= 2.4 for s in t.segments)


def test_piper_sentence_is_recognised(tmp_path: Path, home: Path) -> None:
    from cascade.asr.demo import synthesize_piper
    from cascade.audio import write_wav

    text = "The weather is nice today, so we will walk to the park after lunch."
    samples, rate = synthesize_piper(text)
    path = write_wav(tmp_path / "piper.wav", samples, rate)
    assert wer(text, transcribe_all(path, TINY, home=home).text) <= 0.15


def test_long_audio_is_split_into_windows(long_audio, long_transcript: Transcript, home: Path) -> None:
    audio, ref = long_audio
    segs = long_transcript.segments
    assert len(segs) >= 2
    for a, b in itertools.pairwise(segs):
        assert a.end <= b.start and b.id == a.id + 1
    assert all(0 <= s.start < s.end <= len(audio) / 16000 + 0.01 for s in segs)
    assert all(s.end - s.start <= 60 for s in segs)
    assert wer(ref, long_transcript.text) < 0.35
    assert all(s.end - s.start <= 30 for s in segs)
    _, info = transcribe(audio, TINY.model_copy(update={"vad_filter": True}), home=home)
    assert info.duration == pytest.approx(len(audio) / 16000) and info.duration_after_vad < info.duration


def test_subtitle_timestamps_are_monotonic(long_transcript: Transcript) -> None:
    import re

    srt, vtt = to_srt(long_transcript), to_vtt(long_transcript)
    assert vtt.startswith("WEBVTT\n")
    for text, sep in ((srt, ","), (vtt, ".")):
        stamps = re.findall(rf"(\d\d):(\d\d):(\d\d){re.escape(sep)}(\d\d\d) --> (\d\d):(\d\d):(\d\d){re.escape(sep)}(\d\d\d)", text)
        assert len(stamps) >= len(long_transcript.segments)  # cues are cut to <= 7 s (tests/test_subtitles.py)
        seconds = [
            (int(a) * 3600 + int(b) * 60 + int(c) + int(d) / 1000, int(e) * 3600 + int(f) * 60 + int(g) + int(h) / 1000)
            for a, b, c, d, e, f, g, h in stamps
        ]
        flat = [x for pair in seconds for x in pair]
        assert flat == sorted(flat) and all(s < e for s, e in seconds)
    rows = to_tsv(long_transcript).splitlines()
    assert rows[0] == "start\tend\ttext" and len(rows) == len(long_transcript.segments) + 1


def test_hyporadise_records(long_transcript: Transcript) -> None:
    records = hyporadise_records(long_transcript, "talk")
    assert len(records) == len(long_transcript.segments)
    for rec, seg in zip(records, long_transcript.segments):
        assert set(rec) == {"id", "input", "output", "am_score"} and rec["output"] is None
        assert rec["input"] == seg.nbest.texts and len(rec["am_score"]) == len(rec["input"])
        assert rec["input"][0] == seg.text


def test_word_timestamps_map_back_across_removed_silence(jfk_path: Path, home: Path) -> None:
    jfk = load_audio(jfk_path)
    audio = np.concatenate([np.zeros(3 * 16000, np.float32), jfk, np.zeros(4 * 16000, np.float32), jfk])
    options = TINY.model_copy(update={"word_timestamps": True, "n_best": 2, "vad_filter": True})
    t = transcribe_all(audio, options, home=home)
    words = [w for s in t.segments for w in s.words]
    assert len(words) >= 40
    starts = [w.start for w in words]
    assert starts == sorted(starts) and all(w.start <= w.end for w in words)
    seg = t.segments[0]
    assert seg.start == words[0].start and 2.5 < seg.start < 4.0
    second = [w.start for w in words if w.word.strip().lower() == "and"]
    assert len(second) == 2 and 17.5 < second[1] < 19.5  # 3 s + 11 s + 4 s of audio before it


def test_silence_gives_empty_transcript(home: Path) -> None:
    silence = np.zeros(16000 * 4, dtype=np.float32)
    t = transcribe_all(silence, TINY.model_copy(update={"vad_filter": True}), home=home)
    assert t.segments == () and t.text == ""
    plain = transcribe_all(silence, TINY, home=home)  # without VAD: whatever faster-whisper says ("You")
    assert [(s.start, s.end, s.text) for s in plain.segments] == faster_whisper_segments(load_model(TINY, home), silence)
    assert transcribe_all(np.zeros(0, dtype=np.float32), TINY, home=home).segments == ()


def test_segments_are_lazy(jfk_path: Path, home: Path) -> None:
    segments, info = transcribe(jfk_path, TINY, home=home)
    assert info.language == "en" and info.duration == pytest.approx(11.0, abs=0.05)
    assert info.versions["faster-whisper"]
    first = next(segments)
    assert first.nbest.hypotheses and next(segments).start == first.end and next(segments, None) is None


def test_translate_needs_multilingual_model(jfk_path: Path, home: Path) -> None:
    with pytest.raises(Unsupported, match="--model base"):
        transcribe(jfk_path, TINY.model_copy(update={"task": "translate"}), home=home)


def test_german_speech_detected_and_translated(shared_data: Path, home: Path) -> None:
    """The second half of the MIT-licence recording is read in German."""
    audio = load_audio(shared_data / "real" / "mit_license_en_de.mp3")[31 * 16000 :]
    german = transcribe_all(audio, BASE.model_copy(update={"n_best": 2, "nbest_beam_size": 5}), home=home)
    assert german.language == "de"
    assert {"die", "der", "und", "software"} <= set(_norm(german.text).split())
    english = transcribe_all(audio, BASE.model_copy(update={"task": "translate", "n_best": 2, "nbest_beam_size": 5}), home=home)
    words = set(_norm(english.text).split())
    assert english.task == "translate" and {"the", "software", "and", "to"} <= words
    assert not {"die", "und", "der"} & words


def test_espeak_german_translates_to_english(tmp_path: Path, home: Path) -> None:
    wav = tmp_path / "de.wav"
    subprocess.run(["espeak-ng", "-v", "de", "-s", "140", "-w", str(wav), "Guten Morgen. Das Wetter ist heute sehr schön."], check=True)
    opts = BASE.model_copy(update={"task": "translate", "language": "de", "n_best": 3})
    text = _norm(transcribe_all(wav, opts, home=home).text)
    assert {"morning", "weather"} & set(text.split()), text


def test_fallback_ladder_and_nbest_width_options() -> None:
    from pydantic import ValidationError

    from cascade.asr.decode import faster_whisper_kwargs, temperatures

    assert temperatures(AsrOptions()) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]  # faster-whisper's default ladder
    assert temperatures(AsrOptions(temperature=0.3)) == [0.3, 0.5, 0.7, 0.9]
    assert temperatures(AsrOptions(temperature_increment=None)) == [0.0]
    kwargs = faster_whisper_kwargs(AsrOptions())
    assert kwargs["without_timestamps"] is False and kwargs["vad_filter"] is False
    assert kwargs["condition_on_previous_text"] is True and kwargs["compression_ratio_threshold"] == 2.4
    assert AsrOptions(n_best=10).nbest_beam_size == 10
    with pytest.raises(ValidationError, match="nbest_beam_size"):
        AsrOptions(n_best=12)
