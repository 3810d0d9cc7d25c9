"""CSV/TSV exports of deployed recognisers, read as they are published.

Real exports carry pandas index columns, the utterance id buried in an audio
path, empty cells and trailing summary rows. `read_table` detects the id,
hypothesis and reference columns (or takes them by name), streams the rows
and counts what it had to skip, so one messy file never stops a batch.
"""

from __future__ import annotations

import codecs
import csv
import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from cascade.types import InvalidInput, NBest, Record, Utterance

logger = logging.getLogger(__name__)

# Detection lists, most specific first; matched case-insensitively on the header.
ID_NAMES = ("id", "utt_id", "uttid", "utterance_id", "utt", "utterance", "key", "file_id", "segment_id")
PATH_NAMES = ("files", "file", "paths", "path", "audio", "audio_path", "audio_filepath", "filename", "wav", "wav_path")
TEXT_NAMES = ("transcription", "transcript", "hypothesis", "hyp", "prediction", "pred", "asr", "recognized", "text", "output")
REF_NAMES = ("reference", "ref", "actual", "ground_truth", "groundtruth", "truth", "target", "label", "expected", "gold", "sentence")
_INDEX_COLUMN = re.compile(r"^(|unnamed: \d+(\.\d+)?|index)$", re.IGNORECASE)
_DELIMITERS = ",\t;|"


class TableColumns(Record):
    """Which columns of a table were used, and whether they were detected or named by the caller."""

    path: str
    delimiter: str
    columns: tuple[str, ...]
    id_column: str | None
    """None: the table has no id column and the 1-based data row number is the id."""
    id_from_path: bool = False
    """The id column holds file paths: the id is the base name without extension."""
    text_column: str
    ref_column: str | None = None
    detected: bool = True

    def describe(self) -> str:
        """One line for the CLI: the choice made, so a wrong guess is visible at once."""
        how = "detected" if self.detected else "given"
        ident = "row number" if self.id_column is None else repr(self.id_column)
        if self.id_from_path:
            ident += " (base name of the path)"
        ref = repr(self.ref_column) if self.ref_column else "none"
        return f"{Path(self.path).name}: id {ident}, text {self.text_column!r}, reference {ref} ({how})"


class TableRow(Record):
    """One data row: the id, the hypothesis (may be empty), the reference, where it came from."""

    id: str
    text: str
    reference: str | None = None
    line: int
    flags: tuple[str, ...] = ()
    """e.g. ("empty_hypothesis",): kept in the output, counted in the summary."""

    def to_utterance(self, source: str | None = None) -> Utterance:
        return Utterance(id=self.id, nbest=NBest.from_texts([self.text], id=self.id), reference=self.reference, source=source)


@dataclass
class TableSummary:
    """Counts filled in while the rows stream (read them after iterating)."""

    rows: int = 0
    empty_hypotheses: int = 0
    skipped_no_id: list[int] = field(default_factory=list)
    """Line numbers of rows without an id (e.g. a trailing summary row)."""
    duplicates: int = 0

    def describe(self) -> str:
        parts = [f"{self.rows} rows"]
        if self.empty_hypotheses:
            parts.append(f"{self.empty_hypotheses} empty hypotheses kept")
        if self.skipped_no_id:
            lines = ", ".join(str(n) for n in self.skipped_no_id[:5]) + (" ..." if len(self.skipped_no_id) > 5 else "")
            parts.append(f"{len(self.skipped_no_id)} rows without an id skipped (line {lines})")
        if self.duplicates:
            parts.append(f"{self.duplicates} duplicate ids skipped (first kept)")
        return ", ".join(parts)


@dataclass
class TableRead:
    """The detected columns plus a one-shot stream of rows; `summary` fills in as it is consumed.

    Iterating gives `Utterance`s (what batch correction consumes); `rows()` gives the `TableRow`s
    with their line numbers and flags.
    """

    columns: TableColumns
    _rows: Iterator[TableRow]
    summary: TableSummary = field(default_factory=TableSummary)

    def rows(self) -> Iterator[TableRow]:
        return self._rows

    def __iter__(self) -> Iterator[Utterance]:
        source = Path(self.columns.path).name
        return (row.to_utterance(source) for row in self._rows)


def read_table(
    path: str | Path,
    *,
    id_column: str | None = None,
    text_column: str | None = None,
    ref_column: str | None = None,
    delimiter: str | None = None,
) -> TableRead:
    """Open a CSV/TSV, choose its columns (detected unless named) and stream its rows.

    Bad tables fail here, before anything is written: empty file, header only,
    a named column that does not exist. Undecodable bytes fail during
    iteration with the line number.
    """
    path = Path(path)
    lines = _decoded_lines(path)
    header_line = next(lines, None)
    if header_line is None or not header_line.strip():
        raise InvalidInput(f"{path}: the file is empty", param="input")
    delim = delimiter or _sniff_delimiter(path, header_line)
    header = next(csv.reader([header_line], delimiter=delim))
    reader = csv.reader(lines, delimiter=delim)
    first = _next_nonblank(reader)
    if first is None:
        raise InvalidInput(f"{path}: the table has a header but no rows", param="input")
    columns = _choose_columns(path, header, delim, id_column, text_column, ref_column)
    summary = TableSummary()
    logger.info("%s", columns.describe())
    return TableRead(columns, _rows(path, columns, header, _prepend(first, reader), summary), summary)


# --------------------------------------------------------------------------- reading


def _decoded_lines(path: Path) -> Iterator[str]:
    """Lines decoded as UTF-8 (BOM dropped), raising InvalidInput with the line number on bad bytes."""
    decoder_factory = codecs.getincrementaldecoder("utf-8")
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, start=1):
            if number == 1 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8) :]
            try:
                yield decoder_factory().decode(raw, final=True)
            except UnicodeDecodeError as exc:
                bad = raw[exc.start : exc.start + 1].hex()
                raise InvalidInput(
                    f"{path} line {number}: not valid UTF-8 (byte 0x{bad} at column {exc.start + 1}); "
                    "re-export the file as UTF-8",
                    param="input",
                ) from None


def _prepend(first: list[str], rest: Iterable[list[str]]) -> Iterator[list[str]]:
    yield first
    yield from rest


def _next_nonblank(reader: Iterator[list[str]]) -> list[str] | None:
    for row in reader:
        if any(cell.strip() for cell in row):
            return row
    return None


def _sniff_delimiter(path: Path, header_line: str) -> str:
    if path.suffix.lower() == ".tsv":
        return "\t"
    counts = {d: header_line.count(d) for d in _DELIMITERS}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def _rows(
    path: Path, columns: TableColumns, header: list[str], reader: Iterable[list[str]], summary: TableSummary
) -> Iterator[TableRow]:
    index = {name: i for i, name in reversed(list(enumerate(header)))}
    id_i = index[columns.id_column] if columns.id_column is not None else None
    text_i, ref_i = index[columns.text_column], index.get(columns.ref_column or "")
    seen: set[str] = set()
    for number, cells in enumerate(reader, start=1):
        if not any(c.strip() for c in cells):
            continue
        cell = (lambda i: cells[i].strip() if i is not None and i < len(cells) else "")
        raw_id = cell(id_i) if id_i is not None else str(number)
        row_id = _id_from_path(raw_id) if columns.id_from_path or _looks_like_path(raw_id) else raw_id
        if not row_id:
            summary.skipped_no_id.append(number + 1)
            logger.warning("%s data row %d has no id: skipped", path, number)
            continue
        if row_id in seen:
            summary.duplicates += 1
            logger.warning("%s: duplicate id %r (data row %d) skipped, first kept", path, row_id, number)
            continue
        seen.add(row_id)
        text = " ".join(cell(text_i).split())
        flags = () if text else ("empty_hypothesis",)
        summary.rows += 1
        summary.empty_hypotheses += not text
        ref = " ".join(cell(ref_i).split()) if ref_i is not None else None
        yield TableRow(id=row_id, text=text, reference=ref or None, line=number + 1, flags=flags)


def _looks_like_path(value: str) -> bool:
    return "/" in value or "\\" in value


def _id_from_path(value: str) -> str:
    """'/data/LibriSpeech/1089/1089-134686-0008.flac' and './1089-134686-0008.' -> '1089-134686-0008'."""
    name = re.split(r"[\\/]", value.strip())[-1]
    stem, dot, _ = name.rpartition(".")
    return stem if dot and stem else name


# --------------------------------------------------------------------------- column choice


def _choose_columns(
    path: Path, header: list[str], delim: str, id_col: str | None, text_col: str | None, ref_col: str | None
) -> TableColumns:
    for name, value in (("id", id_col), ("text", text_col), ("ref", ref_col)):
        if value is not None and value not in header:
            listing = ", ".join(repr(c) for c in header)
            raise InvalidInput(f"{path}: no column {value!r} (--{name}-column); the columns are: {listing}", param=f"{name}_column")
    usable = [c for c in header if not _INDEX_COLUMN.match(c.strip())]
    text = text_col or _find(usable, TEXT_NAMES, exclude=(id_col, ref_col))
    if text is None:
        listing = ", ".join(repr(c) for c in header)
        raise InvalidInput(f"{path}: cannot tell which column holds the transcripts; pass --text-column (columns: {listing})", param="text_column")
    ref = ref_col or _find(usable, REF_NAMES, exclude=(text, id_col))
    ident, from_path = id_col, False
    if ident is None:
        ident = _find(usable, ID_NAMES, exclude=(text, ref), prefix=False)
        if ident is None:
            ident = _find(usable, PATH_NAMES, exclude=(text, ref), prefix=False)
            from_path = ident is not None
    elif ident.strip().lower() in PATH_NAMES:
        from_path = True
    return TableColumns(
        path=str(path), delimiter=delim, columns=tuple(header), id_column=ident, id_from_path=from_path,
        text_column=text, ref_column=ref, detected=not (id_col or text_col or ref_col),
    )


def _find(columns: list[str], names: tuple[str, ...], *, exclude: tuple[str | None, ...] = (), prefix: bool = True) -> str | None:
    """First column equal to a known name, else (prefix=True) starting with one: 'transcription_en-US'."""
    candidates = [c for c in columns if c not in exclude]
    lowered = {c: c.strip().lower() for c in candidates}
    for name in names:
        for c in candidates:
            if lowered[c] == name:
                return c
    if prefix:
        for name in names:
            for c in candidates:
                if re.match(rf"{re.escape(name)}[\W_]", lowered[c]):
                    return c
    return None
