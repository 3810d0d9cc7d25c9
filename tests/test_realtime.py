"""OpenAI's Realtime API on the gateway, driven by the official `openai` client (`client.realtime.connect` with
only base_url set) on loopback, with real audio through real Whisper, SmolLM2 and piper.

JFK's sentence is streamed at real time (20 ms appends, 24 kHz pcm16 as the API sends it) with server VAD at
1.2 s of silence (his pauses last up to 1.1 s), so it is one turn whatever the words read as and however fast
the machine decodes: the protocol is under test here; the end-of-turn reading is tested in test_live.py with
each reading waited for. Barge-in and the manual-commit flow use the same socket protocol; the refusals check
that a bad event gets an `error` event and the session goes on.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from pathlib import Path

import numpy as np
import pytest
from openai import AsyncOpenAI

from cascade.audio import load_audio, resample
from cascade.metrics import normalize
from services.common.testing import Service, running_service

KEY = "sesame"
ENV = {"OMP_NUM_THREADS": "1", "CASCADE_LLM__THREADS": "1", "CASCADE_ASR__CPU_THREADS": "1",
       "CASCADE_LIVE__MAX_SESSIONS": "2", "CASCADE_CHAT__MAX_SENTENCES": "1", "CASCADE_CHAT__MAX_REPLY_TOKENS": "24",
       "CASCADE_SERVICE__API_KEY": KEY}
STEP = 24000 * 2 // 50  # 20 ms of pcm16 at 24 kHz
VAD_1200 = {"type": "server_vad", "silence_duration_ms": 1200}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory) -> Service:
    with running_service("gateway", log_dir=tmp_path_factory.mktemp("gw-realtime"), env=ENV, ready_timeout=300) as gw:
        yield gw


@pytest.fixture(scope="module")
def jfk24(jfk_path: Path) -> bytes:
    return (np.clip(resample(load_audio(jfk_path), 16000, 24000), -1, 1) * 32767).astype("<i2").tobytes()


def _client(gw: Service, key: str = KEY) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=f"{gw.url}/v1", api_key=key)


async def _stream(conn, pcm: bytes, paced: bool, silence_s: float = 0.0) -> None:
    """Append pcm16 in 20 ms pieces (at real time when paced), then silence."""
    pcm = pcm + b"\0" * (int(24000 * silence_s) * 2)
    t0 = time.perf_counter()
    for k, i in enumerate(range(0, len(pcm), STEP)):
        await conn.input_audio_buffer.append(audio=base64.b64encode(pcm[i : i + STEP]).decode())
        if paced:
            await asyncio.sleep(max(t0 + (k + 1) * 0.02 - time.perf_counter(), 0))


async def _until(conn, stop, timeout: float = 240.0) -> list:
    """Server events up to and including the first for which stop(event) is true."""
    events = []

    async def read() -> None:
        async for event in conn:
            events.append(event)
            if event.type == "error" or stop(event):
                return

    await asyncio.wait_for(read(), timeout)
    return events


def _types(events: list) -> list[str]:
    return [e.type for e in events]


def test_transcription_session_one_sentence_with_pauses_is_one_turn(gateway: Service, jfk24: bytes) -> None:
    async def run() -> list:
        async with _client(gateway).realtime.connect(model="gpt-4o-transcribe",
                                                     extra_query={"intent": "transcription"}) as conn:
            created = await conn.recv()
            assert created.type == "session.created" and created.session.type == "transcription"
            await conn.session.update(session={"type": "transcription", "audio": {"input": {"turn_detection": VAD_1200}}})
            assert (await _until(conn, lambda e: e.type == "session.updated"))[-1].session.type == "transcription"
            sender = asyncio.ensure_future(_stream(conn, jfk24, paced=True, silence_s=3.0))
            events = await _until(conn, lambda e: e.type == "conversation.item.input_audio_transcription.completed")
            await sender
            return events

    events = asyncio.run(run())
    kinds = _types(events)
    assert "error" not in kinds, events[-1]
    assert kinds.count("input_audio_buffer.committed") == 1, "JFK's pauses ended the turn early"
    assert kinds.index("input_audio_buffer.speech_started") < kinds.index("input_audio_buffer.speech_stopped") \
        < kinds.index("input_audio_buffer.committed") < kinds.index("conversation.item.input_audio_transcription.completed")
    done = events[-1]
    assert "ask not what your country can do for you" in normalize(done.transcript)
    assert "ask what you can do for your country" in normalize(done.transcript)
    deltas = [e for e in events if e.type == "conversation.item.input_audio_transcription.delta"]
    assert deltas and all(e.item_id == done.item_id for e in deltas)
    assert not any(k.startswith("response.") for k in kinds), "a transcription session makes no responses"
    stopped = next(e for e in events if e.type == "input_audio_buffer.speech_stopped")
    assert 10_000 <= stopped.audio_end_ms <= 11_500  # the end of "... your country", on the session's audio clock


def test_conversation_turn_answers_in_24khz_audio(gateway: Service, jfk24: bytes) -> None:
    async def run() -> tuple[list, float]:
        async with _client(gateway).realtime.connect(model="gpt-realtime") as conn:
            assert (await conn.recv()).type == "session.created"
            await conn.session.update(session={"type": "realtime", "audio": {"input": {"turn_detection": VAD_1200}}})
            events = await _until(conn, lambda e: e.type == "session.updated")
            sender = asyncio.ensure_future(_stream(conn, jfk24, paced=True, silence_s=3.0))
            events += await _until(conn, lambda e: e.type == "response.done")
            await sender
            return events, 0.0

    events, _ = asyncio.run(run())
    kinds = _types(events)
    assert "error" not in kinds, events[-1]
    assert kinds.count("input_audio_buffer.committed") == 1 and kinds.count("response.created") == 1
    assert next(e for e in events if e.type == "session.updated").session.audio.input.turn_detection.silence_duration_ms == 1200
    order = ["input_audio_buffer.speech_stopped", "conversation.item.input_audio_transcription.completed",
             "response.created", "response.output_item.added", "response.content_part.added",
             "response.output_audio_transcript.delta", "response.output_audio.delta", "response.output_audio.done",
             "response.output_audio_transcript.done", "response.output_item.done", "response.done"]
    assert [kinds.index(k) for k in order] == sorted(kinds.index(k) for k in order)
    done = events[-1].response
    assert done.status == "completed" and done.output[0].role == "assistant"
    said = "".join(e.delta for e in events if e.type == "response.output_audio_transcript.delta")
    assert said.strip() and done.output[0].content[0].transcript == said
    pcm = b"".join(base64.b64decode(e.delta) for e in events if e.type == "response.output_audio.delta")
    seconds = len(pcm) / 2 / 24000
    assert len(pcm) % 2 == 0 and 0.3 < seconds < 20 and np.abs(np.frombuffer(pcm, "<i2")).max() > 1000
    user = next(e for e in events if e.type == "conversation.item.input_audio_transcription.completed")
    assert "your country" in normalize(user.transcript)


def test_manual_commit_response_create_and_barge_in(gateway: Service, jfk24: bytes) -> None:
    """turn_detection null: commit ends the turn, response.create answers it; then with server VAD back on,
    speech during a response cancels it (turn_detected) and starts the next user turn."""

    async def run() -> tuple[list, list]:
        async with _client(gateway).realtime.connect(model="gpt-realtime") as conn:
            assert (await conn.recv()).type == "session.created"
            await conn.session.update(session={"type": "realtime", "audio": {"input": {"turn_detection": None}}})
            updated = await _until(conn, lambda e: e.type == "session.updated")
            assert updated[-1].session.audio.input.turn_detection is None
            await _stream(conn, jfk24[: 24000 * 2 * 3], paced=False)  # "And so my fellow Americans"
            await conn.input_audio_buffer.commit()
            first = await _until(conn, lambda e: e.type == "conversation.item.input_audio_transcription.completed")
            await conn.response.create()
            first += await _until(conn, lambda e: e.type == "response.done")
            # server VAD back on; a text turn asks for a response, and the user talks over it
            await conn.session.update(session={"type": "realtime", "audio": {"input": {"turn_detection": {
                "type": "server_vad", "silence_duration_ms": 600}}}})
            await _until(conn, lambda e: e.type == "session.updated")
            await conn.conversation.item.create(item={"type": "message", "role": "user",
                                                      "content": [{"type": "input_text", "text": "Tell me a story."}]})
            await conn.response.create()
            second = await _until(conn, lambda e: e.type == "response.created")
            await _stream(conn, jfk24[: 24000 * 2 * 2], paced=False)
            second += await _until(conn, lambda e: e.type == "response.done")
            return first, second

    first, second = asyncio.run(run())
    kinds = _types(first)
    assert "error" not in kinds, first[-1]
    assert "input_audio_buffer.speech_started" not in kinds, "no VAD events without turn detection"
    user = next(e for e in first if e.type == "conversation.item.input_audio_transcription.completed")
    assert "americans" in normalize(user.transcript)
    assert first[-1].response.status == "completed" and "response.output_audio.delta" in kinds
    kinds = _types(second)
    assert "error" not in kinds, second[-1]
    assert "input_audio_buffer.speech_started" in kinds
    cancelled = second[-1].response
    assert cancelled.status == "cancelled" and cancelled.status_details.reason == "turn_detected"


WEATHER = {"type": "function", "name": "get_weather", "description": "Get the current weather in a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
                          "additionalProperties": False}}


def test_function_calling_round_trip(gateway: Service) -> None:
    """Tools in session.update: the response is a function_call item with its arguments events; the client's
    function_call_output and a second response.create give the answer (the same call is not made again)."""

    async def run() -> tuple[list, list]:
        async with _client(gateway).realtime.connect(model="gpt-realtime") as conn:
            assert (await conn.recv()).type == "session.created"
            await conn.session.update(session={"type": "realtime", "output_modalities": ["text"], "tools": [WEATHER],
                                               "tool_choice": "auto"})
            updated = await _until(conn, lambda e: e.type == "session.updated")
            assert updated[-1].session.tools[0].name == "get_weather"
            await conn.conversation.item.create(item={"type": "message", "role": "user", "content": [
                {"type": "input_text", "text": "What's the weather like in Paris?"}]})
            await conn.response.create()
            first = await _until(conn, lambda e: e.type == "response.done")
            call = next(e for e in first if e.type == "response.function_call_arguments.done")
            await conn.conversation.item.create(item={"type": "function_call_output", "call_id": call.call_id,
                                                      "output": '{"temperature_c": 22, "sky": "sunny"}'})
            await conn.response.create()
            second = await _until(conn, lambda e: e.type == "response.done")
            return first, second

    first, second = asyncio.run(run())
    kinds = _types(first)
    assert "error" not in kinds, first[-1]
    assert kinds.index("response.created") < kinds.index("response.output_item.added") < kinds.index(
        "response.function_call_arguments.delta") < kinds.index("response.function_call_arguments.done")
    call = next(e for e in first if e.type == "response.function_call_arguments.done")
    assert call.name == "get_weather" and "paris" in json.loads(call.arguments)["city"].lower()
    done = first[-1].response
    assert done.status == "completed" and [o.type for o in done.output] == ["function_call"]
    assert done.output[0].call_id == call.call_id and done.output[0].arguments == call.arguments
    kinds = _types(second)
    assert "error" not in kinds, second[-1]
    assert "response.function_call_arguments.done" not in kinds and "response.output_text.delta" in kinds
    answer = second[-1].response
    assert answer.status == "completed" and answer.output[0].type == "message" and answer.output[0].content[0].text


def test_session_instructions_reach_the_reply(gateway: Service) -> None:
    """session.update instructions lead the reply's prompt: the same question (greedy) is answered otherwise;
    response.create's own instructions replace the session's for that response (the same prompt, the same words)."""
    pirate_line = "You are a pirate. Always talk about the sea and your ship."

    async def ask(instructions: str | None, own: str | None = None) -> str:
        async with _client(gateway).realtime.connect(model="gpt-realtime") as conn:
            assert (await conn.recv()).type == "session.created"
            session = {"type": "realtime", "output_modalities": ["text"],
                       **({"instructions": instructions} if instructions else {})}
            await conn.session.update(session=session)
            await _until(conn, lambda e: e.type == "session.updated")
            await conn.conversation.item.create(item={"type": "message", "role": "user", "content": [
                {"type": "input_text", "text": "What should I cook tonight?"}]})
            await conn.response.create(response={"instructions": own} if own else None)
            events = await _until(conn, lambda e: e.type == "response.done")
            assert "error" not in _types(events), events[-1]
            return next(e.text for e in events if e.type == "response.output_text.done")

    plain = asyncio.run(ask(None))
    pirate = asyncio.run(ask(pirate_line))
    assert plain.strip() and pirate.strip() and pirate != plain
    assert asyncio.run(ask("Be a chef.", own=pirate_line)) == pirate


def test_bad_events_get_error_events_and_the_session_goes_on(gateway: Service) -> None:
    async def run() -> list:
        async with _client(gateway).realtime.connect(model="gpt-realtime") as conn:
            assert (await conn.recv()).type == "session.created"
            errors = []
            for send in (
                lambda: conn.send({"type": "response.cancel"}),
                lambda: conn.send({"type": "input_audio_buffer.commit"}),
                lambda: conn.send({"type": "session.update", "session": {"type": "realtime", "audio": {
                    "input": {"format": {"type": "audio/pcmu"}}}}}),
                lambda: conn.send({"type": "input_audio_buffer.append", "audio": "%%%"}),
                lambda: conn.send({"type": "output_audio_buffer.clear"}),
                lambda: conn.send({"type": "session.update", "session": {"type": "realtime", "audio": {
                    "output": {"voice": "en_GB-alan-low"}}}}),  # not served: refused, not silently replaced
            ):
                await send()
                errors += await _until(conn, lambda e: e.type == "error", timeout=30)
            await conn.session.update(session={"type": "realtime", "instructions": "Be brief.",
                                               "audio": {"output": {"voice": "marin"}}})  # OpenAI's: the configured one
            errors += await _until(conn, lambda e: e.type == "session.updated", timeout=30)
            return errors

    events = asyncio.run(run())
    codes = [e.error.code for e in events if e.type == "error"]
    assert codes == ["response_cancel_not_active", "input_audio_buffer_commit_empty", "invalid_value",
                     "invalid_value", "unsupported_event", "invalid_value"]
    assert all(e.error.message for e in events if e.type == "error")
    assert "en_GB-alan-low" in events[-2].error.message and "alloy" in events[-2].error.message
    assert events[-1].type == "session.updated" and events[-1].session.instructions == "Be brief."
    assert events[-1].session.audio.output.voice == "marin"


def test_a_wrong_key_gets_an_error_event_and_a_policy_close(gateway: Service) -> None:
    from openai import OpenAIError
    from websockets.exceptions import ConnectionClosed

    async def run() -> tuple:
        async with _client(gateway, key="wrong").realtime.connect(model="gpt-realtime") as conn:
            event = await conn.recv()
            try:
                await conn.recv()
            except (ConnectionClosed, OpenAIError) as exc:
                return event, exc
            return event, None

    event, closed = asyncio.run(run())
    assert event.type == "error" and event.error.code == "invalid_api_key"
    assert closed is not None


# --------------------------------------------------------------------------- LiveKit Agents' OpenAI plugin


def _lk_frames(pcm: bytes):
    from livekit import rtc

    for i in range(0, len(pcm), STEP):
        piece = pcm[i : i + STEP]
        yield rtc.AudioFrame(data=piece, sample_rate=24000, num_channels=1, samples_per_channel=len(piece) // 2)


def test_livekit_realtime_stt_transcribes_a_paced_sentence_as_one_final(gateway: Service, jfk24: bytes) -> None:
    """LiveKit's `openai.STT(use_realtime=True)` with only base_url set: interim results, then one final."""
    from livekit.agents import stt
    from livekit.agents.utils import http_context
    from livekit.plugins import openai as lk_openai

    async def run() -> list:
        http_context._new_session_ctx()
        recogniser = lk_openai.STT(base_url=f"{gateway.url}/v1", api_key=KEY, use_realtime=True)
        stream = recogniser.stream()

        async def push() -> None:
            t0 = time.perf_counter()
            for k, frame in enumerate(_lk_frames(jfk24 + b"\0" * 24000 * 2 * 6)):
                stream.push_frame(frame)
                await asyncio.sleep(max(t0 + (k + 1) * 0.02 - time.perf_counter(), 0))
            stream.end_input()

        pusher = asyncio.ensure_future(push())
        events = []
        try:
            async for event in stream:  # until the final that ends the sentence (or the input)
                events.append(event)
                if event.type == stt.SpeechEventType.FINAL_TRANSCRIPT and \
                        "do for your country" in normalize(event.alternatives[0].text):
                    break
        finally:
            pusher.cancel()
            await stream.aclose()
            await recogniser.aclose()
            await http_context._close_http_ctx()
        return events

    events = asyncio.run(asyncio.wait_for(run(), 300))
    kinds = [e.type for e in events]
    from livekit.agents import stt

    assert kinds[0] == stt.SpeechEventType.START_OF_SPEECH and stt.SpeechEventType.FINAL_TRANSCRIPT in kinds
    # LiveKit asks for 350 ms of silence: how many finals depends on how JFK's pauses read; together they are his words
    finals = " ".join(e.alternatives[0].text for e in events if e.type == stt.SpeechEventType.FINAL_TRANSCRIPT)
    assert "ask what you can do for your country" in normalize(finals)


def test_livekit_realtime_model_answers_a_spoken_turn_and_generate_reply(gateway: Service, jfk24: bytes) -> None:
    """LiveKit's `openai.realtime.RealtimeModel` (what AgentSession(llm=...) drives): a spoken turn becomes a
    generation with text and 24 kHz audio; generate_reply() gets its own (matched by the response metadata)."""
    from livekit.agents.utils import http_context
    from livekit.plugins import openai as lk_openai

    async def collect(generation) -> tuple[str, int]:
        text, samples = [], 0
        async for message in generation.message_stream:
            async def audio() -> None:
                nonlocal samples
                async for frame in message.audio_stream:
                    samples += frame.samples_per_channel

            async def words() -> None:
                async for piece in message.text_stream:
                    text.append(piece)

            await asyncio.gather(audio(), words())
        return "".join(text), samples

    async def run() -> tuple:
        http_context._new_session_ctx()
        model = lk_openai.realtime.RealtimeModel(base_url=f"{gateway.url}/v1", api_key=KEY)
        session = model.session()
        generations, transcripts, errors = [], [], []
        session.on("generation_created", generations.append)
        session.on("input_audio_transcription_completed", lambda ev: transcripts.append(ev.transcript))
        session.on("error", errors.append)
        try:
            t0 = time.perf_counter()
            for k, frame in enumerate(_lk_frames(jfk24 + b"\0" * 24000 * 2 * 3)):
                session.push_audio(frame)
                await asyncio.sleep(max(t0 + (k + 1) * 0.02 - time.perf_counter(), 0))
            while not generations and not errors:
                await asyncio.sleep(0.1)
            spoken = await collect(generations[0])
            asked = await asyncio.wait_for(session.generate_reply(), 120)
            replied = await collect(asked)
            return transcripts, spoken, asked.user_initiated, replied, errors
        finally:
            await session.aclose()
            await model.aclose()
            await http_context._close_http_ctx()

    transcripts, spoken, user_initiated, replied, errors = asyncio.run(asyncio.wait_for(run(), 300))
    assert not errors, errors
    assert transcripts and "americans" in normalize(transcripts[0])
    assert spoken[0].strip() and spoken[1] > 24000 * 0.3  # words and at least 0.3 s of 24 kHz audio
    assert user_initiated and replied[0].strip() and replied[1] > 0


def test_livekit_realtime_model_calls_a_function_tool(gateway: Service) -> None:
    """LiveKit's RealtimeModel with a `function_tool` (update_tools) and a user message in its chat context:
    generate_reply() gives a generation whose function_stream holds the call, as AgentSession runs it."""
    from livekit.agents import llm
    from livekit.agents.utils import http_context
    from livekit.plugins import openai as lk_openai

    @llm.function_tool
    async def get_weather(city: str) -> str:
        """Get the current weather in a city."""
        return "sunny"

    async def run() -> tuple[list, list]:
        http_context._new_session_ctx()
        model = lk_openai.realtime.RealtimeModel(base_url=f"{gateway.url}/v1", api_key=KEY, modalities=["text"])
        session = model.session()
        errors: list = []
        session.on("error", errors.append)
        try:
            await session.update_tools([get_weather])
            chat_ctx = session.chat_ctx.copy()
            chat_ctx.add_message(role="user", content="What's the weather like in Paris?")
            await session.update_chat_ctx(chat_ctx)
            generation = await asyncio.wait_for(session.generate_reply(), 120)
            calls = await asyncio.wait_for(_drain(generation.function_stream), 240)
            return calls, errors
        finally:
            await session.aclose()
            await model.aclose()
            await http_context._close_http_ctx()

    calls, errors = asyncio.run(asyncio.wait_for(run(), 300))
    assert not errors, errors
    assert [c.name for c in calls] == ["get_weather"] and "paris" in json.loads(calls[0].arguments)["city"].lower()
    assert calls[0].call_id


async def _drain(stream) -> list:
    return [item async for item in stream]


def test_turn_detection_maps_to_the_live_turns_waits(settings) -> None:
    """null: no silence ends a turn (only a commit does), however finished the words read; a server_vad
    silence_duration_ms is the wait after finished words, with no quicker step; semantic_vad keeps the steps."""
    from types import SimpleNamespace

    from cascade.live.endpoint import wait_ms
    from services.gateway.realtime import RealtimeSession

    def options(turn_detection):
        return RealtimeSession._live_options(SimpleNamespace(settings=settings), turn_detection)

    manual = options(None)
    assert min(wait_ms(0.0, manual), wait_ms(-5.0, manual), wait_ms(None, manual)) >= 10**9
    vad = options({"type": "server_vad", "silence_duration_ms": 700})
    assert wait_ms(0.0, vad) == wait_ms(-5.0, vad) == 700 and wait_ms(None, vad) == settings.live.max_silence_ms
    semantic = options({"type": "semantic_vad", "eagerness": "high"})
    assert wait_ms(settings.live.quick_logprob, semantic) == settings.live.quick_silence_ms < wait_ms(-5.0, semantic) <= 1000
