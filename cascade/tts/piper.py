"""Piper (ONNX VITS) with the bundled en_US-joe-medium voice: the CPU default, ~0.06 real-time factor."""

from __future__ import annotations

import logging

import numpy as np

from cascade.config import TtsOptions

logger = logging.getLogger(__name__)


class PiperEngine:
    """A loaded piper voice (cached in cascade.models); one ONNX run per sentence."""

    name = "piper"

    def __init__(self, options: TtsOptions):
        from cascade import models
        from cascade.types import ModelNotFound

        try:
            self.voice = models.load_piper_voice(options.voice, options.threads)
        except ModelNotFound as exc:
            if options.voice in models.REGISTRY or options.voice.endswith(".onnx"):
                raise
            bundled = ", ".join(n for n, s in models.REGISTRY.items() if s.kind == "tts")
            msg = f"unknown piper voice {options.voice!r} (bundled: {bundled}; or a path to an .onnx voice)"
            raise ModelNotFound(msg, param="voice") from exc
        self.sample_rate = int(self.voice.config.sample_rate)
        self.model = f"piper:{options.voice}"
        self._speaker = self._speaker_id(options.speaker)

    def _speaker_id(self, speaker: str | None) -> int | None:
        if speaker is None:
            return None
        ids = self.voice.config.speaker_id_map or {}
        if speaker in ids:
            return ids[speaker]
        from cascade.types import InvalidInput

        known = ", ".join(sorted(ids)) or "none: this voice has a single speaker"
        raise InvalidInput(f"unknown speaker {speaker!r} for piper voice (speakers: {known})", param="speaker")

    def synth(self, text: str, options: TtsOptions) -> np.ndarray:
        from piper.config import SynthesisConfig

        config = SynthesisConfig(speaker_id=self._speaker, length_scale=1.0 / options.speed)
        parts = [chunk.audio_float_array for chunk in self.voice.synthesize(text, syn_config=config)]
        return np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, dtype=np.float32)
