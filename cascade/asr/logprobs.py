"""Per-token log-probabilities of a transcript's text under Whisper's decoder (OpenAI's include=["logprobs"]).

faster-whisper keeps no per-token scores, so each segment's 1-best tokens are read again, teacher-forced,
over that segment's audio: CTranslate2's Whisper `align` (what faster-whisper's word timestamps run) gives
the probability of every text token after Whisper's start sequence. One encoder pass per segment: paid only
by a caller who asks for them.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from cascade.config import AsrOptions
from cascade.types import Transcript

RATE = 16000


def _encodable(whisper, clip: np.ndarray) -> tuple[np.ndarray, int]:  # noqa: ANN001
    """(log-mel features padded to Whisper's 30-s window, the frames that hold the clip): `align` reads those frames."""
    from faster_whisper.audio import pad_or_trim

    features = whisper.feature_extractor(clip)
    return pad_or_trim(features), min(features.shape[-1], 3000)


def _logp(p: float) -> float:
    return math.log(max(float(p), 1e-30))


def token_logprobs(samples: np.ndarray, transcript: Transcript, options: AsrOptions, home: Path) -> list[tuple[str, float]]:
    """(token text, log-prob) for each text token of each segment's 1-best, in order."""
    from faster_whisper.tokenizer import Tokenizer

    from cascade.asr import load_model

    whisper = load_model(options, home)
    tokenizer = Tokenizer(whisper.hf_tokenizer, whisper.model.is_multilingual, task=options.task,
                          language=transcript.language or options.language or "en")
    out: list[tuple[str, float]] = []
    for seg in transcript.segments:
        best = seg.nbest.best
        tokens = [t for t in (best.tokens or ()) if t < tokenizer.eot] if best is not None else []
        clip = samples[int(seg.start * RATE) : max(int(math.ceil(seg.end * RATE)), int(seg.start * RATE) + 1)]
        if not tokens or not len(clip):
            continue
        features, frames = _encodable(whisper, clip)
        result = whisper.model.align(whisper.encode(features), tokenizer.sot_sequence, [tokens], frames)[0]
        for token, p in zip(tokens, result.text_token_probs):
            out.append((tokenizer.decode([token]), _logp(p)))
    return out


SEGMENTS_PER_CALL = 8
"""Segments encoded (and their hypotheses aligned) in one call: bounds the memory of the repeated encoder output."""


def second_scores(samples: np.ndarray, transcript: Transcript, model: str, options: AsrOptions, home: Path) -> Transcript:
    """The transcript with every hypothesis' `second_score`/`second_tokens` set: its text teacher-forced under the
    recogniser `model` (e.g. the multilingual base beside tiny.en) over its segment's audio.

    A second model hears the same audio with other weights: where it finds one hypothesis much likelier than the
    1-best, the first recogniser's ranking is in doubt (the reranker's am2 features). Each segment's audio runs
    from its start to the next segment's start (the last: to the end, at most 30 s: Whisper's window), so a word
    the first recogniser's timestamps cut short is still heard; each segment is encoded once and all its
    hypotheses are aligned against that one encoder output (CTranslate2 Whisper `align`, as token_logprobs)."""
    import ctranslate2
    from faster_whisper.tokenizer import Tokenizer
    from more_itertools import chunked

    from cascade.asr import load_model

    whisper = load_model(options.model_copy(update={"model": model}), home)
    tokenizer = Tokenizer(whisper.hf_tokenizer, whisper.model.is_multilingual, task="transcribe",
                          language=(transcript.language or options.language or "en") if whisper.model.is_multilingual else None)
    segs = list(transcript.segments)
    todo = [i for i, s in enumerate(segs) if any(h.text.strip() for h in s.nbest.hypotheses)]
    scored: dict[int, list[tuple[float | None, int | None]]] = {}
    for part in chunked(todo, SEGMENTS_PER_CALL):
        feats, frames = [], []
        for i in part:
            start = int(segs[i].start * RATE)
            stop = int(segs[i + 1].start * RATE) if i + 1 < len(segs) else len(samples)
            features, n = _encodable(whisper, samples[start : max(min(stop, start + 30 * RATE), start + RATE // 10)])
            feats.append(features)
            frames.append(n)
        encoded = np.asarray(whisper.encode(np.stack(feats)))
        rows, tokens, where = [], [], []
        for k, i in enumerate(part):
            for j, h in enumerate(segs[i].nbest.hypotheses):
                ids = tokenizer.encode(" " + h.text.strip()) if h.text.strip() else []
                if ids:
                    rows.append(k)
                    tokens.append(ids)
                    where.append((i, j))
        out = {i: [(None, None)] * len(segs[i].nbest.hypotheses) for i in part}
        # align takes one num_frames per call: group the rows by their segment's frame count
        for n in sorted(set(frames[k] for k in rows)):
            pick = [r for r, k in enumerate(rows) if frames[k] == n]
            batch = ctranslate2.StorageView.from_array(np.ascontiguousarray(encoded[[rows[r] for r in pick]]))
            results = whisper.model.align(batch, tokenizer.sot_sequence, [tokens[r] for r in pick], n)
            for r, res in zip(pick, results):
                i, j = where[r]
                out[i][j] = (sum(_logp(p) for p in res.text_token_probs), len(tokens[r]))
        scored.update(out)
    new = []
    for i, s in enumerate(segs):
        if i not in scored:
            new.append(s)
            continue
        hyps = tuple(h.model_copy(update={"second_score": sc, "second_tokens": n}) for h, (sc, n) in zip(s.nbest.hypotheses, scored[i]))
        new.append(s.model_copy(update={"nbest": s.nbest.model_copy(update={"hypotheses": hyps})}))
    return transcript.model_copy(update={"segments": new})
