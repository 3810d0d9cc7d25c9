"""Piper (ONNX VITS) with the bundled en_US-joe-medium voice: the CPU default, ~0.06 real-time factor."""

from __future__ import annotations

import logging

import numpy as np

from cascade.config import TtsOptions

logger = logging.getLogger(__name__)


def load_voice(name: str, threads: int = 0):
    """The piper.PiperVoice for a bundled voice name or an .onnx path (threads 0 = all cores), cached in cascade.models."""
    from cascade import models

    return models.cached("piper", (name, threads), lambda: _load_voice(name, threads))


def _load_voice(name: str, threads: int):
    import json

    from cascade import models
    from cascade.types import ModelNotFound

    try:
        import onnxruntime
        from piper import PiperVoice
        from piper.config import PiperConfig
    except ImportError as exc:  # pragma: no cover
        raise ModelNotFound("piper-tts is not installed: pip install piper-tts", param="engine") from exc
    onnx, config = models.piper_voice(name)
    logger.info("loading piper voice %s from %s (%s threads)", name, onnx, threads or "all")
    opts = onnxruntime.SessionOptions()
    opts.intra_op_num_threads = threads
    session = onnxruntime.InferenceSession(str(onnx), sess_options=opts, providers=["CPUExecutionProvider"])
    return PiperVoice(config=PiperConfig.from_dict(json.loads(config.read_text(encoding="utf-8"))), session=session)


class PiperEngine:
    """A loaded piper voice (cached in cascade.models); one ONNX run per sentence."""

    name = "piper"

    def __init__(self, options: TtsOptions):
        from cascade import models
        from cascade.types import ModelNotFound

        try:
            self.voice = load_voice(options.voice, options.threads)
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
