"""The trained N-best reranker and the rescoring style profiles, with the real SmolLM2."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cascade import ger
from cascade.config import LlmOptions, RerankOptions, RescoreOptions, RescoreProfile
from cascade.ger import features, rerank
from cascade.ger.rescore import effective, needs_llm
from cascade.llm import load_backend
from cascade.types import Hypothesis, InvalidInput, ModelNotFound, NBest, Utterance

# (hypotheses best first, reference): the recogniser's 1-best has a wrong word, a later hypothesis is right
LISTS = [
    (["she red the letter out loud to her brother", "she read the letter out loud to her brother"], "she read the letter out loud to her brother"),
    (["the whether is nice today", "the weather is nice today"], "the weather is nice today"),
    (["i red a good book last night", "i read a good book last night"], "i read a good book last night"),
    (["we walked threw the park", "we walked through the park"], "we walked through the park"),
    (["he one the race easily", "he won the race easily"], "he won the race easily"),
    (["please right your name here", "please write your name here"], "please write your name here"),
    (["the cat sat on the mat", "the cat sat on a mat"], "the cat sat on the mat"),
    (["open the door please", "open the floor please"], "open the door please"),
    (["they went to the store", "they want to the store"], "they went to the store"),
    (["turn left at the light", "turn left at the lie"], "turn left at the light"),
    (["the sun rises in the east", "the son rises in the east"], "the sun rises in the east"),
    (["my flight leaves at noon", "my fright leaves at noon"], "my flight leaves at noon"),
]
PREFER_LM = rerank.RerankModel(name="prefer-lm", features=("lm_tok",), weights={"plain": (2.0,), "cased": (2.0,)},
                               margins={"plain": 0.0, "cased": 0.0})


@pytest.fixture(scope="module")
def backend(settings):
    return load_backend(LlmOptions(threads=2), settings.home)


def _utts() -> dict[str, list[Utterance]]:
    return {"toy": [Utterance(id=str(i), nbest=NBest.from_texts(h), reference=r) for i, (h, r) in enumerate(LISTS)]}


def test_features_are_relative_to_the_one_best(backend) -> None:
    nb = NBest.from_texts(LISTS[0][0])
    lm = ger.rescore.__globals__["score_texts"](nb.texts, backend)
    f, style = features.list_features(nb, lm)
    assert f.shape == (2, len(features.FEATURES)) and not f[0].any() and style == "plain"
    assert f[1][features.FEATURES.index("lm_tok")] > 0  # SmolLM2 prefers "read" to "red" here
    assert features.list_features(NBest.from_texts(["She red it.", "She read it."]), lm)[1] == "cased"


def test_training_lowers_the_expected_word_errors(backend, settings, tmp_path) -> None:
    data = rerank.build_data(_utts(), backend, tmp_path)  # LLM scores cached under tmp_path/rerank
    assert list((tmp_path / "rerank").glob("lm-*.jsonl"))
    w = rerank.fit(data, l2=1e-3)
    before, after = rerank.training_loss(np.zeros(len(w)), data), rerank.training_loss(w, data)
    assert after < before - 1.0, (before, after)
    again = rerank.build_data(_utts(), _NoCalls(backend), tmp_path)  # re-training reads the cache: no LLM call
    assert [d.feats for d in again] == [d.feats for d in data]


class _NoCalls:
    name = None

    def __init__(self, inner):
        self.name = inner.name

    def score(self, texts, **kw):
        raise AssertionError(f"scored {len(texts)} texts despite the cache")


def test_abstention_keeps_the_one_best_below_the_margin(backend) -> None:
    nb = NBest.from_texts(LISTS[0][0])
    free = rerank.rerank_many([nb], backend, PREFER_LM)[0]
    assert free.method == "rerank" and free.chosen == 1 and free.changed and free.fallback_reason is None
    gain = free.guards["top_gain"]
    kept = rerank.rerank_many([nb], backend, PREFER_LM, RerankOptions(margin=gain + 0.01))[0]
    assert kept.chosen == 0 and kept.text == nb.texts[0] and kept.fallback_reason == "abstained" and kept.guards["top"] == 1
    assert rerank.rerank_many([nb], backend, PREFER_LM, RerankOptions(margin=gain - 0.01))[0].chosen == 1


def test_model_round_trip_and_errors(tmp_path) -> None:
    path = rerank.save_model(PREFER_LM, tmp_path / "m")
    assert rerank.load_model(str(tmp_path / "m")) == PREFER_LM and path.name == "model.json"
    with pytest.raises(ModelNotFound, match="no reranker"):
        rerank.load_model(str(tmp_path / "nowhere"))
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "model.json").write_text(json.dumps({"name": "x", "features": ["nope"], "weights": {"plain": [1.0]}}))
    with pytest.raises(InvalidInput, match="unknown"):
        rerank.load_model(str(tmp_path / "bad"))
    with pytest.raises(InvalidInput, match="empty N-best"):
        rerank.rerank_many([NBest(hypotheses=())], None, PREFER_LM)


def test_shipped_reranker_loads_as_package_data() -> None:
    model = rerank.load_model(RerankOptions().model)
    assert set(model.features) <= set(features.FEATURES) and set(model.margins) <= {"plain", "cased"} and model.dev
    assert (rerank.RERANKERS / RerankOptions().model / "README.md").is_file()


def test_profiles_are_picked_by_the_detected_style(backend) -> None:
    opts = RescoreOptions(profiles={"plain": RescoreProfile(lam=0.0), "cased": RescoreProfile(lam=1.0, length_norm="words")})
    plain = NBest(hypotheses=(Hypothesis(text="the fleets from boston", avg_logprob=-0.1), Hypothesis(text="the flights from boston", avg_logprob=-0.4)))
    cased = NBest(hypotheses=tuple(h.model_copy(update={"text": h.text.capitalize() + "."}) for h in plain.hypotheses))
    assert features.detect_style(plain.texts) == "plain" and features.detect_style(cased.texts) == "cased"
    assert effective(opts, plain).lam == 0.0 and effective(opts, cased).lam == 1.0 and effective(opts, cased).length_norm == "words"
    assert needs_llm(opts) and not needs_llm(opts.model_copy(update={"profile": "plain"}))
    out = ger.rescore_many([plain, cased], backend, opts)
    assert out[0].chosen == 0 and out[0].guards["profile"] == "plain"  # λ 0: the recogniser's choice
    assert out[1].chosen == 1 and out[1].guards == {"profile": "cased", "lam": 1.0, "length_norm": "words"}  # LM only
    explicit = opts.model_copy(update={"profile": "none", "lam": 0.0})
    assert ger.rescore_many([cased], None, explicit)[0].chosen == 0  # an explicit λ overrides the profiles
    with pytest.raises(InvalidInput, match="unknown rescoring profile"):
        ger.rescore_many([plain], None, opts.model_copy(update={"profile": "nope"}))


def test_ger_starts_from_the_reranked_best(backend, tmp_path) -> None:
    rerank.save_model(PREFER_LM, tmp_path / "m")
    nb = NBest.from_texts(LISTS[0][0])
    opts = RerankOptions(model=str(tmp_path / "m"), ger_base=True)
    out = next(ger.correct_many([nb], backend, method="ger", rescore=RescoreOptions(profile="none"), rerank=opts))
    assert out.method == "ger" and out.text == nb.texts[1] and out.scores  # kept, or fell back to, the reranked best
    assert out.status == "ok" or out.fallback_reason


def test_cli_correct_rerank_changes_the_list(tmp_path, monkeypatch) -> None:
    from typer.testing import CliRunner

    from cascade.cli import app

    rerank.save_model(PREFER_LM, tmp_path / "m")
    monkeypatch.setenv("CASCADE_RERANK__MODEL", str(tmp_path / "m"))
    hyps = ["--hyp", LISTS[0][0][0], "--hyp", LISTS[0][0][1]]
    r = CliRunner().invoke(app, ["correct", *hyps, "--correct", "rerank", "--json"])
    assert r.exit_code == 0, r.output
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["method"] == "rerank" and got["chosen"] == 1 and got["text"] == LISTS[0][0][1]
    monkeypatch.setenv("CASCADE_RERANK__MODEL", str(tmp_path / "missing"))
    r = CliRunner().invoke(app, ["correct", *hyps, "--correct", "rerank"])
    assert r.exit_code != 0 and "no reranker" in r.output and "Traceback" not in r.output


def test_correct_and_correct_batch_read_am_score_alike(shared_data, tmp_path, monkeypatch) -> None:
    """A scored HyPoradise file (list-level am_score = mean token log-prob) rescored with λ > 0 by both commands."""
    from typer.testing import CliRunner

    from cascade.cli import app

    records = json.loads((shared_data / "hyporadise/dev/atis.json").read_text())[:8]
    path = tmp_path / "atis8.json"
    path.write_text(json.dumps(records))
    monkeypatch.setenv("CASCADE_RESCORE__LAM", "0.3")
    monkeypatch.setenv("CASCADE_RESCORE__PROFILE", "none")
    one = CliRunner().invoke(app, ["correct", str(path), "--correct", "rescore", "--json"])
    assert one.exit_code == 0, one.output
    picked = [json.loads(line) for line in one.stdout.splitlines() if line.startswith("{")]
    out = tmp_path / "out.jsonl"
    batch = CliRunner().invoke(app, ["correct-batch", str(path), "--out", str(out), "--correct", "rescore"])
    assert batch.exit_code == 0, batch.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["corrected"] for r in rows] == [p["text"] for p in picked]
    assert [s["am"] for s in rows[0]["scores"]] == pytest.approx(records[0]["am_score"], abs=1e-3)  # the mean, as published
    assert [s["am"] for s in picked[0]["scores"]] == pytest.approx(records[0]["am_score"], abs=1e-3)


@pytest.mark.slow  # ~60 fits of the out-of-fold choice: over 30 s on the 2 shared cores
def test_cli_train_rerank_writes_a_loadable_model_with_a_card(tmp_path) -> None:
    from typer.testing import CliRunner

    from cascade.cli import app

    data = tmp_path / "toy.json"
    data.write_text(json.dumps([{"id": str(i), "input": h, "output": r} for i, (h, r) in enumerate(LISTS)]))
    r = CliRunner().invoke(app, ["train-rerank", str(data), "--out", str(tmp_path / "toy-rr")])
    assert r.exit_code == 0, r.output
    model = rerank.load_model(str(tmp_path / "toy-rr"))
    assert model.name == "toy-rr" and model.dev["toy"]["lists"] == len(LISTS) and model.dev["toy"]["rerank"] <= model.dev["toy"]["1-best"]
    assert "toy.json" in (tmp_path / "toy-rr" / "README.md").read_text()
    bad = CliRunner().invoke(app, ["train-rerank", str(tmp_path / "nope.json"), "--out", str(tmp_path / "x")])
    assert bad.exit_code != 0 and "not found" in bad.output and "Traceback" not in bad.output
