"""The live turn: audio decoded while it arrives, the reply started before the user is known to be done.

`LiveTurn` is fed 16 kHz PCM16 frames as they are spoken. Silero VAD (faster-whisper's
model, run frame by frame with its state carried, so its probabilities equal the
whole-buffer pass) marks each 32 ms frame speech or silence. A pause of `pause_ms`
closes a window: it is decoded by the turn's ASR stage at once, while the user goes on
speaking, so when `silence_ms` of silence ends the turn the whole utterance is usually
decoded already. With `speculate`, the correction and the reply (sentences and their
speech) also start at that pause; their events are held until the end of speech is
confirmed and thrown away if the user speaks again, so the reply's latency hides behind
the silence wait. The gateway's WebSocket (/v1/live), `cascade chat --live` and the
benchmark all drive this one class; it knows nothing of sockets.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from cascade.config import LiveOptions
from cascade.pipeline import SpokenTurn
from cascade.types import (
    AudioChunk,
    BackendUnavailable,
    ChatMessage,
    CorrectedTranscript,
    Correction,
    InvalidInput,
    LiveAudio,
    LiveDone,
    LiveError,
    LiveEvent,
    LiveFinal,
    LivePartial,
    LiveReplyDelta,
    Segment,
    StageInfo,
    Transcript,
)

logger = logging.getLogger(__name__)

FRAME = 512
"""Silero's frame at 16 kHz (32 ms)."""
CONTEXT = 64
"""Samples of the previous frame Silero sees before each frame."""


class StreamingVad:
    """Silero speech probability of each complete 512-sample frame, fed piece by piece."""

    def __init__(self) -> None:
        from faster_whisper.vad import get_vad_model

        self._session = get_vad_model().session
        self._h = np.zeros((1, 1, 128), dtype=np.float32)
        self._c = np.zeros((1, 1, 128), dtype=np.float32)
        self._context = np.zeros(CONTEXT, dtype=np.float32)
        self._pending = np.zeros(0, dtype=np.float32)

    def __call__(self, samples: np.ndarray) -> np.ndarray:
        buf = np.concatenate([self._pending, samples]) if self._pending.size else samples
        n = len(buf) // FRAME
        self._pending = buf[n * FRAME :].copy()
        if n == 0:
            return np.zeros(0, dtype=np.float32)
        frames = buf[: n * FRAME].reshape(n, FRAME).astype(np.float32, copy=False)
        context = np.vstack([self._context[None, :], frames[:-1, -CONTEXT:]])
        out, self._h, self._c = self._session.run(
            None, {"input": np.concatenate([context, frames], axis=1), "h": self._h, "c": self._c})
        self._context = frames[-1, -CONTEXT:].copy()
        return np.asarray(out, dtype=np.float32).reshape(-1)


def pcm16(data: bytes, max_bytes: int) -> np.ndarray:
    """Float samples of one little-endian PCM16 frame (a malformed frame is the client's error)."""
    if not data:
        raise InvalidInput("empty audio frame", param="audio")
    if len(data) > max_bytes:
        raise InvalidInput(f"audio frame of {len(data)} bytes is above the {max_bytes}-byte limit", param="audio")
    if len(data) % 2:
        raise InvalidInput(f"audio frame of {len(data)} bytes is not 16-bit PCM (odd length)", param="audio")
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0


class _Window:
    """A decoded stretch of the turn's audio (samples [start, end)) and its transcript."""

    def __init__(self, start: int, end: int, transcript: Transcript, seconds: float):
        self.start, self.end, self.transcript, self.seconds = start, end, transcript, seconds


class LiveTurn:
    """One user turn fed frame by frame: `feed` returns partials, `respond` the final, the reply and its audio."""

    def __init__(self, turn: SpokenTurn, options: LiveOptions, history: Sequence[ChatMessage] = ()):
        self.turn, self.options, self.history = turn, options, tuple(history)
        self._vad = StreamingVad()
        self._rate = options.sample_rate
        self._audio: list[np.ndarray] = []
        self._size = 0
        self._buffer: np.ndarray | None = None
        self._frames = 0
        self._neg = options.neg_threshold if options.neg_threshold is not None else max(options.threshold - 0.15, 0.01)
        self._started: int | None = None  # first speech frame
        self._last_speech: int | None = None
        self._silent_since: int | None = None
        self._paused = False  # this pause already closed a window
        self.window_start = 0
        self.windows: list[_Window] = []
        self._tentative: _Window | None = None
        self.decodes: list[float] = []  # seconds of every decode, kept or tentative (benchmarks)
        self._responder: _Responder | None = None
        self.speech_end_at: float | None = None  # wall time the last speech frame arrived
        self.endpoint_at: float | None = None
        self.ended = False
        self._at: dict[int, float] = {}

    # ------------------------------------------------------------------ audio in

    def feed(self, data: bytes | np.ndarray, at: float | None = None) -> list[LiveEvent]:
        """Add one frame (PCM16 bytes or float samples) that arrived at wall time `at`; return new partials."""
        if self.ended:
            return []
        samples = pcm16(data, self.options.max_frame_bytes) if isinstance(data, bytes) else data
        at = time.perf_counter() if at is None else at
        self._audio.append(samples)
        self._size += len(samples)
        self._buffer = None
        events: list[LiveEvent] = []
        for p in self._vad(samples):
            events += self._frame(float(p), self._frames, at)
            self._frames += 1
            if self.ended:
                break
        if not self.ended and self._size / self._rate > self.options.max_turn_s:
            events += self.finish(at)
        return events

    def finish(self, at: float | None = None) -> list[LiveEvent]:
        """End the turn now (the client says the user stopped): whatever is not decoded yet is decoded."""
        if self.ended:
            return []
        at = time.perf_counter() if at is None else at
        if self.speech_end_at is None:
            self.speech_end_at = at
        return self._end(at)

    def _frame(self, p: float, i: int, at: float) -> list[LiveEvent]:
        o = self.options
        if p >= o.threshold:
            return self._speech(i, at)
        if self._started is None:
            return []
        if p < self._neg and self._silent_since is None:
            self._silent_since = i
        if self._silent_since is None:
            return []
        silent_ms = (i + 1 - self._silent_since) * FRAME * 1000 / self._rate
        if silent_ms >= o.silence_ms:
            return self._end(at)
        if silent_ms >= o.pause_ms and not self._paused:
            self._paused = True
            return self._pause((i + 1) * FRAME)
        if (i + 1) * FRAME - self.window_start > o.max_window_s * self._rate:
            return self._commit(self._decode(self.window_start, (i + 1) * FRAME))
        return []

    def _speech(self, i: int, at: float) -> list[LiveEvent]:
        """A speech frame: the speaker goes on, so a held reply and a tentative decode are stale."""
        if self._started is None:
            self._started = i
            self.window_start = max(self.window_start, i * FRAME - self.options.pad_ms * self._rate // 1000)
        elif self._last_speech is not None and (self._last_speech + 1) * FRAME <= self.window_start:
            # speech again after a cut: the new window starts shortly before it, not in the silence
            self.window_start = max(self.window_start, i * FRAME - self.options.pad_ms * self._rate // 1000)
        self._last_speech, self._silent_since, self._paused = i, None, False
        self.speech_end_at = at
        self._tentative = None
        self._drop_responder()
        if (i + 1) * FRAME - self.window_start > self.options.max_window_s * self._rate:
            return self._commit(self._decode(self.window_start, (i + 1) * FRAME))
        return []

    def _pause(self, end: int) -> list[LiveEvent]:
        """A window-closing pause: decode what was said since the last cut (kept, or tentative if short)."""
        if self._last_speech is None or self._last_speech * FRAME < self.window_start:
            return []
        window = self._decode(self.window_start, end)
        if (end - self.window_start) / self._rate >= self.options.commit_s:
            events = self._commit(window)
        else:
            self._tentative = window
            events = [self._partial(window, committed=False)]
        if self.options.speculate:
            self._start_responder()
        return events

    def _end(self, at: float) -> list[LiveEvent]:
        # when the end was found (frames wait while a window decodes), not when its frame arrived
        self.ended, self.endpoint_at = True, max(at, time.perf_counter())
        events: list[LiveEvent] = []
        if self._tentative is not None:
            self._commit(self._tentative)  # its partial was sent at the pause: the text has not changed
        end = self._size
        if self._last_speech is not None and (self._last_speech + 1) * FRAME > self.window_start:
            events += self._commit(self._decode(self.window_start, end))
            self._drop_responder()
        return events

    # ------------------------------------------------------------------ recognition

    def _samples(self) -> np.ndarray:
        if self._buffer is None:
            self._buffer = np.concatenate(self._audio) if self._audio else np.zeros(0, dtype=np.float32)
            self._audio = [self._buffer]
        return self._buffer

    def _decode(self, start: int, end: int) -> _Window:
        began = time.perf_counter()
        transcript = self.turn.asr.transcribe(np.ascontiguousarray(self._samples()[start:end]))
        self.decodes.append(time.perf_counter() - began)
        return _Window(start, end, transcript, self.decodes[-1])

    def _commit(self, window: _Window) -> list[LiveEvent]:
        self.windows.append(window)
        self.window_start = window.end
        self._tentative = None
        return [self._partial(window)]

    def _partial(self, window: _Window, committed: bool = True) -> LivePartial:
        parts = [w.transcript.text.strip() for w in self.windows] + ([] if committed else [window.transcript.text.strip()])
        return LivePartial(text=" ".join(p for p in parts if p), window=len(self.windows) - (1 if committed else 0),
                           audio_s=round(window.end / self._rate, 3), decode_s=round(window.seconds, 3))

    def transcript(self, extra: _Window | None = None) -> Transcript:
        """The windows' transcripts joined, segment times shifted to the turn's clock."""
        windows = [*self.windows, *([extra] if extra is not None else [])]
        segments: list[Segment] = []
        for w in windows:
            offset = w.start / self._rate
            for seg in w.transcript.segments:
                n = len(segments)
                nbest = seg.nbest.model_copy(update={"start": round(seg.nbest.start + offset, 3), "id": str(n),
                                                     "end": None if seg.nbest.end is None else round(seg.nbest.end + offset, 3)})
                segments.append(seg.model_copy(update={"id": n, "start": round(seg.start + offset, 3),
                                                       "end": round(seg.end + offset, 3), "nbest": nbest}))
        first = windows[0].transcript if windows else None
        stages = tuple(StageInfo(stage="asr", model=first.model, seconds=round(sum(w.seconds for w in windows), 3),
                                 options={"windows": len(windows)}) for _ in [0] if first is not None)
        return Transcript(text=" ".join(s.text.strip() for s in segments if s.text.strip()), segments=tuple(segments),
                          language=first.language if first else None, model=first.model if first else "?",
                          duration=round(self._size / self._rate, 3), stages=stages)

    # ------------------------------------------------------------------ the reply

    def _start_responder(self) -> None:
        self._drop_responder()
        self._responder = _Responder(self.turn, self.transcript(self._tentative), self.history)

    def _drop_responder(self) -> None:
        if self._responder is not None:
            self._responder.stop()
            self._responder = None

    def respond(self, cancel: threading.Event | None = None) -> Iterator[LiveEvent]:
        """After the end of speech: the final transcript, the reply sentence by sentence and its audio, then done.

        A reply speculated at the last pause is used when nothing was decoded since; `cancel` (the client left)
        stops the work at the next event.
        """
        if not self.ended:
            raise RuntimeError("respond() before the end of speech")
        if self._responder is None:
            self._responder = _Responder(self.turn, self.transcript(), self.history)
        responder, origin = self._responder, self.speech_end_at or time.perf_counter()
        seen: dict[str, float] = {}
        final: LiveFinal | None = None
        sentences: list[str] = []
        try:
            for event in responder.events(cancel):
                now = time.perf_counter() - origin
                key = {"final": "final", "reply.delta": "first_sentence", "audio": "first_audio"}.get(event.type)
                if key and key not in seen:
                    seen[key] = round(now, 3)
                if isinstance(event, LiveFinal):
                    final = event
                elif isinstance(event, LiveReplyDelta):
                    sentences.append(event.text)
                yield event
        finally:
            responder.stop()
        yield self._done(final, sentences, seen, origin)

    def _done(self, final: LiveFinal | None, sentences: list[str], seen: dict[str, float], origin: float) -> LiveDone:
        endpoint = (self.endpoint_at or origin) - origin
        after_end = sum(w.seconds for w in self.windows if w.end >= self._size - FRAME)
        timings = {"endpoint": round(endpoint, 3), **seen, "total": round(time.perf_counter() - origin, 3),
                   "asr_windows": float(len(self.windows)), "asr_after_end": round(after_end, 3)}
        return LiveDone(transcript=final.text if final else "", reply=" ".join(sentences), timings=timings,
                        time_to_first_audio=seen.get("first_audio"), degraded=final.degraded if final else {})

    def close(self) -> None:
        """Stop any reply still being made (the client is gone)."""
        self._drop_responder()


_END = object()


def _drain(q: queue.Queue, stopped: Callable[[], bool]) -> Iterator[Any]:
    """Items of a producer thread's queue until its _END, or until `stopped()` (checked every 50 ms)."""
    while not stopped():
        try:
            item = q.get(timeout=0.05)
        except queue.Empty:
            continue
        if item is _END:
            return
        yield item


class _Responder:
    """Correction, reply and speech of one transcript in worker threads; events wait in a queue."""

    def __init__(self, turn: SpokenTurn, transcript: Transcript, history: Sequence[ChatMessage]):
        self.turn, self.transcript, self.history = turn, transcript, history
        self._q: queue.Queue[Any] = queue.Queue()
        self._sentences: queue.Queue[Any] = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="live-respond", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def events(self, cancel: threading.Event | None = None) -> Iterator[LiveEvent]:
        yield from _drain(self._q, lambda: cancel is not None and cancel.is_set())
        if cancel is not None and cancel.is_set():
            self.stop()

    def _run(self) -> None:
        try:
            final = self._correct()
            self._q.put(final)
            if self._stop.is_set():  # a speculation the speaker overtook: do not start the reply
                return
            if not final.text.strip():
                self._q.put(LiveError(message="no speech was recognised: nothing to reply to", param="audio"))
                return
            replier = threading.Thread(target=self._reply, args=(final.text,), name="live-reply", daemon=True)
            replier.start()
            for i, chunk in enumerate(self.turn.tts.stream(self._sentence_stream())):
                if self._stop.is_set():
                    break
                self._q.put(LiveAudio(index=i, sample_rate=chunk.sample_rate, bytes=len(chunk.pcm), text=chunk.text,
                                      chunk=chunk))
            replier.join()
        except Exception as exc:  # noqa: BLE001 - handed to the client as an error event
            logger.warning("live reply failed: %s", exc)
            self._q.put(_error(exc))
        finally:
            self._stop.set()
            self._q.put(_END)

    def _correct(self) -> LiveFinal:
        """The correction stage; an LLM that is down leaves each segment's 1-best (marked degraded)."""
        t = self.transcript
        try:
            corrected = self.turn.corrector.correct(t)
        except BackendUnavailable as exc:
            fixes = tuple(Correction(text=s.text, method="none", status="unavailable", chosen=0,
                                     fallback_reason=f"LLM unavailable: {exc.message}") for s in t.segments)
            corrected = CorrectedTranscript(text=" ".join(c.text for c in fixes if c.text), corrections=fixes,
                                            method="none")
            return LiveFinal(text=corrected.text, transcript=t, correction=corrected, degraded={"llm": exc.message})
        return LiveFinal(text=corrected.text, transcript=t, correction=corrected)

    def _reply(self, text: str) -> None:
        """Sentences of the reply: to the client (reply.delta) and to the speech loop."""
        from cascade.respond import cancel_on

        gen = self.turn.replier.stream(text, self.history)
        try:
            with cancel_on(self._stop):  # an in-process LLM stops within a token when the speaker goes on
                for i, sentence in enumerate(gen):
                    if self._stop.is_set():
                        break
                    self._q.put(LiveReplyDelta(text=sentence, index=i))
                    self._sentences.put(sentence)
        except Exception as exc:  # noqa: BLE001
            logger.warning("live reply generation failed: %s", exc)
            self._q.put(_error(exc))
        finally:
            close = getattr(gen, "close", None)
            if close:
                close()
            self._sentences.put(_END)

    def _sentence_stream(self) -> Iterator[str]:
        return _drain(self._sentences, self._stop.is_set)


def _error(exc: BaseException) -> LiveError:
    from cascade.types import CascadeError

    if isinstance(exc, CascadeError):
        return LiveError(message=exc.message, code=exc.error_type, param=exc.param)
    return LiveError(message=f"{type(exc).__name__}: {exc}".splitlines()[0], code="internal_error")


# --------------------------------------------------------------------------- replaying a file (CLI, benchmark)


def replay(turn: SpokenTurn, samples: np.ndarray, options: LiveOptions, *, pace: bool = True, frame_ms: int = 20,
           history: Sequence[ChatMessage] = ()) -> Iterator[LiveEvent]:
    """Feed 16 kHz samples to a LiveTurn frame by frame (at real time with `pace`), then silence until the end of
    speech is found (or forced), and yield every event: partials, final, reply, audio, done."""
    live = LiveTurn(turn, options, history)
    step = options.sample_rate * frame_ms // 1000
    tail = np.zeros(options.sample_rate * (options.silence_ms + 2 * frame_ms + 100) // 1000, dtype=np.float32)
    t0 = time.perf_counter()
    try:
        for k, frame in enumerate(_frames(np.concatenate([samples.astype(np.float32), tail]), step)):
            due = t0 + (k + 1) * frame_ms / 1000
            if pace and due > time.perf_counter():
                time.sleep(due - time.perf_counter())
            yield from live.feed(_to_pcm16(frame), at=due if pace else None)
            if live.ended:
                break
        yield from live.finish()
        yield from live.respond()
    finally:
        live.close()


def _frames(samples: np.ndarray, step: int) -> Iterable[np.ndarray]:
    for i in range(0, len(samples), step):
        yield samples[i : i + step]


def _to_pcm16(samples: np.ndarray) -> bytes:
    return (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2").tobytes()


def join_audio(chunks: Sequence[AudioChunk]) -> AudioChunk | None:
    """The reply's audio chunks as one (for writing a file)."""
    if not chunks:
        return None
    return AudioChunk(pcm=b"".join(c.pcm for c in chunks), sample_rate=chunks[0].sample_rate,
                      text=" ".join(c.text or "" for c in chunks))
