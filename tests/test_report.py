"""HTML reports from batch runs (the browser-side checks of reports are in test_playground.py)."""

from __future__ import annotations

import re

from typer.testing import CliRunner

from cascade import metrics
from cascade.cli import app
from cascade.report import ReportRow, render, word_diff_html
from cascade.formats.tabular import read_table

runner = CliRunner()


def test_batch_report_from_a_real_csv_export(test_data, tmp_path):
    csv = sorted((test_data / "asr-outputs").glob("*.csv"))[0]
    out, rep = tmp_path / "out.jsonl", tmp_path / "report.html"
    result = runner.invoke(app, ["correct-batch", str(csv), "--out", str(out), "--mode", "none", "--report", str(rep)])
    assert result.exit_code == 0, result.output
    page = rep.read_text()
    rows = [r for r in read_table(csv).rows() if r.reference is not None]
    expected = 100 * metrics.wer([r.reference for r in rows], [r.text for r in rows])
    assert f"{expected:.2f}" in page, "the WER in the report is the corpus WER of the export"
    assert "<svg" in page and "Summary" in page and "done" in page


def test_batch_report_needs_jsonl_output(test_data, tmp_path):
    csv = sorted((test_data / "asr-outputs").glob("*.csv"))[0]
    result = runner.invoke(app, ["correct-batch", str(csv), "--out", str(tmp_path / "o.txt"), "--report", str(tmp_path / "r.html")])
    assert result.exit_code == 1
    assert "--report reads" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "o.txt").exists(), "nothing is run when the flags cannot work together"


def test_diff_marks_errors_and_escapes():
    html = word_diff_html("the cat sat", "the <b>hat</b> sat down")
    assert "<b>" not in html
    assert re.search(r'class="sub" title="reference: cat"', html)
    assert "<ins" in html


def test_report_without_references_lists_changes():
    rows = [ReportRow(dataset="d", id=str(i), outputs={"1-best": "a b c", "ger": "a b d" if i % 2 else "a b c"}) for i in range(6)]
    page = render(rows, title="no refs")
    assert "3 changed utterances" in page
    assert 'class="wer"' not in page, "no WER table without references"


def test_eval_report_matches_the_eval_table(shared_data, tmp_path):
    import json

    data = shared_data / "hyporadise" / "dev" / "atis.json"
    rep = tmp_path / "eval.html"
    result = runner.invoke(app, ["eval", str(data), "--limit", "8", "--method", "rescore", "--lam", "0",
                                 "--json", "--report", str(rep)])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout.strip().splitlines()[-1])
    page = rep.read_text()
    for method in ("1-best", "rescore", "o_nb"):
        wer = next(r["wer"] for r in rows if r["method"] == method)
        assert f"{100 * wer:.2f}" in page, method
    assert "<svg" in page and "Helped / hurt / neutral" in page
