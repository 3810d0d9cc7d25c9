"""The gateway as ONE OpenAI endpoint, driven by the stock openai client against real servers on loopback.

Two gateways: `local` runs every stage in-process (Whisper tiny.en, SmolLM2, piper);
`relay` runs none and reaches ASR, LLM and TTS over HTTP at `local`'s URL (the same
OpenAI wire a GPU deployment's services speak), so both ways of reaching a stage are
exercised by the same client calls with one base URL each.
"""

from __future__ import annotations

import io
import json

import httpx
import numpy as np
import pytest
from openai import NotFoundError, OpenAI

from services.common.testing import JFK_WORDS, Service, plain_words, relay_to, running_service

QUESTION = [{"role": "user", "content": "Name one colour of the sky."}]


COMMON = {"OMP_NUM_THREADS": "1", "CASCADE_LLM__THREADS": "1", "CASCADE_ASR__CPU_THREADS": "1",
          "CASCADE_SERVICE__QUEUE_TIMEOUT_S": "90", "CASCADE_SERVICE__STRICT_MODELS": "true"}
"""strict_models: unknown chat names are 404 here (tests/test_openai_agent.py checks the default, aliasing)."""


@pytest.fixture(scope="module")
def local(tmp_path_factory) -> Service:
    with running_service("gateway", log_dir=tmp_path_factory.mktemp("gw-local"), env=COMMON, ready_timeout=300) as gw:
        yield gw


@pytest.fixture(scope="module")
def relay(tmp_path_factory, local) -> Service:
    with running_service("gateway", log_dir=tmp_path_factory.mktemp("gw-relay"), env=COMMON, args=relay_to(local.url)) as gw:
        yield gw


@pytest.fixture(scope="module")
def gateways(local, relay) -> dict[str, Service]:
    return {"local": local, "relay": relay}


def _client(service: Service) -> OpenAI:
    return OpenAI(base_url=service.url + "/v1", api_key="unused", max_retries=0, timeout=180)


@pytest.fixture(scope="module", params=["local", "relay"])
def client(request) -> OpenAI:
    return _client(request.getfixturevalue(request.param))


# --------------------------------------------------------------------------- every route, one base URL


def test_every_route_answers_on_one_base_url(client, jfk_path):
    with jfk_path.open("rb") as fh:
        assert JFK_WORDS in plain_words(client.audio.transcriptions.create(file=fh, model="whisper-1").text)
    with jfk_path.open("rb") as fh:  # tiny.en cannot translate: the route exists and says so (501)
        with pytest.raises(Exception) as err:  # (whisper-1 means the multilingual base there: test_openai_agent)
            client.audio.translations.create(file=fh, model="tiny.en")
    assert getattr(err.value, "status_code", None) == 501
    speech = client.audio.speech.create(model="tts-1", voice="alloy", input="Hello there.")
    assert speech.response.headers["content-type"] == "audio/mpeg" and len(speech.content) > 1000
    chat = client.chat.completions.create(model="smollm2", messages=QUESTION, max_tokens=8)
    assert chat.choices[0].message.content.strip()
    ids = {m.id: m for m in client.models.list()}
    assert {"tiny.en", "whisper-1", "tts-1", "smollm2"} <= set(ids)


def test_models_are_openai_objects_without_paths(client):
    models = list(client.models.list())
    assert {m.model_extra["kind"] for m in models} == {"asr", "tts", "llm"}
    for m in models:
        assert m.object == "model" and m.owned_by and isinstance(m.created, int)
        assert "/" not in m.id and "/" not in json.dumps(m.model_extra), m
    assert any(m.model_extra.get("parent") == "smollm2" for m in models)  # a shipped adapter, by its name


# --------------------------------------------------------------------------- chat


def test_chat_stream_concatenates_to_the_greedy_reply(client):
    whole = client.chat.completions.create(model="smollm2", messages=QUESTION, max_tokens=24, temperature=0)
    chunks = list(client.chat.completions.create(model="smollm2", messages=QUESTION, max_tokens=24, temperature=0,
                                                 stream=True, stream_options={"include_usage": True}))
    assert chunks[0].object == "chat.completion.chunk" and chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content and len([c for c in chunks if c.choices]) > 3
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish == [whole.choices[0].finish_reason]
    assert not chunks[-1].choices and chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


def test_chat_accepts_content_parts(client):
    parts = [{"role": "user", "content": [{"type": "text", "text": "Name one colour"},
                                          {"type": "text", "text": "of the sky."}]}]
    out = client.chat.completions.create(model="smollm2", messages=parts, max_tokens=8)
    assert out.choices[0].message.content.strip()


def test_chat_stream_raw_sse_and_errors(local):
    url = local.url + "/v1/chat/completions"
    body = {"model": "smollm2", "messages": QUESTION, "max_tokens": 4, "stream": True}
    with httpx.stream("POST", url, json=body, timeout=120) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        frames = [line for line in r.iter_lines() if line]
    assert all(f.startswith("data: ") for f in frames) and frames[-1] == "data: [DONE]"
    image = {"model": "smollm2", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]}
    for bad, status, code in ((image, 400, None), ({**body, "model": "nope"}, 404, "model_not_found")):
        err = httpx.post(url, json=bad, timeout=60)
        assert err.status_code == status, err.text
        info = err.json()["error"]
        assert info["code"] == code and (info["code"] is None or isinstance(info["code"], str))


def test_error_codes_are_openai_strings(relay):
    client = _client(relay)  # an upstream's error comes back unchanged through the relay
    with pytest.raises(NotFoundError) as err:
        client.chat.completions.create(model="no-such-model", messages=QUESTION)
    assert err.value.body["code"] == "model_not_found"
    r = httpx.post(relay.url + "/v1/audio/speech", json={"input": ""})
    assert r.status_code == 400 and r.json()["error"]["code"] is None


# --------------------------------------------------------------------------- speech formats


def _decode(data: bytes) -> tuple[np.ndarray, int]:
    import av

    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        frames = [f.to_ndarray().reshape(-1) for f in container.decode(stream)]
        return np.concatenate(frames), stream.sample_rate


@pytest.mark.parametrize("fmt,rate", [("mp3", 24000), ("opus", 48000), ("aac", 24000), ("flac", 22050)])
def test_speech_formats_decode_at_the_right_rate(client, fmt, rate):
    """mp3/aac at OpenAI's 24 kHz; Opus is encoded at 24 kHz and, like every Opus stream, decodes at 48 kHz."""
    out = client.audio.speech.create(model="tts-1", voice="alloy", input="Good morning to you.", response_format=fmt)
    samples, got = _decode(out.content)
    assert got == rate and 0.5 < len(samples) / rate < 5 and np.abs(samples).max() > 0.05


def test_speech_pcm_is_24khz_16bit_mono(client):
    with client.audio.speech.with_streaming_response.create(model="tts-1", voice="alloy", input="Good morning to you.",
                                                            response_format="pcm") as resp:
        assert resp.headers["x-sample-rate"] == "24000"
        pcm = b"".join(resp.iter_bytes())
    samples = np.frombuffer(pcm, dtype="<i2")
    assert len(pcm) % 2 == 0 and 0.5 < len(samples) / 24000 < 5 and np.abs(samples).max() > 1000


# --------------------------------------------------------------------------- streaming transcription


def test_streaming_transcription_deltas_concatenate_to_done(client, jfk_path):
    with jfk_path.open("rb") as fh:
        events = list(client.audio.transcriptions.create(file=fh, model="whisper-1", stream=True))
    deltas = [e for e in events if e.type == "transcript.text.delta"]
    assert deltas and events[-1].type == "transcript.text.done" and len(events) == len(deltas) + 1
    assert "".join(d.delta for d in deltas) == events[-1].text and JFK_WORDS in plain_words(events[-1].text)
    assert deltas[0].model_extra["segment"]["start"] == pytest.approx(0.0, abs=1.0)


def test_streaming_transcription_carries_nbest_and_correction(local, shared_data, tmp_path):
    """37 s of three speakers is two Whisper windows: deltas as each is decoded, with N-best and correction."""
    import soundfile as sf

    from cascade.audio import load_audio

    files = ["real/jfk.flac", "real/LJ050-0131.wav", "librispeech-test-other/audio/1688-142285-0000.flac"]
    gap = np.zeros(16000, dtype="float32")
    clip = tmp_path / "three.flac"
    sf.write(clip, np.concatenate([x for f in files for x in (load_audio(shared_data / f), gap)]), 16000)
    client = _client(local)
    with clip.open("rb") as fh:
        events = list(client.audio.transcriptions.create(file=fh, model="whisper-1", stream=True,
                                                         extra_body={"n_best": 3, "correct": "rescore"}))
    deltas, done = events[:-1], events[-1]
    sizes = [len(d.model_extra["nbest"]) for d in deltas]  # duplicates are merged: up to 3 each
    assert len(deltas) >= 2 and all(1 <= n <= 3 for n in sizes), sizes
    for d in deltas:  # each delta is its window's corrected text, chosen from its own N-best
        fix = d.model_extra["correction"]
        assert fix["method"] == "rescore" and fix["text"] == d.delta.strip()
        assert fix["text"] in [h["text"] for h in d.model_extra["nbest"]]
    assert "".join(d.delta for d in deltas) == done.text == done.model_extra["transcript"]["text"]
    assert JFK_WORDS in plain_words(done.text) and done.model_extra["transcript"]["duration"] > 30
