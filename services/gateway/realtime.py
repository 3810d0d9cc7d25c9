"""OpenAI's Realtime API at /v1/realtime (WebSocket), on the live turn's code path (cascade.live.LiveTurn).

The stock client works with only its base URL set: `client.realtime.connect(model=...)` opens
`<base_url>/realtime?model=...` (`intent=transcription` for a transcription session) and sends the API key
as `Authorization: Bearer`. Audio is pcm16 at 24 kHz both ways (resampled to the recogniser's 16 kHz and
from the voice's rate with one libswresample state per stream). Events are built and parsed with the
installed `openai` package's own realtime types, so their names and payloads are OpenAI's. Turn detection
is the live turn's (a pause ends the turn when the words read as finished; cascade.live.endpoint); speech
during a reply cancels it (`interrupt_response`). The supported events are listed in docs/guides/voice-agent.md.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import secrets
import threading
import time
from collections.abc import Iterator
from typing import Any, get_args

import numpy as np
from fastapi import APIRouter, WebSocket
from openai.types.realtime import realtime_server_event as rse
from openai.types.realtime.realtime_client_event import RealtimeClientEvent
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.websockets import WebSocketDisconnect, WebSocketState

from cascade.config import LiveOptions, Settings
from cascade.types import AudioChunk, ChatMessage, LiveAudio, LiveDone, LiveError, LiveFinal, LivePartial, LiveReplyDelta
from services.common.errors import Overloaded

logger = logging.getLogger(__name__)

router = APIRouter(tags=["realtime"])

RATE = 24000
"""The only audio format: pcm16 (OpenAI's `audio/pcm`), mono, 24 kHz, both ways."""
FORMAT = {"type": "audio/pcm", "rate": RATE}
EAGERNESS_MS = {"low": 4000, "high": 1000}
"""semantic_vad eagerness -> the longest wait after words that read as unfinished (medium/auto: live.max_silence_ms)."""
OPENAI_VOICES = ("alloy", "ash", "ballad", "coral", "echo", "fable", "onyx", "nova", "sage", "shimmer", "verse",
                 "marin", "cedar")
"""OpenAI's voice names (speech and Realtime): they mean the configured voice."""
CHUNK_S = 0.5
"""Reply audio is sent in deltas of at most this many seconds."""
_CLIENT_EVENTS: dict[str, Any] = {get_args(m.model_fields["type"].annotation)[0]: m
                                  for m in get_args(get_args(RealtimeClientEvent)[0])}
"""Each client event type -> its openai model (the installed client's own definitions)."""
_END = object()


def _id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(10)}"


class _Error(Exception):
    """A client mistake: answered with an `error` event; the session goes on."""

    def __init__(self, message: str, code: str = "invalid_value", param: str | None = None):
        super().__init__(message)
        self.message, self.code, self.param = message, code, param


@router.websocket("/v1/realtime")
async def realtime(ws: WebSocket) -> None:
    """A Realtime session: `?intent=transcription` (or session.update type transcription) transcribes only."""
    from services.gateway.live import _sessions

    offered = [p.strip() for p in ws.headers.get("sec-websocket-protocol", "").split(",") if p.strip()]
    await ws.accept(subprotocol="realtime" if "realtime" in offered else None)
    session = RealtimeSession(ws, ws.app.state.settings, ws.query_params.get("intent") == "transcription",
                              ws.query_params.get("model"))
    if not _key_ok(ws, offered, ws.app.state.settings):
        await session.fail("missing or invalid API key (Authorization: Bearer <key>)", "invalid_api_key", 1008)
        return
    try:
        slot = await _sessions(ws).acquire()
    except Overloaded as exc:
        await session.fail(exc.message, "rate_limit_exceeded", 1013)
        return
    try:
        await session.run()
    except WebSocketDisconnect:
        pass
    except Exception as exc:  # noqa: BLE001 - the boundary of one session; the server keeps serving
        logger.exception("realtime session failed")
        await session.fail(f"internal error: {type(exc).__name__}", "internal_error", 1011)
    finally:
        await session.close()
        _sessions(ws).release(slot)


def _key_ok(ws: WebSocket, offered: list[str], settings: Settings) -> bool:
    """The key as a Bearer header (the openai client, LiveKit) or the browser subprotocol openai-insecure-api-key.<key>."""
    expected = settings.service.api_key
    if expected is None:
        return True
    scheme, _, token = ws.headers.get("authorization", "").partition(" ")
    given = token.strip() if scheme.lower() == "bearer" else ""
    given = given or next((p.removeprefix("openai-insecure-api-key.") for p in offered
                           if p.startswith("openai-insecure-api-key.")), "")
    return bool(given) and secrets.compare_digest(given.encode(), expected.get_secret_value().encode())


class RealtimeSession:
    """One socket: the session config, the conversation, the input buffer (a LiveTurn) and the responses."""

    def __init__(self, ws: WebSocket, settings: Settings, transcription: bool, model: str | None):
        self.ws, self.settings = ws, settings
        self.kind = "transcription" if transcription else "realtime"
        self.model = model or "gpt-realtime"
        live = settings.live
        self.turn_detection: dict | None = {
            "type": "server_vad", "threshold": live.threshold, "prefix_padding_ms": live.pad_ms,
            "silence_duration_ms": live.silence_ms, "create_response": True, "interrupt_response": True}
        self.instructions = ""
        self.voice = "alloy"
        self.modalities = ["audio"]
        self.tools: list[dict] = []  # function tools (session.update): a response may call them
        self.tool_choice: Any = "auto"
        self.transcription: dict = {"model": "whisper-1"}
        self.options = live
        self.items: list[dict] = []  # {"id", "role", "text"}: text None while a transcription is pending; role
        # "call" (a function_call item: name, arguments, call_id) and "tool" (its function_call_output: call_id)
        self.detector: Any = None
        self._send_lock = asyncio.Lock()
        self._turn: Any = None
        self._turn_item = ""
        self._turn_offset_ms = 0.0
        self._started_sent = False
        self._delta_text = ""
        self._appended_ms = 0.0
        self._resampler: Any = None
        self.response: _Response | None = None
        self._chain: asyncio.Future | None = None  # the last turn's transcription/response task
        self._tasks: set[asyncio.Future] = set()
        self._gone = asyncio.Event()

    # ------------------------------------------------------------------ wire

    async def send(self, event: Any) -> None:
        if self.ws.client_state != WebSocketState.CONNECTED:
            return
        data = event.model_dump_json(exclude_none=True)
        async with self._send_lock:
            with contextlib.suppress(WebSocketDisconnect, RuntimeError):
                await self.ws.send_text(data)

    async def error(self, message: str, code: str = "invalid_value", param: str | None = None,
                    event_id: str | None = None) -> None:
        await self.send(rse.RealtimeErrorEvent(event_id=_id("event"), type="error", error={
            "type": "invalid_request_error", "code": code, "message": message, "param": param, "event_id": event_id}))

    async def fail(self, message: str, code: str, close_code: int) -> None:
        """An error event, then close (a refused or broken session); a client already gone is no error of ours."""
        if self.ws.client_state != WebSocketState.CONNECTED:
            return
        await self.error(message, code)
        with contextlib.suppress(WebSocketDisconnect, RuntimeError):
            await self.ws.close(code=close_code, reason=message[:120])

    # ------------------------------------------------------------------ the session

    async def run(self) -> None:
        from cascade.audio import StreamResampler
        from services.gateway.live import detector

        self._resampler = StreamResampler(RATE, self.settings.live.sample_rate)
        await self.send(rse.SessionCreatedEvent(event_id=_id("event"), type="session.created", session=self.describe()))
        inbox: asyncio.Queue[dict] = asyncio.Queue()
        reader = asyncio.ensure_future(self._read(inbox))  # at once: the socket keeps answering pings
        try:
            reading = asyncio.ensure_future(detector(self.ws.app))  # loading since startup; events wait meanwhile
            gone = asyncio.ensure_future(self._gone.wait())
            await asyncio.wait({reading, gone}, return_when=asyncio.FIRST_COMPLETED)
            gone.cancel()
            if not reading.done():  # the client left while the reader loads: free the slot at once
                reading.cancel()
                return
            self.detector = reading.result()
            while True:
                message = await inbox.get()
                if message["type"] == "websocket.disconnect":
                    return
                await self.handle(message.get("text"))
        finally:
            reader.cancel()

    async def _read(self, inbox: asyncio.Queue) -> None:
        try:
            while True:
                message = await self.ws.receive()
                await inbox.put(message)
                if message["type"] == "websocket.disconnect":
                    break
        except (WebSocketDisconnect, RuntimeError):
            await inbox.put({"type": "websocket.disconnect"})
        self._gone.set()

    def describe(self) -> Any:
        """The effective session, as OpenAI's session object."""
        from openai.types.realtime import RealtimeSessionCreateRequest, RealtimeTranscriptionSessionCreateRequest

        audio_in = {"format": FORMAT, "transcription": self.transcription, "turn_detection": self.turn_detection}
        if self.kind == "transcription":
            return RealtimeTranscriptionSessionCreateRequest(type="transcription", audio={"input": audio_in})
        return RealtimeSessionCreateRequest(
            type="realtime", model=self.model, instructions=self.instructions, output_modalities=self.modalities,
            audio={"input": audio_in, "output": {"format": FORMAT, "voice": self.voice}},
            tools=self.tools or None, tool_choice=self.tool_choice)

    async def handle(self, text: str | None) -> None:
        if text is None:
            return await self.error("send JSON events as text messages (audio goes base64 in input_audio_buffer.append)")
        try:
            raw = json.loads(text)
            if isinstance(raw, dict) and raw.get("type") == "transcription_session.update":  # the beta name
                raw = {**raw, "type": "session.update", "session": _beta_session(raw.get("session") or {})}
            kind = raw.get("type") if isinstance(raw, dict) else None
            if kind not in _CLIENT_EVENTS:
                return await self.error(f"unknown event type {kind!r}", "invalid_event", "type")
            event = _CLIENT_EVENTS[kind].model_validate(raw)
        except (ValueError, ValidationError) as exc:
            return await self.error(f"invalid event: {_first(exc)}", "invalid_event")
        handler = getattr(self, "on_" + event.type.replace(".", "_"), None)
        try:
            if handler is None:
                raise _Error(f"{event.type} is not supported by this server", "unsupported_event")
            await handler(event, raw)
        except _Error as exc:
            await self.error(exc.message, exc.code, exc.param, getattr(event, "event_id", None))

    # ------------------------------------------------------------------ session.update

    async def on_session_update(self, event: Any, raw: dict) -> None:
        session = raw.get("session") or {}
        if session.get("type") in ("realtime", "transcription"):
            self.kind = session["type"]
        audio_in = (session.get("audio") or {}).get("input") or {}
        audio_out = (session.get("audio") or {}).get("output") or {}
        for fmt, where in ((audio_in.get("format"), "audio.input.format"), (audio_out.get("format"), "audio.output.format")):
            if fmt is not None and (fmt.get("type", "audio/pcm") != "audio/pcm" or fmt.get("rate", RATE) != RATE):
                raise _Error(f"{where}: only audio/pcm at {RATE} Hz is supported", param=f"session.{where}")
        turn_detection = self.turn_detection
        if "turn_detection" in audio_in:
            turn_detection = audio_in["turn_detection"]
            if turn_detection is not None:
                base = self.turn_detection or {"create_response": True, "interrupt_response": True}
                keep = {k: base[k] for k in ("create_response", "interrupt_response") if k in base}
                turn_detection = {**keep, **{k: v for k, v in turn_detection.items() if v is not None}}
        self.options = self._live_options(turn_detection)
        self.turn_detection = turn_detection
        if audio_in.get("transcription"):
            self.transcription = {k: v for k, v in audio_in["transcription"].items() if v is not None}
        if audio_out.get("voice"):
            self.voice = self._voice(audio_out["voice"], "session.audio.output.voice")
        if session.get("instructions") is not None:
            self.instructions = session["instructions"]
        if session.get("output_modalities"):
            self.modalities = list(session["output_modalities"])
        if session.get("tools") is not None:
            tools = session["tools"]
            if any(t.get("type", "function") != "function" or not t.get("name") for t in tools):
                raise _Error("only function tools with a name are supported", param="session.tools")
            self.tools = [{k: t[k] for k in ("type", "name", "description", "parameters") if t.get(k) is not None}
                          for t in tools]
        if session.get("tool_choice") is not None:
            self.tool_choice = session["tool_choice"]
        if self._turn is not None and self._turn.speech_start_ms is None:
            await run_in_threadpool(self._turn.close)  # no speech in it yet: the next audio uses the new settings
            self._turn = None
        await self.send(rse.SessionUpdatedEvent(event_id=_id("event"), type="session.updated", session=self.describe()))

    def _live_options(self, turn_detection: dict | None) -> LiveOptions:
        """The live turn's options under a turn_detection config (null: only input_audio_buffer.commit ends a turn)."""
        base = self.settings.live
        if turn_detection is None:
            return base.model_copy(update={"silence_ms": 10**9, "quick_silence_ms": 10**9, "max_silence_ms": 10**9})
        update: dict[str, Any] = {}
        if turn_detection.get("type") == "semantic_vad":
            update["max_silence_ms"] = EAGERNESS_MS.get(turn_detection.get("eagerness") or "auto", base.max_silence_ms)
            update["silence_ms"] = min(base.silence_ms, update["max_silence_ms"])
        else:
            if turn_detection.get("threshold") is not None:
                update["threshold"] = turn_detection["threshold"]
            if turn_detection.get("silence_duration_ms") is not None:
                update["silence_ms"] = turn_detection["silence_duration_ms"]  # asked for: no quicker step either
                update["quick_silence_ms"] = min(turn_detection["silence_duration_ms"], 5000)
                update["max_silence_ms"] = max(base.max_silence_ms, turn_detection["silence_duration_ms"])
            if turn_detection.get("prefix_padding_ms") is not None:
                update["pad_ms"] = turn_detection["prefix_padding_ms"]
        try:
            return LiveOptions.model_validate({**base.model_dump(), **update})
        except ValidationError as exc:
            raise _Error(f"session.audio.input.turn_detection: {_first(exc)}", param="session.audio.input.turn_detection") from None

    # ------------------------------------------------------------------ the input audio buffer

    def _voice(self, voice: Any, param: str) -> str:
        """A voice a client names: OpenAI's names mean the configured one (as on /v1/audio/speech: one voice is
        bundled), and so does its own name; any other is refused, not silently replaced."""
        name = voice.get("id") if isinstance(voice, dict) else voice
        if name in OPENAI_VOICES or name == self.settings.tts.voice:
            return name
        raise _Error(f"voice {str(name)[:60]!r} is not served here: OpenAI's voice names ({', '.join(OPENAI_VOICES)}) "
                     f"mean the configured voice, {self.settings.tts.voice}", param=param)

    def _instructions(self, override: str | None = None) -> list[ChatMessage]:
        """The session's instructions (or one response's own) as a system message leading the reply's history
        (kept past the history cap)."""
        text = (self.instructions if override is None else override).strip()
        return [ChatMessage(role="system", content=text)] if text else []

    def _history(self, instructions: str | None = None) -> list[ChatMessage]:
        return [*self._instructions(instructions), *(ChatMessage(role=i["role"], content=i["text"]) for i in self.items
                                                     if i["text"] and i["role"] in ("user", "assistant", "system"))]

    def _replies(self) -> bool:
        """Whether a committed turn gets a reply of its own (speculated by the live turn); with function tools the
        response is made after the transcript instead, where the model may call one (_tool_response)."""
        return self._creates() and not self._tools_on()

    def _creates(self) -> bool:
        td = self.turn_detection
        return self.kind == "realtime" and td is not None and td.get("create_response", True) is not False

    def _tools_on(self) -> bool:
        return bool(self.tools) and self.tool_choice != "none"

    def _ensure_turn(self) -> Any:
        from cascade.live import LiveTurn

        if self._turn is None:
            self._turn = LiveTurn(self.ws.app.state.gateway.turn, self.options, self._history(),
                                  detector=self.detector, reply=self._replies())
            self._turn_item, self._turn_offset_ms = _id("item"), self._appended_ms
            self._started_sent, self._delta_text = False, ""
        return self._turn

    async def on_input_audio_buffer_append(self, event: Any, raw: dict) -> None:
        try:
            pcm = base64.b64decode(event.audio, validate=True)
        except ValueError:
            raise _Error("audio is not base64", param="audio") from None
        if not pcm or len(pcm) % 2:
            raise _Error(f"audio of {len(pcm)} bytes is not pcm16 (empty or odd length)", param="audio")
        samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
        self._appended_ms += len(samples) * 1000 / RATE
        turn = self._ensure_turn()
        events = await run_in_threadpool(turn.feed, self._resampler(samples))
        await self._after_feed(turn, events)

    async def _after_feed(self, turn: Any, events: list) -> None:
        if self.turn_detection is not None and not self._started_sent and turn.speech_start_ms is not None:
            self._started_sent = True
            start = max(turn.speech_start_ms - self.options.pad_ms, 0.0)
            await self.send(rse.InputAudioBufferSpeechStartedEvent(
                event_id=_id("event"), type="input_audio_buffer.speech_started", item_id=self._turn_item,
                audio_start_ms=int(self._turn_offset_ms + start)))
        response = self.response
        if (response is not None and self.turn_detection is not None and self.options.barge_in_ms
                and self.turn_detection.get("interrupt_response", True) and turn.speech_ms >= self.options.barge_in_ms):
            await response.cancel("turn_detected")  # barge-in: its audio stops, the response is cancelled
        for e in events:
            if isinstance(e, LivePartial):
                await self._delta(self._turn_item, e.text)
        if turn.ended:
            await self._commit(vad=True)

    async def _delta(self, item_id: str, text: str) -> None:
        """The transcript so far as deltas: only what extends the text already sent (deltas cannot take back)."""
        text = " ".join(text.split())
        if text.startswith(self._delta_text) and len(text) > len(self._delta_text):
            delta, self._delta_text = text[len(self._delta_text):], text
            await self.send(rse.ConversationItemInputAudioTranscriptionDeltaEvent(
                event_id=_id("event"), type="conversation.item.input_audio_transcription.delta", item_id=item_id,
                content_index=0, delta=delta))

    async def on_input_audio_buffer_commit(self, event: Any, raw: dict) -> None:
        turn = self._turn
        if turn is None or turn.audio_ms < 100:
            raise _Error("buffer too small: commit needs at least 100 ms of audio", "input_audio_buffer_commit_empty")
        await run_in_threadpool(turn.finish)
        await self._commit(vad=False)

    async def on_input_audio_buffer_clear(self, event: Any, raw: dict) -> None:
        if self._turn is not None:
            turn, self._turn = self._turn, None
            await run_in_threadpool(turn.close)
        await self.send(rse.InputAudioBufferClearedEvent(event_id=_id("event"), type="input_audio_buffer.cleared"))

    async def _commit(self, vad: bool) -> None:
        """The turn's audio becomes a user item; its transcript (and, with create_response, the reply) follow."""
        turn, item_id, delta_text = self._turn, self._turn_item, self._delta_text
        self._turn = None
        previous = self.items[-1]["id"] if self.items else None
        if vad and self.turn_detection is not None and turn.speech_end_ms is not None:
            await self.send(rse.InputAudioBufferSpeechStoppedEvent(
                event_id=_id("event"), type="input_audio_buffer.speech_stopped", item_id=item_id,
                audio_end_ms=int(self._turn_offset_ms + turn.speech_end_ms)))
        await self.send(rse.InputAudioBufferCommittedEvent(event_id=_id("event"), type="input_audio_buffer.committed",
                                                           item_id=item_id, previous_item_id=previous))
        self.items.append({"id": item_id, "role": "user", "text": None})
        await self.send(rse.ConversationItemAdded(event_id=_id("event"), type="conversation.item.added",
                                                  previous_item_id=previous, item=_user_item(item_id, None)))
        self._chain = self._spawn(self._answer_turn(turn, item_id, previous, delta_text, self._chain))

    def _spawn(self, coro: Any) -> asyncio.Future:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _answer_turn(self, turn: Any, item_id: str, previous: str | None, delta_text: str,
                           before: asyncio.Future | None) -> None:
        """The committed turn's transcript events, then its reply as a response (speculated at the pause)."""
        if before is not None:
            with contextlib.suppress(Exception):
                await before
        cancel = threading.Event()
        events = turn.respond(cancel)
        response: _Response | None = None
        sent = delta_text
        try:
            while True:
                event = await run_in_threadpool(next, events, _END)
                if event is _END:
                    break
                if isinstance(event, LivePartial):
                    sent = await self._late_delta(item_id, sent, event.text)
                elif isinstance(event, LiveFinal):
                    await self._transcribed(item_id, previous, event.text, turn.audio_ms / 1000)
                    if turn.reply and event.text.strip():
                        response = self.response = _Response(self, cancel)
                        await response.start()
                elif isinstance(event, LiveError) and response is None and not any(
                        i["id"] == item_id and i["text"] is not None for i in self.items):
                    await self.send(rse.ConversationItemInputAudioTranscriptionFailedEvent(
                        event_id=_id("event"), type="conversation.item.input_audio_transcription.failed",
                        item_id=item_id, content_index=0,
                        error={"type": "transcription_error", "code": event.code, "message": event.message}))
                elif response is not None:
                    await response.on(event)
        finally:
            cancel.set()
            await run_in_threadpool(events.close)
            await run_in_threadpool(turn.close)
            if response is not None:
                await response.finish()
        transcribed = any(i["id"] == item_id and i["text"] for i in self.items)
        if not turn.reply and transcribed and self._creates() and self._tools_on() and self.response is None:
            self.response = _Response(self, threading.Event())
            await self._create_response(self.response, None)

    async def _late_delta(self, item_id: str, sent: str, text: str) -> str:
        text = " ".join(text.split())
        if text.startswith(sent) and len(text) > len(sent):
            await self.send(rse.ConversationItemInputAudioTranscriptionDeltaEvent(
                event_id=_id("event"), type="conversation.item.input_audio_transcription.delta", item_id=item_id,
                content_index=0, delta=text[len(sent):]))
            return text
        return sent

    async def _transcribed(self, item_id: str, previous: str | None, text: str, seconds: float) -> None:
        for item in self.items:
            if item["id"] == item_id:
                item["text"] = text
        await self.send(rse.ConversationItemInputAudioTranscriptionCompletedEvent(
            event_id=_id("event"), type="conversation.item.input_audio_transcription.completed", item_id=item_id,
            content_index=0, transcript=text, usage={"type": "duration", "seconds": round(seconds, 3)}))
        await self.send(rse.ConversationItemDone(event_id=_id("event"), type="conversation.item.done",
                                                 previous_item_id=previous, item=_user_item(item_id, text)))

    # ------------------------------------------------------------------ conversation items and responses

    async def on_conversation_item_create(self, event: Any, raw: dict) -> None:
        item = raw.get("item") or {}
        if item.get("type") in ("function_call", "function_call_output"):
            return await self._create_call_item(item)
        if item.get("type", "message") != "message" or item.get("role") not in ("user", "assistant", "system"):
            raise _Error("only message items (user, assistant, system) are supported", param="item.type")
        text = " ".join(str(c.get("text") or c.get("transcript") or "") for c in item.get("content") or []).strip()
        if not text:
            raise _Error("a message item needs text content (input_text / output_text)", param="item.content")
        item_id = item.get("id") or _id("item")
        previous = self.items[-1]["id"] if self.items else None
        self.items.append({"id": item_id, "role": item["role"], "text": text})
        out = {**item, "id": item_id, "type": "message", "status": "completed", "object": "realtime.item"}
        await self.send(rse.ConversationItemAdded(event_id=_id("event"), type="conversation.item.added",
                                                  previous_item_id=previous, item=out))
        await self.send(rse.ConversationItemDone(event_id=_id("event"), type="conversation.item.done",
                                                 previous_item_id=previous, item=out))

    async def _create_call_item(self, item: dict) -> None:
        """A function call the client adds, or (what agents send) the output of a call a response made."""
        call_id = item.get("call_id")
        if not call_id:
            raise _Error(f"a {item['type']} item needs its call_id", param="item.call_id")
        item_id = item.get("id") or _id("item")
        previous = self.items[-1]["id"] if self.items else None
        if item["type"] == "function_call":
            if not item.get("name"):
                raise _Error("a function_call item needs the function's name", param="item.name")
            stored = {"id": item_id, "role": "call", "text": None, "name": item["name"],
                      "arguments": item.get("arguments") or "{}", "call_id": call_id}
        else:
            stored = {"id": item_id, "role": "tool", "text": str(item.get("output") or ""), "call_id": call_id}
        self.items.append(stored)
        out = _item(stored)
        await self.send(rse.ConversationItemAdded(event_id=_id("event"), type="conversation.item.added",
                                                  previous_item_id=previous, item=out))
        await self.send(rse.ConversationItemDone(event_id=_id("event"), type="conversation.item.done",
                                                 previous_item_id=previous, item=out))

    def _chat_messages(self) -> list[dict]:
        """The conversation as OpenAI chat messages (calls as assistant tool_calls, outputs as tool messages)."""
        out: list[dict] = []
        for i in self.items:
            if i["role"] == "call":
                call = {"id": i["call_id"], "type": "function", "function": {"name": i["name"], "arguments": i["arguments"]}}
                if out and out[-1]["role"] == "assistant" and out[-1].get("tool_calls"):
                    out[-1]["tool_calls"].append(call)
                else:
                    out.append({"role": "assistant", "content": None, "tool_calls": [call]})
            elif i["role"] == "tool":
                out.append({"role": "tool", "tool_call_id": i["call_id"], "content": i["text"]})
            elif i["text"]:
                out.append({"role": i["role"], "content": i["text"]})
        return out

    async def _tool_calls(self, messages: list[dict]) -> list[dict]:
        """The calls the model makes now (the gateway's chat stage: grammar-constrained, or the LLM service's)."""
        from services.llm.protocol import ChatCompletionRequest

        choice = self.tool_choice
        if isinstance(choice, dict) and choice.get("type") == "function":
            choice = {"type": "function", "function": {"name": choice.get("name")}}
        tools = [{"type": "function", "function": {k: t[k] for k in ("name", "description", "parameters") if k in t}}
                 for t in self.tools]
        stages = self.ws.app.state.openai
        local = stages.llm_remote is None
        req = ChatCompletionRequest.model_validate({"model": self.settings.llm.model, "messages": messages,
                                                    "tools": tools, "tool_choice": choice, "max_tokens": 160,
                                                    "stream": local})
        if local:  # the decision alone: a text answer is stopped at its first words (the spoken one is made anew)
            llm = stages.llm
            return await stages.queues[f"llm:{llm.name}"].run(_decided_calls, llm.chat_stream(req))
        result = await stages.chat(req)
        body = json.loads(result.body) if hasattr(result, "body") else result.model_dump(mode="json")
        return body["choices"][0]["message"].get("tool_calls") or []

    async def _call_response(self, response: _Response, calls: list[dict]) -> None:
        """A response whose output is function calls: OpenAI's function_call items with their arguments events."""
        await response.announce()
        output = []
        for index, call in enumerate(calls):
            name, arguments = call["function"]["name"], call["function"].get("arguments") or "{}"
            item_id, call_id = _id("item"), call.get("id") or _id("call")
            previous = self.items[-1]["id"] if self.items else None
            self.items.append({"id": item_id, "role": "call", "text": None, "name": name, "arguments": arguments,
                               "call_id": call_id})
            item = {"id": item_id, "type": "function_call", "object": "realtime.item", "status": "in_progress",
                    "name": name, "call_id": call_id, "arguments": ""}
            ids = {"event_id": _id("event"), "response_id": response.id, "item_id": item_id, "output_index": index,
                   "call_id": call_id}
            await self.send(rse.ResponseOutputItemAddedEvent(event_id=_id("event"), type="response.output_item.added",
                                                             response_id=response.id, output_index=index, item=item))
            await self.send(rse.ConversationItemAdded(event_id=_id("event"), type="conversation.item.added",
                                                      previous_item_id=previous, item=item))
            await self.send(rse.ResponseFunctionCallArgumentsDeltaEvent(
                type="response.function_call_arguments.delta", delta=arguments, **ids))
            await self.send(rse.ResponseFunctionCallArgumentsDoneEvent(
                type="response.function_call_arguments.done", name=name, arguments=arguments, **ids))
            done = {**item, "status": "completed", "arguments": arguments}
            await self.send(rse.ResponseOutputItemDoneEvent(event_id=_id("event"), type="response.output_item.done",
                                                            response_id=response.id, output_index=index, item=done))
            await self.send(rse.ConversationItemDone(event_id=_id("event"), type="conversation.item.done",
                                                     previous_item_id=previous, item=done))
            output.append(done)
        response.status, response.finished = "completed", True
        await self.send(rse.ResponseDoneEvent(event_id=_id("event"), type="response.done",
                                              response=response._response(output)))

    async def on_conversation_item_delete(self, event: Any, raw: dict) -> None:
        if not any(i["id"] == event.item_id for i in self.items):
            raise _Error(f"no item {event.item_id!r} in the conversation", "item_not_found", "item_id")
        self.items = [i for i in self.items if i["id"] != event.item_id]
        await self.send(rse.ConversationItemDeletedEvent(event_id=_id("event"), type="conversation.item.deleted",
                                                         item_id=event.item_id))

    async def on_conversation_item_retrieve(self, event: Any, raw: dict) -> None:
        found = next((i for i in self.items if i["id"] == event.item_id), None)
        if found is None:
            raise _Error(f"no item {event.item_id!r} in the conversation", "item_not_found", "item_id")
        await self.send(rse.ConversationItemRetrieved(event_id=_id("event"), type="conversation.item.retrieved",
                                                      item=_item(found)))

    async def on_conversation_item_truncate(self, event: Any, raw: dict) -> None:
        """The client played only part of an assistant item's audio: acknowledged (its text stays as it was)."""
        if not any(i["id"] == event.item_id for i in self.items):
            raise _Error(f"no item {event.item_id!r} in the conversation", "item_not_found", "item_id")
        await self.send(rse.ConversationItemTruncatedEvent(
            event_id=_id("event"), type="conversation.item.truncated", item_id=event.item_id,
            content_index=event.content_index, audio_end_ms=event.audio_end_ms))

    async def on_response_create(self, event: Any, raw: dict) -> None:
        """A reply to the conversation's last user message, spoken (no correction: it is already text)."""
        if self.kind != "realtime":
            raise _Error("a transcription session makes no responses", "invalid_session_type")
        if self.response is not None:
            raise _Error("the conversation already has an active response", "conversation_already_has_active_response")
        params = raw.get("response") or {}
        voice = ((params.get("audio") or {}).get("output") or {}).get("voice")
        if voice:
            self._voice(voice, "response.audio.output.voice")
        self.response = _Response(self, threading.Event(), params.get("metadata"))  # reserved: a 2nd create is refused
        self.response.instructions = params.get("instructions")  # this response's own, in place of the session's
        self._spawn(self._create_response(self.response, self._chain))

    async def _create_response(self, response: _Response, before: asyncio.Future | None) -> None:
        from cascade.live import answer

        if before is not None:
            with contextlib.suppress(Exception):
                await before  # a committed turn's transcript first
        users = [i for i in self.items if i["role"] == "user" and i["text"]]
        if not users:
            self.response = None
            return await self.error("nothing to respond to: the conversation has no user message with text",
                                    "no_user_message")
        last = users[-1]
        history = self._history(response.instructions)
        history = history[: max(len(history) - 1, 0)] if history and history[-1].content == last["text"] else history
        text = last["text"]
        if self._tools_on() or any(i["role"] in ("call", "tool") for i in self.items):
            called = await self._tool_step(response)
            if called is None:
                return
            text, history = called
        events = answer(self.ws.app.state.gateway.turn, text, history, response.cancel_event)
        await response.start()
        try:
            while True:
                event = await run_in_threadpool(next, events, _END)
                if event is _END:
                    break
                await response.on(event)
        finally:
            await run_in_threadpool(events.close)
            await response.finish()

    async def _tool_step(self, response: _Response) -> tuple[str, list[ChatMessage]] | None:
        """With function tools: a response of calls when the model makes one (None: done), else what the spoken
        answer replies to, the tools' outputs beside the question they answer ("name returned: ...")."""
        from cascade.llm.chat import as_prompt_messages
        from cascade.types import CascadeError

        messages = self._chat_messages()
        if self._tools_on():
            await response.announce()
            try:
                calls = await self._tool_calls([*({"role": "system", "content": m.content}
                                                  for m in self._instructions(response.instructions)),
                                                *messages])
            except CascadeError as exc:
                await self.error(f"function calling failed: {exc.message}", "tool_call_failed")
                response.status, response.reason = "failed", exc.message
                await response.finish()  # response.done (failed): the response.created above is answered
                return None
            if calls:
                await self._call_response(response, calls)
                if self.response is response:
                    self.response = None
                return None
        plain = as_prompt_messages(messages, calls_as_text=False)
        last = max(i for i, m in enumerate(plain) if m["role"] == "user")
        history = [ChatMessage(role=m["role"], content=m["content"]) for m in plain[:last] if m["content"]]
        return plain[last]["content"], [*self._instructions(response.instructions), *history]

    async def on_response_cancel(self, event: Any, raw: dict) -> None:
        if self.response is None or (event.response_id and event.response_id != self.response.id):
            raise _Error("there is no active response to cancel", "response_cancel_not_active")
        await self.response.cancel("client_cancelled")

    async def close(self) -> None:
        """The client left: stop the reply and every turn (their threads stop within a token)."""
        if self.response is not None:
            self.response.cancel_event.set()
        for task in list(self._tasks):
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(task, 30)
        if self._turn is not None:
            await run_in_threadpool(self._turn.close)
            self._turn = None


def _decided_calls(chunks: Iterator[Any]) -> list[dict]:
    """The tool calls of a streamed chat completion, read until the model's decision: its calls (decoded whole,
    then sent in OpenAI's pieces), or none when text comes first; the stream is closed there, so a text answer
    nobody reads is not generated."""
    calls: dict[int, dict] = {}
    try:
        for chunk in chunks:
            if not chunk.choices:
                continue
            choice = chunk.choices[0]
            if choice.delta.content:
                return []
            for piece in choice.delta.tool_calls or []:
                call = calls.setdefault(piece.index, {"id": None, "type": "function",
                                                      "function": {"name": "", "arguments": ""}})
                call["id"] = piece.id or call["id"]
                if piece.function is not None:
                    call["function"]["name"] += piece.function.name or ""
                    call["function"]["arguments"] += piece.function.arguments or ""
            if choice.finish_reason:
                break
    finally:
        close = getattr(chunks, "close", None)
        if close:
            close()
    return [calls[i] for i in sorted(calls)]


class _Response:
    """One assistant response: its item's audio and transcript deltas, then the done events (completed or cancelled)."""

    def __init__(self, session: RealtimeSession, cancel: threading.Event, metadata: dict | None = None):
        self.session, self.cancel_event, self.metadata = session, cancel, metadata
        self.id, self.item_id = _id("resp"), _id("item")
        self.audio = "audio" in session.modalities
        self.sentences: list[str] = []
        self.status, self.reason = "in_progress", None
        self.resampler: Any = None
        self.first_audio_at: float | None = None
        self.started = self.finished = self.created = False
        self.instructions: str | None = None  # response.create's own instructions (None: the session's)

    async def announce(self) -> None:
        """response.created, once: sent before a slow decision too (LiveKit waits 10 s for it)."""
        if not self.created:
            self.created = True
            await self.session.send(rse.ResponseCreatedEvent(event_id=_id("event"), type="response.created",
                                                             response=self._response([])))

    def _item(self, status: str) -> dict:
        text = " ".join(self.sentences)
        part = {"type": "output_audio", "transcript": text} if self.audio else {"type": "output_text", "text": text}
        return {"id": self.item_id, "type": "message", "role": "assistant", "status": status, "object": "realtime.item",
                "content": [part] if self.started else []}

    def _part(self) -> dict:
        text = " ".join(self.sentences)
        return {"type": "audio", "transcript": text} if self.audio else {"type": "text", "text": text}

    def _response(self, output: list) -> dict:
        body: dict[str, Any] = {"id": self.id, "object": "realtime.response", "status": self.status, "output": output,
                                "output_modalities": self.session.modalities, "conversation_id": "conv_cascade",
                                "audio": {"output": {"format": FORMAT, "voice": self.session.voice}}}
        if self.status == "cancelled":
            body["status_details"] = {"type": "cancelled", "reason": self.reason}
        if self.metadata:
            body["metadata"] = self.metadata  # clients match a response to their response.create by it (LiveKit)
        return body

    def _ids(self) -> dict:
        return {"event_id": _id("event"), "response_id": self.id, "item_id": self.item_id, "output_index": 0,
                "content_index": 0}

    async def start(self) -> None:
        s = self.session
        await self.announce()
        item = self._item("in_progress")
        await s.send(rse.ResponseOutputItemAddedEvent(event_id=_id("event"), type="response.output_item.added",
                                                      response_id=self.id, output_index=0, item=item))
        previous = s.items[-1]["id"] if s.items else None
        s.items.append({"id": self.item_id, "role": "assistant", "text": None})
        await s.send(rse.ConversationItemAdded(event_id=_id("event"), type="conversation.item.added",
                                               previous_item_id=previous, item=item))
        self.started = True
        await s.send(rse.ResponseContentPartAddedEvent(type="response.content_part.added", part=self._part(), **self._ids()))

    async def on(self, event: Any) -> None:
        if self.cancel_event.is_set() or self.finished:
            return
        s = self.session
        if isinstance(event, LiveReplyDelta):
            delta = (" " if self.sentences else "") + event.text
            self.sentences.append(event.text)
            if self.audio:
                await s.send(rse.ResponseAudioTranscriptDeltaEvent(type="response.output_audio_transcript.delta",
                                                                   delta=delta, **self._ids()))
            else:
                await s.send(rse.ResponseTextDeltaEvent(type="response.output_text.delta", delta=delta, **self._ids()))
        elif isinstance(event, LiveAudio) and event.chunk is not None and self.audio:
            for piece in self._pcm(event.chunk):
                self.first_audio_at = self.first_audio_at or time.perf_counter()
                await s.send(rse.ResponseAudioDeltaEvent(type="response.output_audio.delta",
                                                         delta=base64.b64encode(piece).decode(), **self._ids()))
        elif isinstance(event, LiveError):
            self.status, self.reason = "failed", event.message
        elif isinstance(event, LiveDone):
            pass

    def _pcm(self, chunk: AudioChunk) -> Iterator[bytes]:
        from cascade.audio import StreamResampler

        if self.resampler is None or self.resampler.orig_sr != chunk.sample_rate:
            self.resampler = StreamResampler(chunk.sample_rate, RATE)
        samples = self.resampler(np.frombuffer(chunk.pcm, dtype="<i2").astype(np.float32) / 32768.0)
        pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2").tobytes()
        step = int(RATE * CHUNK_S) * 2
        for i in range(0, len(pcm), step):
            yield pcm[i: i + step]

    async def cancel(self, reason: str) -> None:
        """Stop now (barge-in or response.cancel): no more deltas; the done events say cancelled."""
        if self.finished or self.cancel_event.is_set():
            return
        self.status, self.reason = "cancelled", reason
        self.cancel_event.set()
        await self.finish()

    async def finish(self) -> None:
        if self.finished:
            return
        self.finished = True
        s = self.session
        if self.status == "in_progress":
            self.status = "completed"
        text = " ".join(self.sentences)
        for item in s.items:
            if item["id"] == self.item_id:
                item["text"] = text or None
        if self.started:
            if self.audio:
                await s.send(rse.ResponseAudioDoneEvent(type="response.output_audio.done", **self._ids()))
                await s.send(rse.ResponseAudioTranscriptDoneEvent(type="response.output_audio_transcript.done",
                                                                  transcript=text, **self._ids()))
            else:
                await s.send(rse.ResponseTextDoneEvent(type="response.output_text.done", text=text, **self._ids()))
            await s.send(rse.ResponseContentPartDoneEvent(type="response.content_part.done", part=self._part(),
                                                          **self._ids()))
            item = self._item("completed" if self.status == "completed" else "incomplete")
            await s.send(rse.ResponseOutputItemDoneEvent(event_id=_id("event"), type="response.output_item.done",
                                                         response_id=self.id, output_index=0, item=item))
            await s.send(rse.ConversationItemDone(event_id=_id("event"), type="conversation.item.done", item=item))
            output = [item]
        else:
            output = []
        await s.send(rse.ResponseDoneEvent(event_id=_id("event"), type="response.done", response=self._response(output)))
        if s.response is self:
            s.response = None


def _user_item(item_id: str, transcript: str | None) -> dict:
    return {"id": item_id, "type": "message", "role": "user", "object": "realtime.item",
            "status": "completed", "content": [{"type": "input_audio", "transcript": transcript}]}


def _item(item: dict) -> dict:
    if item["role"] == "call":
        return {"id": item["id"], "type": "function_call", "object": "realtime.item", "status": "completed",
                "name": item["name"], "arguments": item["arguments"], "call_id": item["call_id"]}
    if item["role"] == "tool":
        return {"id": item["id"], "type": "function_call_output", "object": "realtime.item", "status": "completed",
                "call_id": item["call_id"], "output": item["text"]}
    kind = {"user": "input_text", "system": "input_text", "assistant": "output_text"}[item["role"]]
    return {"id": item["id"], "type": "message", "role": item["role"], "object": "realtime.item", "status": "completed",
            "content": [{"type": kind, "text": item["text"] or ""}]}


def _beta_session(session: dict) -> dict:
    """A beta `transcription_session.update` body (flat fields) as the GA transcription session."""
    audio_in: dict[str, Any] = {}
    if "turn_detection" in session:
        audio_in["turn_detection"] = session["turn_detection"]
    if session.get("input_audio_transcription"):
        audio_in["transcription"] = {k: v for k, v in session["input_audio_transcription"].items()
                                     if k in ("model", "language", "prompt") and v}
    if session.get("input_audio_format") not in (None, "pcm16"):
        audio_in["format"] = {"type": f"audio/{session['input_audio_format']}"}
    return {"type": "transcription", "audio": {"input": audio_in}}


def _first(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        err = exc.errors()[0]
        return f"{'.'.join(str(p) for p in err['loc']) or 'event'}: {err['msg']}"
    return f"not JSON ({exc})".splitlines()[0]
