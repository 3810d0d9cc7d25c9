"""The transformers(+peft) LLM backend with the real bundled SmolLM2."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from cascade.config import LlmOptions
from cascade.llm import load_backend
from cascade.types import ModelNotFound


@pytest.fixture(scope="module")
def backend(settings):
    return load_backend(LlmOptions(threads=2), settings.home)


def test_scores_are_token_logprob_sums_independent_of_batching(backend) -> None:
    texts = ["show me the flights from boston to denver", "flights the me show denver to from boston", "yes"]
    batched = backend.score(texts)
    alone = [backend.score([t])[0] for t in texts]
    for a, b in zip(batched, alone):
        assert a.n_tokens == b.n_tokens and a.logprob == pytest.approx(b.logprob, abs=1e-3)
    assert batched[0].logprob > batched[1].logprob  # fluent beats scrambled
    toks = backend.prompt_logprobs([texts[0]])[0]
    assert len(toks) == batched[0].n_tokens
    assert sum(t.logprob for t in toks) == pytest.approx(batched[0].logprob, abs=1e-3)
    assert all(t.logprob < 0 for t in toks) and toks[0].offset == 0
    assert backend.score([""])[0].n_tokens == 0


def test_prefix_conditions_but_is_not_scored(backend) -> None:
    prefix, text = "Transcript of a flight booking call:", " show me the flights from boston"
    with_prefix = backend.score([text], prefix=prefix)[0]
    toks = backend.prompt_logprobs([prefix + text])[0]
    own = [t for t in toks if t.offset >= len(prefix)]
    assert with_prefix.n_tokens == len(own)
    assert with_prefix.logprob == pytest.approx(sum(t.logprob for t in own), abs=1e-3)
    assert not math.isclose(with_prefix.logprob, backend.score([text])[0].logprob, abs_tol=1e-3)


def test_generate_is_greedy_batched_and_stops(backend) -> None:
    prompt = backend.chat_template([{"role": "user", "content": "Repeat exactly: the cat sat on the mat"}])
    assert prompt.startswith("<|im_start|>") and prompt.endswith("<|im_start|>assistant\n")
    one = backend.generate([prompt], max_tokens=12)
    two = backend.generate([prompt, prompt + "The"], max_tokens=12)
    assert two[0] == one[0] and one[0].strip()
    cut = backend.generate([prompt], max_tokens=12, stop=[" "])[0]
    assert " " not in cut.strip()
    assert backend.count_tokens(backend.generate([prompt], max_tokens=3)[0]) <= 4


@pytest.fixture(scope="module")
def random_adapter(tmp_path_factory, settings) -> Path:
    """A tiny LoRA with random (non-zero) weights, saved the way training saves adapters."""
    import torch
    from peft import LoraConfig, get_peft_model

    from cascade.llm.hf_backend import load_hf_llm

    torch.manual_seed(0)
    model, _ = load_hf_llm("smollm2", settings.home)
    cfg = LoraConfig(r=4, lora_alpha=64, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    peft_model = get_peft_model(model, cfg)
    out = tmp_path_factory.mktemp("adapter") / "lora"
    peft_model.save_pretrained(out)
    return out


def test_adapter_per_call_changes_output_and_is_not_sticky(backend, random_adapter: Path) -> None:
    import json

    assert json.loads((random_adapter / "adapter_config.json").read_text())["base_model_name_or_path"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    text = ["show me the flights from boston to denver"]
    base = backend.score(text)[0]
    tuned = backend.score(text, adapter=str(random_adapter))[0]
    again = backend.score(text)[0]
    assert abs(base.logprob - tuned.logprob) > 1.0
    assert again.logprob == pytest.approx(base.logprob, abs=1e-4)
    prompt = backend.chat_template([{"role": "user", "content": "Say hello."}])
    assert backend.generate([prompt], max_tokens=6, adapter=str(random_adapter)) != backend.generate([prompt], max_tokens=6)


def test_default_adapter_from_options(settings, random_adapter: Path) -> None:
    plain = load_backend(LlmOptions(threads=2), settings.home)
    with_adapter = load_backend(LlmOptions(threads=2), settings.home, adapter=str(random_adapter))
    text = ["hello there"]
    assert with_adapter.score(text)[0].logprob == pytest.approx(plain.score(text, adapter=str(random_adapter))[0].logprob, abs=1e-4)


def test_missing_adapter_is_a_clear_error(backend, tmp_path, settings) -> None:
    with pytest.raises(ModelNotFound, match="adapter directory not found"):
        backend.score(["hi"], adapter=str(tmp_path / "nope"))
    with pytest.raises(ModelNotFound, match="no adapter_config.json"):
        backend.generate(["hi"], max_tokens=2, adapter=str(tmp_path))
    with pytest.raises(ModelNotFound):
        load_backend(LlmOptions(), settings.home, adapter=str(tmp_path / "nope"))
    with pytest.raises(ModelNotFound, match="not a HF model directory"):
        load_backend(LlmOptions(model=str(tmp_path)), settings.home)
