"""cascade.audio: decoding real files of several formats, typed errors, WAV writing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cascade.audio import load_audio, probe_duration, write_wav
from cascade.types import AudioDecodeError, InvalidInput, TooLarge


def test_decodes_flac_to_16k_mono_float(jfk_path: Path) -> None:
    audio = load_audio(jfk_path)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert len(audio) / 16000 == pytest.approx(11.0, abs=0.05)
    assert 0.05 < np.abs(audio).max() <= 1.0


def test_stereo_is_mixed_down_and_bytes_equal_path(shared_data: Path) -> None:
    path = shared_data / "real" / "stereo_two_speakers.wav"
    from_path = load_audio(path)
    assert len(from_path) == 5 * 16000
    np.testing.assert_array_equal(load_audio(path.read_bytes()), from_path)


def test_mp3_and_resampling(shared_data: Path) -> None:
    audio = load_audio(shared_data / "real" / "mit_license_en_de.mp3", sample_rate=8000)
    assert len(audio) / 8000 == pytest.approx(59.9, abs=0.2)


def test_duration_cap_is_checked_before_decoding(jfk_path: Path) -> None:
    assert probe_duration(jfk_path) == pytest.approx(11.0, abs=0.05)
    with pytest.raises(TooLarge, match="11 s long, above the 5 s limit"):
        load_audio(jfk_path, max_duration_s=5)
    assert len(load_audio(jfk_path, max_duration_s=12)) > 0


def test_bad_inputs_raise_typed_errors(tmp_path: Path, jfk_path: Path) -> None:
    with pytest.raises(InvalidInput, match="file not found"):
        load_audio(tmp_path / "missing.wav")
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(InvalidInput, match="empty file"):
        load_audio(tmp_path / "empty.wav")
    with pytest.raises(InvalidInput, match="directory"):
        load_audio(tmp_path)
    with pytest.raises(InvalidInput, match="0 bytes"):
        load_audio(b"")
    (tmp_path / "notes.txt").write_text("this is a text file, not audio\n" * 20)
    with pytest.raises(AudioDecodeError, match="not audio"):
        load_audio(tmp_path / "notes.txt")
    (tmp_path / "notes.flac").write_text("not audio\n")  # the flac demuxer opens it by its name, no frame decodes
    with pytest.raises(AudioDecodeError, match="no decodable audio"):
        load_audio(tmp_path / "notes.flac")
    rng = np.random.default_rng(0)
    with pytest.raises(AudioDecodeError):
        load_audio(rng.integers(0, 256, 30000, dtype=np.uint8).tobytes())
    (tmp_path / "cut.flac").write_bytes(jfk_path.read_bytes()[:3000])
    with pytest.raises(AudioDecodeError):
        load_audio(tmp_path / "cut.flac")


def test_write_wav_round_trip(tmp_path: Path) -> None:
    t = np.arange(22050) / 22050
    tone = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    path = write_wav(tmp_path / "sub" / "tone.wav", tone, 22050)
    back = load_audio(path, sample_rate=22050)
    assert len(back) == len(tone)
    assert np.abs(back - tone).max() < 1e-3
    resampled = load_audio(path)
    assert len(resampled) == pytest.approx(16000, abs=20)


def test_zero_length_wav_decodes_to_empty(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "nothing.wav", np.zeros(0, dtype=np.float32), 16000)
    assert load_audio(path).size == 0
