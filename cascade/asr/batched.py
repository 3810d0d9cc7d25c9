"""Batched long-file mode (`asr.batched`, `--batched`): faster-whisper's own BatchedInferencePipeline.

Silero VAD cuts the audio into chunks of speech (up to `batch_chunk_s` s, 30 as the pipeline), and `batch_size` chunks are
encoded and decoded in one CTranslate2 call, as faster-whisper's pipeline does (its defaults: no
timestamp tokens, so one segment per chunk; no temperature fallback; no conditioning on the previous
chunk). The 1-best is the pipeline's. With n_best > 1, one more batched call at the N-best's beam over
the same encoder output gives every chunk its alternatives (segments.py cuts them per segment).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from cascade.asr.decode import Call, own_sequences
from cascade.asr.segments import cut_points, per_segment
from cascade.config import AsrOptions
from cascade.types import Segment


@dataclass
class BatchRecorder:
    """The CTranslate2 Whisper handle, keeping the last batched decode (encoder output, prompts, kwargs, results)."""

    model: Any
    last: tuple | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)

    def generate(self, encoder_output, prompts, **kwargs):
        results = self.model.generate(encoder_output, prompts, **kwargs)
        self.last = (encoder_output, [list(p) for p in prompts], dict(kwargs), results)
        return results


def pipeline_kwargs(options: AsrOptions) -> dict[str, Any]:
    """BatchedInferencePipeline.transcribe arguments for these options (its own defaults otherwise)."""
    return {
        "task": options.task, "language": options.language, "beam_size": options.beam_size,
        "patience": options.patience, "length_penalty": options.length_penalty, "temperature": options.temperature,
        "compression_ratio_threshold": options.compression_ratio_threshold,
        "log_prob_threshold": options.log_prob_threshold, "no_speech_threshold": options.no_speech_threshold,
        "initial_prompt": options.initial_prompt, "word_timestamps": options.word_timestamps,
        "max_new_tokens": options.max_new_tokens, "multilingual": options.detect_language_per_segment,
        "chunk_length": options.batch_chunk_s, "batch_size": options.batch_size, "vad_filter": True,
    }


def transcribe_batched(whisper, samples: np.ndarray, options: AsrOptions):
    """(faster-whisper's segment generator, its info, a function turning them into our Segments)."""
    from faster_whisper import BatchedInferencePipeline

    clone = copy.copy(whisper)
    recorder = clone.model = BatchRecorder(whisper.model)
    fw_segments, fw_info = BatchedInferencePipeline(clone).transcribe(samples, **pipeline_kwargs(options))
    return _segments(clone, recorder, fw_segments, fw_info, options), fw_info


def _segments(clone, recorder: BatchRecorder, fw_segments, fw_info, options: AsrOptions) -> Iterator[Segment]:
    from cascade.asr import _segment, within

    for index, (seg, hyps, flag) in enumerate(_decoded(clone, recorder, fw_segments, fw_info, options)):
        yield _segment(index, within(seg, fw_info.duration), hyps, fw_info.language, seg.temperature, options, flag)


def _decoded(clone, recorder: BatchRecorder, fw_segments, fw_info, options: AsrOptions) -> Iterator[tuple]:
    """(faster-whisper's segment, its hypotheses, its hallucination flag) for each segment with text."""
    from faster_whisper.tokenizer import Tokenizer

    from cascade.asr import _flags, _only_best
    from cascade.asr.hallucination import check

    tokenizer = Tokenizer(clone.hf_tokenizer, recorder.model.is_multilingual, task=options.task,
                          language=fw_info.language)
    seen, nbests = None, {}
    for seg in fw_segments:
        if recorder.last is not seen:  # a new batch was decoded: its chunks' N-best in one more call
            seen = recorder.last
            nbests = batch_nbests(clone, recorder.model, tokenizer, seen, options)
        if not seg.text.strip():
            continue
        hyps = nbests.get(tuple(seg.tokens)) or _only_best(seg)
        hyps, flag = check(seg, hyps, None, options, "looped" in _flags(seg, options))
        yield seg, hyps, flag


def transcribe_clips(whisper, clips: list[np.ndarray], options: AsrOptions) -> tuple[list[list[Segment]], Any]:
    """Several short recordings (each at most chunk_length s) decoded together: each is one chunk of the
    batched pipeline (its clip_timestamps over their concatenation, no VAD), so batch_size files share a
    CTranslate2 call. Each recording's segments, with its own times; and the pipeline's info."""
    from faster_whisper import BatchedInferencePipeline

    from cascade.asr import _segment, within

    starts = np.cumsum([0] + [len(c) for c in clips[:-1]]) / SAMPLE_RATE
    stamps = [{"start": float(a), "end": float(a + len(c) / SAMPLE_RATE)} for a, c in zip(starts, clips)]
    clone = copy.copy(whisper)
    recorder = clone.model = BatchRecorder(whisper.model)
    kwargs = {**pipeline_kwargs(options), "vad_filter": False, "clip_timestamps": stamps, "chunk_length": options.chunk_length}
    fw_segments, fw_info = BatchedInferencePipeline(clone).transcribe(np.concatenate(clips), **kwargs)
    out: list[list[Segment]] = [[] for _ in clips]
    for seg, hyps, flag in _decoded(clone, recorder, fw_segments, fw_info, options):
        i = int(np.searchsorted(starts, seg.start + 1e-3, side="right")) - 1
        local = within(_shifted(seg, float(starts[i])), len(clips[i]) / SAMPLE_RATE)
        out[i].append(_segment(len(out[i]), local, hyps, fw_info.language, seg.temperature, options, flag))
    return out, fw_info


SAMPLE_RATE = 16000


def _shifted(seg, offset: float):
    words = [replace(w, start=w.start - offset, end=w.end - offset) for w in seg.words] if seg.words else seg.words
    return replace(seg, start=max(seg.start - offset, 0.0), end=max(seg.end - offset, 0.0), words=words)


def batch_nbests(clone, model, tokenizer, batch: tuple, options: AsrOptions) -> dict[tuple[int, ...], tuple]:
    """Every segment's hypotheses in this batch of chunks, keyed by its tokens (as the pipeline gives them)."""
    encoder_output, prompts, kwargs, results = batch
    alternatives: list[list] = [[] for _ in prompts]
    if options.n_best > 1:
        beam = max(options.nbest_beam_size, options.n_best)
        wide = {**kwargs, "beam_size": beam, "num_hypotheses": beam}
        no_ts = tokenizer.no_timestamps
        wide_prompts = [p if no_ts in p else p + [no_ts] for p in prompts]
        found = model.generate(encoder_output, wide_prompts, **wide)
        alternatives = [own_sequences(Call(encoder_output, p, wide, r)) for p, r in zip(wide_prompts, found)]
    out = {}
    for prompt, result, alts in zip(prompts, results, alternatives):
        best = own_sequences(Call(encoder_output, prompt, kwargs, result))[0]
        for a, b in cut_points(clone, tokenizer, best[0]):
            out[tuple(best[0][a:b])] = per_segment(tokenizer, best, (a, b), options.n_best, alts, 0)
    return out
