"""The demo sample: a short recording the project makes itself with the bundled piper voice.

It is synthesized on first use into CASCADE_HOME/demo/ (nothing is shipped or
downloaded), so `make demo` works on any machine that installed the package.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

DEMO_VOICE = "en_US-joe-medium"
DEMO_TEXT = (
    "Cascade listens to what you say and writes down five guesses for every sentence. "
    "A small language model then picks the right one, and fixes the words the recogniser misheard."
)


def synthesize_piper(text: str, voice: str = DEMO_VOICE) -> tuple[np.ndarray, int]:
    """Float samples and their rate from a bundled piper voice (one chunk per sentence, joined)."""
    from piper import PiperVoice

    from cascade.models import piper_voice

    onnx, config = piper_voice(voice)
    engine = PiperVoice.load(str(onnx), config_path=str(config))
    chunks = list(engine.synthesize(text))
    rate = chunks[0].sample_rate
    gap = np.zeros(int(0.3 * rate), dtype=np.float32)
    pieces = [p for c in chunks for p in (c.audio_float_array.astype(np.float32), gap)]
    return np.concatenate(pieces), rate


def demo_sample(home: Path) -> Path:
    """Path of the demo WAV, synthesized the first time it is asked for."""
    from cascade.audio import write_wav

    path = Path(home) / "demo" / "sample.wav"
    if not path.exists():
        logger.info("synthesizing the demo sample into %s", path)
        samples, rate = synthesize_piper(DEMO_TEXT)
        tmp = write_wav(path.with_suffix(".partial.wav"), samples, rate)
        tmp.replace(path)
    return path
