"""CSV/TSV exports as recognisers publish them: column detection, messy rows, bad files, CLI errors."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cascade.cli import app
from cascade.formats.tabular import read_table
from cascade.types import InvalidInput

SYSTEMS = ("deepspeech", "google", "azure", "watson")


@pytest.fixture(scope="module")
def frag(test_data: Path) -> Path:
    return test_data / "asr-outputs"


def test_detects_columns_without_flags_on_fragments(frag: Path) -> None:
    for name in SYSTEMS:
        table = read_table(frag / f"{name}.csv")
        cols = table.columns
        assert (cols.id_column, cols.id_from_path, cols.text_column, cols.ref_column) == (
            "files", True, "transcription_en-US", "actual"), name
        assert cols.detected
        rows = list(table.rows())
        # DeepSpeech writes './LibriSpeech/.../1089-134686-0008.' and the others '/mnt/.../1089-134686-0008.flac'
        assert rows[0].id == "1089-134686-0008"
        assert rows[0].reference.startswith("THE CHAOS IN WHICH HIS ARDOUR")
        assert "'files' (base name of the path)" in cols.describe()


def test_messy_rows_kept_flagged_skipped(frag: Path) -> None:
    azure = read_table(frag / "azure.csv")
    rows = list(azure.rows())
    empty = [r for r in rows if not r.text]
    assert [r.id for r in empty] == ["8230-279154-0019"] and empty[0].flags == ("empty_hypothesis",)
    assert azure.summary.empty_hypotheses == 1 and len(rows) == 7

    ds = read_table(frag / "deepspeech.csv")
    assert len(list(ds.rows())) == 7
    assert ds.summary.skipped_no_id == [9]  # file line 9: the trailing summary row "2620,,,,,,1.0,1.0"
    assert "1 rows without an id skipped (line 9)" in ds.summary.describe()


def test_detection_on_every_real_export(shared_data: Path) -> None:
    root = shared_data / "asr-outputs" / "librispeech-test-clean"
    for split, n in (("dev", 200), ("test", 2420)):
        for name in SYSTEMS:
            table = read_table(root / split / f"{name}.csv")
            ids = [u.id for u in table]
            assert len(ids) == n, (split, name)
            assert all(len(i.split("-")) == 3 and "." not in i for i in ids)
            assert table.summary.duplicates == 0


def test_named_columns_and_missing_column(frag: Path) -> None:
    table = read_table(frag / "google.csv", text_column="actual", ref_column="transcription_en-US")
    first = next(table.rows())
    assert first.text.startswith("THE CHAOS") and not table.columns.detected
    with pytest.raises(InvalidInput) as err:
        read_table(frag / "google.csv", text_column="hypothesis")
    assert "no column 'hypothesis'" in err.value.message
    assert "'transcription_en-US'" in err.value.message and "'files'" in err.value.message


def _rewrite(src: Path, dst: Path, *, header: dict[str, str] | None = None, extra: list[list[str]] | None = None,
             delimiter: str = ",") -> Path:
    rows = list(csv.reader(src.open(encoding="utf-8")))
    rows[0] = [(header or {}).get(c, c) for c in rows[0]]
    with dst.open("w", encoding="utf-8", newline="") as fh:
        csv.writer(fh, delimiter=delimiter).writerows(rows + (extra or []))
    return dst


def test_paths_column_tsv_and_duplicates(frag: Path, tmp_path: Path) -> None:
    src = frag / "watson.csv"
    first = list(csv.reader(src.open(encoding="utf-8")))[1]
    tsv = _rewrite(src, tmp_path / "watson.tsv", header={"files": "paths"}, extra=[first], delimiter="\t")
    table = read_table(tsv)
    assert table.columns.delimiter == "\t" and table.columns.id_column == "paths"
    rows = list(table.rows())
    assert [r.id for r in rows] == [r.id for r in read_table(src).rows()]
    assert table.summary.duplicates == 1 and "1 duplicate ids skipped (first kept)" in table.summary.describe()


def test_bad_files(tmp_path: Path, frag: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    with pytest.raises(InvalidInput, match="the file is empty"):
        read_table(empty)
    header_only = tmp_path / "header.csv"
    header_only.write_text((frag / "azure.csv").read_text(encoding="utf-8").splitlines()[0] + "\n")
    with pytest.raises(InvalidInput, match="header but no rows"):
        read_table(header_only)
    latin = tmp_path / "latin1.csv"
    lines = (frag / "azure.csv").read_bytes().splitlines(keepends=True)
    latin.write_bytes(b"".join(lines[:3]) + lines[3].replace(b"PRIDE", b"PRID\xc9") + b"".join(lines[4:]))
    table = read_table(latin)
    with pytest.raises(InvalidInput, match=r"line 4: not valid UTF-8 \(byte 0xc9"):
        list(table.rows())
    no_text = tmp_path / "notext.csv"
    no_text.write_text("utt,score\na,1\n")
    with pytest.raises(InvalidInput, match="pass --text-column"):
        read_table(no_text)


runner = CliRunner()


def _one_line_error(result) -> str:  # noqa: ANN001
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = [ln for ln in result.output.strip().splitlines() if ln.strip()]
    assert lines and lines[-1].startswith("error:"), result.output
    return " ".join(lines[lines.index(next(ln for ln in lines if ln.startswith("error:"))):])


@pytest.mark.parametrize("case", ["empty", "header", "latin1", "column"])
def test_cli_bad_input_one_line(case: str, tmp_path: Path, frag: Path) -> None:
    src = frag / "azure.csv"
    path = tmp_path / f"{case}.csv"
    args: list[str] = []
    if case == "empty":
        path.write_bytes(b"")
    elif case == "header":
        path.write_text(src.read_text(encoding="utf-8").splitlines()[0] + "\n")
    elif case == "latin1":
        path.write_bytes(src.read_bytes().replace(b"PRIDE", b"PRID\xc9"))
    else:
        path.write_bytes(src.read_bytes())
        args = ["--text-column", "hyp"]
    out = tmp_path / "out.jsonl"
    message = _one_line_error(runner.invoke(app, ["correct-batch", str(path), "--out", str(out), "--mode", "none", *args]))
    expected = {"empty": "empty", "header": "header but no rows", "latin1": "UTF-8", "column": "no column 'hyp'"}[case]
    assert expected in message


def test_cli_csv_prints_choice_and_converts(frag: Path, tmp_path: Path) -> None:
    out = tmp_path / "azure.jsonl"
    result = runner.invoke(app, ["correct-batch", str(frag / "azure.csv"), "--out", str(out), "--mode", "none"])
    assert result.exit_code == 0, result.output
    assert "id 'files' (base name of the path), text 'transcription_en-US', reference 'actual'" in result.output
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in recs][:2] == ["1089-134686-0008", "1089-134686-0015"]
    empty = next(r for r in recs if r["id"] == "8230-279154-0019")
    assert empty["original"] == "" and empty["reference"].startswith("IT WOULD SEEM")


def test_eval_reads_csv_export_with_detection_and_flags(frag: Path) -> None:
    result = runner.invoke(app, ["eval", str(frag / "deepspeech.csv"), "--method", "none", "--json"])
    assert result.exit_code == 0, result.output
    assert "reference 'actual' (detected)" in result.output
    rows = json.loads(result.output.strip().splitlines()[-1])
    best = next(r for r in rows if r["method"] == "1-best")
    assert best["n"] == 7 and 0 < best["wer"] < best["wer_raw"]  # raw: upper-case reference vs lower-case output
    swapped = runner.invoke(app, ["eval", str(frag / "deepspeech.csv"), "--method", "none", "--json",
                                  "--text-column", "actual", "--ref-column", "actual"])
    assert swapped.exit_code == 0, swapped.output
    assert next(r for r in json.loads(swapped.output.strip().splitlines()[-1]) if r["method"] == "1-best")["wer"] == 0
    missing = runner.invoke(app, ["eval", str(frag / "deepspeech.csv"), "--ref-column", "truth"])
    assert missing.exit_code == 1 and "no column 'truth'" in missing.output and "Traceback" not in missing.output
