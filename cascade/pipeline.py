"""The spoken turn: audio -> N-best -> correction -> reply -> speech, as typed stages.

Each stage sits behind a small Protocol with an in-process implementation here;
`build_turn(settings)` picks HTTP-backed ones from `cascade.clients` for the stages
whose service URL is configured (ServiceSettings.asr_url / llm_url / tts_url).
Streaming (ChatOptions.stream): the reply is generated in a worker thread and each
complete sentence goes through a queue to TTS, so the first sentence is spoken
while the rest is still being generated. With stream=False the turn runs the same
stages one after the other (the naive peer the benchmark compares against).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from cascade.config import ChatOptions, Settings, TtsOptions
from cascade.types import (
    AudioChunk, ChatMessage, CorrectedTranscript, InvalidInput, Reply, SpeechInfo, StageInfo, Transcript, TurnResult,
)

logger = logging.getLogger(__name__)

AudioInput = str | Path | bytes | np.ndarray


# --------------------------------------------------------------------------- stage protocols


class AsrStage(Protocol):
    def transcribe(self, audio: AudioInput) -> Transcript:
        """The N-best transcript of a whole utterance (Transcript.stages carries the timing)."""
        ...


class CorrectStage(Protocol):
    def correct(self, transcript: Transcript) -> CorrectedTranscript:
        """One Correction per segment's N-best list and the corrected text."""
        ...


class ReplyStage(Protocol):
    def describe(self) -> StageInfo:
        """Model, prompt name/hash and options of the replies this stage produces."""
        ...

    def stream(self, text: str, history: Sequence[ChatMessage]) -> Iterator[str]:
        """Sentences of the reply, each as soon as it is complete."""
        ...


class TtsStage(Protocol):
    def describe(self) -> StageInfo:
        ...

    def stream(self, sentences: Iterable[str]) -> Iterator[AudioChunk]:
        """Audio for each sentence as it arrives (all chunks share one sample rate)."""
        ...


# --------------------------------------------------------------------------- in-process stages


class LocalAsr:
    def __init__(self, settings: Settings):
        self.options, self.home = settings.chat.turn_asr(settings.asr), settings.home
        from cascade.correct import reads_alternatives

        if not reads_alternatives(settings, settings.chat.correct):  # correction keeps Whisper's 1-best here: no wide-beam decode, same 1-best
            self.options = self.options.model_copy(update={"n_best": 1, "nbest_beam_size": self.options.beam_size})

    def transcribe(self, audio: AudioInput, on_best: Callable[[str], None] | None = None) -> Transcript:
        """`on_best` (in-process only): each window's 1-best text, before its N-best is decoded."""
        from cascade.asr import transcribe_all

        start = time.perf_counter()
        transcript = transcribe_all(audio, self.options, home=self.home, on_best=on_best)
        info = StageInfo(stage="asr", model=transcript.model, seconds=time.perf_counter() - start,
                         options=self.options.model_dump(mode="json"))
        return transcript.model_copy(update={"stages": (*transcript.stages, info)})


class LocalCorrect:
    """Every segment's N-best through the correction seam (cascade.correct), mode from settings.chat.correct."""

    def __init__(self, settings: Settings):
        self.settings = settings

    def correct(self, transcript: Transcript) -> CorrectedTranscript:
        from cascade.correct import build_corrector

        s, start = self.settings, time.perf_counter()
        mode = s.chat.correct
        nbests = [seg.nbest for seg in transcript.segments]
        corrector = build_corrector(s, mode if nbests else "none")
        corrections = tuple(corrector.correct(nbests))
        text = " ".join(c.text.strip() for c in corrections if c.text.strip())
        backend = getattr(corrector, "backend", None)
        info = StageInfo(stage="correct", model=getattr(backend, "name", None), seconds=time.perf_counter() - start,
                         options={"method": mode})
        return CorrectedTranscript(text=text, corrections=corrections, method=mode, info=info)


class LocalReply:
    def __init__(self, settings: Settings):
        self.settings = settings

    def _backend(self) -> Any:
        from cascade.llm import load_backend

        return load_backend(self.settings.chat.turn_llm(self.settings.llm), self.settings.home)

    def describe(self) -> StageInfo:
        from cascade import respond

        return respond.stage_info(self._backend(), self.settings.chat)

    def stream(self, text: str, history: Sequence[ChatMessage]) -> Iterator[str]:
        from cascade import respond

        return respond.stream_reply(text, history, self._backend(), self.settings.chat)


class LocalTts:
    def __init__(self, options: TtsOptions, home: Path):
        self.options, self.home = options, home

    def describe(self) -> StageInfo:
        from cascade.tts import load_engine

        engine = load_engine(self.options, self.home)
        return StageInfo(stage="tts", model=engine.model, options=self.options.model_dump(mode="json"))

    def stream(self, sentences: Iterable[str]) -> Iterator[AudioChunk]:
        from cascade.tts import synthesize_stream

        return synthesize_stream(sentences, self.options, home=self.home)


def _remote(kind: str, url: str | None, settings: Settings) -> Any:
    """An HTTP-backed stage from cascade.clients (`make_stage(kind, url, settings)`) when a URL is configured."""
    if not url:
        return None
    try:
        from cascade.clients import make_stage
    except ImportError as exc:
        from cascade.types import Unsupported

        raise Unsupported(f"a remote {kind} stage is configured ({url}) but cascade.clients is not available") from exc
    return make_stage(kind, url, settings)


def build_turn(settings: Settings) -> SpokenTurn:
    """The turn for these settings: in-process stages unless a service URL says otherwise."""
    svc = settings.service
    return SpokenTurn(
        asr=_remote("asr", svc.asr_url, settings) or LocalAsr(settings),
        correct=_remote("correct", svc.llm_url, settings) or LocalCorrect(settings),
        reply=_remote("reply", svc.llm_url, settings) or LocalReply(settings),
        tts=_remote("tts", svc.tts_url, settings) or LocalTts(settings.tts, settings.home),
        chat=settings.chat,
    )


# --------------------------------------------------------------------------- the turn


class _Clock:
    """Seconds since the turn was handed the audio (the end of the user's utterance)."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()

    def __call__(self) -> float:
        return time.perf_counter() - self.t0


class _ReplyThread:
    """Generates the reply in a worker thread; sentences reach the consumer through a queue."""

    _END = object()

    def __init__(self, stage: ReplyStage, text: str, history: Sequence[ChatMessage], clock: _Clock):
        self.q: queue.Queue[Any] = queue.Queue()
        self.sentences: list[str] = []
        self.first_at: float | None = None
        self.done_at: float | None = None
        self.waited = 0.0
        self._stop = threading.Event()
        self._clock = clock
        self._thread = threading.Thread(target=self._run, args=(stage, text, history), name="turn-reply", daemon=True)
        self._thread.start()

    def _run(self, stage: ReplyStage, text: str, history: Sequence[ChatMessage]) -> None:
        gen = stage.stream(text, history)
        try:
            for sentence in gen:
                if self._stop.is_set():
                    break
                self.first_at = self.first_at if self.first_at is not None else self._clock()
                self.sentences.append(sentence)
                self.q.put(sentence)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            self.q.put(exc)
        finally:
            close = getattr(gen, "close", None)
            if close:
                close()
            self.done_at = self._clock()
            self.q.put(self._END)

    def __iter__(self) -> Iterator[str]:
        while True:
            started = time.perf_counter()
            item = self.q.get()
            self.waited += time.perf_counter() - started
            if item is self._END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


class SpokenTurn:
    """One spoken turn through four stages; `run` returns a TurnResult with per-stage timings."""

    def __init__(self, *, asr: AsrStage, correct: CorrectStage, reply: ReplyStage, tts: TtsStage, chat: ChatOptions):
        self.asr, self.corrector, self.replier, self.tts, self.chat = asr, correct, reply, tts, chat

    def run(
        self,
        audio: AudioInput,
        history: Sequence[ChatMessage] = (),
        *,
        stream: bool | None = None,
        on_audio: Callable[[AudioChunk], None] | None = None,
    ) -> TurnResult:
        """Run the turn on a whole utterance; `on_audio` receives each chunk as soon as it exists."""
        stream = self.chat.stream if stream is None else stream
        clock = _Clock()
        transcript = self.asr.transcribe(audio)
        t_asr = clock()
        corrected = self.corrector.correct(transcript)
        t_corr = clock()
        if not corrected.text.strip():
            raise InvalidInput("no speech was recognised in the audio: nothing to reply to", param="file")
        speak = self._speak_streamed if stream else self._speak_sequential
        reply, speech, audio_out, first_audio, reply_end = speak(corrected.text, history, clock, on_audio)
        total = clock()
        timings = {"asr": t_asr, "correct": t_corr - t_asr, "reply": reply_end - t_corr,
                   "tts": total - t_corr if stream else total - reply_end, "total": total}
        return TurnResult(transcript=transcript, correction=corrected, reply=reply, speech=speech, timings=timings,
                          time_to_first_audio=first_audio, streamed=stream, audio=audio_out)

    def _speak_streamed(self, text: str, history: Sequence[ChatMessage], clock: _Clock, on_audio: Any):
        t_start = clock()
        producer = _ReplyThread(self.replier, text, history, clock)
        chunks: list[AudioChunk] = []
        first: float | None = None
        try:
            for chunk in self.tts.stream(producer):
                first = first if first is not None else clock()
                chunks.append(chunk)
                if on_audio:
                    on_audio(chunk)
        finally:
            producer.stop()
        synth_s = clock() - t_start - producer.waited
        reply = self._reply_record(producer.sentences, producer.first_at, t_start, producer.done_at or clock())
        speech, audio = self._speech_record(chunks, first, t_start, synth_s)
        return reply, speech, audio, first, producer.done_at or clock()

    def _speak_sequential(self, text: str, history: Sequence[ChatMessage], clock: _Clock, on_audio: Any):
        t_start = clock()
        sentences, first_sentence = [], None
        for sentence in self.replier.stream(text, history):
            first_sentence = first_sentence if first_sentence is not None else clock()
            sentences.append(sentence)
        reply_end = clock()
        chunks = list(self.tts.stream(sentences))
        first = clock() if chunks else None
        for chunk in chunks:
            if on_audio:
                on_audio(chunk)
        reply = self._reply_record(sentences, first_sentence, t_start, reply_end)
        speech, audio = self._speech_record(chunks, first, reply_end, clock() - reply_end)
        return reply, speech, audio, first, reply_end

    def _reply_record(self, sentences: list[str], first_at: float | None, start: float, end: float) -> Reply:
        info = self.replier.describe().model_copy(update={"seconds": end - start})
        return Reply(
            text=" ".join(sentences), sentences=tuple(sentences), finish_reason="stop" if sentences else "empty",
            first_sentence_s=None if first_at is None else first_at - start, info=info,
        )

    def _speech_record(self, chunks: list[AudioChunk], first: float | None, start: float, synth_s: float):
        info = self.tts.describe()
        if not chunks:
            raise InvalidInput("the reply was empty: nothing to speak", param="input")
        audio = AudioChunk(pcm=b"".join(c.pcm for c in chunks), sample_rate=chunks[0].sample_rate,
                           text=" ".join(c.text or "" for c in chunks))
        speech = SpeechInfo(
            engine=str(info.options.get("engine", "?")), model=info.model or "?", sample_rate=audio.sample_rate,
            duration=audio.duration, chunks=len(chunks), first_chunk_s=None if first is None else first - start,
            real_time_factor=synth_s / audio.duration if audio.duration else None,
            info=info.model_copy(update={"seconds": synth_s}),
        )
        return speech, audio
