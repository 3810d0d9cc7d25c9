"""--batched with asr.batch_context: chunks decoded in interleaved runs, each conditioned on its own run's earlier text
(issue 24). Real tiny.en on librispeech-test-other dev clips; the CTranslate2 calls are recorded, not replaced."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cascade.asr import best_only, load_model, transcribe_all
from cascade.asr.batched import with_context
from cascade.audio import load_audio


class Recording:
    """The real CTranslate2 Whisper handle, keeping every generate call's prompts and results."""

    def __init__(self, model):
        self.model, self.calls = model, []

    def __getattr__(self, name):
        return getattr(self.model, name)

    def generate(self, encoder_output, prompts, **kwargs):
        results = self.model.generate(encoder_output, prompts, **kwargs)
        self.calls.append(([list(p) for p in prompts], results))
        return results


@pytest.fixture(scope="module")
def audio(shared_data: Path) -> np.ndarray:
    """About 40 s: four dev clips with 1 s of silence between them (10-s chunks: four or more chunks)."""
    folder = shared_data / "librispeech-test-other"
    rows = [json.loads(x) for x in (folder / "manifest.jsonl").read_text().splitlines()]
    gap = np.zeros(16000, np.float32)
    return np.concatenate([p for r in rows[:4] for p in (load_audio(folder / r["audio"]), gap)])


def options(settings, **update):
    return best_only(settings.asr.model_copy(update={"model": "tiny.en", "batched": True, "batch_size": 2,
                                                     "batch_chunk_s": 10, **update}))


def test_context_rows_are_conditioned_on_their_own_run(settings, audio: np.ndarray, monkeypatch) -> None:
    from faster_whisper.tokenizer import Tokenizer

    whisper = load_model(settings.asr, settings.home)
    recording = Recording(whisper.model)
    monkeypatch.setattr(whisper, "model", recording)
    ours = transcribe_all(audio, options(settings, batch_context=True, batch_sections=2), home=settings.home)
    tokenizer = Tokenizer(whisper.hf_tokenizer, False, task="transcribe", language="en")
    # the chunks' own decodes (a rest's prompt ends with its start timestamp)
    steps = [(p, r) for p, r in recording.calls if p[0][-1] < tokenizer.timestamp_begin]
    assert len(steps) >= 2 and len(steps[0][0]) == 2
    assert all(tokenizer.sot_prev not in p for p in steps[0][0])  # each run's first chunk: no previous text
    prompts, results = steps[1]
    assert len(prompts) == 2 and all(p[0] == tokenizer.sot_prev for p in prompts)
    text = " ".join(ours.text.split())
    contexts = [" ".join(tokenizer.decode(p[1:p.index(tokenizer.sot)]).split()) for p in prompts]
    assert contexts[0] != contexts[1] and all(len(c.split()) >= 2 for c in contexts)
    for context, result in zip(contexts, results):
        decoded = " ".join(tokenizer.decode([t for t in result.sequences_ids[0] if t < tokenizer.eot]).split())
        # the prompt is text of the transcript that comes before this row's own chunk (its run's previous chunk)
        assert context in text and decoded[:20] in text
        assert text.index(context) < text.index(decoded[:20])


def test_context_output_has_the_batched_format(settings, audio: np.ndarray) -> None:
    plain = transcribe_all(audio, options(settings), home=settings.home)
    ours = transcribe_all(audio, options(settings, batch_context=True), home=settings.home)  # one run: chunk by chunk
    assert ours.duration == plain.duration and len(ours.segments) >= 4
    assert set(ours.segments[0].model_dump()) == set(plain.segments[0].model_dump())
    assert [s.id for s in ours.segments] == list(range(len(ours.segments)))
    starts = [s.start for s in ours.segments]
    assert starts == sorted(starts) and all(0 <= s.start <= s.end <= ours.duration for s in ours.segments)
    assert len(ours.text.split()) > 0.8 * len(plain.text.split())


def test_with_context_keeps_one_start_position(settings) -> None:
    """CTranslate2 needs <|startoftranscript|> at one position per batch: rows keep as many tokens as the shortest."""
    from faster_whisper.tokenizer import Tokenizer

    whisper = load_model(settings.asr.model_copy(update={"model": "tiny.en"}), settings.home)
    tokenizer = Tokenizer(whisper.hf_tokenizer, False, task="transcribe", language="en")
    head = list(tokenizer.sot_sequence)
    out = with_context([head, head], [[1, 2, 3], [4, 5]], tokenizer)
    assert out == [[tokenizer.sot_prev, 2, 3, *head], [tokenizer.sot_prev, 4, 5, *head]]
    assert with_context([head, head], [[], [4, 5]], tokenizer) == [head, head]
