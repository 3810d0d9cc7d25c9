"""N-best decoding inside faster-whisper's own `transcribe()` loop.

faster-whisper's `WhisperModel.transcribe()` (seek loop, segments cut at timestamp
tokens, temperature fallback, prompt conditioning, no-speech skip, VAD, word
timestamps) runs unchanged on a shallow copy of the model whose CTranslate2
handle is a `RecordingModel`: every `generate` call goes through as
faster-whisper made it, so the 1-best is faster-whisper's, and is recorded.
For each window the call faster-whisper kept is found again; its alternatives
come from a wider beam (`nbest_beam_size`) on the same encoder output and
prompt (over the window, and over a segment it leaves short), or, when a
sampled temperature won, from that call's own samples.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cascade.config import AsrOptions

logger = logging.getLogger(__name__)


def faster_whisper_kwargs(options: AsrOptions) -> dict[str, Any]:
    """faster-whisper `transcribe()` arguments for these options (its defaults for the default options)."""
    kwargs: dict[str, Any] = {
        "task": options.task,
        "language": options.language,
        "beam_size": options.beam_size,
        "best_of": options.best_of,
        "patience": options.patience,
        "length_penalty": options.length_penalty,
        "temperature": temperatures(options),
        "compression_ratio_threshold": options.compression_ratio_threshold,
        "log_prob_threshold": options.log_prob_threshold,
        "no_speech_threshold": options.no_speech_threshold,
        "initial_prompt": options.initial_prompt,
        "condition_on_previous_text": options.condition_on_previous_text,
        "without_timestamps": options.without_timestamps,
        "word_timestamps": options.word_timestamps,
        "max_new_tokens": options.max_new_tokens,
        "vad_filter": options.vad_filter,
        "multilingual": options.detect_language_per_segment,
    }
    if options.vad_filter:
        kwargs["vad_parameters"] = {
            "min_silence_duration_ms": options.vad_min_silence_ms, "max_speech_duration_s": options.chunk_length,
        }
    return kwargs


def temperatures(options: AsrOptions) -> list[float]:
    """The fallback ladder: `temperature`, then up by `temperature_increment` to 1.0."""
    if options.temperature_increment is None:
        return [options.temperature]
    steps = int((1.0 - options.temperature) / options.temperature_increment + 1e-6)  # np.arange(t, 1 + 1e-6, inc)
    return [round(options.temperature + i * options.temperature_increment, 6) for i in range(steps + 1)]


@dataclass
class Call:
    """One CTranslate2 `generate` call made by faster-whisper, with its result."""

    encoder_output: Any
    prompt: list[int]
    kwargs: dict[str, Any]
    result: Any

    @property
    def temperature(self) -> float:
        """faster-whisper passes sampling_temperature only to its sampled (temperature > 0) decodes."""
        return float(self.kwargs.get("sampling_temperature", 0.0))

    def avg_logprob(self) -> float:
        """faster-whisper's figure for the best sequence (sum log-prob / (tokens + 1)), computed as it does."""
        tokens = self.result.sequences_ids[0]
        seq_len = len(tokens)
        cum_logprob = self.result.scores[0] * (seq_len ** self.kwargs.get("length_penalty", 1))
        return cum_logprob / (seq_len + 1)


@dataclass
class RecordingModel:
    """The CTranslate2 Whisper handle, passing every call through and recording each window's decodes."""

    model: Any
    window: int = 0
    """Incremented by every `encode`: faster-whisper encodes each window once, before decoding it."""
    calls: list[Call] = field(default_factory=list)
    language: str | None = None
    """The last language detected (per-window detection of mixed-language audio)."""
    hypotheses: int = 1
    """num_hypotheses for faster-whisper's beam-search calls (> 1 only when no wider beam fills the N-best)."""
    sampler: Any = None
    """cascade.asr.seeded.Sampler: the fallback's sampled calls, seeded per window (None: on the shared model, unseeded)."""
    encoder_min_frames: int | None = None
    """AsrOptions.encoder_min_s in mel frames: a window is encoded at its own length (None: all 3000 frames)."""

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)

    def encode(self, features, to_cpu: bool = False):
        self.window += 1
        self.calls = []
        if self.encoder_min_frames is not None:
            features = trimmed(features, self.encoder_min_frames)
        return self.model.encode(features, to_cpu=to_cpu)

    def detect_language(self, encoder_output, *args, **kwargs):
        results = self.model.detect_language(encoder_output, *args, **kwargs)
        self.language = results[0][0][0][2:-2]
        return results

    def generate(self, encoder_output, prompts, **kwargs):
        if "sampling_temperature" not in kwargs and self.hypotheses > 1:
            kwargs["num_hypotheses"] = min(self.hypotheses, kwargs.get("beam_size", 1))
        if "sampling_temperature" in kwargs and self.sampler is not None:
            results = self.sampler.generate(self.window, encoder_output, prompts, **kwargs)
        else:
            results = self.model.generate(encoder_output, prompts, **kwargs)
        self.calls.append(Call(encoder_output, list(prompts[0]), dict(kwargs), results[0]))
        return results


_PAD_FRAMES = 100
"""Frames of padding kept after a trimmed window's audio (1 s: the encoder still sees where speech ends)."""


def trimmed(features, min_frames: int):
    """A window's log-mel features (faster-whisper pads them to 3000 frames with zero columns) cut to the frames
    that hold audio, plus 1 s, at least `min_frames`, an even count (the encoder halves it): what the encoder
    reads. CPU features only (the encoder's input is built on the host)."""
    import ctranslate2

    array = np.asarray(features)
    if array.ndim == 2:
        array = array[None]
    held = np.flatnonzero(np.abs(array).sum(axis=(0, 1)) > 0)
    keep = min(array.shape[-1], max(min_frames, (int(held[-1]) + 1 if held.size else 0) + _PAD_FRAMES))
    keep += keep % 2
    if keep >= array.shape[-1]:
        return features
    return ctranslate2.StorageView.from_array(np.ascontiguousarray(array[..., :keep]))


def recording_copy(whisper, options: AsrOptions) -> tuple[Any, RecordingModel]:
    """A shallow copy of a faster_whisper.WhisperModel whose CTranslate2 calls are recorded (thread-safe per copy)."""
    recorder = RecordingModel(whisper.model)
    if options.encoder_min_s is not None:
        recorder.encoder_min_frames = round(options.encoder_min_s * 100)
    if options.nbest_beam_size <= options.beam_size:
        recorder.hypotheses = options.n_best  # the N-best comes from faster-whisper's own beam
    clone = copy.copy(whisper)
    clone.model = recorder
    return clone, recorder


def kept_call(calls: list[Call], tokens: list[int], avg_logprob: float) -> Call | None:
    """The call whose best sequence faster-whisper turned into this segment (the fallback may keep an earlier one)."""
    for call in reversed(calls):
        best = call.result.sequences_ids[0] if call.result.sequences_ids else []
        if call.avg_logprob() == avg_logprob and _contains(best, tokens):
            return call
    return None


def _contains(seq: list[int], part: list[int]) -> bool:
    n = len(part)
    return any(seq[i : i + n] == part for i in range(len(seq) - n + 1))


def own_sequences(call: Call) -> list[tuple[list[int], float]]:
    """(tokens, per-token log-prob) of the call's own hypotheses, best first (a sampled window's N-best)."""
    lp = call.kwargs.get("length_penalty", 1)
    return [(list(s), _per_token(sc, len(s), lp)) for s, sc in zip(call.result.sequences_ids, call.result.scores)]


def wide_continuations(
    model, call: Call, options: AsrOptions, no_timestamps: int, prefix: list[int], length: int
) -> list[tuple[list[int], float]]:
    """(tokens after `prefix`, per-token log-prob) from a `nbest_beam_size` beam over one segment.

    The window is decoded again on the same encoder output and prompt, without timestamp tokens
    (with them most beams differ only in a timestamp), forced through `prefix` (the 1-best's text
    before the segment) so that the whole beam goes to this segment, and stopped a few tokens
    after its end. CTranslate2 returns the prefix with each sequence; it is cut off here, and the
    per-token log-prob is over the generated tokens (the segment and the few after it).
    """
    lp = call.kwargs.get("length_penalty", 1)
    prompt = call.prompt if no_timestamps in call.prompt else call.prompt + [no_timestamps]
    bound = len(prompt) + len(prefix) + length + CONTEXT_TOKENS
    kwargs = {**call.kwargs, "beam_size": options.nbest_beam_size, "num_hypotheses": options.nbest_beam_size}
    kwargs["max_length"] = min(call.kwargs.get("max_length", 448), 2 * bound)  # CTranslate2 returns about half
    result = model.generate(call.encoder_output, [prompt + prefix], **kwargs)[0]
    return [(list(s[len(prefix) :]), _per_token(sc, len(s), lp, len(s) - len(prefix)))
            for s, sc in zip(result.sequences_ids, result.scores)]


CONTEXT_TOKENS = 8
"""Tokens decoded past a segment's end, so the alignment sees where the next one starts."""


def uses_wide_beam(call: Call, options: AsrOptions) -> bool:
    """A second, wider decode fills the N-best: only when more than the 1-best is kept (n_best > 1)."""
    return options.n_best > 1 and call.temperature == 0 and options.nbest_beam_size > call.kwargs.get("beam_size", 1)


def _per_token(score: float, length: int, length_penalty: float, generated: int | None = None) -> float:
    """Mean log-prob of the generated tokens: CTranslate2 normalises by the whole length (forced
    prefix included, length_penalty applied) but sums the log-probs of generated tokens only."""
    generated = length if generated is None else generated
    return float(score) * max(length, 1) ** length_penalty / max(generated, 1)


PREVIOUS_TOKENS = 64
"""Text tokens before a segment given to its own decode as the previous-text prompt (where the speech is in the window)."""

SEGMENT_CONTEXT = 2
"""Tokens decoded past a segment's end by its own decode (dev: 2 and 8 gave the same o_nb, 2 is cheaper)."""


def segment_starts(model, call: Call, options: AsrOptions, tokenizer, best: list[int],
                   spans: list[tuple[int, int]]) -> dict[tuple[int, int], tuple[list[tuple[list[int], float]], bool]]:
    """(tokens from the segment's start, per-token log-prob) of a `nbest_beam_size` beam started at each segment's own
    start timestamp, keyed by its (start, end) in `best`, and whether the decode ran to its end (False: it stopped a
    few tokens past the segment, which are no part of it); the window's segments in one batched call (two: the first
    one starts without timestamps, as CTranslate2 wants one kind of start per batch).

    Whisper transcribes from a timestamp token given in the prompt, so the beam is spent on this segment alone, at
    the cost of its own tokens; the 1-best's text before it (the window's and the window's previous text) is the
    previous-text prompt, which CTranslate2 reads in one step, so the decode starts at the right words; timestamps are
    suppressed after that start, or most of the beam differs only in the segment's end time. A prompt
    forced through that text instead (the `window` search) costs one step per token: O(window²) per window.
    CTranslate2 wants the start of transcript at one position in a batch: the previous text is cut to one length
    (segments at the very start of the audio, with none, go in a call of their own).
    """
    prev = _previous(call.prompt, tokenizer)
    have = [len(prev) + a for a, _ in spans]
    keep = min([PREVIOUS_TOKENS] + [n for n in have if n > 0])
    groups: dict[tuple[int, bool], list[tuple[tuple[int, int], list[int]]]] = {}
    for (a, b), n in zip(spans, have):
        before = (prev + best[:a])[-keep:] if n else []
        start = best[a] if a > 0 and best[a] >= tokenizer.timestamp_begin else tokenizer.no_timestamps
        prompt = ([tokenizer.sot_prev, *before] if before else []) + list(tokenizer.sot_sequence) + [start]
        groups.setdefault((len(prompt), start == tokenizer.no_timestamps), []).append(((a, b), prompt))
    lp = call.kwargs.get("length_penalty", 1)
    beam = options.nbest_beam_size
    out = {}
    for (length, plain), items in groups.items():
        steps = max(len(_text(best[a:b], tokenizer)) for (a, b), _ in items) + SEGMENT_CONTEXT + 1
        # CTranslate2 returns at most max_length / 2 tokens, and at most max_length - the prompt's + 2; a window of
        # one segment (a short clip) is decoded to its end, as the 1-best was
        bound = min(448, max(2 * steps, steps + length))
        whole = [span for span, _ in items] == [spans[-1]]
        kwargs = {**call.kwargs, "beam_size": beam, "num_hypotheses": beam, "max_initial_timestamp_index": 1500,
                  "max_length": call.kwargs.get("max_length", 448) if whole else bound}
        if not plain and not whole:
            kwargs["suppress_tokens"] = [*call.kwargs.get("suppress_tokens", [-1]), *range(tokenizer.timestamp_begin,
                                                                                          tokenizer.timestamp_begin + 1501)]
        for ((a, b), prompt), result in zip(items, _generate_each(model, call.encoder_output, [p for _, p in items], kwargs)):
            out[(a, b)] = ([_after(list(s), prompt[-1], sc, lp) for s, sc in zip(result.sequences_ids, result.scores)],
                           whole)
    return out


def _after(seq: list[int], start: int, score: float, length_penalty: float) -> tuple[list[int], float]:
    """A sequence without its forced start token (CTranslate2 returns a forced timestamp with it), with its per-token log-prob."""
    if seq and seq[0] == start:
        return seq[1:], _per_token(score, len(seq), length_penalty, len(seq) - 1)
    return seq, _per_token(score, len(seq), length_penalty)


def _text(tokens: list[int], tokenizer) -> list[int]:
    return [t for t in tokens if t < tokenizer.eot]


def _previous(prompt: list[int], tokenizer) -> list[int]:
    """The previous-text tokens of faster-whisper's prompt ([sot_prev, *previous, *sot_sequence, ...])."""
    if not prompt or prompt[0] != tokenizer.sot_prev:
        return []
    return list(prompt[1 : prompt.index(tokenizer.sot_sequence[0])])


def _generate_each(model, encoder_output, prompts: list[list[int]], kwargs: dict) -> list:
    """One generate call for several prompts over the same encoder output (CTranslate2 wants one output per prompt:
    repeated on the CPU; on a GPU, whose outputs numpy cannot read, one call each)."""
    if len(prompts) == 1:
        return model.generate(encoder_output, prompts, **kwargs)
    if getattr(encoder_output, "device", "cpu") != "cpu":
        return [model.generate(encoder_output, [p], **kwargs)[0] for p in prompts]
    import ctranslate2
    import numpy as np

    repeated = ctranslate2.StorageView.from_array(np.repeat(np.asarray(encoder_output), len(prompts), axis=0))
    return model.generate(repeated, prompts, **kwargs)
