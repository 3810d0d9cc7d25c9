"""The live spoken turn over a WebSocket (`/v1/live`): cascade.live.LiveTurn behind a small message protocol.

The client sends a `start` JSON message, then 16 kHz mono PCM16 frames as binary messages while
the user speaks; the server answers `ready`, `partial`s as windows are decoded, the `final`
(corrected) transcript at the end of speech, each reply sentence (`reply.delta`), each audio
chunk (an `audio` JSON header, then one binary message of PCM16), and `done`; then the next turn
starts on the same socket with the history extended. Bad input gets an `error` message and a
close. Sessions are admitted by a bounded queue (live.max_sessions running, none waiting): a
client that leaves mid-turn stops its work and frees its slot. The protocol is in docs/guides/voice-agent.md.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import threading
import time
from typing import Any, Literal

from fastapi import APIRouter, WebSocket
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.websockets import WebSocketDisconnect, WebSocketState

from cascade.config import LiveOptions, Settings
from cascade.types import CascadeError, ChatMessage, LiveAudio, LiveDone, LiveError, LiveFinal, LiveReplyDelta
from services.common.errors import Overloaded
from services.common.queue import ModelQueue

logger = logging.getLogger(__name__)

router = APIRouter(tags=["live"])

START_TIMEOUT_S = 10.0
SESSION_WAIT_S = 3.0
CLOSE_POLICY, CLOSE_DATA, CLOSE_BUSY, CLOSE_ERROR = 1008, 1003, 1013, 1011


class LiveStart(BaseModel):
    """The first message of a session: the audio format and optional per-session options."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["start"]
    sample_rate: int = 16000
    format: Literal["pcm16"] = "pcm16"
    history: list[ChatMessage] = Field(default_factory=list)
    api_key: str | None = None
    """For browsers, which cannot set an Authorization header on a WebSocket."""
    silence_ms: int | None = None
    pause_ms: int | None = None
    speculate: bool | None = None


class LiveReady(BaseModel):
    """The server's answer to `start`: what it will use."""

    type: Literal["ready"] = "ready"
    sample_rate: int
    silence_ms: int
    pause_ms: int
    speculate: bool


class _Refused(Exception):
    def __init__(self, error: LiveError, close_code: int):
        super().__init__(error.message)
        self.error, self.close_code = error, close_code


def preload_detector(app: Any) -> None:
    """Start loading the end-of-turn reader (the reply's LLM) in the background at startup: the first
    session need not wait for it, and readiness is not delayed."""
    from cascade.live import build_detector

    app.state.live_detector = asyncio.ensure_future(run_in_threadpool(build_detector, app.state.settings))


async def detector(app: Any) -> Any:
    """The end-of-turn reader (None: the pause alone decides; also when it failed to load, which is logged)."""
    if getattr(app.state, "live_detector", None) is None:
        preload_detector(app)
    try:
        return await asyncio.shield(app.state.live_detector)
    except Exception as exc:  # noqa: BLE001 - turn-taking falls back to the pause alone
        logger.warning("end-of-turn reader unavailable (%s): the pause alone ends turns", exc)
        return None


def _sessions(ws: WebSocket) -> ModelQueue:
    """The admission queue of live sessions (created on first use): max_sessions at once, as many waiting
    for up to SESSION_WAIT_S (a session that just closed may still be freeing its slot); the rest are refused."""
    state = ws.app.state
    if getattr(state, "live_sessions", None) is None:
        n = state.settings.live.max_sessions
        state.live_sessions = ModelQueue("live", concurrency=n, max_waiting=n, wait_timeout=SESSION_WAIT_S,
                                         metrics=state.metrics)
    return state.live_sessions


@router.websocket("/v1/live")
async def live(ws: WebSocket) -> None:
    """A live spoken-turn session (see the module docstring and the protocol table in docs/guides/voice-agent.md)."""
    await ws.accept()
    settings: Settings = ws.app.state.settings
    try:
        start, options = await _start(ws, settings)
        slot = await _admit(ws)
    except _Refused as refused:
        await _close(ws, refused.error, refused.close_code)
        return
    try:
        await _send(ws, LiveReady(sample_rate=options.sample_rate, silence_ms=options.silence_ms,
                                  pause_ms=options.pause_ms, speculate=options.speculate))
        await _Session(ws, options, start.history).run()
    except _Refused as refused:
        await _close(ws, refused.error, refused.close_code)
    except WebSocketDisconnect:
        pass
    except Exception as exc:  # noqa: BLE001 - the boundary of one session; the server keeps serving
        logger.exception("live session failed")
        await _close(ws, LiveError(message=f"internal error: {type(exc).__name__}", code="internal_error"), CLOSE_ERROR)
    finally:
        _sessions(ws).release(slot)


async def _start(ws: WebSocket, settings: Settings) -> tuple[LiveStart, LiveOptions]:
    """Read and check the start message (format, rate, key, options)."""
    try:
        message = await asyncio.wait_for(ws.receive(), timeout=START_TIMEOUT_S)
    except TimeoutError:
        raise _Refused(LiveError(message=f"no start message within {START_TIMEOUT_S:.0f} s", code="invalid_start"),
                       CLOSE_POLICY) from None
    if message["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(message.get("code", 1000))
    text = message.get("text")
    if text is None:
        raise _Refused(LiveError(message="the first message must be a JSON start message, not binary audio",
                                 code="invalid_start"), CLOSE_DATA)
    try:
        start = LiveStart.model_validate(json.loads(text))
    except (ValueError, ValidationError) as exc:
        raise _Refused(LiveError(message=f"invalid start message: {_first_error(exc)}", code="invalid_start"),
                       CLOSE_DATA) from None
    _check_key(ws, start, settings)
    if start.sample_rate != settings.live.sample_rate:
        raise _Refused(LiveError(message=f"sample_rate {start.sample_rate} is not supported: send "
                                         f"{settings.live.sample_rate} Hz mono PCM16", code="invalid_start",
                                 param="sample_rate"), CLOSE_DATA)
    overrides = {k: v for k, v in (("silence_ms", start.silence_ms), ("pause_ms", start.pause_ms),
                                   ("speculate", start.speculate)) if v is not None}
    if start.silence_ms is not None:  # the client's own wait: no quicker step after surely finished words either
        overrides["quick_silence_ms"] = start.silence_ms
    try:
        options = LiveOptions.model_validate({**settings.live.model_dump(), **overrides})
    except ValidationError as exc:
        raise _Refused(LiveError(message=f"invalid start message: {_first_error(exc)}", code="invalid_start"),
                       CLOSE_DATA) from None
    return start, options


def _first_error(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        err = exc.errors()[0]
        return f"{'.'.join(str(p) for p in err['loc']) or 'message'}: {err['msg']}"
    return f"not JSON ({exc})".splitlines()[0]


def _check_key(ws: WebSocket, start: LiveStart, settings: Settings) -> None:
    expected = settings.service.api_key
    if expected is None:
        return
    scheme, _, token = ws.headers.get("authorization", "").partition(" ")
    given = token.strip() if scheme.lower() == "bearer" and token else (start.api_key or "")
    if not given or not secrets.compare_digest(given.encode(), expected.get_secret_value().encode()):
        raise _Refused(LiveError(message="missing or invalid API key (Authorization: Bearer <key>, or api_key in start)",
                                 code="invalid_api_key"), CLOSE_POLICY)


async def _admit(ws: WebSocket) -> float:
    try:
        return await _sessions(ws).acquire()
    except Overloaded as exc:
        raise _Refused(LiveError(message=exc.message, code="rate_limit_exceeded"), CLOSE_BUSY) from None


async def _send(ws: WebSocket, event: Any) -> None:
    await ws.send_text(event.model_dump_json())
    if isinstance(event, LiveAudio) and event.chunk is not None:
        await ws.send_bytes(event.chunk.pcm)


async def _close(ws: WebSocket, error: LiveError, code: int) -> None:
    """Send the error and close; a client already gone is no error of ours."""
    if ws.client_state != WebSocketState.CONNECTED:
        return
    try:
        await ws.send_text(error.model_dump_json())
        await ws.close(code=code, reason=error.message[:120])
    except (WebSocketDisconnect, RuntimeError):
        pass


_GONE, _END = object(), object()


class _Session:
    """Turn after turn on one socket: a receiver task stamps each frame's arrival; the turn runs in threads."""

    def __init__(self, ws: WebSocket, options: LiveOptions, history: list[ChatMessage]):
        from cascade.live import LiveTurn  # noqa: F401 - fail here, not mid-turn, if the library is broken

        self.ws, self.options, self.history = ws, options, list(history)
        self.detector: Any = None
        self.inbox: asyncio.Queue[Any] = asyncio.Queue()
        self.gone = asyncio.Event()
        self._said: list[str] = []  # reply sentences sent (what an interrupted reply said)
        self._held: list[Any] = []  # partials of the next turn, sent after the reply's done
        self._early: list[Any] = []  # control messages (or bad frames) that came during the reply

    async def run(self) -> None:
        receiver = asyncio.ensure_future(self._receive())  # at once: frames are stamped as they arrive
        following = None
        try:
            if self.options.end_of_turn == "llm":
                reading = asyncio.ensure_future(detector(self.ws.app))
                gone = asyncio.ensure_future(self.gone.wait())
                await asyncio.wait({reading, gone}, return_when=asyncio.FIRST_COMPLETED)
                gone.cancel()
                if not reading.done():  # the client left while the reader loads: free the slot now
                    reading.cancel()
                    return
                self.detector = reading.result()
            turn = self._new_turn()
            while not self.gone.is_set():
                following = None
                try:
                    if not await self._listen(turn):
                        return
                    following = self._new_turn()  # frames that arrive during the reply go here (barge-in)
                    if not await self._speak(turn, following):
                        return
                finally:
                    await run_in_threadpool(turn.close)
                turn, following = following, None
        finally:
            receiver.cancel()
            if following is not None:
                await run_in_threadpool(following.close)

    def _new_turn(self) -> Any:
        from cascade.live import LiveTurn

        return LiveTurn(self.ws.app.state.gateway.turn, self.options, self.history, detector=self.detector)

    async def _receive(self) -> None:
        """Every client message into the inbox, binary frames with their arrival time."""
        try:
            while True:
                message = await self.ws.receive()
                if message["type"] == "websocket.disconnect":
                    break
                if message.get("bytes") is not None:
                    await self.inbox.put((message["bytes"], time.perf_counter()))
                else:
                    await self.inbox.put(message.get("text") or "")
        except (WebSocketDisconnect, RuntimeError):
            pass
        self.gone.set()
        await self.inbox.put(_GONE)

    async def _listen(self, turn: Any) -> bool:
        """Feed frames until the end of speech; False when the client left."""
        while not turn.ended:
            item = self._early.pop(0) if self._early else await self.inbox.get()
            if isinstance(item, CascadeError):
                raise _Refused(LiveError(message=item.message, code="invalid_frame", param=item.param), CLOSE_DATA)
            if item is _GONE:
                return False
            try:
                if isinstance(item, tuple):
                    events = await run_in_threadpool(turn.feed, item[0], item[1])
                else:
                    events = await run_in_threadpool(turn.finish) if _control(item) == "end" else []
            except CascadeError as exc:
                raise _Refused(LiveError(message=exc.message, code="invalid_frame", param=exc.param), CLOSE_DATA) from None
            for event in events:
                await _send(self.ws, event)
        return True

    async def _speak(self, turn: Any, following: Any) -> bool:
        """Stream the final, the reply and its audio; stop at once (and say so) if the client leaves. Frames
        arriving meanwhile feed the next turn; once it holds live.barge_in_ms of speech the reply stops there
        (barge-in: `done` says interrupted) and its partials follow the `done`."""
        cancel = threading.Event()
        events = turn.respond(cancel)
        gone = asyncio.ensure_future(self.gone.wait())
        barge = asyncio.ensure_future(self._overhear(following))
        final: LiveFinal | None = None
        try:
            while True:
                step = asyncio.ensure_future(run_in_threadpool(next, events, _END))
                await asyncio.wait({step, gone, *(() if barge.done() else (barge,))}, return_when=asyncio.FIRST_COMPLETED)
                if barge.done() and final is not None:
                    cancel.set()  # the reply stops at its next event (within 50 ms) and says done
                if gone.done():
                    cancel.set()
                    await step
                    return False
                event = await step
                if event is _END:
                    break
                final = event if isinstance(event, LiveFinal) else final
                if final is not None and barge.done():
                    cancel.set()  # the user's words were final before the barge-in: only the reply stops
                if isinstance(event, LiveDone) and barge.done():
                    event = event.model_copy(update={"interrupted": True, "reply": " ".join(self._said)})
                if isinstance(event, (LiveAudio, LiveReplyDelta)) and cancel.is_set():
                    continue  # barged in: nothing more of this reply
                if isinstance(event, LiveReplyDelta):
                    self._said.append(event.text)
                await _send(self.ws, event)
                if isinstance(event, LiveDone) and final is not None and event.reply:
                    self.history += [ChatMessage(role="user", content=final.text),
                                     ChatMessage(role="assistant", content=event.reply)]
        finally:
            gone.cancel()
            barge.cancel()
            self._said = []
            await run_in_threadpool(events.close)
        following.history = tuple(self.history)
        for event in self._held:
            await _send(self.ws, event)
        self._held = []
        return not self.gone.is_set()

    async def _overhear(self, turn: Any) -> None:
        """Feed the frames that arrive during a reply to the next turn; return once it heard enough speech to
        interrupt (never, with barge_in_ms 0: it then only feeds)."""
        while True:
            item = await self.inbox.get()
            if item is _GONE:
                await self.inbox.put(_GONE)  # the reply loop sees `gone`; the next listen sees this
                await asyncio.Event().wait()
            if not isinstance(item, tuple):
                self._early.append(item)  # a control message: handled by the next turn's listen
                continue
            try:
                self._held += await run_in_threadpool(turn.feed, item[0], item[1])
            except CascadeError as exc:
                self._early.append(exc)
                continue
            if self.options.barge_in_ms and turn.speech_ms >= self.options.barge_in_ms:
                return


def _control(text: str) -> str | None:
    """A JSON control message from the client: {"type": "end"} ends the turn now; anything else is an error."""
    try:
        kind = json.loads(text).get("type")
    except (ValueError, AttributeError):
        kind = None
    if kind != "end":
        raise _Refused(LiveError(message='text messages after start must be {"type": "end"}', code="invalid_frame"),
                       CLOSE_DATA)
    return kind
