"""Speech translation: real Whisper base on real German FLEURS speech, real SmolLM2 for fusion and
the two-stage path, BLEU/chrF against sacrebleu, and the refusals (one-line error, exit 1)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cascade.cli import app
from cascade.config import TranslateOptions, load_settings
from cascade.ger import guards
from cascade.translate import speech as T
from cascade.types import Transcript

runner = CliRunner()
ENGLISH = {"the", "of", "and", "to", "they", "should", "for", "best", "island", "leave", "view", "views"}
GERMAN = {"die", "der", "und", "sollten", "sie", "insel", "für", "zum", "von"}


def run(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def words(text: str) -> set[str]:
    return set(re.findall(r"[a-zäöüß]+", text.lower()))


def assert_one_line_failure(result, *needles: str) -> None:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("error:"), result.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]


@pytest.fixture(scope="module")
def german(shared_data: Path) -> Path:
    return shared_data / "fleurs" / "audio" / "fleurs-de-000.ogg"


@pytest.fixture(scope="module")
def fused(german: Path, tmp_path_factory) -> Transcript:
    """One `cascade translate --correct ger` run shared by the fusion assertions."""
    out = tmp_path_factory.mktemp("fused")
    result = run("translate", german, "--language", "de", "--correct", "ger", "--format", "json", "-o", out)
    assert result.exit_code == 0, result.output
    return Transcript.model_validate_json((out / "fleurs-de-000.json").read_text())


def test_whisper_translation_is_english(german: Path) -> None:
    result = run("translate", german, "--language", "de")
    assert result.exit_code == 0, result.output
    found = words(result.stdout)
    assert len(found & ENGLISH) >= 4 and "hong" in found, result.stdout
    assert len(found & GERMAN) <= 1, result.stdout


def test_fusion_is_guarded_and_english(fused: Transcript) -> None:
    seg = fused.segments[0]
    c = seg.correction
    assert fused.task == "translate" and c is not None and c.method == "fusion"
    assert c.info is not None and c.info.prompt_name == "translate/fusion" and c.info.prompt_hash
    assert c.raw_output is not None and "edit_distance" in c.guards or c.fallback_reason
    if c.status == "ok":  # accepted: within the distance guard of some candidate
        assert c.guards["edit_distance"] <= c.guards["max_edit_distance"]
    else:  # rejected (or the gate closed): Whisper's own 1-best comes back, with the reason
        assert c.status == "fallback" and c.fallback_reason and c.text == seg.nbest.texts[0]
    assert "\n" not in c.text and len(words(c.text) & ENGLISH) >= 4
    assert len(seg.nbest.hypotheses) >= 2  # the translation N-best the LLM saw


def test_via_transcript_translates_the_german_transcript(german: Path, tmp_path: Path) -> None:
    result = run("translate", german, "--language", "de", "--via-transcript", "--format", "json", "-o", tmp_path)
    assert result.exit_code == 0, result.output
    t = Transcript.model_validate_json((tmp_path / "fleurs-de-000.json").read_text())
    c = t.segments[0].correction
    assert t.task == "translate" and c is not None and c.method == "translate"
    assert c.source and len(words(c.source) & GERMAN) >= 3  # what was translated: Whisper's German transcript
    assert c.info is not None and c.info.prompt_name == "translate/source"
    assert c.status == "ok" or c.fallback_reason in {"empty_output", "hit_token_cap", "length_ratio", "not_translated"}
    assert len(words(t.text) & GERMAN) <= 1 or c.status == "fallback", t.text


def test_eval_translate_bleu_and_chrf_equal_sacrebleu(shared_data: Path, fused: Transcript) -> None:
    import sacrebleu

    from cascade import metrics

    manifest = shared_data / "fleurs" / "manifest.jsonl"
    result = run("eval", manifest, "--task", "translate", "--split", "dev", "--limit", "1", "--method", "none", "--json")
    assert result.exit_code == 0, result.output
    report = T.TranslationEval.model_validate_json(result.stdout.strip())
    score = report.methods[0]
    item = T.load_manifest(manifest, split="dev")[0]
    refs, hyps = [item.reference], list(score.outputs)
    assert report.n == 1 and item.id == "fleurs-de-000" and score.method == "none"
    assert score.bleu == round(sacrebleu.corpus_bleu(hyps, [refs]).score, 2)
    assert score.chrf == round(sacrebleu.corpus_chrf(hyps, [refs]).score, 2)
    assert 0 < score.bleu < 100 and score.chrf > 20
    fused_text = [fused.text]
    assert metrics.bleu(refs, fused_text) == sacrebleu.corpus_bleu(fused_text, [refs]).score
    assert metrics.chrf(refs, fused_text) == sacrebleu.corpus_chrf(fused_text, [refs]).score


def test_eval_translate_refuses_unknown_methods(shared_data: Path) -> None:
    result = run("eval", shared_data / "fleurs" / "manifest.jsonl", "--task", "translate", "--method", "bogus")
    assert_one_line_failure(result, "unknown method 'bogus'")


def test_manifest_keeps_non_english_lines_with_references(shared_data: Path) -> None:
    dev = T.load_manifest(shared_data / "fleurs" / "manifest.jsonl", split="dev")
    test = T.load_manifest(shared_data / "fleurs" / "manifest.jsonl", split="test")
    assert (len(dev), len(test)) == (6, 16)
    assert all(i.language != "en" and i.reference and Path(i.audio).is_file() for i in dev + test)


def test_translation_guards_reject_copies_and_odd_lengths() -> None:
    opts = TranslateOptions()
    source = "Für die besten Aussichten auf Hongkong sollten Sie die Insel verlassen."
    log: dict = {}
    with pytest.raises(guards.Rejected, match="not_translated"):
        T.check_translation(source, source, 64, 20, opts, log, same_language=False)
    with pytest.raises(guards.Rejected, match="length_ratio"):
        T.check_translation("Hong Kong.", source, 64, 3, opts, {}, same_language=False)
    with pytest.raises(guards.Rejected, match="hit_token_cap"):
        T.check_translation("For the best views of Hong Kong, leave the island", source, 12, 12, opts, {}, same_language=False)
    with pytest.raises(guards.Rejected, match="empty_output"):
        T.check_translation(" <hyp></hyp> ", source, 64, 3, opts, {}, same_language=False)
    ok = T.check_translation("Translation: For the best views of Hong Kong, you should leave the island.\nMore.",
                             source, 64, 20, opts, log := {}, same_language=False)
    assert ok == "For the best views of Hong Kong, you should leave the island." and log["source_overlap"] < 0.5


def test_other_target_points_at_via_transcript(german: Path) -> None:
    assert_one_line_failure(run("translate", german, "--to", "fr"), "only into English", "--via-transcript")


def test_unknown_languages_are_refused(german: Path) -> None:
    assert_one_line_failure(run("translate", german, "--language", "xx"), "unknown source language", "'xx'")
    assert_one_line_failure(run("translate", german, "--to", "zz", "--via-transcript"), "unknown target language", "'zz'")


def test_english_only_model_cannot_translate(german: Path) -> None:
    assert_one_line_failure(run("translate", german, "--model", "tiny.en"), "English-only")
    assert_one_line_failure(run("translate", german, "--model", "tiny.en", "--via-transcript", "--language", "de"), "English-only")


def test_translation_nbest_trains_like_transcription_nbest(tmp_path: Path) -> None:
    """HyPoradise-format translation data (input = N-best translations, output = reference) builds training
    examples with the fusion prompt, through the trainer's own example builder."""
    from cascade.ger import RESPONSE_END
    from cascade.formats.hyporadise import load_hyporadise
    from cascade.ger.train import build_examples

    data = [{"id": "de-0", "input": ["For the best view of Hong Kong, leave the island.", "For the best views on Hong Kong, leave the island."],
             "output": "To get the best views of Hong Kong, leave the island."}]
    path = tmp_path / "translations.json"
    path.write_text(json.dumps(data))
    utts = load_hyporadise(path)
    cfg = load_settings()
    ger, _ = T.stage_options(cfg)
    # target "reference": learn the human translation (the default "composable" would copy a candidate,
    # since a reference translation nearly always holds words no candidate has)
    examples = build_examples(utts, cfg.train.model_copy(update={"prompt": ger.prompt, "target": "reference"}), ger)
    assert examples[0].target.removesuffix(RESPONSE_END) == data[0]["output"] and examples[0].copy_index is None
    assert "English translations of one utterance" in examples[0].prompt and "1. <hyp>For the best view" in examples[0].prompt


def test_fusion_gate_keeps_whisper_unless_dev_chose_one(fused: Transcript, settings) -> None:  # noqa: ANN001
    """The shipped gate is closed (no gate paid on FLEURS dev): Whisper's own translation comes back even where
    the LLM's text passed GER's text guards; an open gate returns the LLM's text wherever it passed them."""
    from cascade import llm

    seg = fused.segments[0]
    assert settings.translate.fusion_margin is None and seg.correction.text == seg.nbest.texts[0]
    backend = llm.load_backend(settings.llm, settings.home)
    ger, rescore = T.stage_options(settings)
    opened = settings.translate.model_copy(update={"fusion_margin": -1e9})
    [c] = T.correct_translations([seg.nbest], backend, method="ger", ger=ger, rescore=rescore, gate=opened)
    [kept] = T.correct_translations([seg.nbest], backend, method="ger", ger=ger, rescore=rescore, gate=settings.translate)
    assert kept.text == seg.nbest.texts[0] and kept.method == "fusion"
    llm_text = c.scores[-1].text if c.scores and c.scores[-1].source == "llm" else None
    if c.status == "ok":  # passed the text guards and the open gate: the LLM's text
        assert c.text == llm_text and "gate_gain" in c.guards
        assert kept.fallback_reason == "gate_closed"
    else:
        assert c.text == seg.nbest.texts[0] and c.fallback_reason


def test_choose_gate_never_lowers_dev_bleu() -> None:
    """choose_gate keeps Whisper's translation unless a gate raises BLEU on the given (dev) utterances; ties keep
    the gate that changes fewer translations."""
    base = [["a cat sat on the mat"], ["he went to the market today"], ["it is fine"]]
    fused = [["the dog sat on the mat"], ["he went to the market today too"], ["it is fine"]]
    rows = [[(-0.5, -0.4, None, None)], [(-0.2, -0.4, None, None)], [None]]  # (AM of the LLM's text, of the 1-best)
    pays = T.choose_gate(rows, base, fused, ["a cat sat on the mat", "he went to the market today too", "it is fine"])
    assert pays["margin"] is not None and pays["bleu"] > pays["whisper_bleu"] and pays["changed"] == 1
    assert T.apply_gate(rows, base, fused, pays["lam"], pays["margin"])[1] == "he went to the market today too"
    hurts = T.choose_gate(rows, base, fused, ["a cat sat on the mat", "he went to the market today", "it is fine"])
    assert hurts["margin"] is None and hurts["changed"] == 0 and hurts["bleu"] == hurts["whisper_bleu"]
    worse = T.choose_gate([[(-0.1, -0.4, None, None)]], [["the cat sat"]], [["a dog sat"]], ["the cat sat"])
    assert worse["margin"] is None  # the only change would lower BLEU: no gate
