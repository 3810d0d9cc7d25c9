"""espeak-ng through its command line: formant synthesis, always available, robotic but intelligible."""

from __future__ import annotations

import functools
import logging
import re
import shutil
import subprocess

import numpy as np

from cascade.config import TtsOptions
from cascade.types import BackendUnavailable, ModelNotFound

logger = logging.getLogger(__name__)

SAMPLE_RATE = 22050
DEFAULT_VOICE = "en-us"
BASE_WPM = 175
"""espeak-ng's own default rate; `speed` scales it."""


def _binary() -> str:
    path = shutil.which("espeak-ng")
    if path is None:
        raise BackendUnavailable("espeak-ng is not installed (Debian: apt-get install espeak-ng)", param="engine")
    return path


@functools.lru_cache(maxsize=1)
def voices() -> frozenset[str]:
    """Voice names and language codes espeak-ng knows (both are accepted by -v)."""
    out = subprocess.run([_binary(), "--voices"], capture_output=True, text=True, check=True).stdout
    names: set[str] = set()
    for line in out.splitlines()[1:]:
        cols = line.split()
        if len(cols) >= 4:
            names.update({cols[1], cols[3], cols[4].split("/")[-1] if len(cols) > 4 else cols[3]})
            names.update(re.findall(r"\(([\w-]+) \d+\)", line))
    return frozenset(names)


class EspeakEngine:
    """One espeak-ng process per sentence (it starts in a few milliseconds)."""

    name = "espeak"
    sample_rate = SAMPLE_RATE

    def __init__(self, options: TtsOptions):
        self.binary = _binary()
        voice = options.voice if options.voice and options.voice != TtsOptions.model_fields["voice"].default else DEFAULT_VOICE
        if voice not in voices():
            raise ModelNotFound(f"unknown espeak-ng voice {voice!r} (see `espeak-ng --voices`)", param="voice")
        self.voice = voice
        self.model = f"espeak-ng:{voice}"

    def synth(self, text: str, options: TtsOptions) -> np.ndarray:
        wpm = str(max(80, min(450, round(BASE_WPM * options.speed))))
        proc = subprocess.run(
            [self.binary, "-v", self.voice, "-s", wpm, "--stdout"], input=text.encode(), capture_output=True, timeout=120
        )
        if proc.returncode != 0:
            raise BackendUnavailable(f"espeak-ng failed: {proc.stderr.decode(errors='replace').strip()}", param="engine")
        return _wav_payload(proc.stdout)


def _wav_payload(data: bytes) -> np.ndarray:
    """Samples of a streamed WAV (espeak-ng writes a header with a placeholder length to stdout)."""
    pos = data.find(b"data", 12)
    if pos < 0:
        raise BackendUnavailable("espeak-ng wrote no WAV data", param="engine")
    pcm = data[pos + 8 :]
    pcm = pcm[: len(pcm) // 2 * 2]
    return np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
