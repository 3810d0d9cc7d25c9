"""HyPoradise / JSONL N-best I/O on the real published schemas."""

from __future__ import annotations

import json

import pytest

from cascade.formats.hyporadise import iter_jsonl, load_hyporadise, write_hyporadise
from cascade.types import InvalidInput

SETS = ["atis", "chime4", "ls_clean", "swbd", "td3", "wsj_score"]


@pytest.mark.parametrize("name", SETS)
def test_every_published_schema_loads(shared_data, name: str) -> None:
    path = shared_data / "hyporadise" / "dev" / f"{name}.json"
    raw = json.loads(path.read_text())[:20]
    utts = load_hyporadise(path, limit=20)
    assert len(utts) == 20
    for rec, utt in zip(raw, utts):
        assert utt.id == rec["id"] and utt.reference == " ".join(rec["output"].split())
        assert utt.nbest.texts == [" ".join(t.split()) for t in rec["input"]]
        scores = rec.get("am_score", rec.get("score"))
        assert [h.avg_logprob for h in utt.nbest.hypotheses] == (scores or [None] * len(rec["input"]))


def test_round_trip(tmp_path, shared_data) -> None:
    utts = load_hyporadise(shared_data / "hyporadise/dev/atis.json", limit=5)
    for suffix in (".json", ".jsonl"):
        out = tmp_path / f"x{suffix}"
        write_hyporadise(utts, out)
        back = load_hyporadise(out)
        assert [(u.id, u.nbest.hypotheses, u.reference) for u in back] == [(u.id, u.nbest.hypotheses, u.reference) for u in utts]


def test_manifest_jsonl(shared_data) -> None:
    utts = list(iter_jsonl(shared_data / "librispeech-test-other/manifest.jsonl", limit=3))
    first = json.loads((shared_data / "librispeech-test-other/manifest.jsonl").read_text().splitlines()[0])
    assert utts[0].reference == first["text"] and utts[0].nbest.texts == first["nbest"]


@pytest.mark.parametrize(
    "content, message",
    [
        (b"[{\"input\": [\"a\"], ", "not valid JSON"),
        (b"\xff\xfe\x00garbage", "not UTF-8"),
        (b"[{\"input\": [], \"output\": \"a\"}]", "empty N-best"),
        (b"[{\"output\": \"a\"}]", "missing the hypothesis list"),
        (b"[{\"input\": [\"a\", 3]}]", "string or an object"),
        (b"[{\"input\": [\"a\", \"b\"], \"am_score\": [1.0]}]", "one number per hypothesis"),
        (b"[1, 2]", "expected a JSON object"),
    ],
)
def test_malformed_input_is_a_clear_error(tmp_path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    with pytest.raises(InvalidInput, match=message):
        load_hyporadise(path)


def test_jsonl_error_names_the_line(tmp_path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"input": ["a"]}\n\n{"input": \n')
    with pytest.raises(InvalidInput, match=r"bad.jsonl:3"):
        load_hyporadise(path)
