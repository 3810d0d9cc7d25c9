"""The reply of a live turn: correction, sentences and their speech in worker threads, held while speculative."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from cascade.pipeline import SpokenTurn
from cascade.types import (
    BackendUnavailable,
    ChatMessage,
    CorrectedTranscript,
    Correction,
    LiveAudio,
    LiveError,
    LiveEvent,
    LiveFinal,
    LiveReplyDelta,
    Transcript,
)

logger = logging.getLogger(__name__)

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


class _Speech:
    """One reply to one text (sentences and their audio); its events are held until released, if asked.

    `limit`: stop after that many sentences (`cut` then says more may follow); `skip`: the first sentences
    are generated again but not sent (they were, by an earlier speech: `said`)."""

    def __init__(self, text: str, held: bool, limit: int | None = None, said: Sequence[str] = ()):
        self.text, self.stop, self.done = text, threading.Event(), threading.Event()
        self.held: list[LiveEvent] | None = [] if held else None
        self.lock = threading.Lock()
        self.limit, self.said, self.cut = limit, list(said), False
        self.skip = len(self.said)


class _Responder:
    """Correction, reply and speech of one transcript in worker threads; events wait in a queue.

    `early(text)` starts the reply on a window's 1-best while its N-best and the correction are still being
    made; its events are held, sent after the final if the corrected text is that 1-best, dropped if not (the
    reply then starts again on the corrected text). `settle(transcript)` corrects and answers.
    """

    def __init__(self, turn: SpokenTurn, history: Sequence[ChatMessage], reply: bool = True):
        self.turn, self.history, self.reply = turn, history, reply
        self._q: queue.Queue[Any] = queue.Queue()
        self._stop = threading.Event()
        self._speeches: list[_Speech] = []
        self._threads: list[threading.Thread] = []
        self.settled = False
        self.reused_early: bool | None = None  # whether the 1-best reply was kept (timings)

    def stop(self) -> None:
        self._stop.set()
        for speech in self._speeches:
            speech.stop.set()

    def running(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    def join(self, timeout: float) -> None:
        deadline = time.perf_counter() + timeout
        for thread in list(self._threads):
            thread.join(max(deadline - time.perf_counter(), 0.0))

    def _spawn(self, target: Callable[..., None], *args: Any, name: str) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    def events(self, cancel: threading.Event | None = None) -> Iterator[LiveEvent]:
        yield from _drain(self._q, lambda: cancel is not None and cancel.is_set())
        if cancel is not None and cancel.is_set():
            self.stop()

    def early(self, text: str) -> None:
        """Start the reply on `text` before it is known to be final: its first sentence only when a greedy
        reply can be continued later (the LLM is then free for the correction's scoring)."""
        if not text.strip() or self._speeches or not self.reply:
            return
        chat = self.turn.chat
        speech = _Speech(text, held=True, limit=1 if chat.temperature == 0 and chat.max_sentences > 1 else None)
        self._speeches.append(speech)
        self._spawn(self._speak, speech, name="live-early")

    def settle(self, transcript: Transcript) -> None:
        self.settled = True
        self._spawn(self._run, transcript, name="live-respond")

    def _run(self, transcript: Transcript) -> None:
        try:
            final = self._correct(transcript)
            self._q.put(final)
            if self._stop.is_set() or not self.reply:  # a speculation the speaker overtook, or transcription only
                return
            if not final.text.strip():
                self._q.put(LiveError(message="no speech was recognised: nothing to reply to", param="audio"))
                return
            early = self._speeches[0] if self._speeches else None
            self.reused_early = early is not None and " ".join(early.text.split()) == " ".join(final.text.split())
            if early is not None and not self.reused_early:
                logger.info("early reply dropped: %r -> %r", early.text, final.text)
            if early is not None and self.reused_early:
                with early.lock:
                    for event in early.held or []:
                        self._q.put(event)
                    early.held = None
                early.done.wait()
                if early.cut and not self._stop.is_set():  # the rest of the reply, after the sentence spoken
                    rest = _Speech(final.text, held=False, said=early.said)
                    self._speeches.append(rest)
                    self._speak(rest)
                return
            if early is not None:
                early.stop.set()  # the correction changed the text: that reply is thrown away
                early.done.wait()
            speech = _Speech(final.text, held=False)
            self._speeches.append(speech)
            self._speak(speech)
        except Exception as exc:  # noqa: BLE001 - handed to the client as an error event
            logger.warning("live reply failed: %s", exc)
            self._q.put(_error(exc))
        finally:
            self.stop()
            self._q.put(_END)

    def answer(self, text: str) -> None:
        """Reply to `text` as it is (no correction, no final): a reply the client asked for by itself."""
        self.settled = True
        self._spawn(self._answer, text, name="live-answer")

    def _answer(self, text: str) -> None:
        try:
            speech = _Speech(text, held=False)
            self._speeches.append(speech)
            self._speak(speech)
        finally:
            self.stop()
            self._q.put(_END)

    def _emit(self, speech: _Speech, event: LiveEvent) -> None:
        with speech.lock:
            if speech.held is not None:
                speech.held.append(event)
            elif not speech.stop.is_set():
                self._q.put(event)

    def _speak(self, speech: _Speech) -> None:
        """The reply to speech.text sentence by sentence, each spoken as soon as it is complete."""
        sentences: queue.Queue[Any] = queue.Queue()
        try:
            replier = threading.Thread(target=self._reply, args=(speech, sentences), name="live-reply", daemon=True)
            replier.start()
            for i, chunk in enumerate(self.turn.tts.stream(_drain(sentences, speech.stop.is_set)), speech.skip):
                if speech.stop.is_set():
                    break
                self._emit(speech, LiveAudio(index=i, sample_rate=chunk.sample_rate, bytes=len(chunk.pcm),
                                             text=chunk.text, chunk=chunk))
            replier.join()
        except Exception as exc:  # noqa: BLE001
            logger.warning("live speech failed: %s", exc)
            self._emit(speech, _error(exc))
        finally:
            speech.done.set()

    def _correct(self, t: Transcript) -> LiveFinal:
        """The correction stage; an LLM that is down leaves each segment's 1-best (marked degraded)."""
        try:
            corrected = self.turn.corrector.correct(t)
        except BackendUnavailable as exc:
            fixes = tuple(Correction(text=s.text, method="none", status="unavailable", chosen=0,
                                     fallback_reason=f"LLM unavailable: {exc.message}") for s in t.segments)
            corrected = CorrectedTranscript(text=" ".join(c.text for c in fixes if c.text), corrections=fixes,
                                            method="none")
            return LiveFinal(text=corrected.text, transcript=t, correction=corrected, degraded={"llm": exc.message})
        return LiveFinal(text=corrected.text, transcript=t, correction=corrected)

    def _reply(self, speech: _Speech, sentences: queue.Queue) -> None:
        """Sentences of the reply: to the client (reply.delta) and to the speech loop."""
        from cascade.respond import cancel_on

        gen: Any = None
        try:
            gen = self.turn.replier.stream(speech.text, self.history)
            with cancel_on(speech.stop):  # an in-process LLM stops within a token when the reply is dropped
                for i, sentence in enumerate(gen):
                    if speech.stop.is_set():
                        break
                    if i < speech.skip:  # said already; a greedy reply says it again, word for word
                        if sentence != speech.said[i]:
                            logger.info("the reply's continuation diverged from its spoken start: stopped")
                            break
                        continue
                    self._emit(speech, LiveReplyDelta(text=sentence, index=i))
                    speech.said.append(sentence)
                    sentences.put(sentence)
                    if speech.limit is not None and i + 1 >= speech.limit:
                        speech.cut = True
                        break
        except Exception as exc:  # noqa: BLE001
            logger.warning("live reply generation failed: %s", exc)
            self._emit(speech, _error(exc))
        finally:
            close = getattr(gen, "close", None)
            if close:
                close()
            sentences.put(_END)


def _error(exc: BaseException) -> LiveError:
    from cascade.types import CascadeError

    if isinstance(exc, CascadeError):
        return LiveError(message=exc.message, code=exc.error_type, param=exc.param)
    return LiveError(message=f"{type(exc).__name__}: {exc}".splitlines()[0], code="internal_error")


def answer(turn: SpokenTurn, text: str, history: Sequence[ChatMessage] = (),
           cancel: threading.Event | None = None) -> Iterator[LiveEvent]:
    """The reply to `text` as it is (sentences and their audio; no correction, no final): a reply a client asks
    for by itself (the Realtime API's response.create). `cancel` stops it at the next event."""
    responder = _Responder(turn, history)
    responder.answer(text)
    try:
        yield from responder.events(cancel)
    finally:
        responder.stop()
