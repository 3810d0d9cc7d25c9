"""Evaluation/training sets: HyPoradise files (cascade.formats.hyporadise) or audio manifests run through ASR.

A manifest (JSONL with `audio`) is transcribed with the configured Whisper model; a clip VAD splits
into several segments becomes one N-best list.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from cascade.formats.hyporadise import HYP_KEYS, jsonl_records, load_hyporadise, read_text
from cascade.types import Hypothesis, InvalidInput, NBest, Utterance

logger = logging.getLogger(__name__)


def is_audio_manifest(path: str | Path) -> bool:
    """A JSONL manifest whose first record names an `audio` file."""
    path = Path(path)
    if path.suffix != ".jsonl":
        return False
    first = next((ln for ln in read_text(path).splitlines() if ln.strip()), "")
    try:
        record = json.loads(first)
    except json.JSONDecodeError:
        return False
    return isinstance(record, dict) and "audio" in record


def transcribe_manifest(path: str | Path, asr_options: Any, home: Path, *, limit: int | None = None,
                        progress: Callable[[], None] | None = None) -> Iterator[Utterance]:
    """Run ASR on each manifest record's audio (relative to the manifest) and yield Utterances.

    `progress` is called after each file is decoded (the CLI shows a rate and an ETA).

    A clip VAD splits into several segments gets one N-best whose i-th hypothesis joins the
    segments' i-th hypotheses (the best-first order of each segment is kept).
    """
    from cascade.asr import transcribe_all

    path = Path(path)
    for n, (lineno, rec) in enumerate(jsonl_records(path)):
        if limit is not None and n >= limit:
            return
        if not isinstance(rec, dict) or not isinstance(rec.get("audio"), str):
            raise InvalidInput(f"{path}:{lineno}: a manifest record needs an 'audio' path", param="audio")
        transcript = transcribe_all(path.parent / rec["audio"], asr_options, home=home)
        if progress is not None:
            progress()
        uid = str(rec.get("id", f"{path.stem}:{lineno}"))
        yield Utterance(id=uid, nbest=join_segments([s.nbest for s in transcript.segments], uid),
                        reference=rec.get("text") or rec.get("reference"), source=path.stem)


def join_segments(nbests: list[NBest], uid: str) -> NBest:
    if len(nbests) == 1:
        return nbests[0].model_copy(update={"id": uid})
    if not nbests:
        return NBest(hypotheses=(Hypothesis(text=""),), id=uid)
    depth = max(len(nb.hypotheses) for nb in nbests)
    hyps = []
    for i in range(depth):
        parts = [nb.hypotheses[min(i, len(nb.hypotheses) - 1)] for nb in nbests if nb.hypotheses]
        am = [p.am_score for p in parts]
        hyps.append(Hypothesis(text=" ".join(p.text for p in parts if p.text),
                               am_score=sum(am) if all(a is not None for a in am) else None))  # type: ignore[arg-type]
    return NBest(hypotheses=tuple(hyps), id=uid)


def load_eval_set(path: str | Path, *, limit: int | None = None, asr_options: Any = None, home: Path | None = None,
                  progress: Callable[[], None] | None = None) -> list[Utterance]:
    """Utterances for evaluation: HyPoradise JSON/JSONL, or an audio manifest (ASR runs when asked or needed)."""
    path = Path(path)
    if is_audio_manifest(path):
        first = json.loads(next(ln for ln in read_text(path).splitlines() if ln.strip()))
        if asr_options is not None or not any(k in first for k in HYP_KEYS):
            from cascade.config import AsrOptions

            return list(transcribe_manifest(path, asr_options or AsrOptions(), home or Path("~/.cache/cascade").expanduser(),
                                            limit=limit, progress=progress))
    return load_hyporadise(path, limit=limit)
