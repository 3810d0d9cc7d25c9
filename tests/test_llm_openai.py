"""The OpenAI-compatible HTTP backend against the project's own LLM service (real uvicorn on loopback)."""

from __future__ import annotations

from pathlib import Path

import pytest

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
