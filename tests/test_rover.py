"""Our ROVER against SCTK's `rover` (Debian sctk) on the same input, word for word."""

from __future__ import annotations

from pathlib import Path

import pytest

from cascade.fusion.rover import nist_rover, rover, sctk_rover_path, tokens
from cascade.formats.tabular import read_table

SYSTEMS = ("deepspeech", "google", "azure", "watson")

needs_sctk = pytest.mark.skipif(sctk_rover_path() is None, reason="SCTK rover not installed (Debian package sctk)")


def _systems(folder: Path) -> list[dict[str, list[str]]]:
    systems = [{r.id: tokens(r.text) for r in read_table(folder / f"{n}.csv").rows()} for n in SYSTEMS]
    ids = set().union(*systems)
    return [{i: s.get(i, []) for i in ids} for s in systems]


def _compare(systems: list[dict[str, list[str]]]) -> tuple[int, list[str]]:
    nist = nist_rover(systems)
    ids = sorted(nist)
    ours = {i: rover([s[i] for s in systems]).text for i in ids}
    return len(ids), [f"{i}: nist={nist[i]!r} ours={ours[i]!r}" for i in ids if nist[i] != ours[i]]


HANDMADE = {
    # insertions, deletions, a tie (2 vs 2 -> earliest system), a null winning, an empty system, repeats
    "u1": ["the cat sat on the mat", "the cat sat on a mat", "a cat sat on the mat", "the cat on the mat"],
    "u2": ["hello world", "hello there world", "hello world again", "hello big world"],
    "u3": ["one two", "three four", "one four", "three two"],
    "u4": ["a b c d e", "", "a c e", "b d"],
    "u5": ["yes yes yes", "yes", "no yes no", "yes no"],
    "u6": ["go to the store now", "going to the store", "go to store now please", "go two the stores now"],
}


@needs_sctk
def test_agrees_with_sctk_on_fixture(test_data: Path) -> None:
    n, diffs = _compare(_systems(test_data / "asr-outputs"))
    assert n == 7 and diffs == []


@needs_sctk
def test_agrees_with_sctk_on_handmade_edge_cases() -> None:
    systems = [{u: tokens(texts[k]) for u, texts in HANDMADE.items()} for k in range(4)]
    n, diffs = _compare(systems)
    assert n == len(HANDMADE) and diffs == []
    three = [{u: tokens(texts[k]) for u, texts in HANDMADE.items()} for k in range(3)]
    assert _compare(three)[1] == []


@needs_sctk
def test_agrees_with_sctk_on_dev_split(shared_data: Path) -> None:
    n, diffs = _compare(_systems(shared_data / "asr-outputs" / "librispeech-test-clean" / "dev"))
    assert n == 200 and diffs == [], diffs[:3]


def test_majority_vote_semantics() -> None:
    assert rover(["a b c", "a x c", "a b c"]).text == "a b c"
    assert rover(["a b c", "a x c"]).text == "a b c"  # tie: the first system's word
    assert rover(["a b c", "a c", "a c"]).text == "a c"  # the null wins: the word is dropped
    result = rover(["the cat", "the cat sat", "the cat sat"])
    assert result.words == ("the", "cat", "sat") and result.votes == (3, 3, 2)
    assert all(len(slot) == 3 for slot in result.slots)
    assert rover(["", "", "x"]).text == ""
    assert tokens("Mr. Smith's DOG, barked!") == ["mr", "smith's", "dog", "barked"]


def test_a_system_that_stopped_early_abstains_after_its_last_word() -> None:
    two_stopped = ["she sells sea shells by the shore", "she sells sea shells", "she sells see shells"]
    assert rover(two_stopped).text == "she sells sea shells"  # SCTK: their nulls outvote the end
    assert rover(two_stopped, tail=0.0).text == "she sells sea shells by the shore"
    assert rover(["a b c", "a c", "a c"], tail=0.0).text == "a c"  # a null before a system's last word still votes
    assert rover(["", "a b", "a b"], tail=0.0).text == "a b"  # a system that said nothing does not vote
    assert rover(["a b c d", "a b x d", "a b"], tail=0.0).text == "a b c d"  # 1 against 1 after the stop: first
    assert rover(["a b c d", "a b x d", "a b"], [1.0, 2.0, 1.0], tail=0.0).text == "a b x d"
    result = rover(two_stopped, tail=0.0)
    assert result.votes[-3:] == (1, 1, 1) and result.weak == 0  # won by the one voter left: unanimous, not contested
