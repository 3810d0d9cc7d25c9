"""Batched long-file mode (`asr.batched`, `--batched`): faster-whisper's BatchedInferencePipeline, timestamps done right.

Silero VAD cuts the audio into chunks of speech (up to `batch_chunk_s` s, 30 as the pipeline), and `batch_size` chunks
are encoded and decoded in one CTranslate2 call, as faster-whisper's pipeline does. Its default decode has no
timestamp tokens (one segment per chunk), and then tiny.en skips whole sentences of a 30-s chunk (speechocean762 dev
as one file: runs of 44 reference words missing, WER 36.16 against sequential 30.18). With timestamps
(`batch_timestamps`, the default) the pipeline drops the speech after the last segment Whisper opens; here it is
decoded in one more batched call, and a chunk that fails the thresholds gets the sequential loop's temperature
fallback (speechocean762 dev 31.03). No conditioning on the previous chunk, unless `batch_context`: the chunks are
then split into runs of neighbours decoded in lockstep, each chunk with its run's text so far as the prompt. With
n_best > 1, one more batched call at the N-best's beam over the same encoder output gives every chunk its
alternatives (segments.py cuts them per segment).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from pathlib import Path
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from cascade.asr.decode import PREVIOUS_TOKENS, Call, own_sequences
from cascade.asr.segments import cut_points, per_segment
from cascade.config import AsrOptions
from cascade.types import Segment


@dataclass
class BatchRecorder:
    """The CTranslate2 Whisper handle, keeping the last batched decode (encoder output, prompts, kwargs, results)."""

    model: Any
    last: tuple | None = None
    prompts: Callable[[list], list] | None = None
    """Rewrites the batch's prompts before the decode (batch_context: each row's own previous text)."""
    on_batch: Callable[[tuple], None] | None = None
    """Called with each batch as it is decoded (the N-best reads it there: with batch_context the segments come
    out only after the last batch)."""

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)

    def generate(self, encoder_output, prompts, **kwargs):
        if self.prompts is not None:
            prompts = self.prompts(prompts)
        results = self.model.generate(encoder_output, prompts, **kwargs)
        self.last = (encoder_output, [list(p) for p in prompts], dict(kwargs), results)
        if self.on_batch is not None:
            self.on_batch(self.last)
        return results


def _pipeline_class():
    """faster-whisper's BatchedInferencePipeline, with Whisper's timestamp tokens done as its sequential loop does them.

    Without timestamps (the pipeline's default) a 30-s chunk is one segment, and Whisper skips whole sentences in
    it (speechocean762 dev as one file: runs of 44 reference words missing). With timestamps, Whisper ends a chunk's
    decode by opening a segment (two timestamps) when speech runs on: it learned from 30-s windows whose last
    sentence was cut. faster-whisper's sequential loop seeks to that timestamp and decodes again; the pipeline drops
    the rest of the chunk. Here those rests are decoded in one more batched call over the same encoder output,
    each from its own timestamp with the chunk's text as the previous-text prompt (decode.segment_starts' way)."""
    from faster_whisper import BatchedInferencePipeline
    from faster_whisper.transcribe import get_compression_ratio

    class Pipeline(BatchedInferencePipeline):
        fallback: tuple[float, ...] = ()
        """The temperatures a chunk whose decode fails the thresholds is decoded again at (sequential's fallback)."""
        sampler: Any = None
        """seeded.Sampler: the fallback's samples are the same on every run (asr.seed)."""
        chunks = 0
        sections = 0
        """batch_context: the chunks are split into this many runs of neighbours, decoded in lockstep (0: off;
        -n: at most n runs of at least CONTEXT_RUN chunks)."""
        hot: set = set()
        """Rows of the last forward whose fallback went above prompt_reset_on_temperature (their run's text resets)."""
        done: Iterator | None = None

        def _batched_segments_generator(self, features, tokenizer, chunks_metadata, batch_size, options, log_progress):
            if self.sections and len(features):
                self.done = iter(self._in_context(features, tokenizer, chunks_metadata, options))
            try:  # the pipeline's own loop; with sections its forward hands out the chunks decoded above, in order
                yield from super()._batched_segments_generator(
                    features, tokenizer, chunks_metadata, batch_size, options, log_progress)
            finally:
                self.done = None

        def _in_context(self, features, tokenizer, chunks_metadata, options) -> list[list[dict]]:
            """Each chunk's pieces, the chunks decoded in interleaved runs: step k decodes chunk k of every run,
            each with the text its run has so far as the previous-text prompt, as the sequential loop conditions."""
            sections = self.sections if self.sections > 0 else max(1, min(-self.sections, len(features) // CONTEXT_RUN))
            runs = np.array_split(np.arange(len(features)), min(sections, len(features)))
            texts: list[list[int]] = [[] for _ in runs]
            out: list[list[dict]] = [[] for _ in features]
            recorder, eot, begin = self.model.model, tokenizer.eot, tokenizer.timestamp_begin
            for k in range(max(len(r) for r in runs)):
                live = [j for j, r in enumerate(runs) if k < len(r)]
                rows = [int(runs[j][k]) for j in live]
                recorder.prompts = lambda prompts, live=live: with_context(prompts, [texts[j] for j in live], tokenizer)
                self.last_speech_timestamp = 0.0  # the rows are not in time order across batches
                try:
                    found = self.forward(features[rows], tokenizer, [chunks_metadata[i] for i in rows], options)
                finally:
                    recorder.prompts = None
                for n, (j, i, pieces) in enumerate(zip(live, rows, found)):
                    out[i] = pieces
                    # with the timestamp tokens, as the sequential loop's prompt (text alone: run-on segments, loops);
                    # a chunk decoded hotter than prompt_reset_on_temperature starts its run's text afresh after it
                    text = [t for p in pieces for t in p["tokens"] if t < eot or t >= begin]
                    texts[j] = [] if n in self.hot else texts[j] + text
            return out

        def forward(self, features, tokenizer, chunks_metadata, options):
            if self.done is not None:
                return [next(self.done) for _ in chunks_metadata]
            self.hot = set()
            out = super().forward(features, tokenizer, chunks_metadata, replace(options, word_timestamps=False))
            encoder_output, prompts, kwargs, results = self.model.model.last
            tokens = [list(r.sequences_ids[0]) for r in results]
            failed = [i for i, pieces in enumerate(out) if self.fallback and _fails(pieces, tokenizer, options)]
            if failed:  # as faster-whisper's sequential loop: again at each fallback temperature, one chunk at a time
                raw = copy.copy(self.model)
                for i, rows in zip(failed, self._rows(encoder_output, features, failed, one_each=True)):
                    # not recorded (the batch's N-best reads the batched call); samples seeded per chunk
                    raw.model = _Fallback(self.model.model.model, self.sampler, self.chunks + i)
                    result, avg, temperature, _ = raw.generate_with_fallback(
                        rows, prompts[i], tokenizer, replace(options, temperatures=list(self.fallback)))
                    if temperature > options.prompt_reset_on_temperature:
                        self.hot.add(i)
                    tokens[i] = list(result.sequences_ids[0])
                    out[i] = self._pieces(tokenizer, tokens[i], chunks_metadata[i], avg, result.no_speech_prob)
            self.chunks += len(out)
            if not options.without_timestamps:
                self._rests(out, features, tokenizer, chunks_metadata, encoder_output, kwargs, tokens)
            if options.word_timestamps:  # after the rests: their words are aligned with the whole chunk's
                sizes = [int(np.ceil(m["duration"]) * self.model.frames_per_second) for m in chunks_metadata]
                self.last_speech_timestamp = self.model.add_word_timestamps(
                    out, tokenizer, encoder_output, sizes, options.prepend_punctuations,
                    options.append_punctuations, self.last_speech_timestamp)
            return out

        def _rows(self, encoder_output, features, rows: list[int], one_each: bool = False) -> list:
            """These chunks' encoder output (numpy cannot read a GPU's: those chunks are encoded again)."""
            groups = [[i] for i in rows] if one_each else [rows]
            if getattr(encoder_output, "device", "cpu") != "cpu":
                return [self.model.encode(features[g]) for g in groups]
            import ctranslate2

            whole = np.asarray(encoder_output)
            return [ctranslate2.StorageView.from_array(np.ascontiguousarray(whole[g])) for g in groups]

        def _pieces(self, tokenizer, tokens: list[int], meta: dict, avg_logprob: float, no_speech_prob: float) -> list[dict]:
            """A chunk's segments from its tokens, as BatchedInferencePipeline.forward makes them."""
            frames = self.model.frames_per_second
            pieces, _, _ = self.model._split_segments_by_timestamps(
                tokenizer=tokenizer, tokens=tokens, time_offset=meta["offset"],
                segment_size=int(np.ceil(meta["duration"]) * frames), segment_duration=meta["duration"], seek=0)
            return [dict(text=tokenizer.decode(p["tokens"]), avg_logprob=avg_logprob, no_speech_prob=no_speech_prob,
                         tokens=p["tokens"], start=p["start"], end=p["end"], seek=int(meta["offset"] * frames),
                         compression_ratio=get_compression_ratio(tokenizer.decode(p["tokens"]))) for p in pieces]

        def _rests(self, out, features, tokenizer, chunks_metadata, encoder_output, kwargs, tokens) -> None:
            begin, step = tokenizer.timestamp_begin, self.model.time_precision
            rests = [i for i, t in enumerate(tokens) if _opened(t, begin)
                     and chunks_metadata[i]["duration"] - (t[-1] - begin) * step >= MIN_REST_S]
            if not rests:
                return
            befores = [[t for t in tokens[i] if t < tokenizer.eot] for i in rests]
            keep = min([PREVIOUS_TOKENS] + [len(b) for b in befores])  # CTranslate2: one start position per batch
            prompts = [([tokenizer.sot_prev, *b[-keep:]] if keep else []) + list(tokenizer.sot_sequence) + [tokens[i][-1]]
                       for b, i in zip(befores, rests)]
            rows = self._rows(encoder_output, features, rests)[0]
            found = self.model.model.model.generate(rows, prompts, **{**kwargs, "max_initial_timestamp_index": 1500})
            lp = kwargs.get("length_penalty", 1)
            for i, before, result in zip(rests, befores, found):
                start = (tokens[i][-1] - begin) * step
                rest = _unrepeated(before, [t for t in result.sequences_ids[0] if t < begin])
                text = tokenizer.decode(rest)
                if not text.strip():
                    continue
                meta, n = chunks_metadata[i], len(result.sequences_ids[0])
                no_speech = out[i][0]["no_speech_prob"] if out[i] else 0.0
                out[i].append(dict(
                    text=text, tokens=rest, avg_logprob=result.scores[0] * n**lp / (n + 1), no_speech_prob=no_speech,
                    start=meta["offset"] + start, end=meta["offset"] + meta["duration"],
                    compression_ratio=get_compression_ratio(text), seek=int(meta["offset"] * self.model.frames_per_second)))

    return Pipeline


@dataclass
class _Fallback:
    """The CTranslate2 handle for one chunk's fallback: sampled decodes through the seeded sampler."""

    model: Any
    sampler: Any
    window: int

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)

    def generate(self, encoder_output, prompts, **kwargs):
        if kwargs.get("sampling_temperature", 0) > 0 and self.sampler is not None:
            return self.sampler.generate(self.window, encoder_output, prompts, **kwargs)
        return self.model.generate(encoder_output, prompts, **kwargs)


CONTEXT_RUN = 4
"""batch_context with batch_sections 0: runs hold at least this many chunks (a file of fewer than 2 x 4 chunks is one
run, decoded a chunk at a time; librispeech-test-other dev, 5 chunks, WER 1 / 2 / 3 runs: 7.71 / 9.04 / 8.24)."""

CONTEXT_TOKENS = 223
"""Previous-text tokens a chunk is conditioned on at most (faster-whisper's get_prompt: max_length // 2 - 1)."""


def with_context(prompts: list[list[int]], texts: list[list[int]], tokenizer) -> list[list[int]]:
    """The batch's prompts, each with its own previous text (the initial prompt first). CTranslate2 needs the
    <|startoftranscript|> token at one position in a batch, so every row keeps as many tokens as the shortest has."""
    heads, tails = [], []
    for prompt, text in zip(prompts, texts):
        sot = prompt.index(tokenizer.sot)
        heads.append((prompt[1:sot] if sot else []) + list(text))
        tails.append(prompt[sot:])
    keep = min([CONTEXT_TOKENS] + [len(h) for h in heads])
    return [([tokenizer.sot_prev, *h[len(h) - keep:]] if keep else []) + t for h, t in zip(heads, tails)]


def _fails(pieces: list[dict], tokenizer, options) -> bool:
    """Whether a chunk's decode fails faster-whisper's fallback thresholds (too repetitive, or too unlikely unless
    it is silence)."""
    if not pieces:
        return False
    from faster_whisper.transcribe import get_compression_ratio

    text = tokenizer.decode([t for p in pieces for t in p["tokens"]]).strip()
    avg, silent = pieces[0]["avg_logprob"], pieces[0]["no_speech_prob"]
    repetitive = options.compression_ratio_threshold is not None and get_compression_ratio(text) > options.compression_ratio_threshold
    unlikely = options.log_prob_threshold is not None and avg < options.log_prob_threshold
    silence = unlikely and options.no_speech_threshold is not None and silent > options.no_speech_threshold
    return repetitive or (unlikely and not silence)


def _opened(tokens: list[int], begin: int) -> bool:
    """Whether a timestamped decode ended by opening a segment it did not transcribe."""
    return len(tokens) >= 2 and tokens[-2] >= begin and tokens[-1] >= begin


MIN_REST_S = 0.3
"""Rests shorter than this hold no word worth a decode."""


def _unrepeated(text: list[int], rest: list[int]) -> list[int]:
    """The rest's tokens without the words it repeats from the end of the chunk's text (its start timestamp may lie
    before the last words the chunk's decode gave)."""
    for k in range(min(len(text), len(rest), 16), 0, -1):
        if text[-k:] == rest[:k]:
            return rest[k:]
    return rest


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
        "without_timestamps": not options.batch_timestamps,
    }


def pipeline(clone, options: AsrOptions, home: Path | None):
    """Our BatchedInferencePipeline over this model copy, with the sequential loop's fallback temperatures."""
    from cascade.asr import seeded
    from cascade.asr.decode import temperatures

    run = _pipeline_class()(clone)
    # negative: as many runs as keep CONTEXT_RUN chunks each, at most batch_size
    run.sections = (options.batch_sections or -options.batch_size) if options.batch_context else 0
    run.fallback = tuple(temperatures(options)[1:]) if options.batch_timestamps else ()
    run.sampler = seeded.sampler(options, home) if run.fallback and home is not None else None
    return run


def transcribe_batched(whisper, samples: np.ndarray, options: AsrOptions, home: Path | None = None):
    """(faster-whisper's segment generator, its info, a function turning them into our Segments)."""
    clone = copy.copy(whisper)
    recorder = clone.model = BatchRecorder(whisper.model)
    fw_segments, fw_info = pipeline(clone, options, home).transcribe(samples, **pipeline_kwargs(options))
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
    nbests: dict = {}

    def on_batch(batch: tuple) -> None:  # a batch was decoded: its chunks' N-best in one more call
        if not options.batch_context:
            nbests.clear()
        nbests.update(batch_nbests(clone, recorder.model, tokenizer, batch, options))

    recorder.on_batch = on_batch
    for seg in fw_segments:
        if not seg.text.strip():
            continue
        hyps = nbests.get(tuple(seg.tokens)) or _only_best(seg)
        hyps, flag = check(seg, hyps, None, options, "looped" in _flags(seg, options))
        yield seg, hyps, flag


def transcribe_clips(whisper, clips: list[np.ndarray], options: AsrOptions, home: Path | None = None,
                     like_alone: bool = False) -> tuple[list[list[Segment]], Any]:
    """Several short recordings (each at most chunk_length s) decoded together: each is one chunk of the
    batched pipeline (its clip_timestamps over their concatenation, no VAD), so batch_size files share a
    CTranslate2 call. Each recording's segments, with its own times; and the pipeline's info. like_alone: decoded
    as the sequential loop decodes a clip (timestamps, the fallback), so each text is, as a rule, the one it gets
    alone (the ASR service); otherwise the pipeline's own decode (100 speechocean762 dev files: WER 59.19, where
    timestamps without the fallback loop, 105.97, and with it cost 1.2x the CPU, 62.53)."""
    from cascade.asr import _segment, within

    edges = np.cumsum([0] + [len(c) for c in clips])
    starts = edges[:-1] / SAMPLE_RATE
    # half a sample in: faster-whisper truncates seconds * 16000 to a sample, and float error could move a clip's
    # bounds one sample back, their sum past the audio's duration (its assert: "non-negative timestamp expected")
    stamps = [{"start": (a + 0.5) / SAMPLE_RATE, "end": (b + 0.5) / SAMPLE_RATE} for a, b in zip(edges[:-1], edges[1:])]
    clone = copy.copy(whisper)
    recorder = clone.model = BatchRecorder(whisper.model)
    kwargs = {**pipeline_kwargs(options), "vad_filter": False, "clip_timestamps": stamps, "chunk_length": options.chunk_length}
    run = pipeline(clone, options, home)
    run.sections = 0  # separate recordings: none is conditioned on another's text
    if not like_alone:  # the pipeline's own decode (no timestamps, no fallback): short clips skip nothing, cheapest
        kwargs["without_timestamps"], run.fallback = True, ()
    fw_segments, fw_info = run.transcribe(np.concatenate(clips), **kwargs)
    out: list[list[Segment]] = [[] for _ in clips]
    for seg, hyps, flag in _decoded(clone, recorder, fw_segments, fw_info, options):
        # the chunk the segment came from (its seek), not its start: word times may put that a hair before the chunk
        i = int(np.searchsorted(starts, seg.seek / clone.frames_per_second + 0.015, side="right")) - 1
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
