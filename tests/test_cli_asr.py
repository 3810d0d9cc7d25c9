"""`cascade transcribe / translate / demo` through typer's CliRunner with the real models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cascade.cli import app
from cascade.types import Transcript

runner = CliRunner()


def run(*args: str, env: dict[str, str] | None = None):
    return runner.invoke(app, [str(a) for a in args], env=env)


def assert_one_line_failure(result, *needles: str) -> None:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    for needle in needles:
        assert any(needle in line for line in errors), result.stderr


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory, jfk_path: Path) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("bad")
    (d / "notes.txt").write_text("just some text, not audio\n" * 10)
    (d / "cut.flac").write_bytes(jfk_path.read_bytes()[:3000])
    (d / "empty.wav").write_bytes(b"")
    return {"text": d / "notes.txt", "corrupt": d / "cut.flac", "empty": d / "empty.wav", "missing": d / "nope.wav"}


def test_transcribe_json_with_nbest_and_hyporadise(tmp_path: Path, jfk_path: Path) -> None:
    hypo = tmp_path / "hyp.json"
    result = run("transcribe", jfk_path, "--format", "json", "-o", tmp_path, "--n-best", "3", "--hyporadise", hypo)
    assert result.exit_code == 0, result.output
    t = Transcript.model_validate_json((tmp_path / "jfk.json").read_text())
    assert "ask not what your country can do for you" in t.text.lower()
    from cascade.metrics import normalize

    for seg in t.segments:  # up to 3, distinct word sequences (on JFK tiny.en's beam agrees on most words)
        assert 1 <= len(seg.nbest.hypotheses) <= 3
        assert len({normalize(h.text) for h in seg.nbest.hypotheses}) == len(seg.nbest.hypotheses)
    records = json.loads(hypo.read_text())
    assert records == [{"id": f"jfk-{s.id}", "input": s.nbest.texts, "output": None,
                        "am_score": [h.avg_logprob for h in s.nbest.hypotheses]} for s in t.segments]  # HyPoradise am_score: mean token log-prob


def test_transcribe_srt_to_stdout(jfk_path: Path) -> None:
    result = run("transcribe", jfk_path, "--format", "srt")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "1" and lines[1].startswith("00:00:00,") and " --> 00:00:" in lines[1]
    assert "your country" in " ".join(lines[2:4]) and "00:00:1" in result.stdout


def test_multi_file_run_continues_after_bad_files(tmp_path: Path, jfk_path: Path, bad_files: dict[str, Path]) -> None:
    result = run("transcribe", bad_files["text"], jfk_path, bad_files["missing"], bad_files["corrupt"], "-o", tmp_path, "-f", "vtt")
    assert_one_line_failure(result, "notes.txt is not audio", "file not found", "cut.flac")
    assert "3 of 4 file(s) failed" in result.stderr
    assert sum(line.startswith("error:") for line in result.stderr.splitlines()) == 3
    vtt = (tmp_path / "jfk.vtt").read_text()
    assert vtt.startswith("WEBVTT") and "your country" in vtt
    assert sorted(p.name for p in tmp_path.iterdir()) == ["jfk.vtt"]


@pytest.mark.parametrize("kind,needle", [("text", "not audio"), ("corrupt", "cut.flac"), ("empty", "empty file"), ("missing", "file not found")])
def test_bad_single_file_is_one_line(bad_files: dict[str, Path], kind: str, needle: str) -> None:
    assert_one_line_failure(run("transcribe", bad_files[kind]), needle)


def test_audio_over_the_cap_is_refused(jfk_path: Path) -> None:
    result = run("transcribe", jfk_path, env={"CASCADE_ASR__MAX_DURATION_S": "5"})
    assert_one_line_failure(result, "above the 5 s limit")


def test_model_errors_fail_once_before_files(jfk_path: Path) -> None:
    result = run("translate", jfk_path, jfk_path, "--model", "tiny.en")
    assert_one_line_failure(result, "--model base")
    assert result.stderr.count("error:") == 1
    assert_one_line_failure(run("transcribe", jfk_path, "--model", "large-v9"), "unknown whisper model 'large-v9'")
    assert_one_line_failure(run("transcribe", jfk_path, "--n-best", "40"), "n_best")


def test_translate_german_part(tmp_path: Path, shared_data: Path) -> None:
    import subprocess

    german = tmp_path / "german.ogg"
    src = shared_data / "real" / "mit_license_en_de.mp3"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-ss", "31", "-i", str(src), "-t", "15", str(german)], check=True)
    result = run("translate", german, "--n-best", "2", "--format", "json", "-o", tmp_path)
    assert result.exit_code == 0, result.output
    t = Transcript.model_validate_json((tmp_path / "german.json").read_text())
    assert t.task == "translate" and t.model == "base" and t.language == "de"
    assert "software" in t.text.lower() and " the " in f" {t.text.lower()} "


def test_demo_synthesizes_its_sample(tmp_path: Path) -> None:
    from cascade.asr.demo import DEMO_TEXT

    result = run("demo", env={"CASCADE_HOME": str(tmp_path)})
    assert result.exit_code == 0, result.output
    assert (tmp_path / "demo" / "sample.wav").stat().st_size > 100_000
    assert "segment 0" in result.stdout and "1-best:" in result.stdout
    one_best = result.stdout.split("1-best:")[1].replace("\n", " ")
    import jiwer
    from whisper_normalizer.english import EnglishTextNormalizer

    norm = EnglishTextNormalizer()
    assert jiwer.wer(norm(DEMO_TEXT), norm(one_best)) < 0.2


def test_demo_on_a_user_file_as_json(jfk_path: Path) -> None:
    result = run("demo", jfk_path, "--json")
    assert result.exit_code == 0, result.output
    t = Transcript.model_validate_json(result.stdout)
    assert sum(len(s.nbest.hypotheses) for s in t.segments) >= 3  # distinct word sequences: few on clear speech


def test_correct_rescore_hook_runs_the_llm(tmp_path: Path, jfk_path: Path) -> None:
    result = run("transcribe", jfk_path, "--correct", "rescore", "--format", "json", "-o", tmp_path)
    assert result.exit_code == 0, result.output
    seg = Transcript.model_validate_json((tmp_path / "jfk.json").read_text()).segments[0]
    assert seg.correction is not None and seg.correction.method == "rescore"
    assert seg.text == seg.correction.text and seg.correction.text in seg.nbest.texts
    missing = tmp_path / "no-such-adapter"
    assert_one_line_failure(run("transcribe", jfk_path, "--correct", "ger", "--adapter", missing), "no-such-adapter")
