"""The reranker's second recogniser: every hypothesis of tiny.en's list read again, teacher-forced, by the bundled
multilingual Whisper base over the same audio (cascade.asr.logprobs.second_scores; the am2 features), and the
own-lists cache keyed by the decoder settings that shape the lists. Real Whisper tiny.en and base."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from cascade.asr.logprobs import second_scores
from cascade.audio import load_audio
from cascade.config import AsrOptions
from cascade.ger.features import FEATURES, list_features
from cascade.types import Hypothesis, NBest, Segment, Transcript

SPOKEN, WRONG = "Look at Ann's pants.", "Look at ends pins."  # speechocean762 dev 000010095 (a child reads "LOOK AT ANN'S PANTS")


def test_the_second_recogniser_prefers_the_spoken_words(shared_data: Path, settings) -> None:
    path = shared_data / "speechocean762" / "audio" / "000010095.flac"
    samples = load_audio(path)
    nb = NBest(hypotheses=(Hypothesis(text=WRONG, am_score=-4.0, avg_logprob=-0.8), Hypothesis(text=SPOKEN, am_score=-4.0, avg_logprob=-0.8),
                           Hypothesis(text="")))
    t = Transcript(text=WRONG, segments=(Segment(id=0, start=0.0, end=len(samples) / 16000, text=WRONG, nbest=nb),),
                   language="en", model="tiny.en", duration=len(samples) / 16000, source=str(path))
    got = second_scores(samples, t, "base", AsrOptions(), settings.home).segments[0].nbest.hypotheses
    wrong, spoken, empty = got
    assert wrong.second_tokens and spoken.second_tokens and empty.second_score is None
    assert spoken.second_score > wrong.second_score + 1.0  # base hears "pants", not "pins"
    feats, _ = list_features(NBest(hypotheses=got), None)
    am2 = feats[:, FEATURES.index("am2_avg")]
    assert am2[0] == 0.0 and am2[1] > 0.1  # relative to the 1-best: the spoken words read better under base
    # a list without the second score (HyPoradise: no audio) keeps those features at 0, so plain weights are untouched
    bare, _ = list_features(nb, None)
    assert not np.any(bare[:, [FEATURES.index(f) for f in ("am2_avg", "am2_sum", "am2_x_doubt")]])


def test_the_own_lists_cache_names_the_nbest_search() -> None:
    spec = importlib.util.spec_from_file_location("own_lists", Path(__file__).resolve().parent.parent / "benchmarks" / "own_lists.py")
    own = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(own)
    home = Path("/h")
    a = own.cache_path(home, "speechocean762", AsrOptions(nbest_search="segments"))
    b = own.cache_path(home, "speechocean762", AsrOptions(nbest_search="window"))
    assert a != b and a.name == "speechocean762-tiny.en-nb5w10-segments.jsonl" and "window" in b.name


def test_transcribe_correct_rerank_reads_the_second_recogniser_when_its_weights_do(tmp_path: Path, jfk_path: Path) -> None:
    """A reranker with an am2 weight makes `transcribe --correct rerank` score every hypothesis under base; a second
    model that is not there is one line and a non-zero exit, before any file."""
    from typer.testing import CliRunner

    from cascade.cli import app
    from cascade.ger import rerank

    model = rerank.RerankModel(name="am2", features=("am2_avg",), weights={"cased": (4.0,)}, margins={"cased": 0.0})
    where = rerank.save_model(model, tmp_path / "am2").parent
    env = {"CASCADE_RERANK__MODEL": str(where), "CASCADE_RERANK__SECOND_MODEL": "base"}
    r = CliRunner().invoke(app, ["transcribe", str(jfk_path), "--correct", "rerank", "--format", "json", "-o", str(tmp_path / "out")], env=env)
    assert r.exit_code == 0, r.output
    t = Transcript.model_validate_json(next((tmp_path / "out").glob("*.json")).read_text())
    many = [s for s in t.segments if len(s.nbest.hypotheses) > 1]
    assert many and all(h.second_score is not None and h.second_tokens for s in many for h in s.nbest.hypotheses if h.text.strip())
    for s in many:  # the choice follows base's mean log-prob (margin 0): the highest, or the 1-best on ties
        avg = [h.second_score / h.second_tokens for h in s.nbest.hypotheses]
        assert s.correction.chosen == (int(np.argmax(avg)) if max(avg) > avg[0] + 1e-9 else 0)
    r = CliRunner().invoke(app, ["transcribe", str(jfk_path), "--correct", "rerank"], env={**env, "CASCADE_RERANK__SECOND_MODEL": str(tmp_path / "nope")})
    assert r.exit_code != 0 and "nope" in r.output and "Traceback" not in r.output
