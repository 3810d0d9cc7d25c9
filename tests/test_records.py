"""Batch formats: each one read and written back unchanged (method none), malformed records as error items."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cascade.batch import correct_file
from cascade.config import load_settings
from cascade.formats.records import detect_format, read_items
from cascade.types import InvalidInput

NONE = load_settings({"correct": {"mode": "none"}})

SRT = """1
00:00:01,000 --> 00:00:02,500
Hello there,
general Kenobi.

2
00:00:03,000 --> 00:00:04,250
You are a bold one.

"""

VTT = """WEBVTT

intro
00:00:01.000 --> 00:00:02.500 align:start
Hello there

00:00:03.000 --> 00:00:04.250
You are a bold one.

"""


def _round_trip(tmp_path: Path, name: str, content: str | bytes, out_name: str | None = None) -> bytes:
    src = tmp_path / name
    src.write_bytes(content.encode() if isinstance(content, str) else content)
    out = tmp_path / (out_name or f"out{src.suffix}")
    summary = correct_file(src, out, NONE)
    assert summary.errors == 0 and summary.done > 0
    assert not out.with_name(out.name + ".partial.jsonl").exists(), "the journal is removed once assembled"
    return out.read_bytes()


def test_plain_text_round_trip_keeps_blank_lines(tmp_path: Path) -> None:
    text = "the cat sat on the mat\n\nan other line  with  spaces\nlast\n"
    assert _round_trip(tmp_path, "in.txt", text).decode() == text


def test_kaldi_text_round_trip(tmp_path: Path) -> None:
    kaldi = "utt-1 hello world\nutt-2 \nutt-3 a b c\n"
    (tmp_path / "k").mkdir()
    src = tmp_path / "k" / "text"
    src.write_text(kaldi)
    out = tmp_path / "text"
    correct_file(src, out, NONE)
    assert out.read_text() == "utt-1 hello world\nutt-2\nutt-3 a b c\n"


def test_srt_round_trip_keeps_timing_and_line_breaks(tmp_path: Path) -> None:
    assert _round_trip(tmp_path, "in.srt", SRT).decode() == SRT


def test_vtt_round_trip_keeps_cue_settings_and_ids(tmp_path: Path) -> None:
    assert _round_trip(tmp_path, "in.vtt", VTT).decode() == VTT


def test_srt_to_vtt_converts_timing(tmp_path: Path) -> None:
    out = _round_trip(tmp_path, "in.srt", SRT, "out.vtt").decode()
    assert out.startswith("WEBVTT\n\n1\n00:00:01.000 --> 00:00:02.500\nHello there,\ngeneral Kenobi.\n")


def test_hyporadise_round_trip(tmp_path: Path, shared_data: Path) -> None:
    data = json.loads((shared_data / "hyporadise/dev/atis.json").read_text())[:30]
    out = json.loads(_round_trip(tmp_path, "in.json", json.dumps(data), "out.json"))
    assert [o["id"] for o in out] == [d["id"] for d in data]
    assert [o["input"] for o in out] == [d["input"] for d in data]
    assert [o["output"] for o in out] == [d["output"] for d in data]
    assert [o["corrected"] for o in out] == [d["input"][0] for d in data]


def test_jsonl_variants(tmp_path: Path, shared_data: Path) -> None:
    manifest = (shared_data / "librispeech-test-other/manifest.jsonl").read_text().splitlines()[0]
    lines = [
        json.dumps({"id": "a", "hypotheses": ["one two", "one too"]}),
        json.dumps({"id": "b", "text": "just one"}),
        json.dumps({"id": "c", "hypotheses": [{"text": "x y", "am_score": -1.5}, {"text": "x z", "am_score": -2.0}],
                    "reference": "x y"}),
        manifest,
    ]
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(lines) + "\n")
    items = list(read_items(src, "jsonl"))
    assert [it.id for it in items[:3]] == ["a", "b", "c"]
    assert items[0].utterance.nbest.texts == ["one two", "one too"]
    assert items[1].utterance.nbest.texts == ["just one"] and items[1].utterance.reference is None
    assert [h.am_score for h in items[2].utterance.nbest.hypotheses] == [-1.5, -2.0]
    first = json.loads(manifest)
    assert items[3].utterance.reference == first["text"] and items[3].utterance.nbest.texts == first["nbest"]
    out = tmp_path / "out.jsonl"
    correct_file(src, out, NONE)
    recs = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["corrected"] for r in recs] == ["one two", "just one", "x y", first["nbest"][0]]
    assert recs[2]["reference"] == "x y" and recs[0]["hypotheses"] == ["one two", "one too"]


def test_csv_goes_through_tabular(tmp_path: Path, shared_data: Path) -> None:
    """A fragment of a real published CSV (id in a path column) reads with no flags."""
    src = shared_data / "asr-outputs/librispeech-test-clean/dev/google.csv"
    frag = tmp_path / "google.csv"
    frag.write_text("\n".join(src.read_text(encoding="utf-8").splitlines()[:11]) + "\n")
    items = list(read_items(frag, "csv"))
    assert len(items) == 10
    assert all(it.utterance is not None and "/" not in it.id and "." not in it.id for it in items)


def test_same_data_as_jsonl_and_hyporadise_gives_same_records(tmp_path: Path, shared_data: Path) -> None:
    data = json.loads((shared_data / "hyporadise/dev/wsj_score.json").read_text())[:12]
    (tmp_path / "a.json").write_text(json.dumps(data))
    (tmp_path / "b.jsonl").write_text("".join(json.dumps(d) + "\n" for d in data))
    correct_file(tmp_path / "a.json", tmp_path / "a.out.jsonl", NONE)
    correct_file(tmp_path / "b.jsonl", tmp_path / "b.out.jsonl", NONE)
    assert (tmp_path / "a.out.jsonl").read_bytes() == (tmp_path / "b.out.jsonl").read_bytes()


# --------------------------------------------------------------------------- malformed input


def test_malformed_jsonl_lines_become_error_items(tmp_path: Path) -> None:
    src = tmp_path / "mixed.jsonl"
    src.write_bytes(b'{"id": "ok1", "text": "fine"}\n'
                    b"this is a plain text line\n"
                    b'["a", "list"]\n'
                    b'{"id": "nohyp", "foo": 1}\n'
                    b'{"id": "bad\xff", "text": "x"}\n'
                    b'{"id": "ok2", "hypotheses": ["a", "b"]}\n')
    items = list(read_items(src, "jsonl"))
    assert [it.error is None for it in items] == [True, False, False, False, False, True]
    assert "not JSON" in items[1].error and "not a JSON object" in items[2].error
    assert "no `hypotheses`" in items[3].error and "UTF-8" in items[4].error


def test_invalid_utf8_and_bad_cues(tmp_path: Path) -> None:
    txt = tmp_path / "a.txt"
    txt.write_bytes(b"good line\nbad \xc3\x28 line\nfine\n")
    items = list(read_items(txt, "text"))
    assert items[1].error and "UTF-8 at line 2" in items[1].error and items[2].utterance.nbest.texts == ["fine"]
    srt = tmp_path / "b.srt"
    srt.write_text("1\n00:00:01,000 --> 00:00:02,000\nok\n\n2\nno timing here\n\n3\n00:00:0x --> 00:00:03,000\nbad\n\n")
    errors = [it.error for it in read_items(srt, "srt")]
    assert errors[0] is None and "no `-->`" in errors[1] and "bad timestamp" in errors[2]


def test_truncated_hyporadise_keeps_records_before_the_break(tmp_path: Path, shared_data: Path) -> None:
    text = (shared_data / "hyporadise/dev/atis.json").read_text()
    src = tmp_path / "cut.json"
    src.write_text(text[:2500])
    items = list(read_items(src, "hyporadise"))
    assert all(it.error is None for it in items[:-1]) and len(items) > 2
    assert "JSON syntax error" in items[-1].error


def test_format_detection(tmp_path: Path) -> None:
    assert detect_format(Path("x.SRT")) == "srt" and detect_format(Path("a/text")) == "kaldi"
    assert detect_format(Path("x.bin"), "jsonl") == "jsonl"
    with pytest.raises(InvalidInput, match="cannot tell the input format"):
        detect_format(Path("x.bin"))
    with pytest.raises(InvalidInput, match="unknown format"):
        detect_format(Path("x.txt"), "yaml")
    with pytest.raises(InvalidInput, match="output format"):
        detect_format(Path("x.csv"), output=True)
