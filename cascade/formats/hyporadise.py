"""HyPoradise N-best records <-> Utterance: the one reader and writer of the format's fields.

A record: `input` (N hypotheses, best first; `nbest`/`hypotheses` are accepted too), `output`
(the reference; `reference`/`ref`, or `text` beside a hypothesis list), `id`, `data_source`, `speaker`
(cascade's own: who spoke, for speaker-grouped training folds), and
per set `am_score` (atis) or `score` (wsj_score). Those list-level scores are what HyPoradise
publishes: length-normalised acoustic scores (mean token log-prob, about -0.2..-0.6). So in every
reader and writer of this project a list-level `am_score`/`score` means `Hypothesis.avg_logprob`;
`Hypothesis.am_score` (a sum over tokens) is only read from a hypothesis written as an object
({"text", "am_score", "avg_logprob"}, cascade's own JSONL; such an object may also carry `second_score` and
`second_tokens`, the text's log-prob under a second recogniser). chime4/swbd/td3's `input1`/`input2`
and ls_clean's `instruction` are derived from `input` and not needed to rebuild a record.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from cascade.types import Hypothesis, InvalidInput, NBest, Transcript, Utterance

HYP_KEYS = ("input", "nbest", "hypotheses")
REF_KEYS = ("output", "reference", "ref")
SCORE_KEYS = ("am_score", "score")


def read_text(path: Path) -> str:
    """A data file as text, with one-line errors for the ways a path can be wrong."""
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


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _hypothesis(item: Any, key: str) -> Hypothesis:
    if isinstance(item, str):
        return Hypothesis(text=" ".join(item.split()))
    if isinstance(item, dict) and isinstance(item.get("text"), str):
        try:
            second = _number(item.get("second_score"))
            tokens = item.get("second_tokens") if second is not None and isinstance(item.get("second_tokens"), int) else None
            return Hypothesis(text=" ".join(item["text"].split()), am_score=_number(item.get("am_score")),
                              avg_logprob=_number(item.get("avg_logprob")), second_score=second if tokens else None,
                              second_tokens=tokens or None)
        except ValueError as exc:
            raise ValueError(f"bad hypothesis: {exc}".splitlines()[0]) from None
    raise ValueError(f"`{key}` holds a {type(item).__name__}; each hypothesis must be a string or an object with 'text'")


def parse_hypotheses(obj: dict[str, Any]) -> tuple[tuple[Hypothesis, ...], str | None]:
    """The hypotheses of one record and the key they were under (None: a lone `text`); ValueError if malformed."""
    key = next((k for k in HYP_KEYS if k in obj), None)
    if key is None:
        if isinstance(obj.get("text"), str):
            return (Hypothesis(text=" ".join(obj["text"].split())),), None
        raise ValueError("missing the hypothesis list: no `hypotheses`, `nbest`, `input` or `text` field")
    value = [obj[key]] if isinstance(obj[key], str) else obj[key]
    if not isinstance(value, list) or not value:
        raise ValueError(f"empty N-best list: `{key}` must be a non-empty list of hypotheses")
    hyps = tuple(_hypothesis(h, key) for h in value)
    listed = next((obj[k] for k in SCORE_KEYS if k in obj), None)
    if listed is not None:
        numbers = [_number(s) for s in listed] if isinstance(listed, list) else []
        if len(numbers) != len(hyps) or any(n is None for n in numbers):
            raise ValueError("'am_score'/'score' must list one number per hypothesis")
        hyps = tuple(h.model_copy(update={"avg_logprob": n}) for h, n in zip(hyps, numbers))
    return hyps, key


def parse_reference(obj: dict[str, Any], hyp_key: str | None) -> str | None:
    """The reference: `output`/`reference`/`ref`, or `text` when the hypotheses are given apart (manifests)."""
    for k in REF_KEYS:
        if k in obj and obj[k] is not None:
            if not isinstance(obj[k], str):
                raise ValueError(f"the reference ('{k}') must be a string")
            return " ".join(obj[k].split())
    if hyp_key is not None and isinstance(obj.get("text"), str):
        return " ".join(obj["text"].split())
    return None


def record_to_utterance(record: Any, where: str, source: str | None = None) -> Utterance:
    """One HyPoradise/JSONL record -> Utterance; raises InvalidInput naming `where` when malformed."""
    if not isinstance(record, dict):
        raise InvalidInput(f"{where}: expected a JSON object, got {type(record).__name__}", param="input")
    try:
        hyps, key = parse_hypotheses(record)
        ref = parse_reference(record, key)
    except ValueError as exc:
        raise InvalidInput(f"{where}: {exc}", param="input") from None
    uid = str(record.get("id", where))
    speaker = record.get("speaker")
    return Utterance(id=uid, nbest=NBest(hypotheses=hyps, id=uid), reference=ref,
                     source=record.get("data_source") or source, speaker=str(speaker) if speaker is not None else None)


def load_hyporadise(path: str | Path, *, limit: int | None = None) -> list[Utterance]:
    """Read a HyPoradise JSON list (or a JSONL file) into Utterances."""
    path = Path(path)
    if path.suffix == ".jsonl":
        return list(iter_jsonl(path, limit=limit))
    try:
        data = json.loads(read_text(path))
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"{path} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})", param="path") from None
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        raise InvalidInput(f"{path}: expected a JSON list of records", param="path")
    if not data:
        raise InvalidInput(f"{path} holds no utterance: no records (HyPoradise files are a JSON list of objects)", param="path")
    data = data[:limit] if limit is not None else data
    return [record_to_utterance(r, f"{path.name}[{i}]", source=path.stem) for i, r in enumerate(data)]


def jsonl_records(path: str | Path) -> Iterator[tuple[int, Any]]:
    """(line number, parsed object) of each non-blank line of a JSONL file; a bad line is a one-line error."""
    path = Path(path)
    for lineno, line in enumerate(read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            yield lineno, json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"{path}:{lineno} is not valid JSON ({exc.msg})", param="path") from None


def iter_jsonl(path: str | Path, *, limit: int | None = None) -> Iterator[Utterance]:
    """Utterances from a JSONL file, one record a line (blank lines skipped), lazily."""
    path = Path(path)
    for n, (lineno, record) in enumerate(jsonl_records(path)):
        if limit is not None and n >= limit:
            return
        yield record_to_utterance(record, f"{path.name}:{lineno}", source=path.stem)


def scores_field(nbest: NBest) -> list[float] | None:
    """The list-level `am_score` of a record: mean token log-probs, when every hypothesis has one."""
    avg = [h.avg_logprob for h in nbest.hypotheses]
    return avg if all(a is not None for a in avg) else None  # type: ignore[return-value]


def utterance_to_record(utt: Utterance, prediction: str | None = None) -> dict[str, Any]:
    """An Utterance as a HyPoradise record."""
    rec: dict[str, Any] = {"id": utt.id, "input": utt.nbest.texts}
    if utt.reference is not None:
        rec["output"] = utt.reference
    if (scores := scores_field(utt.nbest)) is not None:
        rec["am_score"] = scores
    if utt.source:
        rec["data_source"] = utt.source
    if utt.speaker is not None:
        rec["speaker"] = utt.speaker
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
        path.write_text(dumps(records), encoding="utf-8")


def transcript_records(t: Transcript, prefix: str) -> list[dict[str, Any]]:
    """One HyPoradise record per segment of a transcript; `output` (the reference) is unknown here."""
    return [{"id": f"{prefix}-{s.id}", "input": list(s.nbest.texts), "output": None,
             "am_score": scores_field(s.nbest)} for s in t.segments]


def dumps(records: list[dict[str, Any]]) -> str:
    return json.dumps(records, indent=1, ensure_ascii=False) + "\n"
