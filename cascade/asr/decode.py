"""N-best decoding of one window with CTranslate2's Whisper `generate`.

faster-whisper's own `transcribe()` keeps only the best beam; the same
CTranslate2 call with `num_hypotheses=N, return_scores=True` returns the N
best finished beams. Everything around that call (features, prompt, the
suppressed tokens, the no-speech rule) mirrors faster-whisper's
`generate_segments`/`generate_with_fallback`, so that the 1-best is the text
faster-whisper yields for the same window and options.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from cascade.config import AsrOptions
from cascade.types import Hypothesis

logger = logging.getLogger(__name__)

NO_SPEECH_THRESHOLD = 0.6
LOG_PROB_THRESHOLD = -1.0
"""faster-whisper's defaults: a window is silence when no_speech_prob > 0.6 and avg log-prob < -1."""


@dataclass(frozen=True)
class Decoded:
    """The ranked, de-duplicated hypotheses of one window and what the 1-best needs downstream."""

    hypotheses: tuple[Hypothesis, ...]
    avg_logprob: float
    """faster-whisper's definition for the 1-best: sum log-prob / (tokens + 1)."""
    no_speech_prob: float
    language: str

    @property
    def is_silence(self) -> bool:
        if not self.hypotheses:
            return True
        return self.no_speech_prob > NO_SPEECH_THRESHOLD and self.avg_logprob <= LOG_PROB_THRESHOLD


@dataclass
class DecodeState:
    """What one pass over a file carries from window to window."""

    tokenizer: object
    suppress_tokens: tuple[int, ...]
    previous_tokens: list[int] = field(default_factory=list)


def features(whisper, audio: np.ndarray) -> np.ndarray:
    """Log-mel features of one window, cut/padded to 3000 frames as faster-whisper does."""
    from faster_whisper.audio import pad_or_trim

    extractor = whisper.feature_extractor
    feats = extractor(audio)
    content = min(feats.shape[-1] - 1, extractor.nb_max_frames)
    return pad_or_trim(feats[:, :content])


def encode(whisper, audio: np.ndarray):
    """Encoder output for one window (a CTranslate2 StorageView)."""
    return whisper.encode(features(whisper, audio))


def prompt(whisper, state: DecodeState, options: AsrOptions, first: bool) -> list[int]:
    """The decoder prompt: previous text (when conditioning) or the initial prompt, then SOT."""
    previous = state.previous_tokens if options.condition_on_previous_text or first else []
    return whisper.get_prompt(state.tokenizer, previous, without_timestamps=options.without_timestamps)


def _generate_kwargs(whisper, options: AsrOptions, prompt_len: int) -> dict:
    max_length = whisper.max_length if options.max_new_tokens is None else prompt_len + options.max_new_tokens
    kwargs = dict(
        length_penalty=options.length_penalty,
        max_length=min(max_length, whisper.max_length),
        return_scores=True,
        return_no_speech_prob=True,
        suppress_blank=True,
        max_initial_timestamp_index=int(round(1.0 / whisper.time_precision)),
        num_hypotheses=options.n_best,
    )
    if options.temperature > 0:
        kwargs.update(beam_size=1, sampling_topk=0, sampling_temperature=options.temperature)
    else:
        kwargs.update(beam_size=options.beam_size, patience=options.patience)
    return kwargs


def decode_window(whisper, encoder_output, state: DecodeState, options: AsrOptions, first: bool) -> Decoded:
    """Run beam search on one encoded window and return its distinct ranked hypotheses."""
    tokens_in = prompt(whisper, state, options, first)
    kwargs = _generate_kwargs(whisper, options, len(tokens_in))
    result = whisper.model.generate(
        encoder_output, [tokens_in], suppress_tokens=list(state.suppress_tokens), **kwargs
    )[0]
    hyps = hypotheses(state.tokenizer, result.sequences_ids, result.scores, options.length_penalty)
    best_tokens = result.sequences_ids[0] if result.sequences_ids else []
    best_sum = result.scores[0] * (len(best_tokens) ** options.length_penalty) if result.scores else 0.0
    decoded = Decoded(
        hypotheses=hyps,
        avg_logprob=best_sum / (len(best_tokens) + 1),
        no_speech_prob=float(result.no_speech_prob),
        language=state.tokenizer.language_code,
    )
    if not decoded.is_silence:
        state.previous_tokens.extend(best_tokens)
    return decoded


PREPEND_PUNCTUATIONS = "\"'“¿([{-"
APPEND_PUNCTUATIONS = "\"'.。,，!！?？:：”)]}、"


def word_timings(whisper, tokenizer, encoder_output, tokens: tuple[int, ...], audio_len: int) -> list[dict]:
    """Word start/end (seconds within the window) of one hypothesis, by faster-whisper's cross-attention alignment."""
    num_frames = min(audio_len // whisper.feature_extractor.hop_length, whisper.feature_extractor.nb_max_frames)
    duration = num_frames * whisper.feature_extractor.time_per_frame
    segments = [[{"seek": 0, "start": 0.0, "end": duration, "tokens": list(tokens)}]]
    whisper.add_word_timestamps(
        segments, tokenizer, encoder_output, num_frames, PREPEND_PUNCTUATIONS, APPEND_PUNCTUATIONS, 0.0
    )
    return segments[0][0].get("words", [])


def hypotheses(tokenizer, sequences: list[list[int]], scores: list[float], length_penalty: float) -> tuple[Hypothesis, ...]:
    """Distinct, non-empty hypotheses in CTranslate2's rank order (by length-normalised score).

    Different token sequences can decode to the same text; the first (best) one is kept.
    am_score is the sum of token log-probabilities (the end-of-text token included), recovered
    from CTranslate2's normalised score; avg_logprob is am_score per token.
    """
    seen: set[str] = set()
    out = []
    if not sequences or not tokenizer.decode(sequences[0]).strip():
        return ()  # an empty 1-best is silence, as in faster-whisper
    for tokens, score in zip(sequences, scores):
        text = " ".join(tokenizer.decode(tokens).split())
        if not text or text in seen:
            continue
        seen.add(text)
        length = max(len(tokens), 1)
        am = float(score) * length**length_penalty
        out.append(Hypothesis(text=text, am_score=am, avg_logprob=am / length, tokens=tuple(tokens)))
    return tuple(out)
