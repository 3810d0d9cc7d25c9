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

import inspect
import logging
import queue
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from cascade.config import LiveOptions
from cascade.live.endpoint import EndOfTurn, wait_ms
from cascade.live.reply import _Responder, _error
from cascade.live.vad import FRAME, StreamingVad, pcm16
from cascade.pipeline import SpokenTurn
from cascade.types import (
    ChatMessage,
    LiveDone,
    LiveEvent,
    LiveFinal,
    LivePartial,
    LiveReplyDelta,
    Segment,
    StageInfo,
    Transcript,
)

logger = logging.getLogger(__name__)

class _Window:
    """A stretch of the turn's audio (samples [start, end)) and its decode, done in the turn's decoder thread."""

    def __init__(self, start: int, end: int, future: Future):
        self.start, self.end, self.future = start, end, future
        self.result: tuple[Transcript, float] | None = None  # set, under the turn's lock, when decoded
        self.end_logprob: float | None = None  # how finished the words up to this window's end read (endpoint.py)
        self.words = True  # any words up to its end (set with end_logprob)
        self.read = threading.Event()  # decoded and read (set even when the decode failed)

    @property
    def transcript(self) -> Transcript:
        return self.future.result()[0]

    @property
    def seconds(self) -> float:
        return self.future.result()[1]


class LiveTurn:
    """One user turn fed frame by frame: `feed` returns partials, `respond` the final, the reply and its audio.

    Windows are decoded in one background thread, in order, so frames keep flowing (and the VAD keeps time)
    while Whisper works: a window closed at a pause inside speech is being decoded while the user goes on.
    """

    def __init__(self, turn: SpokenTurn, options: LiveOptions, history: Sequence[ChatMessage] = (),
                 detector: EndOfTurn | None = None, reply: bool = True):
        """`detector`: reads whether the words so far are finished (None: the pause alone ends the turn);
        `reply`: False makes `respond` stop after the final transcript (transcription sessions)."""
        self.turn, self.options, self.history = turn, options, tuple(history)
        self.detector = detector if options.end_of_turn == "llm" else None
        self.reply = reply
        self._vad = StreamingVad()
        self._rate = options.sample_rate
        self._audio: list[np.ndarray] = []
        self._size = 0
        self._buffer: np.ndarray | None = None
        self._probs: list[float] = []
        self._neg = options.neg_threshold if options.neg_threshold is not None else max(options.threshold - 0.15, 0.01)
        self._started: int | None = None  # first speech frame
        self._last_speech: int | None = None
        self._silent_since: int | None = None
        self._paused = False  # this pause already closed a window
        self.window_start = 0
        self.windows: list[_Window] = []  # kept windows, in order (their decodes may still run)
        self._tentative: _Window | None = None  # the open window decoded at the last pause
        self.decodes: list[float] = []  # seconds of every decode, kept or tentative (benchmarks)
        self._decoder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="live-asr")
        self._lock = threading.RLock()
        self._out: queue.Queue[LiveEvent] = queue.Queue()  # partials from the decoder thread
        self._responder: _Responder | None = None
        self._responder_key: tuple[int, ...] = ()  # the windows the reply answers
        self._dropped: list[_Responder] = []  # stopped replies whose threads may still be finishing
        self.speech_end_at: float | None = None  # wall time the last speech frame arrived
        self.endpoint_at: float | None = None
        self.asr_wait_s = 0.0  # how long respond() waited for decodes after the end of speech
        self.end_logprob: float | None = None  # the reading the end of the turn was decided on
        self.end_reason = ""  # finished | unfinished (max_silence_ms) | silence (no reading) | client | max_turn
        self.ended = False

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
        for p in self._vad(samples):
            self._probs.append(float(p))
            with self._lock:
                self._frame(float(p), len(self._probs) - 1, at)
            if self.ended:
                break
        if not self.ended and self._size / self._rate > self.options.max_turn_s:
            self.finish(at)
            self.end_reason = "max_turn"
        return self._partials()

    def finish(self, at: float | None = None) -> list[LiveEvent]:
        """End the turn now (the client says the user stopped): whatever is not decoded yet is decoded."""
        if self.ended:
            return []
        at = time.perf_counter() if at is None else at
        if self.speech_end_at is None:
            self.speech_end_at = at
        with self._lock:
            self.end_reason = "client"
            self._end(at)
        return self._partials()

    def _partials(self) -> list[LiveEvent]:
        events: list[LiveEvent] = []
        while True:
            try:
                events.append(self._out.get_nowait())
            except queue.Empty:
                return events

    def _frame(self, p: float, i: int, at: float) -> None:
        o = self.options
        if p >= o.threshold:
            return self._speech(i, at)
        if self._started is None:
            return None
        if p < self._neg and self._silent_since is None:
            self._silent_since = i
        if self._silent_since is None:
            return None
        silent_ms = (i + 1 - self._silent_since) * FRAME * 1000 / self._rate
        if silent_ms >= self._shortest_wait and self._reads_finished(silent_ms):
            return self._end(at)
        if silent_ms >= o.pause_ms and not self._paused:
            self._paused = True
            return self._pause((i + 1) * FRAME)
        return self._cut_long(i)

    @property
    def _shortest_wait(self) -> float:
        o = self.options
        return min(o.silence_ms, o.quick_silence_ms) if self.detector is not None else o.silence_ms

    def _reads_finished(self, silent_ms: float) -> bool:
        """After the shortest wait: end now if the silence is as long as the words so far ask for (endpoint.
        wait_ms), at max_silence_ms in any case. A reading still being made decides at a later frame (the
        silence goes on meanwhile)."""
        window = self._tentative
        if self.detector is None or window is None:
            if silent_ms < self.options.silence_ms:
                return False
            self.end_reason = "silence"
            return True
        if silent_ms < wait_ms(window.end_logprob, self.options, window.words):
            return False
        unfinished = window.end_logprob is None or window.end_logprob < self.options.end_logprob
        self.end_reason, self.end_logprob = ("unfinished" if unfinished else "finished"), window.end_logprob
        return True

    @property
    def speech_ms(self) -> float:
        """Speech heard so far in this turn (frames at or above the threshold): what a barge-in is judged on."""
        return sum(p >= self.options.threshold for p in self._probs) * FRAME * 1000 / self._rate

    @property
    def speech_start_ms(self) -> float | None:
        """Where the turn's first speech frame starts in its audio (None: no speech yet)."""
        return None if self._started is None else self._started * FRAME * 1000 / self._rate

    @property
    def speech_end_ms(self) -> float | None:
        """Where the turn's last speech frame ends in its audio."""
        return None if self._last_speech is None else (self._last_speech + 1) * FRAME * 1000 / self._rate

    @property
    def audio_ms(self) -> float:
        return self._size * 1000 / self._rate

    def wait_reading(self, timeout: float = 60.0) -> None:
        """Block until the open window is decoded and read (unpaced replays: as on a machine fast enough);
        without a detector nothing waits on the reading, so neither does this."""
        with self._lock:
            window = self._tentative if self.detector is not None else None
        if window is not None:
            window.read.wait(timeout)

    def _speech(self, i: int, at: float) -> None:
        """A speech frame: the speaker goes on, so a held reply is stale and the pause's window kept or dropped."""
        if self._tentative is not None:
            window, self._tentative = self._tentative, None
            dip_ms = (i - (self._silent_since or i)) * FRAME * 1000 / self._rate
            if dip_ms >= self.options.cut_ms and (window.end - window.start) / self._rate >= self.options.commit_s:
                self._keep(window)  # long enough to stand alone: kept, the next window starts after the pause
            else:
                window.future.cancel()  # decoded again, longer, at the next pause
        if self._started is None:
            self._started = i
            self.window_start = max(self.window_start, i * FRAME - self.options.pad_ms * self._rate // 1000)
        elif self._last_speech is not None and (self._last_speech + 1) * FRAME <= self.window_start:
            # speech again after a cut: the new window starts shortly before it, not in the silence
            self.window_start = max(self.window_start, i * FRAME - self.options.pad_ms * self._rate // 1000)
        self._last_speech, self._silent_since, self._paused = i, None, False
        self.speech_end_at = at
        self._drop_responder()
        self._cut_long(i)

    def _cut_long(self, i: int) -> None:
        """A window that reaches max_window_s without a pause is cut at its least speech-like recent frame."""
        end = (i + 1) * FRAME
        if end - self.window_start <= self.options.max_window_s * self._rate or self._tentative is not None:
            return
        look = max(self.window_start // FRAME + 1, i + 1 - int(self.options.cut_search_s * self._rate / FRAME))
        cut = (look + int(np.argmin(self._probs[look : i + 1])) + 1) * FRAME
        self._keep(self._submit(self.window_start, cut))

    def _pause(self, end: int) -> None:
        """A window-closing pause: decode what was said since the last cut (the speculation starts on it)."""
        if self._last_speech is None or (self._last_speech + 1) * FRAME <= self.window_start:
            return
        self._tentative = self._submit(self.window_start, end)

    def _end(self, at: float) -> None:
        # when the end was found (frames wait while a window decodes), not when its frame arrived
        self.ended, self.endpoint_at = True, max(at, time.perf_counter())
        if self._tentative is not None:  # no speech since the pause: its decode is the last window
            self._keep(self._tentative)
        elif self._last_speech is not None and (self._last_speech + 1) * FRAME > self.window_start:
            self._keep(self._submit(self.window_start, self._size))
            self._drop_responder()

    def _keep(self, window: _Window) -> None:
        self.windows.append(window)
        self.window_start = window.end
        self._tentative = None

    # ------------------------------------------------------------------ recognition

    def _samples(self) -> np.ndarray:
        if self._buffer is None:
            self._buffer = np.concatenate(self._audio) if self._audio else np.zeros(0, dtype=np.float32)
            self._audio = [self._buffer]
        return self._buffer

    def _submit(self, start: int, end: int) -> _Window:
        samples = np.ascontiguousarray(self._samples()[start:end])
        holder: list[_Window] = []
        window = _Window(start, end, self._decoder.submit(self._decode, samples, holder))
        holder.append(window)  # under the turn's lock: the decoder reads it only after this
        return window

    def _decode(self, samples: np.ndarray, holder: list[_Window]) -> tuple[Transcript, float]:
        """Decode one window (decoder thread); then its partial, the reply if it is the last window (speculated,
        held until the end of speech, started before the reading, which runs beside it: words read as unfinished
        get theirs too, ready when the longer silence ends the turn), and how finished the words read if it is
        the open window."""
        try:
            began = time.perf_counter()
            asr = self.turn.asr
            if self.options.early_reply and "on_best" in inspect.signature(asr.transcribe).parameters:  # in-process: the 1-best before the N-best
                transcript = asr.transcribe(samples, on_best=lambda text: self._on_best(holder[0], text))
            else:
                transcript = asr.transcribe(samples)
            seconds = time.perf_counter() - began
            self.decodes.append(seconds)
            with self._lock:
                window = holder[0]
                window.result = (transcript, seconds)
                kept = window in self.windows
                done = [w.result[0] for w in self.windows if w.result is not None and w is not window]
                if kept or window is self._tentative:
                    self._out.put(self._partial([*done, transcript], window, seconds, kept))
                reading = window is self._tentative and self.detector is not None and not self.ended
                chain = self._chain(window)
                if chain is not None and all(w.result is not None for w in chain):
                    responder = self._responder_for(chain)
                    if not responder.settled:  # the reply starts now, beside the reading (its own generator)
                        responder.settle(self._join([(w.start, *w.result) for w in chain]))
            if reading:
                words = " ".join(t.text.strip() for t in [*done, transcript] if t.text.strip())
                logprob = self._read(words)
                with self._lock:
                    window.words, window.end_logprob = bool(words), logprob
            return transcript, seconds
        finally:
            holder[0].read.set()

    def _read(self, text: str) -> float:
        """How finished the words read (a failing reader leaves the pause alone to decide: 0.0)."""
        try:
            return max(self.detector.logprob(text, self.history), -99.0)  # type: ignore[union-attr]
        except Exception as exc:  # noqa: BLE001 - the turn goes on without the reading
            logger.warning("end-of-turn reading failed: %s", exc)
            return 0.0

    def _on_best(self, window: _Window, text: str) -> None:
        """Whisper's 1-best of the last window, before its N-best: the reply starts on it (held until checked)."""
        with self._lock:
            chain = self._chain(window)
            if chain is None or any(w.result is None for w in chain[:-1]):
                return
            texts = [w.result[0].text.strip() for w in chain[:-1]]
            self._responder_for(chain).early(" ".join(t for t in [*texts, text] if t))

    def _chain(self, window: _Window) -> list[_Window] | None:
        """The windows a reply made now from `window` would answer: it is the open window decoded at the
        pause (with speculation on), or the last window of an ended turn; else None."""
        if window is self._tentative and self.options.speculate and not self.ended:
            return [*self.windows, window]
        if self.ended and self.windows and self.windows[-1] is window:
            return list(self.windows)
        return None

    def _partial(self, transcripts: list[Transcript], window: _Window, seconds: float, kept: bool) -> LivePartial:
        text = " ".join(t.text.strip() for t in transcripts if t.text.strip())
        index = self.windows.index(window) if kept else len(self.windows)
        return LivePartial(text=text, window=index, audio_s=round(window.end / self._rate, 3), decode_s=round(seconds, 3))

    def transcript(self) -> Transcript:
        """The kept windows' transcripts joined, segment times shifted to the turn's clock (waits for decodes)."""
        return self._join([(w.start, w.transcript, w.seconds) for w in self.windows])

    def _join(self, parts: Sequence[tuple[int, Transcript, float]]) -> Transcript:
        segments: list[Segment] = []
        for start, transcript, _ in parts:
            offset = start / self._rate
            for seg in transcript.segments:
                n = len(segments)
                nbest = seg.nbest.model_copy(update={"start": round(seg.nbest.start + offset, 3), "id": str(n),
                                                     "end": None if seg.nbest.end is None else round(seg.nbest.end + offset, 3)})
                segments.append(seg.model_copy(update={"id": n, "start": round(seg.start + offset, 3),
                                                       "end": round(seg.end + offset, 3), "nbest": nbest}))
        first = parts[0][1] if parts else None
        stages = tuple(StageInfo(stage="asr", model=first.model, seconds=round(sum(p[2] for p in parts), 3),
                                 options={"windows": len(parts)}) for _ in [0] if first is not None)
        return Transcript(text=" ".join(s.text.strip() for s in segments if s.text.strip()), segments=tuple(segments),
                          language=first.language if first else None, model=first.model if first else "?",
                          duration=round(self._size / self._rate, 3), stages=stages)

    # ------------------------------------------------------------------ the reply

    def _responder_for(self, chain: Sequence[_Window]) -> _Responder:
        """The reply to these windows (the one already started for them, or a new one)."""
        key = tuple(id(w) for w in chain)
        if self._responder is None or self._responder_key != key:
            self._drop_responder()
            self._responder, self._responder_key = _Responder(self.turn, self.history, reply=self.reply), key
        return self._responder

    def _drop_responder(self) -> None:
        if self._responder is not None:
            self._responder.stop()
            self._dropped = [*(r for r in self._dropped if r.running()), self._responder]
            self._responder = None

    def respond(self, cancel: threading.Event | None = None) -> Iterator[LiveEvent]:
        """After the end of speech: the final transcript, the reply sentence by sentence and its audio, then done.

        A reply speculated at the last pause is used when its windows are the final ones (no speech since);
        `cancel` (the client left) stops the work at the next event.
        """
        if not self.ended:
            raise RuntimeError("respond() before the end of speech")
        origin = self.speech_end_at or time.perf_counter()
        with self._lock:
            responder = self._responder_for(list(self.windows))
        began = time.perf_counter()
        try:
            transcript = self.transcript()
        except Exception as exc:  # noqa: BLE001 - a failed decode is the client's error event
            logger.warning("live decode failed: %s", exc)
            responder.stop()
            yield from self._partials()
            yield _error(exc)
            yield self._done(None, [], {}, origin, None)
            return
        self.asr_wait_s = time.perf_counter() - began
        with self._lock:
            if not responder.settled:
                responder.settle(transcript)
        yield from self._partials()
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
        yield self._done(final, sentences, seen, origin, responder)

    def _done(self, final: LiveFinal | None, sentences: list[str], seen: dict[str, float], origin: float,
              responder: _Responder | None) -> LiveDone:
        endpoint = (self.endpoint_at or origin) - origin
        last = self.windows[-1].result if self.windows else None
        timings = {"endpoint": round(endpoint, 3), **seen, "total": round(time.perf_counter() - origin, 3),
                   "asr_windows": float(len(self.windows)), "asr_wait": round(self.asr_wait_s, 3),
                   "asr_last": round(last[1], 3) if last is not None else 0.0,
                   "end_logprob": round(self.end_logprob, 3) if self.end_logprob is not None else 0.0,
                   "end_unfinished": float(self.end_reason == "unfinished"),
                   "early_reply": float(bool(responder and responder.reused_early))}
        return LiveDone(transcript=final.text if final else "", reply=" ".join(sentences), timings=timings,
                        time_to_first_audio=seen.get("first_audio"), degraded=final.degraded if final else {})

    def close(self) -> None:
        """Stop any reply still being made (the client is gone) and the decoder thread (waits for them: at
        most one decode, and a reply stops within a token)."""
        with self._lock:
            responders = [r for r in (self._responder, *self._dropped) if r is not None]
            self._drop_responder()
        self._decoder.shutdown(wait=True, cancel_futures=True)
        for responder in responders:
            responder.join(5.0)
