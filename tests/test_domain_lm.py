"""The domain n-gram LM (domain adaptation of the reranker) on real ATIS text, with the real SmolLM2."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from cascade.cli import app
from cascade.config import LlmOptions
from cascade.ger import features, rerank
from cascade.ger.domain_lm import DomainLm, in_domain
from cascade.llm import load_backend
from cascade.types import InvalidInput, ModelNotFound, NBest


@pytest.fixture(scope="module")
def atis_text(shared_data) -> list[str]:
    return [r["output"] for r in json.loads((shared_data / "hyporadise" / "train" / "atis.json").read_text())[:1500]]


@pytest.fixture(scope="module")
def domain(atis_text) -> DomainLm:
    return DomainLm(atis_text)


def test_domain_lm_knows_the_domain_and_gates_other_text(domain, shared_data, tmp_path) -> None:
    right, wrong = domain.score("show me flights from boston to denver"), domain.score("show me fights from boston to denver")
    assert right.logprob > wrong.logprob + 2 and right.words == 7 and right.in_vocab == 1.0
    atis = json.loads((shared_data / "hyporadise" / "dev" / "atis.json").read_text())[:50]
    books = json.loads((shared_data / "hyporadise" / "dev" / "ls_clean.json").read_text())[:50]
    inside = sum(in_domain([domain.score(h) for h in r["input"]]) for r in atis)
    outside = sum(in_domain([domain.score(h) for h in r["input"]]) for r in books)
    assert inside >= 40 and outside <= 2, (inside, outside)
    again = DomainLm.from_file(domain.save(tmp_path / "domain.txt"))
    assert again.score("list flights to dallas") == domain.score("list flights to dallas")
    with pytest.raises(InvalidInput, match="too little domain text"):
        DomainLm(["one sentence"])


def test_domain_reranker_fixes_in_domain_lists_and_leaves_others(domain, settings, tmp_path) -> None:
    model = rerank.RerankModel(name="toy-domain", features=("dlm_word",), weights={"domain": (1.0,), "plain": (1.0,)},
                               margins={"domain": 0.2, "plain": 0.2},
                               domain_text="domain.txt")
    rerank.save_model(model, tmp_path / "m", domain)
    name = str(tmp_path / "m")
    loaded = rerank.load_domain(name)
    assert loaded is not None and loaded.sentences == domain.sentences
    backend = load_backend(LlmOptions(threads=2), settings.home)
    flights = NBest.from_texts(["show me fights from boston to denver", "show me flights from boston to denver"])
    prose = NBest.from_texts(["the old sailor red the letter by candle light", "the old sailor read the letter by candle light"])
    fixed, kept = rerank.rerank_many([flights, prose], backend, rerank.load_model(name), domain=loaded)
    assert fixed.chosen == 1 and fixed.text == "show me flights from boston to denver"
    assert fixed.guards["style"] == "domain" and kept.guards["style"] == "plain"
    assert kept.chosen == 0 and not kept.changed  # outside the domain its features are 0: the LM's evidence is not used
    f, style = features.list_features(prose, None, loaded.scores(prose.texts))
    assert style == "plain" and f[1][features.FEATURES.index("dlm_word")] == 0.0
    (tmp_path / "m" / "domain.txt").unlink()
    rerank.load_domain.cache_clear()
    with pytest.raises(ModelNotFound, match="domain text"):
        rerank.load_domain(name)


@pytest.mark.slow  # trains a reranker (out-of-fold choice, ~60 fits) with LLM features of 120 lists
def test_cli_train_rerank_with_domain_text(shared_data, tmp_path) -> None:
    train = shared_data / "hyporadise" / "train" / "atis.json"
    dev = shared_data / "hyporadise" / "dev" / "atis.json"
    out = tmp_path / "atis-rr"
    r = CliRunner().invoke(app, ["train-rerank", f"{train}@:60", f"{dev}@:60", "--domain-text", f"{train}@60:1500", "--domain-text",
                                 f"{train}@:60", "--distinct", "5", "--out", str(out)])
    assert r.exit_code == 0, r.output
    model = rerank.load_model(str(out))
    assert model.domain_text == "domain.txt" and "dlm_word" in model.features
    kept = set((out / "domain.txt").read_text().splitlines())
    from cascade import metrics

    own = {metrics.normalize(x["output"]) for x in json.loads(train.read_text())[:60]}
    assert kept and not (kept & own)  # the training lists' own references never feed their feature
    bad = CliRunner().invoke(app, ["train-rerank", f"{dev}@:20", "--domain-text", str(tmp_path / "nope.txt"), "--out", str(tmp_path / "x")])
    assert bad.exit_code != 0 and "no such file" in bad.output and "Traceback" not in bad.output


def test_shipped_atis_domain_reranker_corrects_atis_lists(shared_data, settings) -> None:
    from cascade import metrics
    from cascade.formats.hyporadise import load_hyporadise

    model, domain = rerank.load_model("atis-domain"), rerank.load_domain("atis-domain")
    assert domain is not None and "domain" in model.weights and "plain" in model.weights
    utts = load_hyporadise(shared_data / "hyporadise" / "dev" / "atis.json", limit=40)
    got = rerank.rerank_many([u.nbest for u in utts], load_backend(LlmOptions(threads=2), settings.home), model, domain=domain)
    refs = [u.reference for u in utts]
    assert sum(c.changed for c in got) >= 3 and sum(c.guards.get("style") == "domain" for c in got) >= 30
    assert metrics.wer(refs, [c.text for c in got]) < metrics.wer(refs, [u.nbest.texts[0] for u in utts])


def test_cli_correct_changed_shows_what_the_domain_reranker_changed(shared_data) -> None:
    lists = shared_data / "hyporadise" / "dev" / "atis.json"
    r = CliRunner().invoke(app, ["correct", str(lists), "--limit", "40", "--correct", "rerank", "--changed"],
                           env={"CASCADE_RERANK__MODEL": "atis-domain"})
    assert r.exit_code == 0, r.output
    text = " ".join(r.output.split())  # rich wraps long lines
    summary = text[text.index("rerank changed"):]
    assert "of 40 lists" in summary and "WER against the references" in summary
    assert " -> " in text.split("rerank changed")[0]  # at least one list shown with its change


def test_the_spoken_turn_skips_the_wide_decode_when_correction_keeps_the_one_best(tmp_path) -> None:
    from cascade.config import load_settings
    from cascade.correct import reads_alternatives
    from cascade.pipeline import LocalAsr

    shipped = load_settings({"correct": {"mode": "rerank"}})
    assert reads_alternatives(shipped) and reads_alternatives(shipped, style="plain")  # the shipped model has cased weights
    plain = rerank.RerankModel(name="plain-only", features=("lm_tok",), weights={"plain": (1.0,)}, margins={"plain": 0.0})
    plain_only = load_settings({"correct": {"mode": "rerank"}, "rerank": {"model": str(rerank.save_model(plain, tmp_path / "p").parent)}})
    assert not reads_alternatives(plain_only) and reads_alternatives(plain_only, style="plain")
    assert reads_alternatives(load_settings({"correct": {"mode": "rerank"}, "rerank": {"model": "atis-domain"}}))
    assert not reads_alternatives(shipped, "none") and reads_alternatives(shipped, "ger")
    assert not reads_alternatives(load_settings({"correct": {"mode": "rescore"}, "rescore": {"profile": "none", "lam": 0.0}}))
    def turn(mode: str, **more) -> LocalAsr:  # the spoken turn's correction is chat.correct (default none)
        return LocalAsr(load_settings({"chat": {"correct": mode}, **more}))

    plain_dir = str(rerank.save_model(plain, tmp_path / "p").parent)
    assert turn("rerank", rerank={"model": plain_dir}).options.n_best == 1 and turn("none").options.n_best == 1
    assert turn("rerank").options.n_best > 1 and turn("ger").options.n_best > 1
    assert LocalAsr(shipped).options.n_best == 1  # correct.mode rerank is for transcripts, not the turn
