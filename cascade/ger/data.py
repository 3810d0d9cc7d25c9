"""N-best data I/O: HyPoradise JSON (every per-set schema as published) and JSONL.

HyPoradise records: `input` (N hypotheses, best first), `output` (reference), `id`,
and per set `am_score` (atis) or `score` (wsj_score): per-hypothesis acoustic scores
that are *length-normalised* (mean token log-prob, about -0.2..-0.6), so they are kept
as `Hypothesis.avg_logprob` with `am_score` left unknown. chime4/swbd/td3 add `input1`/
`input2` (the same hypotheses re-joined) and ls_clean an `instruction`: both are derived
from `input` and are not needed to rebuild a record.

JSONL: one object a line, either a HyPoradise record or {"id", "nbest"|"hypotheses",
"text"|"reference"} (the librispeech-test-other manifest); hypotheses may be strings or
{"text", "am_score", "avg_logprob"} objects.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from cascade.types import Hypothesis, InvalidInput, NBest, Utterance

logger = logging.getLogger(__name__)

_HYP_KEYS = ("input", "nbest", "hypotheses")
_REF_KEYS = ("output", "reference", "text")
_SCORE_KEYS = ("am_score", "score")


def _read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise InvalidInput(f"file not found: {path}", param="path") from None
    except IsADirectoryError:
        raise InvalidInput(f"{path} is a directory, not an N-best file", param="path") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{path} is not UTF-8 text (byte {exc.start})", param="path") from None


def _hypothesis(item: Any, where: str) -> Hypothesis:
    if isinstance(item, str):
        return Hypothesis(text=" ".join(item.split()))
    if isinstance(item, dict) and isinstance(item.get("text"), str):
        try:
            return Hypothesis(
                text=" ".join(item["text"].split()),
                am_score=item.get("am_score"),
                avg_logprob=item.get("avg_logprob"),
            )
        except ValueError as exc:
            raise InvalidInput(f"{where}: bad hypothesis: {exc}".splitlines()[0], param="input") from None
    raise InvalidInput(f"{where}: each hypothesis must be a string or an object with 'text'", param="input")


def record_to_utterance(record: Any, where: str, source: str | None = None) -> Utterance:
    """One HyPoradise/JSONL record -> Utterance; raises InvalidInput naming `where` when malformed."""
    if not isinstance(record, dict):
        raise InvalidInput(f"{where}: expected a JSON object, got {type(record).__name__}", param="input")
    key = next((k for k in _HYP_KEYS if k in record), None)
    if key is None or not isinstance(record[key], list):
        raise InvalidInput(f"{where}: missing the hypothesis list ('input': [...])", param="input")
    hyps = [_hypothesis(h, where) for h in record[key]]
    if not hyps:
        raise InvalidInput(f"{where}: empty N-best list", param="input")
    scores = next((record[k] for k in _SCORE_KEYS if k in record), None)
    if scores is not None:
        if not isinstance(scores, list) or len(scores) != len(hyps) or not all(isinstance(s, (int, float)) for s in scores):
            raise InvalidInput(f"{where}: 'am_score'/'score' must list one number per hypothesis", param="am_score")
        hyps = [h.model_copy(update={"avg_logprob": float(s)}) for h, s in zip(hyps, scores)]
    ref = next((record[k] for k in _REF_KEYS if k in record and k != key), None)
    if ref is not None and not isinstance(ref, str):
        raise InvalidInput(f"{where}: the reference ('output') must be a string", param="output")
    uid = str(record.get("id", where))
    return Utterance(
        id=uid,
        nbest=NBest(hypotheses=tuple(hyps), id=uid),
        reference=" ".join(ref.split()) if ref is not None else None,
        source=record.get("data_source") or source,
    )


def load_hyporadise(path: str | Path, *, limit: int | None = None) -> list[Utterance]:
    """Read a HyPoradise JSON list (or a JSONL file) into Utterances."""
    path = Path(path)
    if path.suffix == ".jsonl":
        return list(iter_jsonl(path, limit=limit))
    text = _read_text(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"{path} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})", param="path") from None
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        raise InvalidInput(f"{path}: expected a JSON list of records", param="path")
    data = data[:limit] if limit is not None else data
    return [record_to_utterance(r, f"{path.name}[{i}]", source=path.stem) for i, r in enumerate(data)]


def iter_jsonl(path: str | Path, *, limit: int | None = None) -> Iterator[Utterance]:
    """Utterances from a JSONL file, one record a line (blank lines skipped), lazily."""
    path = Path(path)
    text = _read_text(path)
    n = 0
    for lineno, line in enumerate(text.splitlines(), 1):
        if limit is not None and n >= limit:
            return
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"{path}:{lineno} is not valid JSON ({exc.msg})", param="path") from None
        n += 1
        yield record_to_utterance(record, f"{path.name}:{lineno}", source=path.stem)


def utterance_to_record(utt: Utterance, prediction: str | None = None) -> dict[str, Any]:
    """An Utterance as a HyPoradise record (`am_score` from avg_logprob when every hypothesis has one)."""
    rec: dict[str, Any] = {"id": utt.id, "input": utt.nbest.texts}
    if utt.reference is not None:
        rec["output"] = utt.reference
    avg = [h.avg_logprob for h in utt.nbest.hypotheses]
    if all(a is not None for a in avg):
        rec["am_score"] = avg
    if utt.source:
        rec["data_source"] = utt.source
    if prediction is not None:
        rec["prediction"] = prediction
    return rec


def write_hyporadise(utterances: Iterable[Utterance], path: str | Path) -> None:
    """Write Utterances as a HyPoradise JSON list (or JSONL when the path ends in .jsonl)."""
    path = Path(path)
    records = [utterance_to_record(u) for u in utterances]
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    else:
        path.write_text(json.dumps(records, ensure_ascii=False, indent=1), encoding="utf-8")


def is_audio_manifest(path: str | Path) -> bool:
    """A JSONL manifest whose first record names an `audio` file."""
    path = Path(path)
    if path.suffix != ".jsonl":
        return False
    first = next((ln for ln in _read_text(path).splitlines() if ln.strip()), "")
    try:
        return isinstance(json.loads(first), dict) and "audio" in json.loads(first)
    except json.JSONDecodeError:
        return False


def transcribe_manifest(path: str | Path, asr_options: Any, home: Path, *, limit: int | None = None) -> Iterator[Utterance]:
    """Run ASR on each manifest record's audio (relative to the manifest) and yield Utterances.

    A clip VAD splits into several segments gets one N-best whose i-th hypothesis joins the
    segments' i-th hypotheses (the best-first order of each segment is kept).
    """
    from cascade.asr import transcribe_all

    path = Path(path)
    n = 0
    for lineno, line in enumerate(_read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        if limit is not None and n >= limit:
            return
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"{path}:{lineno} is not valid JSON ({exc.msg})", param="path") from None
        if not isinstance(rec, dict) or not isinstance(rec.get("audio"), str):
            raise InvalidInput(f"{path}:{lineno}: a manifest record needs an 'audio' path", param="audio")
        n += 1
        transcript = transcribe_all(path.parent / rec["audio"], asr_options, home=home)
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


def load_eval_set(path: str | Path, *, limit: int | None = None, asr_options: Any = None, home: Path | None = None) -> list[Utterance]:
    """Utterances for evaluation: HyPoradise JSON/JSONL, or an audio manifest (ASR runs when asked or needed)."""
    path = Path(path)
    if is_audio_manifest(path):
        first = json.loads(next(ln for ln in _read_text(path).splitlines() if ln.strip()))
        if asr_options is not None or not any(k in first for k in _HYP_KEYS):
            from cascade.config import AsrOptions

            return list(transcribe_manifest(path, asr_options or AsrOptions(), home or Path("~/.cache/cascade").expanduser(), limit=limit))
    return load_hyporadise(path, limit=limit)
