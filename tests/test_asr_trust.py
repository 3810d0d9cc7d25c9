"""Transcripts you can reproduce and trust: the temperature fallback's samples are seeded (the same output on
every run, in the library, the CLI and the ASR service under concurrent requests), and segments Whisper
invented are flagged, and dropped from text and subtitles on request. Real tiny.en on real audio throughout.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from openai import OpenAI
from typer.testing import CliRunner

from cascade.asr import hallucination as hal
from cascade.asr import seeded, transcribe_all
from cascade.cli import app
from cascade.formats.transcript import FORMATS, render
from cascade.types import Hypothesis

SAMPLING_CLIP = "000050047"
"""speechocean762 dev, a child reading "SIX FIVE THREE": tiny.en's beam result fails faster-whisper's thresholds
and the fallback samples (found by benchmarks/asr_trust.py)."""
OTHER_SAMPLING_CLIP = "000480134"
INVENTED = "please subscribe to my channel"
"""What tiny.en writes over 8 s of a sustained chord when prompted with it (a video outro, Careless Whisper's list)."""


def _segments(t) -> list[dict]:
    return [s.model_dump(mode="json") for s in t.segments]


@pytest.fixture(scope="module")
def clips(shared_data) -> dict[str, Path]:
    rows = [json.loads(line) for line in (shared_data / "speechocean762" / "manifest.jsonl").read_text().splitlines()]
    by_id = {r["id"]: r for r in rows}
    return {i: shared_data / "speechocean762" / by_id[i]["audio"] for i in (SAMPLING_CLIP, OTHER_SAMPLING_CLIP)}


@pytest.fixture(scope="module")
def chord(tmp_path_factory) -> Path:
    """8 s of a sustained A-minor-ish chord: no speech at all."""
    t = np.arange(16000 * 8) / 16000
    audio = 0.1 * (np.sin(2 * np.pi * 220 * t) + np.sin(2 * np.pi * 277 * t) + np.sin(2 * np.pi * 330 * t))
    path = tmp_path_factory.mktemp("trust") / "chord.wav"
    sf.write(path, audio.astype(np.float32), 16000, subtype="FLOAT")
    return path


# --------------------------------------------------------------------------- seed


def test_a_clip_that_samples_gives_the_same_transcript_on_every_run(clips, settings):
    options = settings.asr
    first = transcribe_all(clips[SAMPLING_CLIP], options, home=settings.home)
    assert any(s.temperature and s.temperature > 0 for s in first.segments), "the clip no longer samples"
    transcribe_all(clips[OTHER_SAMPLING_CLIP], options, home=settings.home)  # other sampling in between changes nothing
    again = transcribe_all(clips[SAMPLING_CLIP], options, home=settings.home)
    assert _segments(again) == _segments(first)
    assert first.stages[0].options["seed"] == options.seed == 0  # the JSON output records it
    other = transcribe_all(clips[SAMPLING_CLIP], options.model_copy(update={"seed": 1}), home=settings.home)
    assert _segments(other) != _segments(first)  # another seed: other samples


def test_window_seeds_are_distinct_and_never_ctranslate2s_unset_value():
    seeds = {seeded.window_seed(seed, window) for seed in range(3) for window in range(1, 200)}
    assert len(seeds) == 3 * 199 and seeded.UNSET not in seeds


def test_cli_records_the_seed_and_reproduces(clips, tmp_path):
    runner = CliRunner()
    outs = []
    for _ in range(2):
        result = runner.invoke(app, ["transcribe", str(clips[SAMPLING_CLIP]), "--format", "json", "--seed", "7"])
        assert result.exit_code == 0, result.output
        outs.append(json.loads(result.stdout))
    assert outs[0]["segments"] == outs[1]["segments"]
    assert outs[0]["stages"][0]["options"]["seed"] == 7
    bad = runner.invoke(app, ["transcribe", str(clips[SAMPLING_CLIP]), "--seed", "-1"])
    assert bad.exit_code != 0 and "Traceback" not in bad.output


def test_service_gives_identical_transcripts_under_concurrent_requests(clips, tmp_path):
    from services.common.testing import launch, wait_ready

    asr = launch("asr", log_dir=tmp_path, env={"CASCADE_SERVICE__MAX_CONCURRENCY": "4", "CASCADE_SERVICE__MAX_QUEUE": "8",
                                               "CASCADE_ASR__CPU_THREADS": "1", "OMP_NUM_THREADS": "1"})
    try:
        wait_ready(asr)
        client = OpenAI(base_url=asr.url + "/v1", api_key="none", max_retries=0, timeout=300)

        def ask(clip_id: str) -> list:
            with clips[clip_id].open("rb") as fh:
                out = client.audio.transcriptions.create(file=fh, model="whisper-1", response_format="verbose_json",
                                                         extra_body={"n_best": 5})
            return [(s.text, s.temperature, [h["text"] for h in s.model_extra["nbest"]]) for s in out.segments]

        alone = ask(SAMPLING_CLIP)
        with ThreadPoolExecutor(4) as pool:  # four decodes at once, two of each clip
            together = list(pool.map(ask, [SAMPLING_CLIP, OTHER_SAMPLING_CLIP] * 2))
    finally:
        asr.stop()
    assert any(temperature > 0 for _, temperature, _ in alone)
    assert together[0::2] == [alone] * 2
    assert together[1] == together[3]


# --------------------------------------------------------------------------- hallucinations


def test_phrase_list_cites_its_sources_and_holds_the_published_bag():
    from importlib import resources

    header = resources.files("cascade").joinpath("data/hallucinations.txt").read_text(encoding="utf-8")
    assert "arXiv:2501.11378" in header and "arXiv:2402.08021" in header
    assert len(hal.phrases()) > 300 and "subtitles by the amara org community" in hal.phrases()
    assert hal.known_phrase("Thank you for watching and I'll see you in the next video.") is not None
    assert hal.known_phrase("Thanks for watching!") == "thanks for watching"
    assert hal.known_phrase("We went watching birds and thanks to the guide saw many.") is None
    assert hal.known_phrase("Woof") == "woof" and hal.known_phrase("The dog said woof to me") is None


def test_everyday_listed_phrases_need_a_sign_of_no_speech_boilerplate_does_not():
    def flagged(text: str, no_speech: float) -> bool:
        return "phrase" in hal.reasons(text, no_speech_prob=no_speech, avg_logprob=-0.3, word_probs=None,
                                       looped=False, evidence=None)[0]

    assert not flagged("There we go.", 0.14) and flagged("There we go.", 0.8)  # people say it; BoH lists it
    assert flagged("Thanks for watching!", 0.0) and flagged("Please subscribe to my channel.", 0.0)
    assert flagged("Woof!", 0.0)


def test_loops_are_repetition_and_ordinary_sentences_are_not():
    assert hal.loops("Le l'a, le l'a, le l'a, le l'a.")
    assert hal.loops("I don't know. I don't know. I don't know.")
    assert not hal.loops("No, no, I said the red one.")
    assert not hal.loops("Dora likes your red jeans.")


def test_a_real_invented_phrase_is_flagged(chord, settings):
    options = settings.asr.model_copy(update={"initial_prompt": "Please subscribe to my channel."})
    t = transcribe_all(chord, options, home=settings.home)
    invented = [s for s in t.segments if hal.known_phrase(s.text) == INVENTED]
    assert invented, [s.text for s in t.segments]
    assert all(s.invented and "phrase" in s.hallucination.reasons and s.hallucination.phrase == INVENTED for s in invented)
    kept = transcribe_all(chord, options.model_copy(update={"hallucinations": "keep"}), home=settings.home)
    assert [s.text for s in kept.segments] == [s.text for s in t.segments] and not any(s.invented for s in kept.segments)


def test_drop_leaves_invented_segments_out_of_text_and_subtitles_only(chord, shared_data, settings):
    """A real sentence, then the chord Whisper wrote an outro over (two real decodes, one transcript)."""
    speech = transcribe_all(shared_data / "real" / "LJ050-0131.wav", settings.asr, home=settings.home)
    outro = transcribe_all(chord, settings.asr.model_copy(update={"initial_prompt": "Please subscribe to my channel."}),
                           home=settings.home)
    shift = speech.duration
    moved = [s.model_copy(update={"id": len(speech.segments) + k, "start": s.start + shift, "end": s.end + shift})
             for k, s in enumerate(outro.segments)]
    t = speech.model_copy(update={"segments": speech.segments + tuple(moved), "duration": shift + outro.duration,
                                  "text": " ".join(s.text for s in speech.segments + tuple(moved))})
    assert not any(s.invented for s in speech.segments) and moved and all(s.invented for s in moved)
    assert "regard" in speech.text  # said at the very end, cut off (no-speech 0.84 there): not flagged
    for fmt in FORMATS:
        kept, dropped = render(t, fmt), render(t, fmt, drop_invented=True)
        assert "subscribe" in kept.lower() and "established" in kept and "established" in dropped
        assert ("subscribe" in dropped.lower()) == (fmt == "json"), (fmt, dropped)
    record = json.loads(render(t, "json", drop_invented=True))
    assert [s["hallucination"] is not None for s in record["segments"]] == [s.invented for s in t.segments]


def test_cli_drop_and_flag(chord):
    runner = CliRunner()
    env = {"CASCADE_ASR__INITIAL_PROMPT": "Please subscribe to my channel."}
    txt = runner.invoke(app, ["transcribe", str(chord), "--hallucinations", "drop"], env=env)
    assert txt.exit_code == 0, txt.output
    assert "subscribe" not in txt.stdout.lower()
    flagged = runner.invoke(app, ["transcribe", str(chord), "--format", "json", "--hallucinations", "drop"], env=env)
    segments = json.loads(flagged.stdout)["segments"]
    assert any(s["hallucination"] and s["hallucination"]["phrase"] == INVENTED for s in segments)
    bad = runner.invoke(app, ["transcribe", str(chord), "--hallucinations", "maybe"])
    assert bad.exit_code != 0 and "Traceback" not in bad.output


def test_sampled_invented_text_is_replaced_by_the_beam_result(settings):
    """A fault real decodes show only by chance: the fallback's kept sample is an outro, the beam result is not."""
    from faster_whisper.transcribe import Segment as FwSegment

    seg = FwSegment(id=0, seek=0, start=0.0, end=2.0, text=" Thanks for watching!", tokens=[1, 2, 3], avg_logprob=-0.9,
                    compression_ratio=1.2, no_speech_prob=0.1, words=None, temperature=0.6)
    sampled = (Hypothesis(text="Thanks for watching!", avg_logprob=-0.9),)
    evidence = hal.Evidence(samples=(Hypothesis(text="Thanks for watching!", avg_logprob=-1.0),
                                     Hypothesis(text="Six five three.", avg_logprob=-1.2)),
                            beam=Hypothesis(text="Safe vibe story.", avg_logprob=-1.05))
    hyps, flag = hal.check(seg, sampled, evidence, settings.asr, looped=False)
    assert hyps[0].text == "Safe vibe story." and flag.replaced == "Thanks for watching!" and "phrase" in flag.reasons
    no_beam = hal.Evidence(samples=evidence.samples)
    hyps, flag = hal.check(seg, sampled, no_beam, settings.asr, looped=False)
    assert hyps[0].text == "Six five three." and flag.replaced is not None
    hyps, flag = hal.check(seg, sampled, hal.Evidence(samples=evidence.samples[:1]), settings.asr, looped=False)
    assert hyps == sampled and flag.replaced is None  # nothing clean to fall back on: flagged
