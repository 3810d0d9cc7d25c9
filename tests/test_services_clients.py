"""cascade.clients against a faulty server (the one place a fake stands in: to inject 503s and slowness).

A tiny FastAPI app under a real uvicorn on loopback answers with the common error envelope,
so the clients' retries, backoff, timeouts and error mapping are exercised over real HTTP.
"""

from __future__ import annotations

import threading
import time

import pytest
import uvicorn
from fastapi import FastAPI, Request

from cascade.clients import AsrClient, LlmClient, TtsClient
from cascade.config import AsrOptions, TtsOptions
from cascade.types import BackendUnavailable, Correction, InvalidInput, NBest, TooLarge, Unsupported
from services.common.errors import error_response
from services.common.testing import free_port

NBEST = NBest.from_texts(["a b c", "a b d"], scores=[-1.0, -2.0])


def _faulty_app(calls: dict[str, int]) -> FastAPI:
    app = FastAPI()

    @app.post("/v1/rescore")
    async def rescore(request: Request):
        calls["rescore"] += 1
        if calls["rescore"] <= 2:
            return error_response(503, "warming up", headers={"Retry-After": "0"})
        body = NBest.model_validate(await request.json())
        return Correction(text=body.texts[1], method="rescore", chosen=1, changed=True).model_dump(mode="json")

    @app.post("/v1/correct")
    async def correct():
        calls["correct"] += 1
        return error_response(400, "hypotheses: empty", param="hypotheses")

    @app.post("/v1/nbest")
    async def nbest():
        calls["nbest"] += 1
        return error_response(413, "too long", param="file")

    @app.post("/v1/chat/completions")
    async def chat():
        calls["chat"] += 1
        time.sleep(1.5)  # blocks the loop on purpose: a hung server
        return {}

    @app.post("/v1/audio/speech")
    async def speech():
        calls["speech"] += 1
        return error_response(501, "no opus", param="response_format")

    return app


@pytest.fixture(scope="module")
def faulty():
    calls = {k: 0 for k in ("rescore", "correct", "nbest", "chat", "speech")}
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(_faulty_app(calls), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", calls
    server.should_exit = True
    thread.join(5)


def test_retries_503_with_backoff_then_succeeds(faulty):
    url, calls = faulty
    client = LlmClient(url, retries=2, backoff_s=0.01)
    fixed = client.correct(NBEST, "rescore")
    assert fixed.text == "a b d" and calls["rescore"] == 3


def test_caller_errors_are_not_retried_and_keep_their_type(faulty):
    url, calls = faulty
    with pytest.raises(InvalidInput) as err:
        LlmClient(url, retries=3, backoff_s=0.01).correct(NBEST, "ger")
    assert err.value.param == "hypotheses" and calls["correct"] == 1
    with pytest.raises(TooLarge):
        AsrClient(url, retries=3).transcribe_all(__import__("numpy").zeros(1600, "float32"), AsrOptions())
    assert calls["nbest"] == 1
    with pytest.raises(Unsupported):
        list(TtsClient(url, retries=3).synthesize("hi", TtsOptions()))
    assert calls["speech"] == 1


def test_timeout_is_backend_unavailable_and_not_retried(faulty):
    url, calls = faulty
    with pytest.raises(BackendUnavailable, match="timed out"):
        LlmClient(url, timeout_s=0.3, retries=3).chat([{"role": "user", "content": "hi"}], max_tokens=4)
    assert calls["chat"] == 1


def test_dead_service_fails_fast_after_bounded_retries():
    port = free_port()  # nothing listens here
    client = LlmClient(f"http://127.0.0.1:{port}", retries=2, backoff_s=0.05, connect_timeout_s=0.5)
    start = time.perf_counter()
    with pytest.raises(BackendUnavailable, match="unreachable"):
        client.correct(NBEST, "rescore")
    assert time.perf_counter() - start < 3.0
