"""Whisper N-best recognition: `transcribe(audio, options, home=...)` -> (segments, info).

faster-whisper's own `transcribe()` does the work (audio, log-mel features,
language detection, the seek loop that cuts segments at Whisper's timestamp
tokens, temperature fallback, optional Silero VAD, word timestamps), so every
segment's 1-best, times and boundaries are faster-whisper's; decode.py records
its CTranslate2 calls and fills each segment's `nbest` from a wider beam over
the same window (segments.py cuts the window's hypotheses per segment).
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from cascade.asr.decode import (
    faster_whisper_kwargs,
    kept_call,
    own_sequences,
    recording_copy,
    segment_starts,
    uses_wide_beam,
    wide_continuations,
)
from cascade.asr import seeded
from cascade.asr.hallucination import check, window_evidence
from cascade.asr.segments import cut_points, per_segment, text_tokens
from cascade.audio import AudioSource, load_audio
from cascade.config import AsrOptions
from cascade.types import (
    AsrInfo,
    Hallucination,
    InvalidInput,
    NBest,
    Segment,
    StageInfo,
    TooLarge,
    Transcript,
    Unsupported,
    Word,
)

SAMPLE_RATE = 16000

logger = logging.getLogger(__name__)

__all__ = ["best_only", "collect", "load_model", "prepare", "transcribe", "transcribe_all", "transcribe_files", "transcribe_many", "versions"]


def best_only(options: AsrOptions) -> AsrOptions:
    """These options decoding the 1-best alone, at faster-whisper's cost (the same CTranslate2 calls): what a
    caller asks for when nothing reads the alternatives (text output with no correction that reads them)."""
    return options.model_copy(update={"n_best": 1, "nbest_beam_size": options.beam_size})


def load_model(options: AsrOptions, home: Path):
    """The cached faster_whisper.WhisperModel named by the options."""
    from cascade import models

    key = (options.model, str(home), options.device, options.compute_type, options.cpu_threads)
    return models.cached("whisper", key, lambda: _load_whisper(options, Path(home)))


def _load_whisper(options: AsrOptions, home: Path):
    from cascade import models
    from cascade.types import ModelNotFound

    try:
        from faster_whisper import WhisperModel
    except ImportError as exc:  # pragma: no cover
        raise ModelNotFound("faster-whisper is not installed: pip install faster-whisper") from exc
    path = models.whisper_dir(options.model, home)
    logger.info("loading whisper %s from %s (%s, %s)", options.model, path, options.device, options.compute_type)
    return WhisperModel(str(path), device=options.device, compute_type=options.compute_type,
                        cpu_threads=options.cpu_threads, local_files_only=True)


def versions() -> dict[str, str]:
    import ctranslate2
    import faster_whisper

    return {"faster-whisper": faster_whisper.__version__, "ctranslate2": ctranslate2.__version__}


def _samples(audio: AudioSource | np.ndarray, options: AsrOptions) -> np.ndarray:
    if isinstance(audio, np.ndarray):
        if audio.ndim != 1:
            raise InvalidInput(f"audio array must be mono (1-D), got shape {audio.shape}", param="file")
        if len(audio) / SAMPLE_RATE > options.max_duration_s:
            raise TooLarge(f"audio is {len(audio) / SAMPLE_RATE:.0f} s long, above the {options.max_duration_s:.0f} s limit")
        return np.ascontiguousarray(audio, dtype=np.float32)
    return load_audio(audio, max_duration_s=options.max_duration_s)


def prepare(options: AsrOptions, home: Path):
    """Load the model and check that it can run these options (fail once, before any file)."""
    whisper = load_model(options, home)
    _check_task(whisper, options)
    _check_language(whisper, options)
    return whisper


def _check_task(whisper, options: AsrOptions) -> None:
    if options.task == "translate" and not whisper.model.is_multilingual:
        raise Unsupported(
            f"model {options.model!r} is English-only and cannot translate: use a multilingual model (--model base)",
            param="model",
        )


def _check_language(whisper, options: AsrOptions) -> None:
    """A language the model cannot decode is the caller's error (never silently decoded as English)."""
    if options.language is None:
        return
    if not whisper.model.is_multilingual and options.language != "en":
        raise InvalidInput(f"model {options.model!r} is English-only: language {options.language!r} is not supported "
                           "(omit it, pass en, or use a multilingual model such as base)", param="language")
    if whisper.model.is_multilingual and options.language not in whisper.supported_languages:
        raise InvalidInput(f"unknown language code {options.language!r}", param="language")


def transcribe(
    audio: AudioSource | np.ndarray, options: AsrOptions, *, home: Path, on_best: Callable[[str], None] | None = None
) -> tuple[Iterator[Segment], AsrInfo]:
    """Start transcribing: audio is decoded and its language detected now; the windows are
    decoded lazily as the returned iterator is consumed (decoding errors surface there).
    `on_best` gets each window's 1-best text before its N-best is decoded (the live turn starts its reply on it).
    """
    whisper = prepare(options, home)
    _check_language(whisper, options)
    samples = _samples(audio, options)
    info = {"task": options.task, "model": options.model, "options": options.model_dump(mode="json"),
            "versions": versions()}
    if samples.size == 0:
        return iter(()), AsrInfo(language=options.language or "en", duration=0.0, **info)
    if options.batched:
        return _batched(whisper, samples, options, info, home)
    clone, recorder = recording_copy(whisper, options)
    recorder.sampler = seeded.sampler(options, home)
    fw_segments, fw_info = clone.transcribe(samples, **faster_whisper_kwargs(options))
    asr_info = AsrInfo(
        language=fw_info.language,
        language_probability=float(fw_info.language_probability),
        duration=fw_info.duration,
        duration_after_vad=fw_info.duration_after_vad if options.vad_filter else None,
        **info,
    )
    return _segments(clone, recorder, fw_segments, fw_info.language, options, on_best, fw_info.duration), asr_info


def _batched(whisper, samples: np.ndarray, options: AsrOptions, info: dict, home: Path) -> tuple[Iterator[Segment], AsrInfo]:
    from cascade.asr.batched import transcribe_batched

    segments, fw_info = transcribe_batched(whisper, samples, options, home)
    return segments, AsrInfo(language=fw_info.language, language_probability=float(fw_info.language_probability),
                             duration=fw_info.duration, duration_after_vad=fw_info.duration_after_vad, **info)


def _segments(clone, recorder, fw_segments, language: str, options: AsrOptions,
              on_best: Callable[[str], None] | None = None, duration: float | None = None) -> Iterator[Segment]:
    """Our Segment for each of faster-whisper's, with the N-best of its window cut to it."""
    from faster_whisper.tokenizer import Tokenizer

    tokenizer = Tokenizer(clone.hf_tokenizer, recorder.model.is_multilingual, task=options.task, language=language)
    window, nbests = -1, {}
    for index, seg in enumerate(fw_segments):
        if recorder.window != window:
            window, call = recorder.window, kept_call(recorder.calls, seg.tokens, seg.avg_logprob)
            if on_best is not None and call is not None:
                on_best(" ".join(tokenizer.decode(text_tokens(tokenizer, call.result.sequences_ids[0])).split()))
            looped = "looped" in _flags(seg, options)  # its alternatives would loop too: not worth a wide decode
            nbests = _window_nbests(clone, tokenizer, call, options, looped) if call is not None else {}
            evidence = {} if options.hallucinations == "keep" else window_evidence(clone, tokenizer, call, recorder.calls)
            temperature = call.temperature if call is not None else seg.temperature
            lang = recorder.language if options.detect_language_per_segment and recorder.language else language
        hyps = nbests.get(tuple(seg.tokens)) or _only_best(seg)
        hyps, flag = check(seg, hyps, evidence.get(tuple(seg.tokens)), options, "looped" in _flags(seg, options))
        yield _segment(index, within(seg, duration), hyps, lang, temperature, options, flag)


def within(seg, duration: float | None):
    """faster-whisper's segment with its times clamped to the audio: the last window's closing timestamp token
    may lie past the end (the 9.9 s demo sample's last segment ended at 24.0 s)."""
    if duration is None or seg.end <= duration and all(w.end <= duration for w in seg.words or ()):
        return seg
    words = [replace(w, start=min(w.start, duration), end=min(w.end, duration)) for w in seg.words] if seg.words else seg.words
    return replace(seg, start=min(seg.start, duration), end=min(seg.end, duration), words=words)


def _window_nbests(clone, tokenizer, call, options: AsrOptions, looped: bool) -> dict[tuple[int, ...], tuple]:
    """Each segment's hypotheses in this window, keyed by the 1-best tokens faster-whisper gives the segment.

    nbest_search segments: one batched decode of the window's segments, each from its own start (decode.segment_starts).
    window: one wide decode of the window serves every segment; with `nbest_per_segment`, a later segment it
    leaves with fewer than `nbest_redecode_below` hypotheses gets its own decode, forced through the 1-best's
    text before it.
    """
    own = own_sequences(call)
    best = own[0][0]
    text = text_tokens(tokenizer, best)
    spans = [(a, b) for a, b in cut_points(clone, tokenizer, best) if tokenizer.decode(best[a:b]).strip()]
    wide = uses_wide_beam(call, options) and not looped
    model = clone.model.model
    if options.nbest_search == "segments" and wide:
        out = {}
        for (a, b), (alternatives, whole) in segment_starts(model, call, options, tokenizer, best, spans).items():
            offset = len(text_tokens(tokenizer, best[:a]))
            out[tuple(best[a:b])] = per_segment(tokenizer, own[0], (a, b), options.n_best, alternatives, offset, whole)
        return out
    alts = wide_continuations(model, call, options, tokenizer.no_timestamps, [], len(text)) if wide else own[1:]
    out = {}
    for a, b in spans:  # faster-whisper drops the empty ones
        hyps = per_segment(tokenizer, own[0], (a, b), options.n_best, alts, 0)
        if wide and options.nbest_per_segment and a > 0 and len(hyps) < min(options.nbest_redecode_below, options.n_best):
            offset = len(text_tokens(tokenizer, best[:a]))
            length = len(text_tokens(tokenizer, best[a:b]))
            own_alts = wide_continuations(model, call, options, tokenizer.no_timestamps, text[:offset], length)
            hyps = per_segment(tokenizer, own[0], (a, b), options.n_best, own_alts, offset)
        out[tuple(best[a:b])] = hyps
    return out


def _only_best(seg):
    from cascade.types import Hypothesis

    text = " ".join(seg.text.split())
    return (Hypothesis(text=text, avg_logprob=seg.avg_logprob, tokens=tuple(seg.tokens)),)


def _flags(seg, options: AsrOptions) -> tuple[str, ...]:
    """What the temperature fallback left unresolved (it only gives up after its last temperature)."""
    flags = []
    if options.compression_ratio_threshold is not None and seg.compression_ratio > options.compression_ratio_threshold:
        flags.append("looped")
    if options.log_prob_threshold is not None and seg.avg_logprob < options.log_prob_threshold:
        flags.append("low_logprob")
    return tuple(flags)


def _segment(index: int, seg, hyps: tuple, language: str, temperature: float, options: AsrOptions,
             hallucination: Hallucination | None = None) -> Segment:
    words = tuple(
        Word(start=round(w.start, 3), end=round(w.end, 3), word=w.word, probability=float(w.probability))
        for w in seg.words or ()
    ) if options.word_timestamps else None
    start, end = round(seg.start, 3), round(seg.end, 3)
    flags = _flags(seg, options)
    if "looped" in flags:
        logger.warning(
            "segment %.2f-%.2f s still repeats itself after the temperature fallback (compression ratio %.2f > %.2f): "
            "flagged 'looped'", start, end, seg.compression_ratio, options.compression_ratio_threshold,
        )
    return Segment(
        id=index,
        start=start,
        end=end,
        text=hyps[0].text,
        nbest=NBest(hypotheses=hyps, language=language, start=start, end=end, id=str(index)),
        avg_logprob=seg.avg_logprob,
        no_speech_prob=seg.no_speech_prob,
        words=words,
        temperature=temperature,
        compression_ratio=round(seg.compression_ratio, 4),
        flags=flags,
        hallucination=hallucination,
    )


def collect(segments: Iterator[Segment], info: AsrInfo, *, source: str | None, started: float) -> Transcript:
    """Consume a segment iterator into a Transcript (the CLI feeds it a progress-reporting iterator)."""
    collected = tuple(segments)
    stage = StageInfo(
        stage="asr",
        model=info.model,
        seconds=round(time.perf_counter() - started, 3),
        options=info.options,
        versions=info.versions,
    )
    return Transcript(
        text=" ".join(s.text for s in collected),
        segments=collected,
        language=info.language,
        language_probability=info.language_probability,
        task=info.task,
        model=info.model,
        duration=info.duration,
        source=source,
        stages=(stage,),
    )


def transcribe_files(paths: list[Path], options: AsrOptions, *, home: Path) -> Iterator[tuple[Path, Transcript | Exception]]:
    """Each file's Transcript (or the error that stopped it), in order. With `batched`, the files of at most
    chunk_length s go batch_size at a time through one batched decode (transcribe_many; for the 1-best, batch_size
    windows of packed clips); others one by one."""
    if not options.batched:
        for path in paths:
            yield path, _attempt(lambda path=path: transcribe_all(path, options, home=home))
        return
    prepare(options, home)  # a model that cannot run these options fails once, before any file
    size = options.batch_size * (options.pack_clips if packs(options) else 1)  # packed: batch_size windows of clips
    for i in range(0, len(paths), size):
        group = paths[i : i + size]
        audio = [_attempt(lambda p=p: _samples(p, options)) for p in group]
        yield from zip(group, transcribe_many(audio, options, home=home, sources=[str(p) for p in group]))


def transcribe_many(clips: list[np.ndarray | Exception], options: AsrOptions, *, home: Path,
                    sources: list[str] | None = None, like_alone: bool = False,
                    pack: bool | None = None) -> list[Transcript | Exception]:
    """Several recordings at once (the CLI's `--batched *.flac`, the ASR service's concurrent requests): those of at
    most chunk_length s share batched decodes, batch_size at a time (batched.transcribe_clips); longer ones are
    decoded one by one (transcribe_all). An Exception in `clips` (a file that did not decode), or one a recording
    raises, is its answer: one bad recording is reported, not fatal. like_alone: short clips decoded as alone
    (batched.transcribe_clips); otherwise, for the 1-best, several short clips share each window (packs). pack:
    whether they do (None: as packs() says, unless like_alone; with like_alone, a clip not packed or decoded again
    is decoded as alone)."""
    from cascade.asr.batched import transcribe_clips
    from cascade.asr.packed import transcribe_packed

    sources = sources or [None] * len(clips)
    done: list[Transcript | Exception | None] = [c if isinstance(c, Exception) else None for c in clips]
    short = [i for i, c in enumerate(clips) if isinstance(c, np.ndarray) and 0 < len(c) <= options.chunk_length * SAMPLE_RATE]
    packed = packs(options, (options.batched and not like_alone) if pack is None else pack)
    decode = transcribe_packed if packed else transcribe_clips
    size = options.batch_size * (options.pack_clips if packed else 1)
    for k in range(0, len(short), size):
        part, started = short[k : k + size], time.perf_counter()
        decoded = _attempt(lambda part=part: decode(prepare(options, home), [clips[i] for i in part], options, home, like_alone))
        for n, i in enumerate(part):
            done[i] = decoded if isinstance(decoded, Exception) else _clip_transcript(
                decoded, n, len(clips[i]) / SAMPLE_RATE, options, sources[i], started)
    return [d if d is not None else _attempt(lambda i=i: transcribe_all(clips[i], options, home=home, source=sources[i]))
            for i, d in enumerate(done)]


def packs(options: AsrOptions, asked: bool | None = None) -> bool:
    """Whether batched short clips share Whisper windows (asr.pack_clips; the 1-best only: alternatives keep a
    window per clip). `asked`: the caller's say (None: asr.batched)."""
    return (options.batched if asked is None else asked) and options.pack_clips > 1 and options.n_best == 1


def _clip_transcript(decoded, n: int, duration: float, options: AsrOptions, source: str | None, started: float) -> Transcript:
    clips, fw_info = decoded
    info = AsrInfo(language=fw_info.language, language_probability=float(fw_info.language_probability),
                   duration=duration, task=options.task, model=options.model, options=options.model_dump(mode="json"),
                   versions=versions())
    return collect(iter(clips[n]), info, source=source, started=started)


def _attempt(fn):
    """fn's result, or the exception it raised (one bad file among many is reported, not fatal)."""
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001
        return exc


def transcribe_all(
    audio: AudioSource | np.ndarray, options: AsrOptions, *, home: Path, source: str | None = None,
    on_best: Callable[[str], None] | None = None,
) -> Transcript:
    """Transcribe a whole file and collect its segments into a Transcript."""
    started = time.perf_counter()
    segments, info = transcribe(audio, options, home=home, on_best=on_best)
    if source is None and isinstance(audio, (str, Path)):
        source = str(audio)
    return collect(segments, info, source=source, started=started)
