"""Coqui TTS (`coqui-tts`): a user's checkpoint + config.json (VITS, XTTS, any model Coqui's Synthesizer loads).

Coqui needs torchaudio, which only loads beside torch 2.9.1 here, so it lives in
its own environment (the `coqui` extra; `make coqui-env` builds
~/.cache/cascade/venv-coqui). It is imported lazily: without it, asking for the
coqui engine is a clear error naming that environment. Pretrained Coqui models
come from a hub, so nothing is bundled: `TtsOptions.coqui_model` points at a
checkpoint file (config.json beside it) or a directory holding both.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cascade.config import TtsOptions
from cascade.types import InvalidInput, ModelNotFound, Unsupported

logger = logging.getLogger(__name__)

INSTALL_HINT = (
    "Coqui TTS is not installed in this environment: it needs torch==2.9.1 + torchaudio 2.9 beside coqui-tts 0.28 "
    "(pip install 'cascade[coqui]' in a separate venv; `make coqui-env` builds ~/.cache/cascade/venv-coqui)"
)
_CHECKPOINT_NAMES = ("best_model.pth", "model.pth", "model_file.pth", "checkpoint.pth")


def resolve_checkpoint(path: Path) -> tuple[Path, Path]:
    """(checkpoint file or XTTS directory, config.json) for a checkpoint path or a directory."""
    path = path.expanduser()
    if not path.exists():
        raise ModelNotFound(f"Coqui checkpoint not found: {path}", param="coqui_model")
    config = (path if path.is_dir() else path.parent) / "config.json"
    if not config.is_file():
        raise ModelNotFound(f"no config.json beside the Coqui checkpoint {path}", param="coqui_model")
    if path.is_file():
        return path, config
    for name in _CHECKPOINT_NAMES:
        if (path / name).is_file():
            return path / name, config
    steps = sorted(path.glob("checkpoint_*.pth"), key=lambda p: int("".join(filter(str.isdigit, p.stem)) or 0))
    if steps:
        return steps[-1], config
    if '"xtts"' in config.read_text(encoding="utf-8"):
        return path, config  # XTTS loads itself from its directory
    raise ModelNotFound(f"no checkpoint (*.pth) in {path}", param="coqui_model")


@dataclass
class CoquiModel:
    """A loaded Coqui Synthesizer with what callers need to validate options."""

    synthesizer: Any
    path: Path
    kind: str
    sample_rate: int
    speakers: tuple[str, ...]
    languages: tuple[str, ...]
    lock: threading.Lock = field(default_factory=threading.Lock)


def load_checkpoint(path: Path, device: str = "cpu") -> CoquiModel:
    """Load a user's checkpoint through Coqui's own Synthesizer (uncached; see load_cached)."""
    checkpoint, config = resolve_checkpoint(path)
    try:
        from TTS.utils.synthesizer import Synthesizer
    except ImportError as exc:
        raise Unsupported(f"{INSTALL_HINT} ({exc})".replace("\n", " "), param="engine") from exc
    logger.info("loading Coqui checkpoint %s (config %s)", checkpoint, config)
    try:
        synth = Synthesizer(tts_checkpoint=checkpoint, tts_config_path=config, use_cuda=device == "cuda")
    except (KeyError, ValueError, RuntimeError, OSError, AssertionError) as exc:
        raise ModelNotFound(f"cannot load Coqui checkpoint {checkpoint}: {exc}".splitlines()[0], param="coqui_model") from exc
    model = synth.tts_model
    speakers = getattr(getattr(model, "speaker_manager", None), "speaker_names", None) or []
    languages = getattr(getattr(model, "language_manager", None), "language_names", None) or []
    if not languages and getattr(synth.tts_config, "languages", None):
        languages = list(synth.tts_config.languages)
    return CoquiModel(
        synthesizer=synth, path=checkpoint, kind=str(synth.tts_config.model), sample_rate=int(synth.output_sample_rate),
        speakers=tuple(speakers), languages=tuple(languages),
    )


class CoquiEngine:
    """Speaks with a loaded CoquiModel; speaker/language checked against what the model has."""

    name = "coqui"

    def __init__(self, options: TtsOptions, home: Path):
        from cascade import models

        if not options.coqui_model:
            raise InvalidInput("the coqui engine needs a checkpoint: set tts.coqui_model (--coqui-model PATH)", param="coqui_model")
        path = Path(options.coqui_model).expanduser().resolve()
        self.loaded = models.cached("coqui", (str(path), "cpu"), lambda: load_checkpoint(path, "cpu"), maxsize=2)
        self.sample_rate = self.loaded.sample_rate
        self.model = f"coqui:{self.loaded.kind}:{self.loaded.path.name}"
        self.speaker, self.speaker_wav = self._speaker(options)
        self.language = self._language(options.language)

    def _speaker(self, options: TtsOptions) -> tuple[str | None, str | None]:
        default_voice = TtsOptions.model_fields["voice"].default
        name = options.speaker or (options.voice if options.voice != default_voice else None)
        if name and Path(name).expanduser().is_file():
            return None, str(Path(name).expanduser())  # a reference recording to clone (XTTS, YourTTS)
        known = self.loaded.speakers
        if name is None:
            if self.loaded.kind == "xtts" and not known:
                raise InvalidInput("this XTTS model needs a speaker: a reference recording path (--speaker FILE.wav)", param="speaker")
            return (known[0] if known else None), None
        if name not in known:
            listing = ", ".join(known[:20]) or "none: the model has a single speaker"
            raise InvalidInput(f"unknown speaker {name!r} for this Coqui model (speakers: {listing})", param="speaker")
        return name, None

    def _language(self, language: str | None) -> str | None:
        known = self.loaded.languages
        if not known or len(known) == 1 and language is None:
            if language is not None and language not in known:
                raise InvalidInput(f"this Coqui model is not multilingual; it cannot speak {language!r}", param="language")
            return None
        if language is None:
            return "en" if "en" in known else known[0]
        if language not in known:
            raise InvalidInput(f"unknown language {language!r} for this Coqui model (languages: {', '.join(known)})", param="language")
        return language

    def synth(self, text: str, options: TtsOptions) -> np.ndarray:
        model = self.loaded.synthesizer.tts_model
        kwargs: dict[str, Any] = {}
        with self.loaded.lock:
            saved = getattr(model, "length_scale", None)
            if self.loaded.kind == "xtts":
                kwargs["speed"] = options.speed
            elif saved is not None:
                model.length_scale = saved / options.speed
            elif options.speed != 1.0:
                raise Unsupported(f"speed is not adjustable for Coqui {self.loaded.kind} models", param="speed")
            try:
                wav = self.loaded.synthesizer.tts(
                    text=text, speaker_name=self.speaker, language_name=self.language,
                    speaker_wav=self.speaker_wav, split_sentences=False, **kwargs,
                )
            finally:
                if saved is not None:
                    model.length_scale = saved
        return np.clip(np.asarray(wav, dtype=np.float32).reshape(-1), -1.0, 1.0)
