"""The spoken turn with real parts: Whisper tiny.en -> correction -> SmolLM2 reply -> piper speech.

Plus the reply prompt, the streaming hand-off between reply and TTS, and the CLI's errors.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cascade.asr import transcribe_all
from cascade.audio import load_audio, write_wav
from cascade.cli import app
from cascade.config import AsrOptions, ChatOptions, Settings
from cascade.pipeline import LocalTts, SpokenTurn, build_turn
from cascade.respond import build_messages, stream_reply
from cascade.types import ChatMessage, CorrectedTranscript, InvalidInput, StageInfo, Transcript

runner = CliRunner()


@pytest.fixture(scope="module")
def backend(settings: Settings):
    from cascade.llm import load_backend

    return load_backend(settings.llm, settings.home)


def _words(path: Path, home: Path) -> list[str]:
    text = transcribe_all(load_audio(path), AsrOptions(), home=home).text
    return [w for w in text.lower().split() if any(c.isalpha() for c in w)]


# --------------------------------------------------------------------------- replies


def test_prompt_has_persona_history_cap_and_user() -> None:
    history = [ChatMessage(role="user", content=f"question {i}") if i % 2 == 0 else
               ChatMessage(role="assistant", content=f"answer {i}") for i in range(6)]
    options = ChatOptions(history_turns=1, max_sentences=3, persona="a pirate")
    messages, ref = build_messages("  what now?  ", history, options)
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert "a pirate" in messages[0]["content"] and "at most 3 short sentences" in messages[0]["content"]
    assert [m["content"] for m in messages[1:]] == ["question 4", "answer 5", "what now?"]
    assert ref.name == "chat/assistant" and len(ref.hash) == 12
    with pytest.raises(InvalidInput, match="empty"):
        build_messages(" ", history, options)
    led, _ = build_messages("what now?", [ChatMessage(role="system", content="Speak like a pirate."), *history], options)
    assert [m["content"] for m in led[1:]] == ["Speak like a pirate.", "question 4", "answer 5", "what now?"]


def test_real_reply_streams_complete_sentences_within_the_cap(backend) -> None:
    options = ChatOptions(max_sentences=1)
    sentences = list(stream_reply("Tell me about the weather today and tomorrow.", [], backend, options))
    assert len(sentences) == 1 and sentences[0].strip(), sentences


# --------------------------------------------------------------------------- streaming hand-off


class _StubAsr:
    def transcribe(self, audio) -> Transcript:
        from cascade.types import NBest, Segment

        nb = NBest.from_texts(["hello there"])
        return Transcript(text="hello there", segments=(Segment(id=0, start=0, end=1, text="hello there", nbest=nb),),
                          language="en", model="stub", duration=1.0)


class _NoCorrection:
    def correct(self, transcript: Transcript) -> CorrectedTranscript:
        return CorrectedTranscript(text=transcript.text, corrections=(), method="none")


class _GatedReply:
    """Yields the second sentence only once the first one has been heard (or after a timeout)."""

    def __init__(self) -> None:
        self.heard = threading.Event()
        self.waited_for_audio: bool | None = None

    def describe(self) -> StageInfo:
        return StageInfo(stage="reply", model="gated")

    def stream(self, text: str, history: Sequence[ChatMessage]) -> Iterator[str]:
        yield "The first sentence is spoken at once."
        self.waited_for_audio = self.heard.wait(timeout=30)
        yield "The second one follows."


def test_tts_starts_on_the_first_sentence_while_the_reply_continues(settings: Settings) -> None:
    reply = _GatedReply()
    turn = SpokenTurn(asr=_StubAsr(), correct=_NoCorrection(), reply=reply,
                      tts=LocalTts(settings.tts, settings.home), chat=settings.chat)
    heard: list[str] = []

    def on_audio(chunk) -> None:
        heard.append(chunk.text)
        reply.heard.set()

    result = turn.run(b"unused", stream=True, on_audio=on_audio)
    assert reply.waited_for_audio is True, "the first sentence was not spoken before the reply finished"
    assert heard == ["The first sentence is spoken at once.", "The second one follows."]
    assert result.reply.sentences == tuple(heard) and result.speech.chunks == 2
    assert result.time_to_first_audio is not None and result.time_to_first_audio < result.timings["total"]


# --------------------------------------------------------------------------- full turns


def test_chat_cli_turn_on_real_speech(jfk_path: Path, tmp_path: Path, settings: Settings) -> None:
    out, history = tmp_path / "reply.wav", tmp_path / "history.json"
    result = runner.invoke(app, ["chat", str(jfk_path), "-o", str(out), "--history", str(history)])
    assert result.exit_code == 0, result.output
    assert "ask not what your country" in result.output.lower()
    assert "time to first audio" in result.output
    words = _words(out, settings.home)
    assert len(words) >= 2 and all(w.isascii() for w in words), words
    turns = json.loads(history.read_text())
    assert [m["role"] for m in turns] == ["user", "assistant"] and "country" in turns[0]["content"]


def test_sequential_turn_record(jfk_path: Path, settings: Settings) -> None:
    s = settings.model_copy(update={"correct": settings.correct.model_copy(update={"mode": "none"})})
    result = build_turn(s).run(jfk_path, stream=False)
    assert not result.streamed and result.correction.method == "none"
    assert "ask what you can do for your country" in result.correction.text.lower()
    assert result.reply.sentences and result.speech.duration > 0.5
    assert result.audio is not None and result.audio.duration == pytest.approx(result.speech.duration)
    # sequential: the first audio exists only after the whole reply was generated and spoken
    assert result.time_to_first_audio >= result.timings["asr"] + result.timings["correct"] + result.timings["reply"]
    assert set(result.timings) == {"asr", "correct", "reply", "tts", "total"}
    assert "audio" not in json.loads(result.model_dump_json())


# --------------------------------------------------------------------------- CLI errors


def _one_line_error(result) -> str:
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in result.output, result.output
    return lines[0]


def test_speak_writes_audio_and_reports_errors(tmp_path: Path) -> None:
    out = tmp_path / "hi.flac"
    ok = runner.invoke(app, ["speak", "Hello there. How are you?", "-o", str(out), "--engine", "espeak"])
    assert ok.exit_code == 0, ok.output
    assert 0.5 < len(load_audio(out)) / 16000 < 5
    assert "empty" in _one_line_error(runner.invoke(app, ["speak", "  ", "-o", str(out)]))
    assert "tts.engine" in _one_line_error(runner.invoke(app, ["speak", "hi", "-o", str(out), "-e", "festival"]))
    assert "unknown piper voice" in _one_line_error(runner.invoke(app, ["speak", "hi", "-o", str(out), "--voice", "nobody"]))
    assert "tts.format" in _one_line_error(runner.invoke(app, ["speak", "hi", "-o", str(out), "--format", "ogg"]))
    assert "needs a checkpoint" in _one_line_error(runner.invoke(app, ["speak", "hi", "-o", str(out), "-e", "coqui"]))
    assert "not found" in _one_line_error(
        runner.invoke(app, ["speak", "hi", "-o", str(out), "-e", "coqui", "--coqui-model", str(tmp_path / "none.pth")])
    )


def test_chat_errors(tmp_path: Path) -> None:
    out = tmp_path / "r.wav"
    assert "not found" in _one_line_error(runner.invoke(app, ["chat", str(tmp_path / "missing.wav"), "-o", str(out)]))
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"this is not audio at all" * 10)
    assert "audio" in _one_line_error(runner.invoke(app, ["chat", str(junk), "-o", str(out)]))
    silence = write_wav(tmp_path / "silence.wav", np.zeros(32000, dtype=np.float32), 16000)
    assert "no speech" in _one_line_error(runner.invoke(app, ["chat", str(silence), "-o", str(out)]))
    bad_history = tmp_path / "h.json"
    bad_history.write_text('{"not": "a list"}')
    assert "history" in _one_line_error(runner.invoke(app, ["chat", str(silence), "-o", str(out), "--history", str(bad_history)]))
    assert "chat.correct" in _one_line_error(runner.invoke(app, ["chat", str(silence), "-o", str(out), "--correction", "magic"]))


def test_the_spoken_turn_decodes_its_reply_in_int8_on_ct2_only() -> None:
    from cascade.config import ChatOptions, LlmOptions

    chat = ChatOptions()
    assert chat.turn_llm(LlmOptions(backend="ct2", compute_type="float32")).reply_compute_type == "int8"
    assert chat.turn_llm(LlmOptions(backend="ct2")).compute_type == "float32"  # scores and GER keep float32
    assert chat.turn_llm(LlmOptions(backend="transformers")) == LlmOptions(backend="transformers", threads=1)
    assert ChatOptions(reply_compute_type=None).turn_llm(LlmOptions(backend="ct2")).reply_compute_type is None
    assert ChatOptions(reply_threads=0).turn_llm(LlmOptions(backend="ct2", threads=2)).threads == 2


def test_the_spoken_turn_decodes_without_timestamp_tokens(jfk_path: Path, settings: Settings) -> None:
    """A turn's window is one short utterance: Whisper reads no timestamp tokens (chat.without_timestamps), so the
    real decode gives one segment over the window, with the same words as the timed decode."""
    from cascade.pipeline import LocalAsr

    asr = LocalAsr(settings)
    assert asr.options.without_timestamps and asr.options.vad_filter
    audio = load_audio(jfk_path)
    plain = asr.transcribe(audio)
    timed = LocalAsr(settings.model_copy(update={"chat": settings.chat.model_copy(
        update={"without_timestamps": False})})).transcribe(audio)
    assert len(plain.segments) == 1 < len(timed.segments), (plain.segments, timed.segments)
    assert plain.segments[0].start == 0.0 and plain.segments[0].end <= len(audio) / 16000 + 0.01
    words = [w for w in plain.text.lower().replace(",", "").replace(".", "").split()]
    assert "ask not what your country can do for you" in " ".join(words), plain.text


def test_the_spoken_turn_encodes_its_window_at_the_audios_length(jfk_path: Path, settings: Settings) -> None:
    """chat.encoder_min_s: the encoder reads the window's own frames plus 1 s (at least 15 s), not Whisper's 30 s
    of padding; the real decode keeps JFK's words. Timed decodes refuse it (timestamp tokens read the 30 s grid)."""
    import ctranslate2
    from faster_whisper.audio import pad_or_trim

    from cascade.asr import load_model
    from cascade.asr.decode import trimmed
    from cascade.pipeline import LocalAsr

    audio = load_audio(jfk_path)
    whisper = load_model(settings.asr, settings.home)
    for seconds, min_frames, kept in ((len(audio) / 16000, 1500, 1500), (len(audio) / 16000, 300, 1200), (29.5, 1500, 3000)):
        samples = np.resize(audio, int(seconds * 16000))
        features = pad_or_trim(whisper.feature_extractor(samples)[:, : int(seconds * 100)])
        view = ctranslate2.StorageView.from_array(np.ascontiguousarray(features[None]))
        assert np.asarray(trimmed(view, min_frames)).shape == (1, 80, kept), (seconds, min_frames)  # JFK: 11.0 s
    asr = LocalAsr(settings)
    assert asr.options.encoder_min_s == 15.0
    full = LocalAsr(settings.model_copy(update={"chat": settings.chat.model_copy(update={"encoder_min_s": None})}))
    for t in (asr.transcribe(audio), full.transcribe(audio)):
        assert "ask not what your country can do for you" in t.text.lower().replace(",", ""), t.text
    with pytest.raises(ValueError, match="encoder_min_s needs without_timestamps"):
        AsrOptions(encoder_min_s=15.0)
    assert ChatOptions(without_timestamps=False).turn_asr(AsrOptions()).encoder_min_s is None
    assert ChatOptions().turn_asr(AsrOptions(word_timestamps=True)).encoder_min_s is None  # asr's word times too
