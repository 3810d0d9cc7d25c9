"""Seeded sampling for the temperature fallback: the same audio and options give the same transcript.

faster-whisper decodes a window again at temperatures 0.2 ... 1.0 when the beam result fails its
thresholds, and those decodes sample. CTranslate2 (4.x, src/random.cc) draws every sample from a
generator that is `thread_local` to the model's worker thread and seeded once, at that thread's first
sample, from the global seed (`ctranslate2.set_random_seed`). Setting the seed again changes nothing for
a worker that has already sampled, and every later call continues its stream: the samples of one window
depend on all the sampling the process did before (earlier files, other requests). `generate` takes no
seed of its own.

So a window that samples gets a fresh replica of the model (a new worker thread, hence a new generator),
and its first sample is drawn under a process-wide lock with the global seed set to one derived from
(asr.seed, window number). The window's later temperatures continue that replica's stream, which is itself
deterministic. The cost is one model load per sampled window (tiny.en int8 on 2 cores: ~0.4-0.6 s), paid
only where faster-whisper would sample; beam-search calls stay on the shared model.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cascade.config import AsrOptions

logger = logging.getLogger(__name__)

UNSET = 2**32 - 1
"""CTranslate2's "no seed" value (each new worker seeds from std::random_device): restored after each start."""

_LOCK = threading.Lock()


def window_seed(seed: int, window: int) -> int:
    """A 32-bit seed for one window, independent of every other window's (never CTranslate2's UNSET)."""
    digest = hashlib.sha256(f"{seed}:{window}".encode()).digest()
    return int.from_bytes(digest[:4], "little") % UNSET


class Sampler:
    """Sampled `generate` calls of one transcription, each window on its own freshly seeded replica."""

    def __init__(self, load: Callable[[], Any], seed: int) -> None:
        self._load = load
        self.seed = seed
        self._window: int | None = None
        self._model: Any = None

    def generate(self, window: int, encoder_output, prompts, **kwargs):
        if window == self._window:
            return self._model.generate(encoder_output, prompts, **kwargs)
        self._model, self._window = None, None  # the previous window's replica is freed first
        model = self._load()
        with _LOCK:  # the global seed is read by the new worker at its first sample, inside this call
            import ctranslate2

            ctranslate2.set_random_seed(window_seed(self.seed, window))
            try:
                results = model.generate(encoder_output, prompts, **kwargs)
            finally:
                ctranslate2.set_random_seed(UNSET)
        self._model, self._window = model, window
        return results


def sampler(options: AsrOptions, home: Path) -> Sampler | None:
    """The seeded sampler for these options (None: asr.seed is None, the shared model samples unseeded)."""
    if options.seed is None:
        return None

    def load():
        import ctranslate2

        from cascade import models

        path = models.whisper_dir(options.model, home)
        logger.debug("seeded sampling: a fresh replica of %s", path)
        return ctranslate2.models.Whisper(str(path), device=options.device, compute_type=options.compute_type,
                                          intra_threads=options.cpu_threads)

    return Sampler(load, options.seed)
