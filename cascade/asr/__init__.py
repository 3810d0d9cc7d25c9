"""Whisper N-best recognition: `transcribe(audio, options, home=...)` -> (segments, info).

faster-whisper provides audio decoding, log-mel features, Silero VAD, the
tokenizer and language detection; CTranslate2's `generate(num_hypotheses=N)`
provides the N-best per window (see decode.py). Long audio is cut into
windows of at most 30 s (segments.py); each window becomes one `Segment`
whose `nbest` holds the ranked hypotheses and whose `text` is the 1-best.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from cascade.asr.decode import Decoded, DecodeState, decode_window, encode, word_timings
from cascade.asr.segments import SAMPLE_RATE, Window, windows
from cascade.audio import AudioSource, load_audio
from cascade.config import AsrOptions
from cascade.types import AsrInfo, InvalidInput, NBest, Segment, StageInfo, TooLarge, Transcript, Unsupported, Word

logger = logging.getLogger(__name__)

__all__ = ["transcribe", "transcribe_all", "collect", "prepare", "load_model", "versions"]


def load_model(options: AsrOptions, home: Path):
    """The cached faster_whisper.WhisperModel named by the options."""
    from cascade import models

    return models.load_whisper(options.model, Path(home), options.device, options.compute_type, options.cpu_threads)


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
    return whisper


def _check_task(whisper, options: AsrOptions) -> None:
    if options.task == "translate" and not whisper.model.is_multilingual:
        raise Unsupported(
            f"model {options.model!r} is English-only and cannot translate: use a multilingual model (--model base)",
            param="model",
        )


def _language(whisper, options: AsrOptions, first: Window | None, encoded) -> tuple[str, float | None]:
    """The language to decode in: given, English for English-only models, else detected on the first window."""
    if not whisper.model.is_multilingual:
        if options.language not in (None, "en"):
            logger.warning("model %s is English-only; ignoring language %r", options.model, options.language)
        return "en", 1.0
    if options.language is not None:
        if options.language not in whisper.supported_languages:
            raise InvalidInput(f"unknown language code {options.language!r}", param="language")
        return options.language, 1.0
    if first is None:
        return "en", None
    token, prob = whisper.model.detect_language(encoded)[0][0]
    return token[2:-2], float(prob)


def _state(whisper, options: AsrOptions, language: str) -> DecodeState:
    from faster_whisper.tokenizer import Tokenizer
    from faster_whisper.transcribe import get_suppressed_tokens

    tokenizer = Tokenizer(whisper.hf_tokenizer, whisper.model.is_multilingual, task=options.task, language=language)
    state = DecodeState(tokenizer=tokenizer, suppress_tokens=get_suppressed_tokens(tokenizer, [-1]))
    if options.initial_prompt:
        state.previous_tokens.extend(tokenizer.encode(" " + options.initial_prompt.strip()))
    return state


def transcribe(
    audio: AudioSource | np.ndarray, options: AsrOptions, *, home: Path
) -> tuple[Iterator[Segment], AsrInfo]:
    """Start transcribing: audio is decoded, segmented and its language detected now; the
    windows are decoded lazily as the returned iterator is consumed (decoding errors surface there).
    """
    whisper = prepare(options, home)
    samples = _samples(audio, options)
    wins, kept = windows(samples, options)
    first_encoded = encode(whisper, wins[0].audio) if wins else None
    language, probability = _language(whisper, options, wins[0] if wins else None, first_encoded)
    info = AsrInfo(
        language=language,
        language_probability=probability,
        duration=len(samples) / SAMPLE_RATE,
        duration_after_vad=kept if options.vad_filter else None,
        task=options.task,
        model=options.model,
        options=options.model_dump(mode="json"),
        versions=versions(),
    )
    return _segments(whisper, wins, first_encoded, _state(whisper, options, language), options), info


def _switch_language(whisper, encoded, state: DecodeState) -> None:
    token, _ = whisper.model.detect_language(encoded)[0][0]
    state.tokenizer.language = state.tokenizer.tokenizer.token_to_id(token)
    state.tokenizer.language_code = token[2:-2]


def _words(whisper, encoded, state: DecodeState, window: Window, decoded: Decoded) -> tuple[Word, ...]:
    timings = word_timings(whisper, state.tokenizer, encoded, decoded.hypotheses[0].tokens or (), len(window.audio))
    return tuple(
        Word(
            start=round(window.original_time(w["start"]), 3),
            end=round(window.original_time(w["end"]), 3),
            word=w["word"],
            probability=float(w["probability"]),
        )
        for w in timings
    )


def _segment(index: int, window: Window, decoded: Decoded, words: tuple[Word, ...] | None) -> Segment:
    """One window's record; with word timings its bounds shrink to the first and last word."""
    start, end = window.start, window.end
    if words:
        start, end = max(start, words[0].start), min(end, max(words[-1].end, words[0].start + 0.01))
    nbest = NBest(hypotheses=decoded.hypotheses, language=decoded.language, start=start, end=end, id=str(index))
    return Segment(
        id=index,
        start=round(start, 3),
        end=round(end, 3),
        text=decoded.hypotheses[0].text,
        nbest=nbest,
        avg_logprob=decoded.avg_logprob,
        no_speech_prob=decoded.no_speech_prob,
        words=words,
    )


def _segments(whisper, wins: list[Window], first_encoded, state: DecodeState, options: AsrOptions) -> Iterator[Segment]:
    per_window_language = (
        options.detect_language_per_segment and options.language is None and whisper.model.is_multilingual
    )
    index = 0
    for i, window in enumerate(wins):
        encoded = first_encoded if i == 0 else encode(whisper, window.audio)
        if per_window_language:
            _switch_language(whisper, encoded, state)
        decoded = decode_window(whisper, encoded, state, options, first=i == 0)
        if decoded.is_silence:
            logger.debug("window %.2f-%.2f s is silence", window.start, window.end)
            continue
        words = _words(whisper, encoded, state, window, decoded) if options.word_timestamps else None
        yield _segment(index, window, decoded, words)
        index += 1


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
        task=info.task,
        model=info.model,
        duration=info.duration,
        source=source,
        stages=(stage,),
    )


def transcribe_all(
    audio: AudioSource | np.ndarray, options: AsrOptions, *, home: Path, source: str | None = None
) -> Transcript:
    """Transcribe a whole file and collect its segments into a Transcript."""
    started = time.perf_counter()
    segments, info = transcribe(audio, options, home=home)
    if source is None and isinstance(audio, (str, Path)):
        source = str(audio)
    return collect(segments, info, source=source, started=started)
