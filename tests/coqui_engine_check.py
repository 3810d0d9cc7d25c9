"""Coqui engine tests, run inside the separate Coqui environment (torch 2.9.1 + torchaudio + coqui-tts).

Not collected by the main suite (the file name does not start with test_): tests/test_coqui.py
runs it with ~/.cache/cascade/venv-coqui/bin/python as a subprocess and requires it to pass.
A tiny VITS is built from a config (no hub download), saved as checkpoint + config.json the
way Coqui's trainer saves them, and loaded through the same path a user's checkpoint takes:
TtsOptions(engine="coqui", coqui_model=...) -> cascade.tts.synthesize.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from cascade.config import TtsOptions
from cascade.tts import load_engine, synthesize, synthesize_all
from cascade.types import InvalidInput, ModelNotFound

HOP = 256
SR = 16000
FRAMES_PER_TOKEN = 3.0
"""The duration predictor is pinned to this many frames per input token, so lengths are predictable."""


def _tiny_vits(out: Path, speakers: list[str] | None = None) -> Path:
    from TTS.config.shared_configs import BaseAudioConfig
    from TTS.tts.configs.shared_configs import CharactersConfig
    from TTS.tts.configs.vits_config import VitsArgs, VitsConfig
    from TTS.tts.models.vits import Vits

    args = VitsArgs(
        hidden_channels=32, hidden_channels_ffn_text_encoder=64, num_layers_text_encoder=1, num_heads_text_encoder=1,
        num_layers_posterior_encoder=1, num_layers_flow=1, upsample_initial_channel_decoder=32,
        resblock_kernel_sizes_decoder=[3], resblock_dilation_sizes_decoder=[[1, 3, 5]], use_sdp=False,
        init_discriminator=False, use_speaker_embedding=bool(speakers),
    )
    chars = CharactersConfig(
        characters_class="TTS.tts.models.vits.VitsCharacters", pad="_", eos="", bos="", blank=None,
        characters="abcdefghijklmnopqrstuvwxyz", punctuations=".,!?'- ", phonemes=None, is_unique=True, is_sorted=True,
    )
    audio = BaseAudioConfig(sample_rate=SR, fft_size=1024, win_length=1024, hop_length=HOP, num_mels=80, do_trim_silence=False)
    config = VitsConfig(
        model_args=args, audio=audio, use_phonemes=False, text_cleaner="english_cleaners", characters=chars,
        speakers=speakers or [],
    )
    model = Vits(config)  # what Vits.init_from_config(config) does (a deprecated alias in 0.28)
    with torch.no_grad():  # untrained weights, but pinned durations: exp(log 3) frames per token
        model.duration_predictor.proj.weight.zero_()
        model.duration_predictor.proj.bias.fill_(math.log(FRAMES_PER_TOKEN))
    out.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.state_dict(), "config": config.to_dict(), "step": 0}, out / "best_model.pth")
    config.save_json(str(out / "config.json"))
    return out


@pytest.fixture(scope="module")
def vits_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _tiny_vits(tmp_path_factory.mktemp("tiny-vits"))


def _expected_seconds(engine, text: str, speed: float = 1.0) -> float:
    """Frames the pinned duration predictor gives `text`, as seconds (plus Coqui's sentence padding)."""
    from TTS.utils.synthesizer import PAD_SILENCE_SAMPLES

    tokens = len(engine.loaded.synthesizer.tts_model.tokenizer.text_to_ids(text))
    frames = tokens * math.ceil(FRAMES_PER_TOKEN / speed)
    return (frames * HOP + PAD_SILENCE_SAMPLES) / SR


def test_user_checkpoint_dir_synthesizes_sentences(vits_dir: Path, tmp_path: Path) -> None:
    options = TtsOptions(engine="coqui", coqui_model=str(vits_dir))
    text = "The birch canoe slid on the smooth planks. Glue the sheet to the dark blue background."
    chunks = list(synthesize(text, options, home=tmp_path))
    assert [c.text for c in chunks] == [
        "The birch canoe slid on the smooth planks.", "Glue the sheet to the dark blue background."
    ]
    engine = load_engine(options, tmp_path)
    for chunk in chunks:
        assert chunk.sample_rate == SR
        assert chunk.duration == pytest.approx(_expected_seconds(engine, chunk.text), abs=0.02)
        samples = np.frombuffer(chunk.pcm, dtype="<i2")
        assert np.abs(samples).max() > 0, "the model produced silence"


def test_checkpoint_file_speed_and_resampling(vits_dir: Path, tmp_path: Path) -> None:
    text = "Hello there."
    normal = TtsOptions(engine="coqui", coqui_model=str(vits_dir / "best_model.pth"))
    fast = normal.model_copy(update={"speed": 2.0})
    engine = load_engine(normal, tmp_path)
    a = synthesize_all(text, normal, home=tmp_path)
    b = synthesize_all(text, fast, home=tmp_path)
    assert a.duration == pytest.approx(_expected_seconds(engine, text), abs=0.02)
    assert b.duration == pytest.approx(_expected_seconds(engine, text, 2.0), abs=0.02)
    assert b.duration < a.duration
    c = synthesize_all(text, normal.model_copy(update={"sample_rate": 22050}), home=tmp_path)
    assert c.sample_rate == 22050 and c.duration == pytest.approx(a.duration, abs=0.01)


def test_multi_speaker_checkpoint(tmp_path: Path) -> None:
    path = _tiny_vits(tmp_path / "ms", speakers=["alice", "bob"])
    options = TtsOptions(engine="coqui", coqui_model=str(path), speaker="bob")
    assert synthesize_all("Good morning.", options, home=tmp_path).duration > 0.1
    with pytest.raises(InvalidInput, match="unknown speaker 'carol'.*alice, bob"):
        synthesize_all("Good morning.", options.model_copy(update={"speaker": "carol"}), home=tmp_path)


def test_missing_checkpoint_and_config(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFound, match="not found"):
        synthesize_all("Hi.", TtsOptions(engine="coqui", coqui_model=str(tmp_path / "nope")), home=tmp_path)
    (tmp_path / "lonely.pth").write_bytes(b"x")
    with pytest.raises(ModelNotFound, match="no config.json"):
        synthesize_all("Hi.", TtsOptions(engine="coqui", coqui_model=str(tmp_path / "lonely.pth")), home=tmp_path)
    with pytest.raises(InvalidInput, match="needs a checkpoint"):
        synthesize_all("Hi.", TtsOptions(engine="coqui"), home=tmp_path)
