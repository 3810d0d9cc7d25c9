"""train-ger: a few real LoRA steps (real SmolLM2, real peft, the inference prompt) on a generated set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cascade.cli import app
from cascade.config import GerOptions, LlmOptions, LoraTrainConfig, load_settings
from cascade.ger import train as trainer
from cascade.types import NBest, Utterance

runner = CliRunner()


@pytest.fixture(scope="module")
def home() -> Path:
    return load_settings().home


@pytest.fixture(scope="module")
def data_file(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Path:
    """Two harvard sentences through make-nbest (real TTS + tiny.en) plus six real ATIS dev lists."""
    tmp = tmp_path_factory.mktemp("gerdata")
    src = tmp / "two.txt"
    src.write_text("\n".join((shared_data / "text" / "harvard-sentences.txt").read_text().splitlines()[20:22]) + "\n")
    res = runner.invoke(app, ["make-nbest", str(src), "-o", str(tmp / "synth.json"), "--seed", "1"])
    assert res.exit_code == 0, res.output
    records = json.loads((tmp / "synth.json").read_text())
    records += json.loads((shared_data / "hyporadise" / "dev" / "atis.json").read_text())[:6]
    path = tmp / "train.json"
    path.write_text(json.dumps(records))
    return path


@pytest.fixture(scope="module")
def adapter(tmp_path_factory: pytest.TempPathFactory, data_file: Path) -> Path:
    out = tmp_path_factory.mktemp("adapter") / "ger-test"
    args = ["train-ger", str(data_file), "--out", str(out), "--base", "smollm2", "--max-steps", "3", "--batch-size", "2",
            "--eval-every", "2", "--save-every", "2", "--lr", "1e-2", "--max-length", "384", "--layers", "4"]  # fmt: skip
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "3 steps" in res.output
    return out


def test_adapter_is_a_standard_peft_dir(adapter: Path, data_file: Path) -> None:
    conf = json.loads((adapter / "adapter_config.json").read_text())
    assert conf["base_model_name_or_path"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert conf["peft_type"] == "LORA" and conf["r"] == LoraTrainConfig().r
    assert sorted(conf["target_modules"]) == sorted(LoraTrainConfig().target_modules)
    assert (adapter / "adapter_model.safetensors").stat().st_size > 100_000
    raw = (adapter / trainer.CONFIG_NAME).read_text()
    saved = json.loads(raw)
    assert raw == json.dumps(saved, indent=2, sort_keys=True) + "\n"  # peft-style: sorted keys
    assert saved["versions"]["peft"] and saved["prompt"]["name"] == GerOptions().prompt
    assert saved["data"]["sources"] == [str(data_file)] and saved["data"]["n_train"] + saved["data"]["n_dev"] == 8
    card = (adapter / "README.md").read_text()
    assert "HuggingFaceTB/SmolLM2-135M-Instruct" in card and str(data_file) in card
    assert sorted(p.name for p in (adapter / "checkpoints").iterdir()) == ["step-000002", "step-000003"]


def test_adapter_reloads_in_the_backend_and_changes_the_model(adapter: Path, home: Path) -> None:
    from cascade.ger import build_prompt
    from cascade.llm import load_backend

    backend = load_backend(LlmOptions(), home)
    nbest = NBest.from_texts(["show me the flights from boston to denver", "show me the flight from boston to denver"])
    prompt = build_prompt(nbest, GerOptions())
    base = backend.score(["show me the flights from boston to denver"], prefix=prompt)[0]
    tuned = backend.score(["show me the flights from boston to denver"], prefix=prompt, adapter=str(adapter))[0]
    again = backend.score(["show me the flights from boston to denver"], prefix=prompt)[0]
    assert base.n_tokens == tuned.n_tokens
    assert abs(base.logprob - tuned.logprob) > 1e-3
    assert again.logprob == pytest.approx(base.logprob, abs=1e-5)  # the adapter is per call, not sticky


def test_posterior_gate_keeps_a_change_only_when_the_adapter_prefers_it(adapter: Path, home: Path) -> None:
    from cascade.config import RescoreOptions
    from cascade.ger import build_prompt
    from cascade.ger.correct import RESPONSE_END, posterior_gate
    from cascade.ger.rescore import rescore
    from cascade.llm import load_backend
    from cascade.types import Correction

    backend = load_backend(LlmOptions(), home)
    nbest = NBest.from_texts(["show me the flight from boston to denver", "show me the flights from boston to denver"])
    gopts, ad = GerOptions(), str(adapter)
    prompt = build_prompt(nbest, gopts)
    base = rescore(nbest, None, RescoreOptions())
    change = Correction(text=nbest.texts[1], method="ger", chosen=1, changed=True, guards={"accepted": True})
    first, second = backend.score([t + RESPONSE_END for t in nbest.texts], prefix=prompt, adapter=str(adapter))
    gain = second.logprob - first.logprob
    kept = posterior_gate(prompt, change, base, backend, gopts.model_copy(update={"posterior_margin": gain - 0.05}), ad)
    assert kept.text == nbest.texts[1] and kept.guards["posterior_gain"] == pytest.approx(gain, abs=1e-3)
    refused = posterior_gate(prompt, change, base, backend, gopts.model_copy(update={"posterior_margin": gain + 0.05}), ad)
    assert refused.text == nbest.texts[0] and refused.status == "fallback" and refused.fallback_reason == "below_posterior_margin"
    assert posterior_gate(prompt, base.model_copy(update={"method": "ger"}), base, backend, gopts, ad).guards == base.guards  # no change: no call
    two = change.model_copy(update={"text": "show me the flights from boston to dover", "chosen": None})  # 2 words from the best
    capped = posterior_gate(prompt, two, base, backend, gopts.model_copy(update={"posterior_margin": -1e9}), ad)
    assert capped.fallback_reason == "too_many_changes" and capped.guards["changed_words"] == 2 and capped.text == base.text


def test_resume_continues_from_the_checkpoint(tmp_path: Path, data_file: Path, home: Path) -> None:
    utts = trainer.load_data([str(data_file)])
    cfg = LoraTrainConfig(max_steps=2, batch_size=2, save_every=1, eval_every=10, max_length=384, lr=1e-3, layers=2)
    first = trainer.train(utts, tmp_path, cfg, GerOptions(), home=home)
    assert first.steps == 2 and (tmp_path / "checkpoints" / "step-000002" / "optim.pt").exists()
    seen: list[int] = []
    second = trainer.train(utts, tmp_path, cfg.model_copy(update={"max_steps": 3}), GerOptions(), home=home,
                           resume=True, progress=lambda ev: seen.append(ev["step"]))  # fmt: skip
    assert seen == [3] and second.steps == 3
    state = json.loads((tmp_path / trainer.STATE_NAME).read_text())
    assert state["step"] == 3 and [h["step"] for h in state["history"]] == [2, 3]


def test_targets_teach_copying_and_never_invented_words() -> None:
    hyps = ["i want to fly to boston", "i want to fly to austin", "i want a fly to boston"]
    nb = NBest.from_texts(hyps)
    copy = Utterance(id="a", nbest=nb, reference="I want to fly to Austin.")
    assert trainer.choose_target(copy, "composable") == ("i want to fly to austin", 1)
    composable = Utterance(id="b", nbest=nb, reference="i want a flight to austin")
    assert trainer.choose_target(composable, "composable") == ("i want to fly to austin", 1)  # "flight" is in no hypothesis
    assert trainer.choose_target(composable, "reference") == ("i want a flight to austin", None)
    mixed = Utterance(id="c", nbest=nb, reference="i want a fly to austin")
    assert trainer.choose_target(mixed, "composable") == ("i want a fly to austin", None)
    assert trainer.choose_target(mixed, "oracle")[1] in (1, 2)


def test_bad_training_input_is_one_line_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty.json"
    empty.write_text("[]")
    for data in [str(tmp_path / "missing.json"), str(empty), f"{empty}@x"]:
        res = runner.invoke(app, ["train-ger", data, "--out", str(tmp_path / "o")])
        assert res.exit_code == 1, res.output
        assert res.output.strip().startswith("error:") and len(res.output.strip().splitlines()) == 1
