"""Batch engine without an LLM: resume after a crash, bad input, disk full, duplicates, failing records."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cascade.batch import engine as batch
from cascade.batch import correct_file
from cascade.cli import app
from cascade.config import load_settings
from cascade.types import Correction

NONE = load_settings({"correct": {"mode": "none"}})
CASCADE = [sys.executable, "-m", "cascade"]


def _lines(n: int) -> str:
    return "".join(f"utt-{i:06d} this is utterance number {i} of the batch\n" for i in range(n))


def _records(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_resume_from_any_cut_gives_identical_bytes(tmp_path: Path) -> None:
    """A journal cut anywhere (mid-line too, as a crash leaves it) resumes to the uninterrupted output."""
    src = tmp_path / "text"
    src.write_text(_lines(3000))
    ref = tmp_path / "ref.jsonl"
    assert correct_file(src, ref, NONE).done == 3000
    data = ref.read_bytes()
    out = tmp_path / "out.jsonl"
    for cut in (0, 1, 5000, len(data) // 2, len(data) - 7, len(data)):
        out.write_bytes(data[:cut])
        summary = correct_file(src, out, NONE)
        assert out.read_bytes() == data, f"cut at {cut}"
        assert summary.done == 3000 and summary.resumed <= cut // 50


def test_resume_of_assembled_format_and_already_complete(tmp_path: Path) -> None:
    src = tmp_path / "in.txt"
    src.write_text(_lines(2500))
    journal = tmp_path / "out.txt.partial.jsonl"
    correct_file(src, tmp_path / "ref.jsonl", NONE)
    journal.write_bytes((tmp_path / "ref.jsonl").read_bytes()[:100_000])
    correct_file(src, tmp_path / "out.txt", NONE)
    assert (tmp_path / "out.txt").read_text() == src.read_text() and not journal.exists()
    assert correct_file(src, tmp_path / "out.txt", NONE).already_complete


def test_output_of_another_input_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("one\ntwo\n")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "text").write_text("x1 one\nx2 two\n")
    correct_file(tmp_path / "a.txt", tmp_path / "out.jsonl", NONE)
    before = (tmp_path / "out.jsonl").read_bytes()
    with pytest.raises(Exception, match="belongs to another input"):
        correct_file(tmp_path / "b" / "text", tmp_path / "out.jsonl", NONE)
    assert (tmp_path / "out.jsonl").read_bytes() == before


def test_duplicates_errors_and_summary(tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_bytes(b'{"id": "a", "text": "first a"}\n{"id": "b", "text": "b"}\n{"id": "a", "text": "second a"}\n'
                    b"not json\n{\"id\": \"c\", \"text\": \"c\"}\n")
    summary = correct_file(src, tmp_path / "out.jsonl", NONE)
    recs = _records(tmp_path / "out.jsonl")
    assert [r["id"] for r in recs] == ["a", "b", "4", "c"] and recs[0]["corrected"] == "first a"
    assert recs[2]["status"] == "error" and recs[2]["original"] == "not json" and recs[2]["corrected"] is None
    assert (summary.done, summary.duplicates, summary.errors, summary.changed) == (4, 1, 1, 0)


@dataclass
class _FailOnBad:
    """A corrector that raises on one record (fault injection): that record alone becomes an error."""

    mode: str = "rescore"
    needs_llm: bool = False

    def correct(self, nbests):
        nbests = list(nbests)
        if any("boom" in nb.texts[0] for nb in nbests):
            raise ValueError("cannot handle boom")
        return iter([Correction(text=nb.texts[0].upper(), method="rescore", changed=True) for nb in nbests])


def test_a_record_that_breaks_the_corrector_is_one_error(tmp_path: Path, monkeypatch) -> None:
    from cascade.correct import registry

    registry.available()  # the built-in modes are registered first, then one is replaced
    monkeypatch.setitem(registry._REGISTRY, "rescore", (lambda settings, backend: _FailOnBad(), lambda settings: False))
    src = tmp_path / "in.txt"
    src.write_text("alpha\nboom here\ngamma\n\ndelta\n")
    s = load_settings({"correct": {"mode": "rescore", "batch_size": 2}})
    summary = correct_file(src, tmp_path / "out.jsonl", s)
    recs = _records(tmp_path / "out.jsonl")
    assert [r["corrected"] for r in recs] == ["ALPHA", None, "GAMMA", "", "DELTA"]
    assert "cannot handle boom" in recs[1]["error"] and recs[3]["fallback_reason"] == "empty hypothesis"
    assert (summary.errors, summary.changed, summary.fallbacks) == (1, 3, 1)


# --------------------------------------------------------------------------- CLI: bad input


@pytest.mark.parametrize(
    ("name", "content", "args", "message"),
    [
        ("empty.txt", b"", [], "input file is empty"),
        ("x.bin", b"a b\n", [], "cannot tell the input format"),
        ("x.txt", b"a b\n", ["--mode", "telepathy"], "invalid setting correct.mode"),
        ("x.json", b"   ", [], "not a JSON list of records"),
        ("y.json", b"{\"a\": 1}", [], "holds no records"),
        ("x.txt", b"a\n", ["--format", "yaml"], "unknown format"),
    ],
)
def test_cli_bad_input_one_line(tmp_path: Path, name: str, content: bytes, args: list[str], message: str) -> None:
    src = tmp_path / name
    src.write_bytes(content)
    res = CliRunner().invoke(app, ["correct-batch", str(src), "--out", str(tmp_path / "o.jsonl"), *args])
    assert res.exit_code == 1 and message in res.output and "Traceback" not in res.output


def test_cli_missing_output_directory(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("hello\n")
    res = CliRunner().invoke(app, ["correct-batch", str(tmp_path / "a.txt"), "--out", str(tmp_path / "no/o.jsonl"),
                                   "--mode", "none"])
    assert res.exit_code == 1 and "output directory does not exist" in res.output


def test_cli_output_over_input_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "a.jsonl"
    src.write_text('{"id": "x", "text": "hello"}\n')
    res = CliRunner().invoke(app, ["correct-batch", str(src), "--out", str(src), "--mode", "none"])
    assert res.exit_code == 1 and "would overwrite the input" in res.output
    assert src.read_text() == '{"id": "x", "text": "hello"}\n'


def test_cli_srt_output_needs_timed_input(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("hello\n")
    res = CliRunner().invoke(app, ["correct-batch", str(tmp_path / "a.txt"), "--out", str(tmp_path / "o.srt")])
    assert res.exit_code == 1 and "needs cue timings" in res.output


# --------------------------------------------------------------------------- disk full


def _limited(limit: int, *args: str) -> subprocess.CompletedProcess:
    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return subprocess.run([*CASCADE, "correct-batch", *args, "--mode", "none"], preexec_fn=cap, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})


def test_disk_full_keeps_whole_records_and_resumes(tmp_path: Path) -> None:
    """A file-size limit (RLIMIT_FSIZE, like a full disk) stops the run with a message; nothing is lost."""
    src = tmp_path / "text"
    src.write_text(_lines(4000))
    ref = tmp_path / "ref.jsonl"
    correct_file(src, ref, NONE)
    out = tmp_path / "out.jsonl"
    res = _limited(500_000, str(src), "--out", str(out))
    assert res.returncode == 1, res.stderr
    assert "cannot write" in res.stderr and "File too large" in res.stderr and "Traceback" not in res.stderr
    kept = out.read_bytes()
    assert 0 < len(kept) <= 500_000 and kept.endswith(b"\n") and ref.read_bytes().startswith(kept)
    # the assembled format: the journal survives a failed assembly, the old output is untouched
    txt = tmp_path / "out.txt"
    res = _limited(len(src.read_bytes()) - 10, str(src), "--out", str(txt), "--format", "kaldi")
    assert res.returncode == 1 and "cannot write" in res.stderr
    assert not txt.exists() and not list(tmp_path.glob(".out.txt.tmp"))
    correct_file(src, out, NONE)
    assert out.read_bytes() == ref.read_bytes()


def test_resume_with_settings_that_change_the_output_is_refused(tmp_path: Path) -> None:
    """GER numerics depend on threads/workers: a resumed run must repeat the settings it was started with."""
    from cascade.formats.records import detect_format, read_items

    src = tmp_path / "text"
    src.write_text(_lines(100))
    rescore = load_settings({"correct": {"mode": "rescore", "batch_size": 8}})  # λ = 0: no LLM is loaded
    ref = tmp_path / "ref.jsonl"
    correct_file(src, ref, rescore)

    def crash_after(n: int):
        for i, item in enumerate(read_items(src, detect_format(src, None), lambda _: None)):
            if i == n:
                raise RuntimeError("killed")
            yield item

    out = tmp_path / "out.jsonl"
    with pytest.raises(RuntimeError):
        batch.run_batch(crash_after(50), out, "jsonl", rescore)
    cut = out.read_bytes()
    assert 0 < len(cut) < len(ref.read_bytes()) and batch.run_path(out).exists()
    other = rescore.model_copy(update={"batch": rescore.batch.model_copy(update={"workers": 2})})
    with pytest.raises(Exception, match=r"started with other settings \(workers 1 -> 2\)"):
        correct_file(src, out, other)
    assert out.read_bytes() == cut  # nothing lost
    assert correct_file(src, out, rescore).resumed > 0
    assert out.read_bytes() == ref.read_bytes() and not batch.run_path(out).exists()
    assert correct_file(src, out, other).done == 100  # a finished output can be read back with any settings
