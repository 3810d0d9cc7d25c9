"""Streaming readers and writers for the file formats batch correction takes and gives back.

Every reader is a generator of `Item`s, one per input record, in file order, and
never holds more than one record in memory. A record that cannot be parsed is an
`Item` with `error` set (it becomes an error record in the output), so one bad
line never stops a run. CSV/TSV reading (with column detection) lives in
`cascade.formats.tabular`; this module only adapts its records.

Writers turn the JSONL journal the engine writes (one line per input record, in
input order) back into the input's own format: SRT/VTT keep each cue's timing,
Kaldi `text` keeps `utt-id words`, plain text keeps one line per utterance.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any, Literal

from cascade.formats.hyporadise import parse_hypotheses, parse_reference
from cascade.types import BatchRecord, InvalidInput, NBest, Record, Utterance

logger = logging.getLogger(__name__)

Format = Literal["hyporadise", "jsonl", "csv", "tsv", "kaldi", "srt", "vtt", "text"]
FORMATS: tuple[str, ...] = ("hyporadise", "jsonl", "csv", "tsv", "kaldi", "srt", "vtt", "text")
OUTPUT_FORMATS: tuple[str, ...] = ("jsonl", "hyporadise", "kaldi", "srt", "vtt", "text")
_BY_SUFFIX = {
    ".json": "hyporadise",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".tsv": "tsv",
    ".srt": "srt",
    ".vtt": "vtt",
    ".txt": "text",
    ".text": "kaldi",
}
GENERATED_IDS = {"text", "srt", "vtt"}
"""Formats whose ids the reader makes up (line/cue numbers): unique by construction."""


class Item(Record):
    """One input record as read: its position, the utterance (or why it could not be read), layout."""

    pos: int
    id: str
    utterance: Utterance | None = None
    error: str | None = None
    raw: str | None = None
    """The record's original text where one is known (kept as is in error records)."""
    layout: dict[str, Any] = {}
    """What a writer needs to give the record back in its own format (cue timing...)."""


# --------------------------------------------------------------------------- format detection


def detect_format(path: Path, explicit: str | None = None, *, output: bool = False) -> str:
    """The format named by `explicit`, else the one the file name says (Kaldi's file is named `text`)."""
    allowed = OUTPUT_FORMATS if output else FORMATS
    if explicit:
        if explicit not in allowed:
            raise InvalidInput(f"unknown format {explicit!r}; expected one of {', '.join(allowed)}", param="format")
        return explicit
    fmt = _BY_SUFFIX.get(path.suffix.lower())
    if fmt is None and path.suffix == "" and path.name == "text":
        fmt = "kaldi"
    if fmt is None or fmt not in allowed:
        what = "output" if output else "input"
        raise InvalidInput(
            f"cannot tell the {what} format of {path.name} from its name; pass --{'out-' if output else ''}format "
            f"(one of {', '.join(allowed)})",
            param="format",
        )
    return fmt


class ByteCounter:
    """A binary file wrapper that counts the bytes read, so progress (and ETA) can follow the file."""

    def __init__(self, raw: IO[bytes]):
        self._raw = raw
        self.pos = 0

    def read(self, n: int = -1) -> bytes:
        data = self._raw.read(n)
        self.pos += len(data)
        return data

    def readline(self) -> bytes:
        line = self._raw.readline()
        self.pos += len(line)
        return line

    def __iter__(self) -> Iterator[bytes]:
        while line := self.readline():
            yield line


def read_items(path: Path, fmt: str, counter: Callable[[ByteCounter], None] | None = None, **table: Any) -> Iterator[Item]:
    """Stream `Item`s from `path` in `fmt`. `counter` receives the byte counter (for progress)."""
    if fmt in ("csv", "tsv"):
        yield from _read_table(path, **table)
        return
    reader = {"hyporadise": _read_hyporadise, "jsonl": _read_jsonl, "kaldi": _read_kaldi,
              "srt": _read_cues, "vtt": _read_cues, "text": _read_text}[fmt]
    with open(path, "rb") as fh:
        stream = ByteCounter(fh)
        if counter is not None:
            counter(stream)
        yield from reader(stream, source=path.name)


def _decode(line: bytes, lineno: int) -> str:
    try:
        return line.decode("utf-8").rstrip("\r\n").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        raise ValueError(f"invalid UTF-8 at line {lineno} (byte {exc.start})") from None


def _utt(id_: str, texts: list[str], scores: list[float | None] | None, reference: str | None, source: str,
         **nbest: Any) -> Utterance:
    return Utterance(id=id_, nbest=NBest.from_texts(texts, scores, id=id_, **nbest), reference=reference, source=source)


# --------------------------------------------------------------------------- JSON-based formats


def _from_object(obj: Any, pos: int, source: str) -> Item:
    """A HyPoradise object or a JSONL record -> Item (error Item when the fields are wrong)."""
    fallback_id = f"{pos + 1}"
    if not isinstance(obj, dict):
        return Item(pos=pos, id=fallback_id, error=f"record {pos + 1} is not a JSON object", raw=_short(obj))
    id_ = str(obj.get("id", fallback_id))
    try:
        hyps, key = parse_hypotheses(obj)
        ref = parse_reference(obj, key)
    except ValueError as exc:
        return Item(pos=pos, id=id_, error=f"record {pos + 1}: {exc}", raw=_short(obj))
    utt = Utterance(id=id_, nbest=NBest(hypotheses=hyps, id=id_), reference=ref, source=source)
    return Item(pos=pos, id=id_, utterance=utt, raw=hyps[0].text)


def _short(obj: Any) -> str:
    text = obj if isinstance(obj, str) else json.dumps(obj, ensure_ascii=False, default=str)
    return text[:200]


def _read_hyporadise(stream: ByteCounter, source: str) -> Iterator[Item]:
    """A HyPoradise JSON list, parsed incrementally with ijson (one object in memory at a time)."""
    import ijson

    pos = 0
    try:
        for obj in ijson.items(stream, "item", use_float=True):
            yield _from_object(obj, pos, source)
            pos += 1
    except (ijson.JSONError, UnicodeDecodeError) as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if pos == 0:
            raise InvalidInput(f"{source} is not a JSON list of records ({message})", param="input") from None
        yield Item(pos=pos, id=f"{pos + 1}", error=f"JSON syntax error after record {pos} ({message}); "
                   "the rest of the file cannot be read")
        return
    if pos == 0:
        raise InvalidInput(f"{source} holds no records (HyPoradise files are a JSON list of objects)", param="input")


def _read_jsonl(stream: ByteCounter, source: str) -> Iterator[Item]:
    pos = 0
    for lineno, line in enumerate(stream, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(_decode(line, lineno))
        except ValueError as exc:
            text = line.decode("utf-8", "replace").strip()
            yield Item(pos=pos, id=f"{pos + 1}", error=f"line {lineno} is not JSON: {str(exc).splitlines()[0]}",
                       raw=text[:200])
        else:
            yield _from_object(obj, pos, source)
        pos += 1


# --------------------------------------------------------------------------- line formats


def _read_text(stream: ByteCounter, source: str) -> Iterator[Item]:
    """One utterance per line; the id is the line number; blank lines are kept (structure)."""
    for pos, line in enumerate(stream):
        id_ = str(pos + 1)
        try:
            text = _decode(line, pos + 1)
        except ValueError as exc:
            yield Item(pos=pos, id=id_, error=str(exc), raw=line.decode("utf-8", "replace").rstrip("\r\n"))
            continue
        yield Item(pos=pos, id=id_, utterance=_utt(id_, [text], None, None, source), raw=text)


def _read_kaldi(stream: ByteCounter, source: str) -> Iterator[Item]:
    """Kaldi `text`: `utt-id word word ...`; an id alone is an empty transcript."""
    pos = 0
    for lineno, line in enumerate(stream, 1):
        if not line.strip():
            continue
        try:
            text = _decode(line, lineno).strip()
        except ValueError as exc:
            raw = line.decode("utf-8", "replace").strip()
            yield Item(pos=pos, id=raw.split(maxsplit=1)[0] if raw else str(pos + 1), error=str(exc), raw=raw)
        else:
            id_, _, words = text.partition(" ")
            words = " ".join(words.split())
            yield Item(pos=pos, id=id_, utterance=_utt(id_, [words], None, None, source), raw=words)
        pos += 1


# --------------------------------------------------------------------------- subtitles

_TS = re.compile(r"(?:(\d+):)?(\d{1,2}):(\d{2})[.,](\d{1,3})")


def _seconds(stamp: str) -> float:
    m = _TS.fullmatch(stamp.strip())
    if not m:
        raise ValueError(f"bad timestamp {stamp.strip()!r}")
    h, mnt, s, frac = m.groups()
    return int(h or 0) * 3600 + int(mnt) * 60 + int(s) + int(frac.ljust(3, "0")) / 1000


def format_timestamp(seconds: float, fmt: str) -> str:
    """A cue time in `fmt` (srt: 00:00:01,500, vtt: 00:00:01.500), by the transcript writers' one formatter."""
    from cascade.formats.transcript import timestamp

    return timestamp(seconds, decimal="," if fmt == "srt" else ".")


def _blocks(stream: ByteCounter) -> Iterator[tuple[int, list[bytes]]]:
    """Blank-line separated blocks with the line number each starts at."""
    block: list[bytes] = []
    start = 0
    for lineno, line in enumerate(stream, 1):
        if line.strip():
            if not block:
                start = lineno
            block.append(line)
        elif block:
            yield start, block
            block = []
    if block:
        yield start, block


def _read_cues(stream: ByteCounter, source: str) -> Iterator[Item]:
    """SRT or WebVTT cues; the text to correct is the cue's lines joined by spaces, timing kept verbatim."""
    pos = 0
    for start, block in _blocks(stream):
        try:
            lines = [_decode(b, start + i) for i, b in enumerate(block)]
        except ValueError as exc:
            yield Item(pos=pos, id=str(pos + 1), error=str(exc), raw=b"".join(block).decode("utf-8", "replace"))
            pos += 1
            continue
        head = lines[0].strip()
        if head.startswith("WEBVTT") or head.split(" ", 1)[0] in ("NOTE", "STYLE", "REGION"):
            continue  # VTT header and non-cue blocks are not utterances
        item = _cue(lines, pos, start, source)
        pos += 1
        yield item


def _cue(lines: list[str], pos: int, start: int, source: str) -> Item:
    t = next((i for i, line in enumerate(lines[:2]) if "-->" in line), None)
    fallback = str(pos + 1)
    if t is None:
        return Item(pos=pos, id=fallback, error=f"cue at line {start} has no `-->` timing line", raw="\n".join(lines))
    cue_id = lines[0].strip() if t == 1 else None
    id_ = cue_id or fallback
    timing = lines[t].strip()
    text_lines = lines[t + 1:]
    try:
        begin, _, rest = timing.partition("-->")
        b, e = _seconds(begin), _seconds(rest.split()[0] if rest.split() else "")
    except ValueError as exc:
        return Item(pos=pos, id=id_, error=f"cue at line {start}: {exc}", raw="\n".join(lines))
    text = " ".join(" ".join(text_lines).split())
    layout: dict[str, Any] = {"timing": timing, "start": b, "end": e, "cue": cue_id}
    if len(text_lines) > 1:
        layout["lines"] = text_lines
    return Item(pos=pos, id=id_, utterance=_utt(id_, [text], None, None, source, start=b, end=e),
                raw="\n".join(text_lines), layout=layout)


# --------------------------------------------------------------------------- CSV/TSV (cascade.formats.tabular)


def _read_table(path: Path, **columns: Any) -> Iterator[Item]:
    """Adapt `cascade.formats.tabular.read_table` (the fusion area's reader, with column detection)."""
    try:
        from cascade.formats.tabular import read_table
    except ImportError as exc:  # pragma: no cover - the module ships with the project
        raise InvalidInput(f"CSV/TSV input needs cascade.formats.tabular, which is not available: {exc}") from exc
    yield from as_items(read_table(path, **{k: v for k, v in columns.items() if v is not None}))


def as_items(records: Iterable[Any]) -> Iterator[Item]:
    """Wrap a stream of Utterances (or Items, or error Items) into positioned Items."""
    for pos, rec in enumerate(records):
        if isinstance(rec, Item):
            yield rec if rec.pos == pos else rec.model_copy(update={"pos": pos})
        elif isinstance(rec, Utterance):
            best = rec.nbest.best
            yield Item(pos=pos, id=rec.id, utterance=rec, raw=best.text if best else "")
        else:
            raise TypeError(f"expected Utterance or Item records, got {type(rec).__name__}")


# --------------------------------------------------------------------------- writers


def render(fmt: str, records: Iterable[BatchRecord], out: IO[str]) -> None:
    """Write journal records (in input order) to `out` in `fmt` (not jsonl: the journal is that)."""
    writer = {"text": _w_text, "kaldi": _w_kaldi, "srt": _w_cues, "vtt": _w_cues, "hyporadise": _w_hyporadise}[fmt]
    writer(records, out, fmt)


def _w_text(records: Iterable[BatchRecord], out: IO[str], fmt: str) -> None:
    for rec in records:
        out.write(rec.final_text.replace("\n", " ") + "\n")


def _w_kaldi(records: Iterable[BatchRecord], out: IO[str], fmt: str) -> None:
    for rec in records:
        out.write(f"{rec.id} {rec.final_text}".rstrip().replace("\n", " ") + "\n")


def _w_cues(records: Iterable[BatchRecord], out: IO[str], fmt: str) -> None:
    if fmt == "vtt":
        out.write("WEBVTT\n\n")
    for rec in records:
        layout = rec.layout or {}
        if "timing" not in layout:
            if rec.error:
                logger.warning("record %s dropped from %s output: %s", rec.id, fmt, rec.error)
                continue
            raise InvalidInput(f"record {rec.id} has no cue timing: {fmt} output needs SRT/VTT input")
        timing = layout["timing"]
        if ("," in timing) != (fmt == "srt"):  # converting between SRT and VTT: redraw the timing line
            timing = f"{format_timestamp(layout['start'], fmt)} --> {format_timestamp(layout['end'], fmt)}"
        cue = layout.get("cue") or (rec.id if fmt == "srt" else None)
        text = "\n".join(layout["lines"]) if layout.get("lines") and not rec.changed else rec.final_text
        out.write((f"{cue}\n" if cue else "") + f"{timing}\n{text}\n\n")


def _w_hyporadise(records: Iterable[BatchRecord], out: IO[str], fmt: str) -> None:
    out.write("[")
    for i, rec in enumerate(records):
        obj: dict[str, Any] = {"id": rec.id, "input": list(rec.hypotheses or [rec.original])}
        if rec.reference is not None:
            obj["output"] = rec.reference
        obj.update({"corrected": rec.final_text, "method": rec.method})
        if rec.error:
            obj["error"] = rec.error
        out.write(("," if i else "") + "\n " + json.dumps(obj, ensure_ascii=False))
    out.write("\n]\n")
