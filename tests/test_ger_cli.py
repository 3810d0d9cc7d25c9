"""`cascade correct | eval | tune` through the real CLI (CliRunner)."""

from __future__ import annotations

import json

import jiwer
import pytest
import yaml
from typer.testing import CliRunner

from cascade import metrics
from cascade.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def small(tmp_path_factory, shared_data):
    records = json.loads((shared_data / "hyporadise/dev/wsj_score.json").read_text())[:6]
    path = tmp_path_factory.mktemp("cli") / "wsj6.json"
    path.write_text(json.dumps(records))
    return path, records


def test_eval_reproduces_jiwer(small) -> None:
    path, records = small
    r = runner.invoke(app, ["eval", str(path), "--method", "rescore", "--lam", "0", "--json"])
    assert r.exit_code == 0, r.output
    rows = {row["method"]: row for row in json.loads(r.stdout)}
    refs = [rec["output"] for rec in records]
    best = [rec["input"][0] for rec in records]
    norm = lambda xs: [metrics.normalize(x) for x in xs]  # noqa: E731
    assert rows["1-best"]["wer"] == pytest.approx(jiwer.wer(norm(refs), norm(best)))
    assert rows["1-best"]["wer_raw"] == pytest.approx(jiwer.wer(refs, best))
    # λ = 0 with the file's own scores picks the best `score`
    picks = [rec["input"][max(range(5), key=lambda i: (rec["score"][i], -i))] for rec in records]
    assert rows["rescore"]["wer"] == pytest.approx(jiwer.wer(norm(refs), norm(picks)))
    assert rows["o_cp"]["wer"] <= rows["o_nb"]["wer"] <= rows["1-best"]["wer"]
    table = runner.invoke(app, ["eval", str(path), "--method", "rescore", "--lam", "0"])
    assert table.exit_code == 0 and "o_cp" in table.stdout


@pytest.mark.parametrize("content, message", [(b"\xff\xfe\x00x", "not UTF-8"), (b'[{"input": ["a"]', "not valid JSON"), (b"[]", "no utterance")])
def test_bad_files_are_one_line_errors(tmp_path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    r = runner.invoke(app, ["eval", str(path), "--method", "rescore", "--lam", "0"])
    assert r.exit_code == 1 and message in r.output and "Traceback" not in r.output


def test_correct_text_explain_and_errors(small) -> None:
    r = runner.invoke(app, ["correct", "--hyp", "i want a flight", "--hyp", "i want a fight", "--method", "rescore", "--lam", "0"])
    assert r.exit_code == 0 and r.stdout.strip() == "i want a flight"
    path, records = small
    r = runner.invoke(app, ["correct", str(path), "--method", "rescore", "--lam", "0", "--limit", "2", "--explain"])
    assert r.exit_code == 0 and f"{records[0]['id']}: rescore -> ok" in r.stdout and "combined" in r.stdout
    r = runner.invoke(app, ["correct", str(path), "--hyp", "x"])
    assert r.exit_code == 1 and "not both" in r.output
    r = runner.invoke(app, ["correct", "--hyp", "a", "--method", "bogus"])
    assert r.exit_code == 1 and "invalid setting correct.mode" in r.output and "rerank" in r.output  # names the choices


def test_correct_ger_with_missing_adapter_is_a_clear_error(tmp_path) -> None:
    r = runner.invoke(app, ["correct", "--hyp", "a b", "--adapter", str(tmp_path / "none"), "--method", "ger"])
    assert r.exit_code == 1 and "adapter directory not found" in r.output


def test_tune_writes_style_profiles(small, tmp_path) -> None:
    path, _ = small
    out = tmp_path / "tuned.yaml"
    out.write_text("asr:\n  model: tiny.en\n")
    r = runner.invoke(app, ["tune", "--dev", str(path), "--out", str(out), "--step", "0.5"])
    assert r.exit_code == 0, r.output
    data = yaml.safe_load(out.read_text())
    profiles = data["rescore"]["profiles"]  # one profile per detected input style (the small file: plain text)
    assert profiles["plain"]["lam"] in (0.0, 0.5, 1.0) and data["asr"]["model"] == "tiny.en"
