"""Multi-system fusion as a batch job: line several recognisers' files up by id and fuse them.

`join` reads each system's file (CSV/TSV with column detection, or any batch input format);
`correct_joined` runs the fused utterances through the resumable batch engine.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cascade.batch.engine import run_batch
from cascade.config import FusionOptions, Settings
from cascade.formats.records import Item, detect_format, read_items
from cascade.formats.tabular import read_table
from cascade.fusion.reliability import Reliability
from cascade.types import FusionInput, InvalidInput, NBest, SystemText, Utterance


@dataclass
class Joined:
    """Several systems' files lined up by id: one FusionInput per utterance, first-seen order."""

    systems: tuple[str, ...]
    inputs: list[FusionInput]
    reports: list[str] = field(default_factory=list)
    """One line per file: the columns chosen and what was skipped."""
    missing: dict[str, int] = field(default_factory=dict)
    """Utterances each system has no output for."""
    reliability: Reliability | None = None
    """Each system's estimated (or given) reliability, set by correct_joined."""


def system_names(paths: Sequence[Path]) -> list[str]:
    """File stems ('google'), made unique with the parent folder where two files share a stem."""
    stems = [p.stem for p in paths]
    names = [f"{p.parent.name}/{p.stem}" if stems.count(p.stem) > 1 else p.stem for p in paths]
    return [n if names.count(n) == 1 else f"{n}#{i + 1}" for i, n in enumerate(names)]


def join(paths: Sequence[str | Path], *, columns: dict[str, str | None] | None = None,
         in_format: str | None = None) -> Joined:
    """Read each file (CSV/TSV with column detection, or any batch input format) and join by id.

    Raises InvalidInput when fewer than two files are given or a file shares no id with the others.
    """
    paths = [Path(p) for p in paths]
    if len(paths) < 2:
        raise InvalidInput("--join needs at least two files (one per recogniser)", param="join")
    names = system_names(paths)
    tables: list[dict[str, tuple[str, str | None]]] = []
    reports: list[str] = []
    for path in paths:
        rows, report = _read_system(path, columns or {}, in_format)
        tables.append(rows)
        reports.append(report)
    _check_overlap(paths, tables)
    order: dict[str, None] = {}
    for rows in tables:
        order.update(dict.fromkeys(rows))
    inputs, missing = [], {n: 0 for n in names}
    for utt in order:
        outs, ref = [], None
        for name, rows in zip(names, tables):
            if utt in rows:
                outs.append(SystemText(system=name, text=rows[utt][0]))
                ref = ref if ref is not None else rows[utt][1]
            else:
                missing[name] += 1
        inputs.append(FusionInput(id=utt, outputs=tuple(outs), reference=ref))
    return Joined(systems=tuple(names), inputs=inputs, reports=reports, missing=missing)


def _read_system(path: Path, columns: dict[str, str | None], in_format: str | None) -> tuple[dict[str, tuple[str, str | None]], str]:
    """{id: (1-best text, reference)} of one file, and a line saying how it was read."""
    if not path.is_file():
        raise InvalidInput(f"file not found: {path}", param="join")
    fmt = detect_format(path, in_format)
    rows: dict[str, tuple[str, str | None]] = {}
    if fmt in ("csv", "tsv"):
        table = read_table(path, **{k: v for k, v in columns.items() if v is not None})
        for row in table.rows():
            rows[row.id] = (row.text, row.reference)
        return rows, f"{table.columns.describe()}; {table.summary.describe()}"
    if path.stat().st_size == 0:
        raise InvalidInput(f"{path}: the file is empty", param="join")
    errors = duplicates = 0
    for item in read_items(path, fmt):
        if item.utterance is None:
            errors += 1
            continue
        if item.id in rows:
            duplicates += 1
            continue
        best = item.utterance.nbest.best
        rows[item.id] = (best.text if best else "", item.utterance.reference)
    extra = (f", {errors} unreadable records skipped" if errors else "") + (f", {duplicates} duplicate ids skipped" if duplicates else "")
    return rows, f"{path.name}: {fmt}, {len(rows)} records{extra}"


def _check_overlap(paths: list[Path], tables: list[dict[str, Any]]) -> None:
    for i, rows in enumerate(tables):
        if not rows:
            raise InvalidInput(f"{paths[i]}: no records with an id", param="join")
        others = set().union(*(t.keys() for j, t in enumerate(tables) if j != i))
        if others.isdisjoint(rows):
            sample = ", ".join(list(rows)[:2])
            other_sample = ", ".join(sorted(others)[:2])
            raise InvalidInput(
                f"{paths[i].name} shares no utterance id with the other files (its ids look like {sample}; "
                f"theirs like {other_sample}); check --id-column", param="join")


def joined_items(joined: Joined) -> Iterator[Any]:
    """The joined utterances as batch-engine Items: one hypothesis per present system, names in layout."""
    for pos, inp in enumerate(joined.inputs):
        texts = [o.text for o in inp.outputs]
        utt = Utterance(id=inp.id or str(pos + 1), nbest=NBest.from_texts(texts, id=inp.id), reference=inp.reference,
                        source="join")
        yield Item(pos=pos, id=utt.id, utterance=utt, raw=texts[0] if texts else "",
                   layout={"systems": [o.system for o in inp.outputs]})


def correct_joined(paths: Sequence[Path], out: Path, settings: Settings, *, columns: dict[str, str | None] | None = None,
                   in_format: str | None = None, out_format: str | None = None,
                   progress: Any = None) -> tuple[Any, Joined]:
    """Join the systems' files and fuse them into `out` with the resumable batch engine."""
    ofmt = detect_format(out, out_format, output=True)
    if ofmt in ("srt", "vtt"):
        raise InvalidInput(f"{ofmt} output needs cue timings, which joined inputs do not have; write .jsonl", param="out")
    joined = join(paths, columns=columns, in_format=in_format)
    joined.reliability = reliability(joined, settings.fusion)
    summary = run_batch(joined_items(joined), out, ofmt, with_systems(settings, joined), dedupe=False, progress=progress)
    return summary, joined


def reliability(joined: Joined, options: FusionOptions) -> Reliability:
    """Each system's reliability: options.weights as given, else estimated from the whole joined input
    (cascade.fusion.reliability; no references read), else equal."""
    from cascade.fusion import reliability as rel

    if options.weights:
        found = rel.given(options.weights, joined.systems)
    elif not options.estimate_weights:
        return rel.equal(joined.systems, len(joined.inputs))
    else:
        found = rel.estimate(joined.inputs, joined.systems, normalize=options.normalize)
    return rel.choose_fallback(joined.inputs, found, normalize=options.normalize,
                               tail=options.tail_vote, best_bonus=options.best_bonus)


def with_systems(settings: Settings, joined: Joined) -> Settings:
    """The settings the fusion of `joined` runs with: the systems' names, who lacks which utterance, their weights."""
    absent = {inp.id or "": tuple(n for n in joined.systems if n not in {o.system for o in inp.outputs})
              for inp in joined.inputs if len(inp.outputs) < len(joined.systems)}
    weights = joined.reliability.weights if joined.reliability and joined.reliability.method != "equal" else None
    fallback = joined.reliability.fallback if weights else "best"
    fusion = settings.fusion.model_copy(update={"systems": joined.systems, "absent": absent, "weights": weights,
                                                "fallback": fallback})
    return settings.model_copy(update={"fusion": fusion})
