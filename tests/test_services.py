"""The REST services as real uvicorn processes on loopback, driven by the official openai client and httpx.

One stack per module: ASR (tiny.en, API key, 2 MB upload cap, 20 s audio cap,
1 running + 8 waiting), LLM (SmolLM2), TTS (piper) and a gateway that reaches the
three over HTTP. The last two tests stop the TTS service, then kill the LLM service while
requests flow through the gateway, so they stay last.
"""

from __future__ import annotations

import base64
import io
import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf
from openai import OpenAI

from cascade.types import Correction, NBest, Transcript
from services.common.testing import JFK_WORDS, Service, launch, plain_words, wait_ready

KEY = "test-key-7"


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> dict[str, Service]:
    logs = tmp_path_factory.mktemp("services")
    # one thread per model: on a shared 2-core machine, spinning thread pools only fight each other
    common = {"CASCADE_SERVICE__QUEUE_TIMEOUT_S": "90", "OMP_NUM_THREADS": "1", "CASCADE_LLM__THREADS": "1",
              "CASCADE_ASR__CPU_THREADS": "1"}
    asr = launch("asr", log_dir=logs, env={**common, "CASCADE_SERVICE__API_KEY": KEY,
                                           "CASCADE_SERVICE__MAX_UPLOAD_MB": "2", "CASCADE_SERVICE__MAX_AUDIO_S": "20",
                                           "CASCADE_SERVICE__MAX_CONCURRENCY": "1", "CASCADE_SERVICE__MAX_QUEUE": "8",
                                           "CASCADE_SUBTITLES__MAX_LINE_COUNT": "1"})  # its srt/vtt follow its config
    llm = launch("llm", log_dir=logs, env={**common, "CASCADE_SERVICE__STRICT_MODELS": "true"})  # unknown names: 404
    tts = launch("tts", log_dir=logs, env=common)
    gw = launch("gateway", log_dir=logs, env={  # its stages are remote: it needs no model to start
        **common, "CASCADE_SERVICE__API_KEY": KEY, "CASCADE_CHAT__MAX_REPLY_TOKENS": "10",
        "CASCADE_CORRECT__MODE": "rescore", "CASCADE_CHAT__CORRECT": "rescore", "CASCADE_SERVICE__CONNECT_TIMEOUT_S": "1"},
        args=("--asr-url", asr.url, "--llm-url", llm.url, "--tts-url", tts.url))
    services = {"asr": asr, "llm": llm, "tts": tts, "gateway": gw}
    try:
        for svc in services.values():
            wait_ready(svc)
        yield services
    finally:
        for svc in services.values():
            svc.stop()


@pytest.fixture(scope="module")
def asr_client(stack) -> OpenAI:
    return OpenAI(base_url=stack["asr"].url + "/v1", api_key=KEY, max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def short_clip(tmp_path_factory, jfk_path) -> Path:
    """The first 2.5 s of the JFK clip ("and so my fellow Americans")."""
    samples, rate = sf.read(jfk_path, dtype="float32")
    out = tmp_path_factory.mktemp("clips") / "short.wav"
    sf.write(out, samples[: int(2.5 * rate)], rate)
    return out


# --------------------------------------------------------------------------- ASR: OpenAI client


@pytest.mark.parametrize("fmt", ["json", "text", "srt", "vtt", "verbose_json"])
def test_transcription_formats_with_openai_client(asr_client, jfk_path, fmt):
    with jfk_path.open("rb") as fh:
        out = asr_client.audio.transcriptions.create(file=fh, model="whisper-1", response_format=fmt)
    text = out if isinstance(out, str) else out.text
    if fmt in ("srt", "vtt"):  # the cue text alone: numbers and times dropped
        text = " ".join(x for x in text.splitlines() if x.strip() and "-->" not in x and not x.isdigit() and x != "WEBVTT")
    assert JFK_WORDS in plain_words(text)
    if fmt == "srt":
        assert out.startswith("1\n00:00:00,000 --> 00:00:")
        blocks = [b.splitlines() for b in out.strip().split("\n\n")]
        assert len(blocks) >= 3 and all(len(b) == 3 for b in blocks), blocks  # number, times, ONE line (max_line_count 1)
    if fmt == "vtt":
        assert out.startswith("WEBVTT\n\n00:00:00.000 --> ")
    if fmt == "verbose_json":
        assert out.language == "en" and out.duration == pytest.approx(11.0, abs=0.1)
        assert out.segments and out.segments[-1].end <= 11.01


def test_transcription_extensions_via_extra_body(asr_client, jfk_path):
    with jfk_path.open("rb") as fh:
        out = asr_client.audio.transcriptions.create(
            file=fh, model="whisper-1", response_format="verbose_json", extra_body={"n_best": 3})
    lists = [s.model_extra["nbest"] for s in out.segments]  # up to 3 distinct word sequences per segment
    assert all(1 <= len(n) <= 3 for n in lists) and max(len(n) for n in lists) >= 2
    assert all(isinstance(h["am_score"], float) and isinstance(h["avg_logprob"], float) for n in lists for h in n)


def test_streaming_transcription_on_the_asr_service(asr_client, jfk_path):
    with jfk_path.open("rb") as fh:
        events = list(asr_client.audio.transcriptions.create(file=fh, model="whisper-1", stream=True))
    assert [e.type for e in events][-1] == "transcript.text.done" and len(events) >= 2
    assert "".join(e.delta for e in events[:-1]) == events[-1].text and JFK_WORDS in plain_words(events[-1].text)


def test_translation_with_base_model(asr_client, shared_data):
    clip = shared_data / "fleurs" / "audio" / "fleurs-de-000.ogg"
    with clip.open("rb") as fh:
        out = asr_client.audio.translations.create(file=fh, model="base")
    words = plain_words(out.text)
    assert words and any(w in words for w in ("hong kong", "island", "kowloon")), out.text


def test_translation_on_english_only_model_is_501(stack, jfk_path):
    r = httpx.post(stack["asr"].url + "/v1/audio/translations", headers={"Authorization": f"Bearer {KEY}"},
                   files={"file": jfk_path.open("rb")}, data={"model": "tiny.en"}, timeout=60)
    assert r.status_code == 501 and r.json()["error"]["param"] == "model"


def test_nbest_endpoint_returns_the_transcript_record(stack, jfk_path):
    r = httpx.post(stack["asr"].url + "/v1/nbest", headers={"Authorization": f"Bearer {KEY}"},
                   files={"file": jfk_path.open("rb")}, data={"options": json.dumps({"n_best": 4, "beam_size": 4})},
                   timeout=60)
    assert r.status_code == 200
    t = Transcript.model_validate(r.json())
    assert all(1 <= len(s.nbest.hypotheses) <= 4 for s in t.segments) and JFK_WORDS in plain_words(t.text)
    assert t.stages[0].options["n_best"] == 4


# --------------------------------------------------------------------------- operations and bad input


def test_api_key_required(stack, jfk_path):
    url = stack["asr"].url + "/v1/audio/transcriptions"
    missing = httpx.post(url, files={"file": jfk_path.open("rb")})
    wrong = httpx.post(url, files={"file": jfk_path.open("rb")}, headers={"Authorization": "Bearer nope"})
    for r in (missing, wrong):
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert r.json()["error"]["type"] == "authentication_error"
    assert httpx.get(stack["asr"].url + "/healthz").status_code == 200  # probes need no key


def test_oversized_upload_is_413_before_the_body_is_read(stack):
    url = stack["asr"].url + "/v1/audio/transcriptions"
    headers = {"Authorization": f"Bearer {KEY}"}
    big = os.urandom(3_000_000)
    r = httpx.post(url, files={"file": ("big.wav", big)}, headers=headers, timeout=30)
    assert r.status_code == 413 and "upload limit" in r.json()["error"]["message"]

    def chunks():  # no Content-Length: the limit must act while the body streams in
        yield b'--x\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n'
        for _ in range(40):
            yield b"\0" * 100_000

    r = httpx.post(url, content=chunks(), headers={**headers, "Content-Type": "multipart/form-data; boundary=x"},
                   timeout=30)
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"


def test_audio_longer_than_the_cap_is_413(stack, tmp_path):
    clip = tmp_path / "long.flac"
    sf.write(clip, np.zeros(16000 * 30, dtype="float32"), 16000)  # 30 s of silence, ~small as FLAC
    r = httpx.post(stack["asr"].url + "/v1/audio/transcriptions", headers={"Authorization": f"Bearer {KEY}"},
                   files={"file": clip.open("rb")}, timeout=30)
    assert r.status_code == 413 and "limit" in r.json()["error"]["message"]


@pytest.mark.parametrize("files,data,status", [
    ({"file": ("x.wav", b"this is not audio at all" * 10)}, {}, 415),
    ({"file": ("x.wav", b"")}, {}, 400),
    (None, {"model": "whisper-1"}, 400),
    ("jfk", {"response_format": "yaml"}, 400),
    ("jfk", {"temperature": "hot"}, 400),
    ("jfk", {"model": "no-such-model"}, 404),
])
def test_bad_transcription_requests_get_json_errors(stack, jfk_path, files, data, status):
    if files == "jfk":
        files = {"file": jfk_path.open("rb")}
    r = httpx.post(stack["asr"].url + "/v1/audio/transcriptions", headers={"Authorization": f"Bearer {KEY}"},
                   files=files, data=data, timeout=60)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["code"] == {404: "model_not_found", 413: "request_too_large", 415: "unsupported_file"}.get(status)


def test_request_ids_metrics_and_readiness(stack):
    r = httpx.get(stack["asr"].url + "/readyz", headers={"X-Request-ID": "abc-123"})
    assert r.status_code == 200 and r.headers["x-request-id"] == "abc-123"
    assert r.json()["models"] == ["whisper:tiny.en"]
    assert len(httpx.get(stack["llm"].url + "/healthz").headers["x-request-id"]) == 32
    metrics = httpx.get(stack["asr"].url + "/metrics", headers={"Authorization": f"Bearer {KEY}"}).text
    assert 'cascade_http_requests_total{method="POST",route="/v1/audio/transcriptions",service="asr",status="200"}' in metrics
    assert "cascade_http_request_seconds_bucket" in metrics and "cascade_queue_waiting" in metrics
    log_line = next(line for line in stack["asr"].log.read_text().splitlines() if '"status": 200' in line)
    assert json.loads(log_line)["request_id"]


def test_bounded_queue_answers_every_request(stack, short_clip):
    """50 at once against 1 running + 8 waiting: each gets 200 or 429/503 (with Retry-After), none hangs."""
    data = short_clip.read_bytes()
    url = stack["asr"].url + "/v1/audio/transcriptions"

    def one(_):
        r = httpx.post(url, files={"file": ("s.wav", data)}, headers={"Authorization": f"Bearer {KEY}"},
                       data={"response_format": "text"}, timeout=150)
        return r.status_code, r.headers.get("retry-after"), r.text

    with ThreadPoolExecutor(50) as pool:
        results = list(pool.map(one, range(50)))
    codes = [c for c, _, _ in results]
    assert set(codes) <= {200, 429, 503}, codes
    assert codes.count(200) >= 1 and codes.count(429) >= 1
    assert codes.count(200) <= 9 + 4  # never more than running + waiting (+ the few that finish meanwhile)
    assert all(ra and int(ra) >= 1 for c, ra, _ in results if c in (429, 503))
    assert all("fellow" in t.lower() for c, _, t in results if c == 200)
    metrics = httpx.get(stack["asr"].url + "/metrics", headers={"Authorization": f"Bearer {KEY}"}).text
    assert 'cascade_queue_rejected_total{model="asr:tiny.en",reason="queue_full"}' in metrics


def test_concurrent_transcriptions_share_a_batched_decode(stack, shared_data):
    """8 short clips at once: each request gets its own transcript, the one it gets alone, and they were decoded
    together (the service's batched-decode counters; services/asr/batching.py)."""
    rows = [json.loads(x) for x in (shared_data / "speechocean762" / "manifest.jsonl").read_text().splitlines()]
    clips = [(shared_data / "speechocean762" / r["audio"]).read_bytes() for r in rows if r["split"] == "dev"][:8]
    url, auth = stack["asr"].url, {"Authorization": f"Bearer {KEY}"}

    def one(i: int) -> str:
        r = httpx.post(url + "/v1/audio/transcriptions", files={"file": ("c.flac", clips[i])}, headers=auth,
                       data={"response_format": "json"}, timeout=150)
        assert r.status_code == 200, r.text
        return r.json()["text"]

    def batched() -> float:
        text = httpx.get(url + "/metrics", headers=auth).text
        return sum(float(x.rsplit(" ", 1)[1]) for x in text.splitlines()
                   if x.startswith("cascade_asr_batched_requests_total{"))

    alone = [one(i) for i in range(len(clips))]  # one at a time: each decoded on its own
    assert len(set(alone)) == len(clips)
    before = batched()
    with ThreadPoolExecutor(len(clips)) as pool:
        together = list(pool.map(one, range(len(clips))))
    assert batched() - before >= 4  # most of them shared a decode
    assert together == alone


# --------------------------------------------------------------------------- LLM


@pytest.fixture(scope="module")
def llm_client(stack) -> OpenAI:
    return OpenAI(base_url=stack["llm"].url + "/v1", api_key="unused", max_retries=0, timeout=120)


def test_llm_models_chat_and_completions(llm_client):
    assert "smollm2" in [m.id for m in llm_client.models.list()]
    chat = llm_client.chat.completions.create(
        model="smollm2", messages=[{"role": "user", "content": "What is the capital of France?"}], max_tokens=4)
    assert chat.choices[0].message.role == "assistant" and chat.choices[0].message.content.strip()
    assert chat.usage.completion_tokens <= 4
    comp = llm_client.completions.create(model="smollm2", prompt="The capital of France is", max_tokens=2)
    assert comp.choices[0].text and comp.choices[0].finish_reason in ("stop", "length")


def test_completion_echo_logprobs_scores_the_prompt_like_vllm(llm_client):
    prompts = ["the cat sat on the mat", "mat the on sat cat the"]
    out = llm_client.completions.create(model="smollm2", prompt=prompts, max_tokens=0, echo=True, logprobs=1)
    totals = []
    for choice, prompt in zip(out.choices, prompts):
        lp = choice.logprobs
        assert choice.text == prompt and "".join(lp.tokens) == prompt
        assert lp.text_offset[0] == 0 and lp.text_offset == sorted(lp.text_offset)
        totals.append(sum(v for v in lp.token_logprobs if v is not None))
    assert totals[0] > totals[1]  # the grammatical order is more likely


def test_llm_unknown_model_and_malformed_json(stack, llm_client):
    r = httpx.post(stack["llm"].url + "/v1/chat/completions", json={"model": "nope", "messages": [
        {"role": "user", "content": "hi"}]})
    assert r.status_code == 404 and r.json()["error"]["type"] == "model_not_found"
    r = httpx.post(stack["llm"].url + "/v1/completions", content=b'{"model": "smollm2", "prompt": ',
                   headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and "error" in r.json()
    r = httpx.post(stack["llm"].url + "/v1/completions", json={"model": "smollm2", "prompt": "x", "max_tokens": 0})
    assert r.status_code == 400 and r.json()["error"]["param"] == "max_tokens"


def test_prompts_above_the_token_cap_are_400(stack):
    """A 3,000-token echo prompt once peaked at 2.5 GB: scored prompts stay within 2,048 tokens; a chat prompt may
    use the model's context (8,192 less the reply's cap), not more."""
    long = " ".join(f"word{i % 97}" for i in range(1040))  # ~3,000 SmolLM2 tokens
    r = httpx.post(stack["llm"].url + "/v1/completions", timeout=60,
                   json={"model": "smollm2", "prompt": long, "max_tokens": 0, "echo": True, "logprobs": 0})
    assert r.status_code == 400 and r.json()["error"]["param"] == "prompt"
    assert "2048-token prompt limit" in r.json()["error"]["message"]
    r = httpx.post(stack["llm"].url + "/v1/chat/completions", timeout=60,
                   json={"model": "smollm2", "messages": [{"role": "user", "content": long * 3}]})
    assert r.status_code == 400 and r.json()["error"]["param"] == "messages"


def test_rescore_and_correct_take_cascade_records(stack):
    nbest = NBest.from_texts(["i scream for ice cream", "eye scream for ice cream"], scores=[-2.0, -2.5])
    for path in ("/v1/rescore", "/v1/correct?method=rescore"):
        r = httpx.post(stack["llm"].url + path, json=nbest.model_dump(mode="json"), timeout=120)
        assert r.status_code == 200, r.text
        c = Correction.model_validate(r.json())
        assert c.method == "rescore" and c.text in nbest.texts
    r = httpx.post(stack["llm"].url + "/v1/correct", json={"hypotheses": "not a list"})
    assert r.status_code == 400 and r.json()["error"]["param"].startswith("hypotheses")


# --------------------------------------------------------------------------- TTS


def test_speech_streams_with_openai_client(stack):
    client = OpenAI(base_url=stack["tts"].url + "/v1", api_key="unused", max_retries=0, timeout=120)
    text = "Hello there. This sentence is spoken second. And this one is third."
    with client.audio.speech.with_streaming_response.create(model="tts-1", voice="alloy", input=text,
                                                            response_format="wav") as resp:
        assert resp.headers["content-type"] == "audio/wav"
        parts = list(resp.iter_bytes(8192))
    body = b"".join(parts)
    assert body[:4] == b"RIFF" and body[8:12] == b"WAVE"
    samples = np.frombuffer(body[44:], dtype="<i2")
    seconds = len(samples) / 22050
    assert 2.0 < seconds < 12.0 and np.abs(samples).max() > 1000
    flac = client.audio.speech.create(model="tts-1", voice="alloy", input="Good morning.", response_format="flac")
    audio, rate = sf.read(io.BytesIO(flac.content))
    assert rate == 22050 and 0.3 < len(audio) / rate < 5


def test_speech_round_trip_through_asr(stack, asr_client):
    pcm = httpx.post(stack["tts"].url + "/v1/audio/speech", timeout=60,
                     json={"input": "The weather is lovely today.", "response_format": "pcm"})
    assert pcm.status_code == 200 and pcm.headers["x-sample-rate"] == "24000"  # OpenAI's pcm rate
    buf = io.BytesIO()
    sf.write(buf, np.frombuffer(pcm.content, dtype="<i2"), 24000, format="WAV", subtype="PCM_16")
    text = asr_client.audio.transcriptions.create(file=("s.wav", buf.getvalue()), model="whisper-1",
                                                  response_format="text")
    assert "weather" in text.lower() and "today" in text.lower()


def test_speech_bad_input(stack):
    url = stack["tts"].url + "/v1/audio/speech"
    assert httpx.post(url, json={"input": ""}).status_code == 400
    assert httpx.post(url, json={"input": "hi", "voice": "no-such-voice"}).status_code == 404
    assert httpx.post(url, json={"input": "hi", "response_format": "ogg"}).status_code == 400
    assert httpx.post(url, json={"input": "hi", "speed": 9}).json()["error"]["param"] == "speed"


# --------------------------------------------------------------------------- gateway


def test_gateway_voice_turn(stack, short_clip):
    r = httpx.post(stack["gateway"].url + "/v1/voice/turn", headers={"Authorization": f"Bearer {KEY}"},
                   files={"file": short_clip.open("rb")}, timeout=180)
    assert r.status_code == 200, r.text
    turn = r.json()
    assert turn["status"] == "ok" and turn["degraded"] == {}
    assert "fellow americans" in plain_words(turn["correction"]["text"])
    assert turn["reply"]["text"].strip()
    audio, rate = sf.read(io.BytesIO(base64.b64decode(turn["audio"]["data"])))
    assert rate == turn["audio"]["sample_rate"] == 24000 and len(audio) / rate > 0.3  # the TTS service's pcm
    assert turn["time_to_first_audio"] is not None


def test_gateway_corrected_transcription(stack, jfk_path):
    client = OpenAI(base_url=stack["gateway"].url + "/v1", api_key=KEY, max_retries=0, timeout=120)
    with jfk_path.open("rb") as fh:
        out = client.audio.transcriptions.create(file=fh, model="whisper-1", response_format="verbose_json",
                                                 extra_body={"correct": "rescore"})
    correction = out.segments[0].model_extra["correction"]
    assert correction["status"] == "ok" and correction["method"] == "rescore"
    assert JFK_WORDS in plain_words(out.text)


def test_gateway_answers_text_only_when_tts_is_down(stack, short_clip):
    stack["tts"].stop()
    r = httpx.post(stack["gateway"].url + "/v1/voice/turn", headers={"Authorization": f"Bearer {KEY}"},
                   files={"file": short_clip.open("rb")}, timeout=180)
    assert r.status_code == 200, r.text
    turn = r.json()
    assert turn["status"] == "degraded" and list(turn["degraded"]) == ["tts"]
    assert "unreachable" in turn["degraded"]["tts"]
    assert turn["reply"]["text"].strip() and turn["audio"] is None and turn["speech"] is None
    assert turn["correction"]["corrections"][0]["status"] == "ok"


def test_gateway_degrades_when_the_llm_dies_mid_run(stack, short_clip):
    """Requests keep flowing while the LLM service is killed: every answer is a 200, the later ones
    carry correction.status == "unavailable" with the recogniser's text."""
    url = stack["gateway"].url + "/v1/audio/transcriptions"
    data = short_clip.read_bytes()
    results: list[tuple[int, dict]] = []

    def loop():
        with httpx.Client(headers={"Authorization": f"Bearer {KEY}"}, timeout=120) as http:
            for _ in range(5):
                r = http.post(url, files={"file": ("s.wav", data)},
                              data={"correct": "rescore", "response_format": "verbose_json"})
                results.append((r.status_code, r.json()))

    worker = threading.Thread(target=loop)
    worker.start()
    deadline = time.monotonic() + 120
    while len(results) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    stack["llm"].stop()
    worker.join(240)
    assert not worker.is_alive() and len(results) == 5
    assert [code for code, _ in results] == [200] * 5
    statuses = [body["segments"][0]["correction"]["status"] for _, body in results]
    assert statuses[0] == "ok" and statuses[-1] == "unavailable", statuses
    last = results[-1][1]
    assert "fellow" in last["text"].lower() and "unavailable" in last["segments"][0]["correction"]["fallback_reason"]

    turn = httpx.post(stack["gateway"].url + "/v1/voice/turn", headers={"Authorization": f"Bearer {KEY}"},
                      files={"file": ("s.wav", data)}, timeout=120).json()
    assert turn["status"] == "degraded" and "llm" in turn["degraded"] and turn["reply"] is None
    assert turn["correction"]["corrections"][0]["status"] == "unavailable"
    metrics = httpx.get(stack["gateway"].url + "/metrics", headers={"Authorization": f"Bearer {KEY}"}).text
    assert 'cascade_fallbacks_total{reason="llm_unavailable",stage="correct"}' in metrics
