"""Correction of our own recogniser's (cased) lists: speaker-grouped folds, the shipped cased weights in
`transcribe --correct rerank`, and GER's reranker gate keeping its base. Real Whisper tiny.en and SmolLM2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cascade.config import GerOptions, LlmOptions, RerankOptions, RescoreOptions
from cascade.formats.hyporadise import load_hyporadise, utterance_to_record
from cascade.ger import rerank
from cascade.ger.correct import apply_guards
from cascade.ger.rescore import rescore_many
from cascade.llm import load_backend
from cascade.types import Hypothesis, NBest

WRONG, RIGHT = "She red the letter to her brother.", "She read the letter to her brother."


@pytest.fixture(scope="module")
def backend(settings):
    return load_backend(LlmOptions(threads=2), settings.home)


def _data(speakers: int, per: int) -> list[rerank.ListData]:
    rows = []
    for s in range(speakers):
        for k in range(per):
            rows.append(rerank.ListData(group="g", style="cased", feats=((0.0,), (float(k % 3 - 1),)), errors=(1.0, 0.0),
                                        ref_words=5, fold=f"g/speaker/{s}"))
    return rows


def test_folds_keep_each_speaker_whole() -> None:
    data = _data(speakers=23, per=8)
    for seed in range(3):
        fold = rerank.fold_of(data, folds=5, seed=seed)
        by_speaker = {}
        for d, f in zip(data, fold):
            by_speaker.setdefault(d.fold, set()).add(int(f))
        assert all(len(f) == 1 for f in by_speaker.values())  # no speaker in two folds
        sizes = np.bincount(fold, minlength=5)
        assert sizes.min() >= 4 * 8 and sizes.max() <= 5 * 8  # whole speakers, spread evenly
    assert len({tuple(rerank.fold_of(data, seed=s)) for s in range(3)}) == 3  # the repeats split differently
    loose = [d.model_copy(update={"fold": ""}) for d in data]  # no speaker: every list its own unit, as before
    assert len({(d.fold, int(f)) for d, f in zip(data, rerank.fold_of(loose))}) > 23


def test_speaker_travels_from_the_file_to_the_fold_key(tmp_path: Path) -> None:
    path = tmp_path / "own-dev.json"
    path.write_text(json.dumps([{"id": "a1", "speaker": "0007", "age": 9, "input": [{"text": WRONG, "am_score": -3.0, "avg_logprob": -0.3}],
                                 "output": "SHE READ THE LETTER TO HER BROTHER"}, {"id": "b1", "input": ["x"], "output": "x"}]))
    with_speaker, without = load_hyporadise(path)
    assert with_speaker.speaker == "0007" and without.speaker is None
    assert utterance_to_record(with_speaker)["speaker"] == "0007"
    assert rerank.fold_key("own-dev", with_speaker) == "own-dev/speaker/0007" and rerank.fold_key("own-dev", without) == "own-dev/b1"


def _cased_list() -> NBest:
    return NBest(hypotheses=(Hypothesis(text=WRONG, am_score=-2.4, avg_logprob=-0.24),
                             Hypothesis(text="She read the letters to her brother.", am_score=-3.3, avg_logprob=-0.3)))


def _gated(backend, model_dir: Path, raw: str):
    nb = _cased_list()
    base = rescore_many([nb], backend, RescoreOptions(profile="none"))[0]
    return apply_guards(nb, raw, base, GerOptions(), RescoreOptions(profile="none"), backend,
                        rerank=RerankOptions(model=str(model_dir))), base


def test_ger_keeps_its_base_when_the_reranker_gate_says_no(backend, tmp_path: Path) -> None:
    """GER's output on a list whose base the reranker chose is judged by the reranker, never a rescoring profile."""
    plain_only = rerank.RerankModel(name="plain-only", features=("lm_tok",), weights={"plain": (2.0,)}, margins={"plain": 0.0})
    out, base = _gated(backend, rerank.save_model(plain_only, tmp_path / "plain").parent, RIGHT)
    assert out.status == "fallback" and out.fallback_reason == "no_reranker_for_style" and out.text == base.text == WRONG
    lm = rerank.RerankModel(name="lm", features=("lm_tok",), weights={"cased": (2.0,)}, margins={"cased": 1e6})
    out, _ = _gated(backend, rerank.save_model(lm, tmp_path / "strict").parent, RIGHT)
    assert out.fallback_reason == "below_reranked_best" and out.text == WRONG and out.guards["gate"] == "rerank"
    open_gate = lm.model_copy(update={"margins": {"cased": 0.0}})
    out, _ = _gated(backend, rerank.save_model(open_gate, tmp_path / "open").parent, RIGHT)
    assert out.status == "ok" and out.text == RIGHT and out.guards["rerank_gain"] > 0  # SmolLM2 prefers "read" here


def test_transcribe_correct_rerank_uses_the_shipped_cased_weights(tmp_path: Path, jfk_path: Path) -> None:
    """Our own Whisper output is cased: the default reranker now has weights and a dev-chosen margin for it, and reads
    a second recogniser's score of every hypothesis over the file's audio."""
    from typer.testing import CliRunner

    from cascade.cli import app
    from cascade.types import Transcript

    model = rerank.load_model(RerankOptions().model)
    assert "cased" in model.weights and np.isfinite(model.margins["cased"])
    assert any("speechocean762" in d for d in model.data) and "plain" in model.weights  # the plain weights are kept
    r = CliRunner().invoke(app, ["transcribe", str(jfk_path), "--correct", "rerank", "--format", "json", "-o", str(tmp_path)])
    assert r.exit_code == 0, r.output
    t = Transcript.model_validate_json(next(tmp_path.glob("*.json")).read_text())
    assert rerank.second_model(model, RerankOptions()) == "base"  # the cased weights read Whisper base's score of each hypothesis
    assert all(h.second_score is not None for s in t.segments if len(s.nbest.hypotheses) > 1 for h in s.nbest.hypotheses if h.text.strip())
    for seg in t.segments:
        c = seg.correction
        assert c is not None and c.method == "rerank" and c.guards["style"] == "cased"
        assert c.fallback_reason != "no_model_for_style" and c.guards["margin"] == model.margins["cased"]
        assert seg.text == c.text and c.text in seg.nbest.texts


def test_upper_case_references_are_written_as_the_hypotheses_write() -> None:
    """speechocean762's references are upper-case prompts: an adapter trained on them as they are would shout."""
    from cascade.ger.train import choose_target, restyle
    from cascade.types import Utterance

    hyps = ["Then, you win to the impact.", "Then he went to the park."]
    assert restyle("THEN HE WENT TO THE PARK", hyps) == "Then he went to the park."
    assert restyle("I SAW THEN THE PARK", ["What about the best?", "I saw it then."]) == "I saw then the park?"
    assert restyle("then he went to the park", hyps) == "Then he went to the park."  # LibriSpeech's style
    assert restyle("Then he, the park.", hyps) == "Then he, the park." and restyle("THE PARK", ["THE PARK"]) == "THE PARK"
    assert restyle("the park", ["the park", "the bark"]) == "the park"  # plain lists: as it is
    utt = Utterance(id="u", nbest=NBest.from_texts(hyps), reference="THEN HE WENT TO THE IMPACT")
    assert choose_target(utt, "composable") == ("Then he went to the impact.", None)  # new text, every word heard
    assert choose_target(utt.model_copy(update={"reference": "THEN HE WENT TO THE PARK"}), "composable") == (hyps[1], 1)


def test_an_adapter_gate_file_sets_the_gate_and_its_styles(tmp_path: Path) -> None:
    from cascade.ger.correct import GATE_NAME, adapter_styles, with_adapter_gate

    (tmp_path / GATE_NAME).write_text(json.dumps({"posterior_margin": 2.0, "max_changed_words": 3, "styles": ["cased"]}))
    got = with_adapter_gate(GerOptions(), str(tmp_path))
    assert (got.posterior_margin, got.max_changed_words) == (2.0, 3) and adapter_styles(str(tmp_path)) == ("cased",)
    off = GerOptions(adapter_gate=False)
    assert with_adapter_gate(off, str(tmp_path)) == off  # the options as given
    assert with_adapter_gate(GerOptions(), str(tmp_path / "none")) == GerOptions() and adapter_styles(None) is None


OWN_ADAPTER = str(Path(__file__).resolve().parent.parent / "cascade" / "adapters" / "ger-own")
HEARD = ("but it is good along.", "but it is good alone.", "but it is good long.")
"""A real speechocean762 dev list (speaker 0813, gate half: never trained on), tiny.en 5-best as decoded."""


def test_the_own_adapter_reads_a_real_list_and_its_own_gate_keeps_the_base(backend) -> None:
    """The shipped ger-own adapter writes the word the speaker read, but its own gate (margin chosen on held-out dev
    speakers, where its confidence did not separate good changes from bad ones) keeps the reranked best."""
    from cascade.ger import correct_many
    from cascade.ger.correct import GATE_NAME

    gate = json.loads((Path(OWN_ADAPTER) / GATE_NAME).read_text())
    assert gate["styles"] == ["cased"] and gate["wer_gate_half"] <= gate["base_wer_gate_half"]
    scores = ((-3.259793519973755, -0.40747418999671936), (-3.170708656311035, -0.5284514427185059), (-3.318633198738098, -0.5531055331230164))
    nb = NBest(hypotheses=tuple(Hypothesis(text=t, am_score=a, avg_logprob=lp) for t, (a, lp) in zip(HEARD, scores)))
    rerank_opts = RerankOptions()
    base = next(correct_many([nb], backend, method="rerank", rerank=rerank_opts))
    out = next(correct_many([nb], backend, method="ger", adapter=OWN_ADAPTER, rerank=rerank_opts))
    assert out.method == "ger" and (out.raw_output or "").strip() == HEARD[1]  # "alone", what the speaker read
    # the cased weights retrained on the segment-search lists already pick "alone" (without base's score: this list
    # has no audio), so GER starts there and its output is that base: nothing for its own gate to judge
    assert base.text == HEARD[1] and out.text == base.text and out.status == "ok"
    strict = RerankOptions(margin=1e6)  # a reranker that keeps the 1-best: the adapter's change meets its own gate
    kept0 = next(correct_many([nb], backend, method="ger", adapter=OWN_ADAPTER, rerank=strict))
    assert kept0.text == HEARD[0] and kept0.fallback_reason is not None
    plain = NBest.from_texts(["but it is good along", "but it is good alone"])
    kept = next(correct_many([plain], backend, method="ger", adapter=OWN_ADAPTER, rerank=rerank_opts))
    assert kept.fallback_reason == "adapter_not_for_style" and kept.text == "but it is good along"  # its gate saw no plain lists
