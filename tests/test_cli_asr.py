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
    """srt turns word timestamps on: JFK's 8 s first segment becomes cues of at most 7 s, 2 lines of 42."""
    import pysubs2

    result = run("transcribe", jfk_path, "--format", "srt")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "1" and lines[1].startswith("00:00:00,") and " --> 00:00:" in lines[1]
    subs = pysubs2.SSAFile.from_string(result.stdout)
    assert len(subs) >= 3 and all(e.end - e.start <= 7000 for e in subs)
    assert all(len(line) <= 42 for e in subs for line in e.plaintext.splitlines())
    assert "your country" in " ".join(e.plaintext for e in subs) and subs[-1].end > 10_000


def test_format_all_writes_every_format(tmp_path: Path, jfk_path: Path) -> None:
    import pysubs2

    result = run("transcribe", jfk_path, "-f", "all", "-o", tmp_path, "--max-line-width", "24", "--max-line-count", "1",
                 "--max-cue-duration", "4")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["jfk.json", "jfk.srt", "jfk.tsv", "jfk.txt", "jfk.vtt"]
    t = Transcript.model_validate_json((tmp_path / "jfk.json").read_text())
    assert t.language == "en" and t.language_probability == 1.0  # tiny.en is English-only
    assert all(s.words for s in t.segments)  # all includes srt/vtt: word timestamps are on
    assert (tmp_path / "jfk.txt").read_text().splitlines() == [s.text for s in t.segments]
    assert len((tmp_path / "jfk.tsv").read_text().splitlines()) == len(t.segments) + 1
    for fmt in ("srt", "vtt"):
        subs = pysubs2.load(str(tmp_path / f"jfk.{fmt}"))
        assert all(e.end - e.start <= 4000 and len(e.plaintext) <= 24 for e in subs), fmt
        assert " ".join(e.plaintext for e in subs).split() == t.text.split()
    assert_one_line_failure(run("transcribe", jfk_path, "-f", "all"), "--output-dir")


def test_word_timestamps_and_runtime_flags(jfk_path: Path) -> None:
    result = run("transcribe", jfk_path, "-f", "json", "--word-timestamps", "--device", "cpu", "--compute-type", "int8",
                 "--threads", "1")
    assert result.exit_code == 0, result.output
    t = Transcript.model_validate_json(result.stdout)
    assert t.stages[0].options["cpu_threads"] == 1 and t.stages[0].options["word_timestamps"] is True
    for seg in t.segments:
        assert seg.words and " ".join(w.word.strip() for w in seg.words) == seg.text
        assert seg.start - 0.01 <= seg.words[0].start <= seg.words[-1].end <= seg.end + 0.01
    plain = Transcript.model_validate_json(run("transcribe", jfk_path, "-f", "json").stdout)
    assert all(s.words is None for s in plain.segments)  # off unless asked for (or srt/vtt)
    bad = run("transcribe", jfk_path, "--compute-type", "int3")
    assert bad.exit_code == 2 and "int8" in bad.output  # a closed choice, named in the message


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
    assert 0.5 < t.language_probability <= 1.0  # detected by the multilingual model
    assert "software" in t.text.lower() and " the " in f" {t.text.lower()} "


def test_demo_synthesizes_its_sample(tmp_path: Path) -> None:
    from cascade.asr.demo import DEMO_TEXT

    result = run("demo", env={"CASCADE_HOME": str(tmp_path)})
    assert result.exit_code == 0, result.output
    assert (tmp_path / "demo" / "sample.wav").stat().st_size > 100_000
    assert "segment 0" in result.stdout and "1-best:" in result.stdout
    assert "corrected (rerank):" in result.stdout  # what the configured correction did is shown after the 1-best
    one_best = result.stdout.split("1-best:")[1].split("corrected (")[0].replace("\n", " ")
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


# ------------------------------------------------------------------ flags shared by every command


def _options() -> list[tuple[str, object]]:
    """(command name, option) for every option of every command (typer vendors click: duck-typed)."""
    import typer.main

    out, todo = [], [("", typer.main.get_command(app))]
    while todo:
        name, cmd = todo.pop()
        todo += [(f"{name} {n}".strip(), c) for n, c in getattr(cmd, "commands", {}).items()]
        out += [(name, p) for p in cmd.params if p.param_type_name == "option"]
    return out


def test_short_flags_mean_one_thing_in_every_command() -> None:
    longs: dict[str, set[str]] = {}
    for _, opt in _options():
        for short in (o for o in opt.opts + opt.secondary_opts if len(o) == 2):
            longs.setdefault(short, set()).add(next(o for o in opt.opts if o.startswith("--")))
    assert longs.pop("-o") <= {"--out", "--output", "--output-dir"}  # where the output goes
    assert all(len(names) == 1 for names in longs.values()), longs
    assert longs["-n"] == {"--n-best"} and longs["-m"] == {"--model"} and longs["-f"] == {"--format"}


def test_correct_mode_flag_and_its_old_names(tmp_path: Path) -> None:
    texts = {flag: run("correct", "--hyp", "i want a flight", "--hyp", "i want a fight", flag, "rescore", "--lam", "0")
             for flag in ("--correct", "--method", "--mode", "--correction")}
    assert {r.exit_code for r in texts.values()} == {0}
    assert {r.stdout for r in texts.values()} == {"i want a flight\n"}
    modes = {name for name, opt in _options() if "--correct" in opt.opts}
    assert {"transcribe", "translate", "correct", "eval", "correct-batch", "chat"} <= modes
    declared = {o for _, opt in _options() for o in opt.opts}
    assert not declared & {"--method", "--mode", "--correction", "--out-format"}  # accepted, but not in --help
    assert "--format" in declared  # transcribe's output format; correct-batch's --format is its --input-format
    src = tmp_path / "utts"
    src.write_text("u1 hello world\nu2 i want a flight\n")
    old = run("correct-batch", src, "--out", tmp_path / "out.txt", "--format", "kaldi", "--out-format", "kaldi", "--mode", "none")
    assert old.exit_code == 0, old.output
    assert (tmp_path / "out.txt").read_text().splitlines() == ["u1 hello world", "u2 i want a flight"]


@pytest.mark.parametrize("command, needles", [
    ("transcribe", ["txt|json|srt|vtt|tsv|all", "asr.n_best = 5", "asr.model = tiny.en", "cpu|cuda|auto", "int8_float16",
                    "subtitles.max_line_width = 42", "subtitles.max_duration_s = 7.0", "none|rescore|rerank|ger", "--word-timestamps"]),
    ("translate", ["--threads", "--compute-type", "--max-line-count"]),
    ("demo", ["--device", "--threads"]),
    ("correct", ["none|rescore|rerank|ger", "[default: ger]", "llm.threads = 0"]),
    ("eval", ["transcribe|translate", "[default: rescore,ger]"]),
    ("tune", ["none|tokens|words", "$CASCADE_HOME/config.yaml"]),
    ("speak", ["piper|espeak|coqui", "wav|flac|mp3|opus|aac|pcm", "tts.voice = en_US-joe-medium"]),
    ("chat", ["chat.correct = none", "--threads"]),
    ("correct-batch", ["local|ray", "correct.mode = rerank", "batch.workers = 1", "hyporadise|jsonl|csv", "jsonl|hyporadise|kaldi"]),
])
def test_help_shows_defaults_and_choices(command: str, needles: list[str]) -> None:
    result = runner.invoke(app, [command, "--help"], env={"COLUMNS": "250"})
    assert result.exit_code == 0
    for needle in needles:
        assert needle in result.stdout, (command, needle)


def test_progress_lines_when_stderr_is_not_a_terminal(tmp_path: Path, shared_data: Path) -> None:
    import subprocess
    import sys

    data = shared_data / "hyporadise/dev/wsj_score.json"
    proc = subprocess.run([sys.executable, "-m", "cascade", "eval", str(data), "--limit", "2", "--correct", "rescore", "--lam", "0"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("eval wsj_score.json:")]
    assert lines[-1].startswith("eval wsj_score.json: 2/2 lists") and "/s" in lines[-1], proc.stderr
    assert "\r" not in proc.stderr and "━" not in proc.stderr  # plain lines, no bar redraws
    src = tmp_path / "in.txt"
    src.write_text("hello world\ni want a flight\n")
    batch = run("correct-batch", src, "--out", tmp_path / "out.jsonl", "--correct", "none")
    assert batch.exit_code == 0, batch.output
    assert "correct-batch (none): 2 records" in batch.stderr
