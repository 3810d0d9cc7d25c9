"""metrics: the one normaliser, jiwer-backed WER/CER, the oracles and sacrebleu scores."""

from __future__ import annotations

import jiwer
import pytest

from cascade import metrics
from cascade.types import InvalidInput, NBest


def test_normalize_is_whisper_english() -> None:
    assert metrics.normalize("Mr. Smith, he's got TWENTY dollars!") == "mister smith he has got $20"
    assert metrics.normalize("  colour\n") == "color"
    assert metrics.normalize("") == ""
    assert metrics.normalize("Well… I think so …") == metrics.normalize("Well... I think so...") == "well i think so"


def test_wer_matches_jiwer_raw_and_normalised() -> None:
    refs = ["The cat sat on the mat.", "hello world", "a b c d"]
    hyps = ["the cat sat on a mat", "Hello, World!", "a c d e"]
    assert metrics.wer(refs, hyps, normalize=False) == pytest.approx(jiwer.wer(refs, hyps))
    norm = [metrics.normalize(t) for t in refs], [metrics.normalize(t) for t in hyps]
    assert metrics.wer(refs, hyps) == pytest.approx(jiwer.wer(*norm))
    assert metrics.cer(refs, hyps) == pytest.approx(jiwer.cer(*norm))
    assert metrics.wer(refs, hyps) < metrics.wer(refs, hyps, normalize=False)


def test_wer_counts_empty_references_as_insertions_and_rejects_mismatch() -> None:
    counts = metrics.word_errors(["", "a b"], ["x y", "a b"])
    assert (counts.insertions, counts.errors, counts.ref_len) == (2, 2, 2)
    with pytest.raises(InvalidInput):
        metrics.wer(["a"], ["a", "b"])


def test_oracles_nbest_and_composition() -> None:
    ref = "i want a flight from boston to denver"
    nbest = NBest.from_texts(["i want flight from boston to denver", "i want a flight to boston to denver", "i want a flight from austin to denver"])
    # no hypothesis is right, but every reference word appears in some aligned slot
    assert metrics.oracle_nbest([ref], [nbest]) == pytest.approx(1 / 8)
    assert metrics.oracle_composition([ref], [nbest]) == 0.0
    text, errors = metrics.oracle_composition_pick(ref, nbest)
    assert (text, errors) == (ref, 0)
    # a word no hypothesis has stays an error
    assert metrics.oracle_composition(["i want a flight from boston to denver please"], [nbest]) == pytest.approx(1 / 9)


def test_o_cp_never_exceeds_o_nb_on_real_lists(shared_data) -> None:
    from cascade.formats.hyporadise import load_hyporadise

    utts = load_hyporadise(shared_data / "hyporadise/dev/swbd.json", limit=40)
    refs, nbs = [u.reference for u in utts], [u.nbest for u in utts]
    o_nb, o_cp = metrics.oracle_nbest(refs, nbs), metrics.oracle_composition(refs, nbs)
    one_best = metrics.wer(refs, [nb.texts[0] for nb in nbs])
    assert o_cp <= o_nb <= one_best
    for ref, nb in zip(refs, nbs):
        text, errors = metrics.oracle_composition_pick(ref, nb)
        assert errors == metrics.word_errors([ref], [text]).errors


def test_bleu_chrf() -> None:
    import sacrebleu

    refs, hyps = ["the quick brown fox jumps over the lazy dog"], ["the quick brown fox jumped over the lazy dog"]
    assert metrics.bleu(refs, hyps) == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score)
    assert 0 < metrics.chrf(refs, hyps) < 100
    assert metrics.bleu(refs, refs) == pytest.approx(100.0)
