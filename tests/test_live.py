"""The live turn with real parts: Silero VAD, Whisper tiny.en windows, SmolLM2 reply, piper speech.

A real gateway on loopback serves /v1/live; the `websockets` client streams a real recording
in 20 ms PCM16 frames (not paced: the protocol, not the timing, is under test here; timing is
benchmarks/turn_latency.py's). JFK's pauses last about a second, so these sessions end the turn
after 1.5 s of silence (the default 0.6 s would end it after "my fellow Americans").
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from cascade.asr import transcribe_all
from cascade.audio import load_audio
from cascade.cli import app
from cascade.config import Settings
from cascade.live import FRAME, StreamingVad
from cascade.metrics import normalize
from services.common.testing import JFK_WORDS, Service, plain_words, running_service

FAST_REPLY = {"CASCADE_CHAT__MAX_SENTENCES": "1", "CASCADE_CHAT__MAX_REPLY_TOKENS": "24",
              "CASCADE_LIVE__SILENCE_MS": "1500"}
ENV = {"OMP_NUM_THREADS": "1", "CASCADE_LLM__THREADS": "1", "CASCADE_ASR__CPU_THREADS": "1",
       "CASCADE_LIVE__MAX_SESSIONS": "1", **FAST_REPLY}
START = json.dumps({"type": "start", "sample_rate": 16000, "format": "pcm16"})


@pytest.fixture(scope="module")
def jfk(jfk_path: Path) -> np.ndarray:
    return load_audio(jfk_path)


@pytest.fixture(scope="module")
def offline(jfk_path: Path, settings: Settings) -> str:
    return transcribe_all(load_audio(jfk_path), settings.asr, home=settings.home).text


@pytest.fixture(scope="module")
def gateway(tmp_path_factory) -> Service:
    with running_service("gateway", log_dir=tmp_path_factory.mktemp("gw-live"), env=ENV, ready_timeout=300) as gw:
        yield gw


def _ws(gw: Service):
    return connect(f"ws://127.0.0.1:{gw.port}/v1/live", open_timeout=20, close_timeout=5, max_size=2**24)


def _frames(samples: np.ndarray, silence_s: float = 0.0, ms: int = 20) -> list[bytes]:
    pcm = (np.concatenate([samples, np.zeros(int(16000 * silence_s), np.float32)]) * 32767).astype("<i2").tobytes()
    step = 32 * ms
    return [pcm[i : i + step] for i in range(0, len(pcm), step)]


def _events(ws, until: str = "done", timeout: float = 240.0) -> list[dict]:
    """JSON messages up to `until`; each audio header gets its binary message attached as `pcm`."""
    out: list[dict] = []
    while True:
        message = json.loads(ws.recv(timeout))
        if message["type"] == "audio":
            message["pcm"] = ws.recv(timeout)
        out.append(message)
        if message["type"] in (until, "error"):
            return out


def _closed(ws) -> int:
    with pytest.raises(ConnectionClosed) as info:
        ws.recv(30)
    return info.value.rcvd.code if info.value.rcvd else -1


# --------------------------------------------------------------------------- library


def test_streaming_vad_equals_the_whole_buffer_pass(jfk: np.ndarray) -> None:
    from faster_whisper.vad import get_vad_model

    whole = get_vad_model()(np.pad(jfk, (0, FRAME - len(jfk) % FRAME))).reshape(-1)
    vad, pieces, at = StreamingVad(), [], 0
    for size in [100, 700, 3000, 512, 1] * 200:  # odd piece sizes across frame edges
        pieces.append(vad(jfk[at : at + size]))
        at += size
    streamed = np.concatenate(pieces)
    assert len(streamed) == len(jfk) // FRAME and np.allclose(streamed, whole[: len(streamed)], atol=1e-5)


def test_chat_live_replays_a_file_through_the_live_turn(jfk_path: Path, tmp_path: Path, offline: str) -> None:
    out, history = tmp_path / "reply.wav", tmp_path / "history.json"
    result = CliRunner().invoke(app, ["chat", str(jfk_path), "-o", str(out), "--live", "--no-pace", "--history", str(history)],
                                env={**FAST_REPLY, "CASCADE_LIVE__SPECULATE": "false"})
    assert result.exit_code == 0, result.output
    lines = result.output.replace("\n", " ")
    assert "partial:" in lines and "reply.delta:" in lines and "audio " in lines
    final = next(line for line in result.output.split("final:")[1:])
    assert "ask not what your country" in normalize(final)
    assert out.stat().st_size > 10_000 and "seconds from the end of speech" in lines
    turns = json.loads(history.read_text())
    assert [m["role"] for m in turns] == ["user", "assistant"] and "country" in turns[0]["content"].lower()


# --------------------------------------------------------------------------- the WebSocket


def test_socket_streams_a_real_file_partials_final_reply_audio(gateway: Service, jfk: np.ndarray, offline: str) -> None:
    with _ws(gateway) as ws:
        ws.send(START)
        ready = json.loads(ws.recv(30))
        # speculation is on: each of JFK's pauses starts a reply that his next words must throw away
        assert ready["type"] == "ready" and ready["silence_ms"] == 1500 and ready["speculate"] is True
        for frame in _frames(jfk, silence_s=2.0):  # the VAD, not the client, ends the turn
            ws.send(frame)
        events = _events(ws)
    kinds = [e["type"] for e in events]
    assert "error" not in kinds, events[-1]
    partials = [e for e in events if e["type"] == "partial"]
    assert partials and len(partials[-1]["text"]) >= len(partials[0]["text"])
    finals = [e for e in events if e["type"] == "final"]
    assert len(finals) == 1, "a reply speculated at a pause the speaker went on after is never sent"
    final = finals[0]
    # one window (JFK is under commit_s): the same audio, the same decode as offline, up to punctuation/case
    assert normalize(final["transcript"]["text"]) == normalize(offline)
    assert final["correction"]["corrections"] and final["text"]
    assert kinds.index("final") < kinds.index("reply.delta") < kinds.index("audio") < kinds.index("done")
    audio = [e for e in events if e["type"] == "audio"]
    assert all(len(e["pcm"]) == e["bytes"] > 0 and e["sample_rate"] > 0 for e in audio)
    done = events[-1]
    assert done["type"] == "done" and done["reply"] and done["time_to_first_audio"] is not None


def test_client_leaving_mid_turn_frees_its_slot(gateway: Service, jfk: np.ndarray) -> None:
    first = _ws(gateway)
    first.send(START)
    assert json.loads(first.recv(30))["type"] == "ready"
    with _ws(gateway) as busy:  # max_sessions is 1: a second session is turned away while the first runs
        busy.send(START)
        refused = json.loads(busy.recv(30))
        assert refused["type"] == "error" and refused["code"] == "rate_limit_exceeded"
        assert _closed(busy) == 1013
    for frame in _frames(jfk):
        first.send(frame)
    first.send(json.dumps({"type": "end"}))
    assert _events(first, until="final")[-1]["type"] == "final"
    first.close()  # gone while the reply is being written and spoken
    with _ws(gateway) as second:
        second.send(START)
        assert json.loads(second.recv(30))["type"] == "ready"
        for frame in _frames(jfk[: 16000 * 3]):  # "And so my fellow Americans"
            second.send(frame)
        second.send(json.dumps({"type": "end"}))
        events = _events(second)
    assert events[-1]["type"] == "done" and "americans" in normalize(events[-1]["transcript"])


def test_speech_during_the_reply_interrupts_it_and_starts_the_next_turn(gateway: Service, jfk: np.ndarray) -> None:
    """Barge-in: frames sent while the reply is made feed the next turn; once it holds live.barge_in_ms of
    speech the reply stops (`done` says interrupted) and the next turn goes on with what was said meanwhile."""
    with _ws(gateway) as ws:
        ws.send(json.dumps({"type": "start", "sample_rate": 16000, "speculate": False}))
        assert json.loads(ws.recv(30))["type"] == "ready"
        for frame in _frames(jfk[: 16000 * 3], silence_s=2.2):  # "And so my fellow Americans", the turn ends
            ws.send(frame)
        for frame in _frames(jfk[16000 * 3 :]):  # the user goes on while the reply is made
            ws.send(frame)
        first = _events(ws)
        ws.send(json.dumps({"type": "end"}))
        second = _events(ws)
    done = first[-1]
    assert done["type"] == "done" and done["interrupted"] is True, done
    assert "americans" in normalize(done["transcript"])
    assert second[-1]["type"] == "done" and "ask not" in normalize(second[-1]["transcript"])
    assert second[-1]["interrupted"] is False


@pytest.mark.parametrize("opening, then, code", [
    (b"\x00\x01" * 160, None, "invalid_start"),
    ("not json", None, "invalid_start"),
    (json.dumps({"type": "begin"}), None, "invalid_start"),
    (json.dumps({"type": "start", "sample_rate": 8000}), None, "invalid_start"),
    (json.dumps({"type": "start", "silence_ms": 5}), None, "invalid_start"),
    (START, b"\x00\x01\x02", "invalid_frame"),
    (START, "hello", "invalid_frame"),
])
def test_bad_start_or_frame_gets_an_error_and_a_clean_close(gateway: Service, opening, then, code: str) -> None:
    with _ws(gateway) as ws:
        ws.send(opening)
        if then is not None:
            assert json.loads(ws.recv(30))["type"] == "ready"
            ws.send(then)
        error = json.loads(ws.recv(30))
        assert error["type"] == "error" and error["code"] == code and error["message"]
        assert _closed(ws) == 1003
    with _ws(gateway) as ws:  # the server keeps serving
        ws.send(START)
        assert json.loads(ws.recv(30))["type"] == "ready"


def test_api_key_by_header_or_in_the_start_message(tmp_path_factory) -> None:
    env = {**ENV, "CASCADE_SERVICE__API_KEY": "sesame"}
    with running_service("gateway", log_dir=tmp_path_factory.mktemp("gw-live-key"), env=env, ready_timeout=300) as gw:
        with _ws(gw) as ws:
            ws.send(START)
            error = json.loads(ws.recv(30))
            assert error["type"] == "error" and error["code"] == "invalid_api_key"
            assert _closed(ws) == 1008
        with connect(f"ws://127.0.0.1:{gw.port}/v1/live", additional_headers={"Authorization": "Bearer sesame"},
                     open_timeout=20) as ws:
            ws.send(START)
            assert json.loads(ws.recv(30))["type"] == "ready"
        with _ws(gw) as ws:  # browsers cannot set the header: the key rides in the start message
            ws.send(json.dumps({"type": "start", "sample_rate": 16000, "api_key": "sesame"}))
            assert json.loads(ws.recv(30))["type"] == "ready"


# --------------------------------------------------------------------------- windows decoded while speech goes on


@pytest.fixture(scope="module")
def live_turn(settings: Settings):
    from cascade.pipeline import build_turn

    return build_turn(settings.model_copy(update={"chat": settings.chat.model_copy(
        update={"max_sentences": 1, "max_reply_tokens": 24})}))


def _feed(live, samples: np.ndarray, silence_s: float = 0.0) -> None:
    audio = np.concatenate([samples, np.zeros(int(16000 * silence_s), np.float32)])
    for i in range(0, len(audio), 320):
        live.feed(audio[i : i + 320])
        if live.ended:
            return


def test_a_pause_window_is_decoded_in_the_background_and_reused_at_the_end(live_turn, settings: Settings,
                                                                           jfk: np.ndarray) -> None:
    """The window closed at the pause is decoding while frames still arrive; with no speech after it, that
    decode is the final one (nothing is decoded again when the silence ends the turn)."""
    from cascade.live import LiveTurn

    options = settings.live.model_copy(update={"pause_ms": 160, "silence_ms": 900, "speculate": True})
    live = LiveTurn(live_turn, options)
    try:
        speech = jfk[: int(16000 * 2.3)]  # "And so my fellow Americans", then silence
        _feed(live, speech)
        seen_running = False
        for i in range(0, 16000 * 2, 320):
            live.feed(np.zeros(320, np.float32))
            window = live._tentative or (live.windows[-1] if live.windows else None)
            seen_running |= window is not None and window.result is None and not live.ended
            if live.ended:
                break
        assert live.ended and seen_running, "feed() returned while the pause's window was still being decoded"
        events = list(live.respond())
    finally:
        live.close()
    assert len(live.windows) == 1 and len(live.decodes) == 1, "the pause's decode is reused at the end of speech"
    final = next(e for e in events if e.type == "final")
    assert "americans" in normalize(final.transcript.text)
    kinds = [e.type for e in events]
    assert kinds.index("final") < kinds.index("reply.delta") < kinds.index("audio") < kinds.index("done")


def test_an_early_reply_on_the_1best_is_dropped_when_the_final_text_differs(live_turn, jfk: np.ndarray) -> None:
    """The reply started on Whisper's 1-best before the N-best is held; a corrected text that differs gets a
    reply of its own, and nothing of the early one reaches the client."""
    from cascade.live import _Responder

    transcript = live_turn.asr.transcribe(jfk[: 16000 * 3])
    responder = _Responder(live_turn, ())
    responder.early("Tell me a joke about penguins.")
    responder.settle(transcript)
    events = list(responder.events())
    final = next(e for e in events if e.type == "final")
    assert responder.reused_early is False and "americans" in normalize(final.text)
    assert events[0].type == "final" and any(e.type == "audio" for e in events)
    # the reply answers the recognised text, not the early one (which spoke of penguins)
    assert all("penguin" not in e.text.lower() for e in events if e.type == "reply.delta")


def test_the_same_text_keeps_the_early_reply(live_turn, jfk: np.ndarray) -> None:
    from cascade.live import _Responder

    transcript = live_turn.asr.transcribe(jfk[: 16000 * 3])
    responder = _Responder(live_turn, ())
    final_text = live_turn.corrector.correct(transcript).text
    responder.early(final_text)
    responder.settle(transcript)
    events = list(responder.events())
    assert responder.reused_early is True
    kinds = [e.type for e in events]
    assert kinds[0] == "final" and kinds.count("final") == 1 and "reply.delta" in kinds and "audio" in kinds


def test_a_long_window_is_cut_at_its_least_speech_like_frame(live_turn, settings: Settings, jfk: np.ndarray) -> None:
    from cascade.live import LiveTurn

    options = settings.live.model_copy(update={"max_window_s": 2.0, "cut_search_s": 1.0, "silence_ms": 5000,
                                                "pause_ms": 5000, "speculate": False})
    live = LiveTurn(live_turn, options)
    try:
        _feed(live, jfk[: 16000 * 6])
        live.finish()
        text = live.transcript().text
    finally:
        live.close()
    probs = np.asarray(live._probs)
    assert len(live.windows) >= 3
    for w in live.windows[:-1]:  # the rule again: the first frame past 2 s, the lowest probability in the second before
        i = next(i for i in range(len(probs)) if (i + 1) * FRAME - w.start > 2.0 * 16000)
        look = max(w.start // FRAME + 1, i + 1 - 31)
        assert w.end == (look + int(np.argmin(probs[look : i + 1])) + 1) * FRAME
    assert "ask not" in normalize(text)  # cut every 2 s inside words, Whisper loses some (why windows end at pauses)


def test_without_correction_the_turn_skips_the_wide_nbest_decode(settings: Settings, jfk: np.ndarray) -> None:
    """chat.correct none (the default, whatever correct.mode says) reads no alternatives: the turn's ASR decodes
    the 1-best only, the same 1-best (rescore with the cased profile's λ 0.2 reads them)."""
    from cascade.pipeline import LocalAsr

    def turn_asr(mode: str) -> LocalAsr:
        return LocalAsr(settings.model_copy(update={"chat": settings.chat.model_copy(update={"correct": mode})}))

    assert settings.chat.correct == "none" and LocalAsr(settings).options.n_best == 1
    plain, full = turn_asr("none"), turn_asr("rescore")
    assert plain.options.nbest_beam_size <= plain.options.beam_size and plain.options.n_best == 1
    one, many = plain.transcribe(jfk[: 16000 * 3]), full.transcribe(jfk[: 16000 * 3])
    assert one.text == many.text
    assert all(len(s.nbest.hypotheses) == 1 for s in one.segments)
    assert any(len(s.nbest.hypotheses) > 1 for s in many.segments)


# --------------------------------------------------------------------------- end of turn: the pause and the words


@pytest.fixture(scope="module")
def detector(settings: Settings):
    from cascade.live import build_detector

    return build_detector(settings)


def test_the_llm_reads_a_finished_sentence_as_the_end_of_the_message(detector) -> None:
    whole = detector.logprob("And so my fellow Americans, ask not what your country can do for you, "
                             "ask what you can do for your country.")
    start = detector.logprob("And so my fellow Americans")
    assert whole > start + 2.0, (whole, start)  # e^2: seven times likelier to end there
    assert detector.logprob("ask not what your country can do for you,") == float("-inf")  # Whisper's comma: more follows
    assert detector.logprob("  ") == 0.0


def test_the_margin_reading_keeps_a_finished_looking_fragment_below_the_quick_step(detector, settings: Settings) -> None:
    """Whisper's mishearing of JFK's first phrase, "And so am I fellow Americans." (a 1.1 s pause follows),
    reads as finished as a whole sentence to log p(end) (-1.52, the logprob step -1.5); told that it reads a
    live transcript and read against the likeliest other next token, it stays below the quick step while his
    whole sentence is well above it; log p(end) (end_reading logprob) sets the two less far apart."""
    from cascade.live import EndOfTurn

    assert settings.live.end_reading == "margin" and detector.reading == "margin"
    fragment, whole = "And so am I fellow Americans.", ("And so my fellow Americans, ask not what your country can "
                                                        "do for you, ask what you can do for your country.")
    margin = detector.logprob(fragment), detector.logprob(whole)
    assert margin[0] < settings.live.quick_logprob < margin[1] - 1.0, margin
    plain = EndOfTurn(detector.backend, reading="logprob")
    logprob = plain.logprob(fragment), plain.logprob(whole)
    assert max(logprob) <= 0.0 and margin[1] - margin[0] > logprob[1] - logprob[0] + 0.3, (margin, logprob)
    assert detector.logprob("and so my,") == float("-inf") == plain.logprob("and so my,")


def _turn_ends(live_turn, settings: Settings, samples: np.ndarray, detector, **update) -> tuple[float, str]:
    """Feed a recording (then silence) unpaced, each pause's reading waited for; (seconds of audio fed when
    the turn ended, its transcript)."""
    from cascade.live import LiveTurn

    options = settings.live.model_copy(update={"speculate": False, **update})
    live = LiveTurn(live_turn, options, detector=detector, reply=False)
    try:
        audio = np.concatenate([samples, np.zeros(16000 * 3, np.float32)])
        for i in range(0, len(audio), 320):
            live.feed(audio[i : i + 320])
            live.wait_reading()
            if live.ended:
                return (i + 320) / 16000, live.transcript().text
        raise AssertionError("the turn never ended")
    finally:
        live.close()


def test_a_pause_after_unfinished_words_does_not_end_the_turn(live_turn, settings: Settings,
                                                             jfk: np.ndarray, detector) -> None:
    """ "ask not [1.1 s pause] what your country can do for you": a pause alone of 0.6 s ends the turn after
    "ask not"; read, those words are unfinished, so the turn goes on past the pause (readings waited for, so
    this does not depend on the machine's speed)."""
    rest = jfk[16000 * 3 :]  # from "ask not"
    at, text = _turn_ends(live_turn, settings, rest, None, end_of_turn="pause", silence_ms=600)
    assert "ask not" in normalize(text) and "your country" not in normalize(text), (at, text)
    at, text = _turn_ends(live_turn, settings, rest, detector)
    assert "ask not what your country can do for you" in normalize(text), (at, text)


def test_jfk_with_the_defaults_is_one_turn_that_ends_soon_after_his_last_word(live_turn, settings: Settings,
                                                                               jfk: np.ndarray, detector) -> None:
    """His pauses (1.1 s after "And so my fellow Americans", which tiny.en hears as the finished "And so am I
    fellow Americans."; 0.6 s after "...can do for you") do not end the turn: only the surest readings end it
    after live.quick_silence_ms, the rest wait live.silence_ms (1.2 s). His last words read that sure, so the turn
    ends about when the clip's own trailing silence (~0.5 s) does, long before silence_ms would (readings waited
    for)."""
    at, text = _turn_ends(live_turn, settings, jfk, detector)
    assert f"americans {JFK_WORDS} ask what you can do for your country" in plain_words(text), (at, text)
    assert at <= len(jfk) / 16000 + 0.3, at  # silence_ms (1.2 s) would end it 0.7 s later
