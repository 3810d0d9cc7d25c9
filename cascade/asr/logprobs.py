"""Per-token log-probabilities of a transcript's text under Whisper's decoder (OpenAI's include=["logprobs"]).

faster-whisper keeps no per-token scores, so each segment's 1-best tokens are read again, teacher-forced,
over that segment's audio: CTranslate2's Whisper `align` (what faster-whisper's word timestamps run) gives
the probability of every text token after Whisper's start sequence. One encoder pass per segment: paid only
by a caller who asks for them.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from cascade.config import AsrOptions
from cascade.types import Transcript

RATE = 16000


def token_logprobs(samples: np.ndarray, transcript: Transcript, options: AsrOptions, home: Path) -> list[tuple[str, float]]:
    """(token text, log-prob) for each text token of each segment's 1-best, in order."""
    from faster_whisper.audio import pad_or_trim
    from faster_whisper.tokenizer import Tokenizer

    from cascade.asr import load_model

    whisper = load_model(options, home)
    tokenizer = Tokenizer(whisper.hf_tokenizer, whisper.model.is_multilingual, task=options.task,
                          language=transcript.language or options.language or "en")
    out: list[tuple[str, float]] = []
    for seg in transcript.segments:
        best = seg.nbest.best
        tokens = [t for t in (best.tokens or ()) if t < tokenizer.eot] if best is not None else []
        clip = samples[int(seg.start * RATE) : max(int(math.ceil(seg.end * RATE)), int(seg.start * RATE) + 1)]
        if not tokens or not len(clip):
            continue
        features = whisper.feature_extractor(clip)
        frames = min(features.shape[-1], 3000)
        encoded = whisper.encode(pad_or_trim(features))
        result = whisper.model.align(encoded, tokenizer.sot_sequence, [tokens], frames)[0]
        for token, p in zip(tokens, result.text_token_probs):
            out.append((tokenizer.decode([token]), math.log(max(float(p), 1e-30))))
    return out
