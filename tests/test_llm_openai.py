"""The OpenAI-compatible HTTP backend against the project's own LLM service (real uvicorn on loopback)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from openai import OpenAI

from cascade.config import LlmOptions
from cascade.llm import load_backend
from cascade.llm.openai_backend import OpenAIBackend
from cascade.types import BackendUnavailable, ModelNotFound
from services.common.testing import free_port, launch, wait_ready


@pytest.fixture(scope="module")
def adapter(tmp_path_factory, settings) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model

    from cascade.llm.hf_backend import load_hf_llm

    torch.manual_seed(1)
    model, _ = load_hf_llm("smollm2", settings.home)
    out = tmp_path_factory.mktemp("lora") / "ger"
    get_peft_model(model, LoraConfig(r=4, lora_alpha=64, target_modules=["q_proj", "v_proj"], init_lora_weights=False)).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def server(tmp_path_factory, adapter: Path):
    svc = launch("llm", log_dir=tmp_path_factory.mktemp("llm-svc"),
                 env={"CASCADE_LLM__THREADS": "1", "OMP_NUM_THREADS": "1", "CASCADE_CORRECT__ADAPTER": str(adapter),
                      # strict: an adapter name nobody serves is 404 (by default any unserved name means the base model)
                      "CASCADE_SERVICE__STRICT_MODELS": "true"})
    try:
        yield wait_ready(svc, timeout=300)
    finally:
        svc.stop()


@pytest.fixture(scope="module")
def remote(server) -> OpenAIBackend:
    return load_backend(LlmOptions(backend="openai", base_url=server.url + "/v1", timeout_s=300, max_retries=1), Path("/nonexistent"))


@pytest.fixture(scope="module")
def local(settings):
    return load_backend(LlmOptions(threads=2), settings.home)


def test_scores_over_http_match_in_process(remote, local) -> None:
    texts = ["show me the flights from boston to denver", "i want to fly tomorrow", ""]
    for prefix in ("", "Transcript:"):
        http, mine = remote.score(texts, prefix=prefix), local.score(texts, prefix=prefix)
        for a, b in zip(http, mine):
            assert a.n_tokens == b.n_tokens and a.logprob == pytest.approx(b.logprob, abs=1e-2)
    assert http[0].n_tokens > 0


def test_generation_and_adapter_by_model_name(remote, local, adapter: Path) -> None:
    messages = [{"role": "system", "content": "Answer in one word."}, {"role": "user", "content": "Name a colour."}]
    prompt = local.chat_template(messages)
    assert remote.chat_template(messages) == prompt
    assert remote.generate([prompt], max_tokens=6) == local.generate([prompt], max_tokens=6)
    text = ["show me the flights from boston to denver"]
    by_name = remote.score(text, adapter="ger")[0]
    assert by_name.logprob == pytest.approx(local.score(text, adapter=str(adapter))[0].logprob, abs=1e-2)
    assert abs(by_name.logprob - remote.score(text)[0].logprob) > 1.0
    with pytest.raises(ModelNotFound):
        remote.score(text, adapter="no-such-adapter")


def test_dead_server_is_backend_unavailable() -> None:
    dead = OpenAIBackend(LlmOptions(backend="openai", base_url=f"http://127.0.0.1:{free_port()}/v1", max_retries=1, timeout_s=2))
    with pytest.raises(BackendUnavailable, match="unavailable"):
        dead.generate(["hi"], max_tokens=2)


@pytest.fixture(scope="module")
def relay_llm(tmp_path_factory, server):
    """An LLM service on the HTTP backend (as with vLLM), its server the one above."""
    svc = launch("llm", log_dir=tmp_path_factory.mktemp("llm-relay"),
                 env={"CASCADE_LLM__BACKEND": "openai", "CASCADE_LLM__BASE_URL": server.url + "/v1",
                      "CASCADE_LLM__TIMEOUT_S": "300", "CASCADE_LLM__MAX_RETRIES": "0"})
    try:
        yield wait_ready(svc, timeout=120)
    finally:
        svc.stop()


def test_tools_json_and_logprobs_are_answered_by_the_http_backends_server(relay_llm) -> None:
    """llm.backend openai (vLLM): tools, response_format and logprobs go to the server as they came and come back
    in this service's names (the server here is the project's own LLM service, which decodes under a grammar)."""
    client = OpenAI(base_url=relay_llm.url + "/v1", api_key="unused", max_retries=0, timeout=300)
    paris = [{"role": "user", "content": "What's the weather like in Paris?"}]
    weather = {"type": "function", "function": {"name": "get_weather", "description": "Get the current weather in a city",
                                                "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                               "required": ["city"], "additionalProperties": False}}}
    out = client.chat.completions.create(model="gpt-4.1", messages=paris, tools=[weather], tool_choice="required")
    call = out.choices[0].message.tool_calls[0]
    assert out.choices[0].finish_reason == "tool_calls" and out.model == "smollm2" and out.usage.completion_tokens > 0
    assert call.function.name == "get_weather" and isinstance(json.loads(call.function.arguments)["city"], str)
    chunks = list(client.chat.completions.create(model="gpt-4.1", messages=paris, tools=[weather],
                                                 tool_choice="required", stream=True))
    deltas = [d for c in chunks if c.choices for d in c.choices[0].delta.tool_calls or ()]
    assert deltas[0].function.name == "get_weather" and "".join(d.function.arguments or "" for d in deltas) == call.function.arguments
    ask = [{"role": "user", "content": "Give the capital of France."}]
    js = client.chat.completions.create(model="gpt-4.1", messages=ask, response_format={"type": "json_object"}, max_tokens=40)
    assert isinstance(json.loads(js.choices[0].message.content), dict)
    lp = client.chat.completions.create(model="gpt-4.1", messages=ask, max_tokens=4, logprobs=True, top_logprobs=2)
    content = lp.choices[0].logprobs.content
    assert "".join(t.token for t in content) == lp.choices[0].message.content and len(content) == 4
    assert all(t.logprob <= 0 and len(t.top_logprobs) == 2 for t in content)
