"""Multi-system fusion: joining recognisers' files by id, `correct-batch --join`, format parity, POST /v1/fuse."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from cascade.cli import app
from cascade.batch.join import join
from cascade.fusion.fuse import fuse
from cascade.metrics import normalize
from cascade.types import FusionInput, InvalidInput, SystemText

SYSTEMS = ("deepspeech", "google", "azure", "watson")
runner = CliRunner()


@pytest.fixture(scope="module")
def frag(test_data: Path) -> Path:
    return test_data / "asr-outputs"


def _paths(frag: Path, names=SYSTEMS) -> list[Path]:  # noqa: ANN001
    return [frag / f"{n}.csv" for n in names]


def test_join_three_files_with_an_id_missing_in_one(frag: Path) -> None:
    joined = join(_paths(frag, ("deepspeech", "google", "watson")))
    assert joined.systems == ("deepspeech", "google", "watson")
    assert len(joined.inputs) == 7 and joined.missing == {"deepspeech": 0, "google": 0, "watson": 1}
    by_id = {i.id: i for i in joined.inputs}
    assert [o.system for o in by_id["1089-134686-0015"].outputs] == ["deepspeech", "google"]
    assert [o.system for o in by_id["1089-134686-0008"].outputs] == ["deepspeech", "google", "watson"]
    assert by_id["1089-134686-0008"].reference.startswith("THE CHAOS")
    # order given = order of the hypotheses; ids in first-seen order (watson's first, then the one it lacks)
    rev = join(_paths(frag, ("watson", "google", "deepspeech")))
    assert [o.system for o in rev.inputs[0].outputs] == ["watson", "google", "deepspeech"]
    assert rev.inputs[-1].id == "1089-134686-0015"


def test_join_files_sharing_no_id(frag: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.csv"
    other.write_text("id,text\nutt-1,hello world\nutt-2,good morning\n")
    with pytest.raises(InvalidInput, match="shares no utterance id"):
        join([frag / "google.csv", other])
    result = runner.invoke(app, ["correct-batch", "--join", str(frag / "google.csv"), str(other),
                                 "--out", str(tmp_path / "fused.jsonl")])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "shares no utterance id with the other files" in " ".join(result.output.split())
    assert not (tmp_path / "fused.jsonl").exists()
    one = runner.invoke(app, ["correct-batch", "--join", str(other), "--out", str(tmp_path / "f.jsonl")])
    assert one.exit_code == 1 and "at least two files" in one.output


def test_fuse_rover_votes_on_normalised_words() -> None:
    inp = FusionInput(id="u", outputs=(SystemText(system="a", text="Mr. Smith paid $20."),
                                       SystemText(system="b", text="mister smith paid twenty dollars"),
                                       SystemText(system="c", text="Mister Smith pays 20 dollars")))
    out = fuse(inp, "rover")
    assert out.method == "rover" and out.text == normalize("mister smith paid twenty dollars")
    with pytest.raises(InvalidInput, match="needs an LLM backend"):
        fuse(inp, "ger")


def _run_join(paths: list[Path], out: Path, *extra: str) -> list[dict]:
    result = runner.invoke(app, ["correct-batch", "--join", *map(str, paths), "--out", str(out), *extra])
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in out.read_text().splitlines()]


def test_correct_batch_join_rover_records(frag: Path, tmp_path: Path) -> None:
    recs = _run_join(_paths(frag), tmp_path / "fused.jsonl", "--mode", "rover")
    joined = join(_paths(frag))
    assert [r["id"] for r in recs] == [i.id for i in joined.inputs]
    for rec, inp in zip(recs, joined.inputs):
        assert rec["method"] == "rover" and rec["fallback_reason"] is None
        assert rec["systems"] == {o.system: o.text for o in inp.outputs}
        assert rec["corrected"] == fuse(inp, "rover").text
        assert rec["reference"] == inp.reference
    empty = next(r for r in recs if r["id"] == "8230-279154-0019")
    assert empty["systems"]["azure"] == "" and empty["corrected"]  # the empty system is outvoted, not an error


def _as_jsonl(src: Path, dst: Path) -> Path:
    from cascade.formats.tabular import read_table

    with dst.open("w") as fh:
        for row in read_table(src).rows():
            fh.write(json.dumps({"id": row.id, "text": row.text, "reference": row.reference}) + "\n")
    return dst


def _as_hyporadise(src: Path, dst: Path) -> Path:
    from cascade.formats.tabular import read_table

    dst.write_text(json.dumps([{"id": r.id, "input": [r.text], "output": r.reference} for r in read_table(src).rows()]))
    return dst


def _as_tsv(src: Path, dst: Path) -> Path:
    rows = list(csv.reader(src.open(encoding="utf-8")))
    with dst.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh, delimiter="\t").writerows(rows)
    return dst


def test_csv_jsonl_hyporadise_give_identical_output(frag: Path, tmp_path: Path) -> None:
    outputs = {}
    for fmt, convert in (("csv", None), ("tsv", _as_tsv), ("jsonl", _as_jsonl), ("json", _as_hyporadise)):
        folder = tmp_path / fmt
        folder.mkdir()
        paths = [p if convert is None else convert(p, folder / f"{p.stem}.{fmt}") for p in _paths(frag)]
        _run_join(paths, folder / "fused.jsonl", "--mode", "rover")
        outputs[fmt] = (folder / "fused.jsonl").read_bytes()
    assert outputs["csv"] and len(set(outputs.values())) == 1
    # the single-file path too: one system's CSV vs JSONL vs HyPoradise through the batch engine
    singles = []
    for src in (frag / "google.csv", _as_jsonl(frag / "google.csv", tmp_path / "g.jsonl"),
                _as_hyporadise(frag / "google.csv", tmp_path / "g.json")):
        out = tmp_path / f"single-{src.suffix[1:]}.jsonl"
        result = runner.invoke(app, ["correct-batch", str(src), "--out", str(out), "--mode", "none"])
        assert result.exit_code == 0, result.output
        singles.append(out.read_bytes())
    assert len(set(singles)) == 1


def test_cli_join_mode_checked(frag: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["correct-batch", "--join", *map(str, _paths(frag)), "--out",
                                 str(tmp_path / "x.jsonl"), "--mode", "none"])
    assert result.exit_code == 1 and "--correct rover, rescore or ger" in result.output
    two = runner.invoke(app, ["correct-batch", *map(str, _paths(frag)[:2]), "--out", str(tmp_path / "y.jsonl")])
    assert two.exit_code == 1 and "add --join" in two.output


@pytest.fixture(scope="module")
def llm_service(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    from services.common.testing import running_service

    with running_service("llm", log_dir=tmp_path_factory.mktemp("llm-fuse"), ready_timeout=600) as svc:
        yield svc


def test_service_fuse_matches_library_and_runs_llm(llm_service, frag: Path) -> None:  # noqa: ANN001
    joined = join(_paths(frag))
    inp = min(joined.inputs, key=lambda i: sum(len(o.text) for o in i.outputs))  # the shortest: quick generation
    body = {"input": inp.model_dump(), "method": "rover"}
    got = httpx.post(f"{llm_service.url}/v1/fuse", json=body, timeout=120)
    assert got.status_code == 200, got.text
    assert got.json()["text"] == fuse(inp, "rover").text and got.json()["method"] == "rover"

    ger = httpx.post(f"{llm_service.url}/v1/fuse", json={**body, "method": "ger"}, timeout=600).json()
    assert ger["method"] == "fusion" and ger["text"].strip()
    assert ger["raw_output"] is not None  # the real LLM wrote something
    if ger["status"] == "fallback":  # guards refused the LLM's text: the transcript is a vetted candidate
        assert ger["fallback_reason"] and ger["text"] in {s["text"] for s in ger["scores"] if s["source"] != "llm"}

    bad = httpx.post(f"{llm_service.url}/v1/fuse", json={"input": {"outputs": []}, "method": "ger"}, timeout=60)
    assert bad.status_code == 400 and "no system outputs" in bad.json()["error"]["message"]
    unknown = httpx.post(f"{llm_service.url}/v1/fuse", json={**body, "method": "vote"}, timeout=60)
    assert unknown.status_code in (400, 422) and "error" in unknown.json()
