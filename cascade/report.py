"""Self-contained HTML reports: what was heard, what the corrector changed, and whether it helped.

One HTML file with inline SVG charts (matplotlib) and escaped text, so it can be
mailed or attached to a CI run and opened anywhere without network access.
"""

from __future__ import annotations

import html
import io
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

from pydantic import Field

from cascade import metrics
from cascade.types import Record

BASELINE = "1-best"


class ReportRow(Record):
    """One utterance as the report sees it: the reference (if known) and each method's text."""

    dataset: str
    id: str
    reference: str | None = None
    outputs: dict[str, str]
    """Method name -> text; holds BASELINE ("1-best") and the methods compared with it."""
    notes: dict[str, str] = Field(default_factory=dict)
    """Free per-utterance facts shown beside the diff (e.g. fallback reason)."""


class Change(Record):
    """How one utterance fared under a method compared with the baseline."""

    row: ReportRow
    baseline_errors: int
    errors: int

    @property
    def delta(self) -> int:
        return self.errors - self.baseline_errors


# --------------------------------------------------------------------------- word diffs


def word_diff_html(reference: str, hypothesis: str) -> str:
    """The hypothesis with each error marked against the reference (both normalised, then escaped)."""
    import kaldialign

    ref, hyp = metrics.normalize(reference).split(), metrics.normalize(hypothesis).split()
    if not ref and not hyp:
        return '<span class="empty">(empty)</span>'
    out = []
    for r, h in kaldialign.align(ref, hyp, "*"):
        if r == h:
            out.append(f'<span class="ok">{html.escape(h)}</span>')
        elif r == "*":
            out.append(f'<ins title="inserted">{html.escape(h)}</ins>')
        elif h == "*":
            out.append(f'<del title="missing">{html.escape(r)}</del>')
        else:
            out.append(f'<span class="sub" title="reference: {html.escape(r, quote=True)}">{html.escape(h)}</span>')
    return " ".join(out)


def _errors(reference: str, hypothesis: str) -> int:
    return metrics.word_errors([reference], [hypothesis]).errors


# --------------------------------------------------------------------------- figures


def wer_table(rows: Sequence[ReportRow], methods: Sequence[str]) -> dict[str, dict[str, float]]:
    """Normalised WER (%) per dataset (and "all") per method, over rows that have a reference."""
    scored = [r for r in rows if r.reference is not None]
    out: dict[str, dict[str, float]] = {}
    for name in sorted({r.dataset for r in scored}) + ["all"]:
        subset = [r for r in scored if name in ("all", r.dataset)]
        out[name] = {
            m: round(100 * metrics.wer([r.reference or "" for r in subset], [r.outputs.get(m, "") for r in subset]), 2)
            for m in methods
        }
    return out


def changes(rows: Sequence[ReportRow], method: str, baseline: str = BASELINE) -> list[Change]:
    return [
        Change(row=r, baseline_errors=_errors(r.reference, r.outputs[baseline]), errors=_errors(r.reference, r.outputs[method]))
        for r in rows
        if r.reference is not None and method in r.outputs and baseline in r.outputs
    ]


def _svg(fig) -> str:  # noqa: ANN001 - a matplotlib Figure
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    text = buf.getvalue()
    return text[text.index("<svg"):]


def wer_chart(table: dict[str, dict[str, float]], methods: Sequence[str]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = list(table)
    width = 0.8 / max(1, len(methods))
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(datasets) * max(1, len(methods)) / 2), 3.6))
    for i, m in enumerate(methods):
        xs = [d + (i - (len(methods) - 1) / 2) * width for d in range(len(datasets))]
        bars = ax.bar(xs, [table[d][m] for d in datasets], width, label=m)
        ax.bar_label(bars, fmt="%.1f", fontsize=7)
    ax.set_xticks(range(len(datasets)), datasets)
    ax.set_ylabel("WER (%)")
    ax.legend(fontsize=8)
    ax.set_title("Word error rate per dataset")
    svg = _svg(fig)
    plt.close(fig)
    return svg


def outcome_chart(counts: dict[str, dict[str, int]]) -> str:
    """Stacked bars: per method, how many utterances were helped / hurt / left as they were."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(counts)
    fig, ax = plt.subplots(figsize=(6, 0.6 + 0.5 * len(methods)))
    left = [0] * len(methods)
    for kind, colour in (("helped", "#2e7d32"), ("neutral", "#9e9e9e"), ("hurt", "#c62828")):
        vals = [counts[m][kind] for m in methods]
        ax.barh(methods, vals, left=left, color=colour, label=kind)
        left = [a + b for a, b in zip(left, vals)]
    ax.set_xlabel("utterances")
    ax.legend(fontsize=8, ncols=3, loc="lower right")
    ax.set_title("Changed utterances against the 1-best")
    svg = _svg(fig)
    plt.close(fig)
    return svg


def outcome_counts(chs: Sequence[Change]) -> dict[str, int]:
    return {
        "helped": sum(c.delta < 0 for c in chs),
        "hurt": sum(c.delta > 0 for c in chs),
        "neutral": sum(c.delta == 0 for c in chs),
    }


# --------------------------------------------------------------------------- HTML


_CSS = """
body{font-family:system-ui,sans-serif;margin:2rem;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:1rem 0}td,th{border:1px solid #ccc;padding:.3rem .6rem;text-align:right}
th:first-child,td:first-child{text-align:left}.best{font-weight:bold;background:#e8f5e9}
.diff{font-family:ui-monospace,monospace;font-size:.9rem;line-height:1.6}
.sub{background:#fff3cd;border-bottom:2px solid #e0a800}ins{background:#d4edda;text-decoration:none}
del{background:#f8d7da}.meta{color:#666;font-size:.85rem}.empty{color:#999}
section{margin-bottom:2rem}.case{margin:.8rem 0;padding:.2rem .6rem;border-left:3px solid #ddd}h2{border-bottom:1px solid #ddd}
"""


def _table_html(table: dict[str, dict[str, float]], methods: Sequence[str]) -> str:
    head = "".join(f"<th>{html.escape(m)}</th>" for m in methods)
    body = []
    for name, vals in table.items():
        best = min(vals.values()) if vals else None
        cells = "".join(
            f'<td class="{"best" if vals[m] == best else ""}">{vals[m]:.2f}</td>' for m in methods
        )
        body.append(f"<tr><td>{html.escape(name)}</td>{cells}</tr>")
    return f'<table class="wer"><tr><th>dataset (WER %)</th>{head}</tr>{"".join(body)}</table>'


def _diff_block(c: Change, method: str) -> str:
    r = c.row
    notes = "".join(f" · {html.escape(k)}: {html.escape(v)}" for k, v in r.notes.items())
    return (
        f'<div class="case"><div class="meta">{html.escape(r.dataset)} / {html.escape(r.id)} · '
        f"errors {c.baseline_errors} → {c.errors}{notes}</div>"
        f'<div class="diff"><b>reference</b> {html.escape(metrics.normalize(r.reference or ""))}<br>'
        f"<b>{html.escape(BASELINE)}</b> {word_diff_html(r.reference or '', r.outputs[BASELINE])}<br>"
        f"<b>{html.escape(method)}</b> {word_diff_html(r.reference or '', r.outputs[method])}</div></div>"
    )


def _extremes_html(chs: Sequence[Change], method: str, n: int) -> str:
    wins = sorted((c for c in chs if c.delta < 0), key=lambda c: (c.delta, c.row.id))[:n]
    losses = sorted((c for c in chs if c.delta > 0), key=lambda c: (-c.delta, c.row.id))[:n]
    part = [f"<h3>{len(wins)} largest wins of {html.escape(method)}</h3>"]
    part += [_diff_block(c, method) for c in wins] or ["<p>none</p>"]
    part += [f"<h3>{len(losses)} worst regressions of {html.escape(method)}</h3>"]
    part += [_diff_block(c, method) for c in losses] or ["<p>none</p>"]
    return '<section class="extremes">' + "".join(part) + "</section>"


def _unreferenced_html(rows: Sequence[ReportRow], method: str, n: int) -> str:
    """Without references, show what changed (original vs corrected), largest edits first."""
    changed = [r for r in rows if method in r.outputs and BASELINE in r.outputs
               and metrics.normalize(r.outputs[method]) != metrics.normalize(r.outputs[BASELINE])]
    changed.sort(key=lambda r: -metrics.edit_distance(metrics.normalize(r.outputs[BASELINE]), metrics.normalize(r.outputs[method])))
    blocks = [
        f'<div class="case"><div class="meta">{html.escape(r.dataset)} / {html.escape(r.id)}'
        + "".join(f" · {html.escape(k)}: {html.escape(v)}" for k, v in r.notes.items())
        + f'</div><div class="diff"><b>{html.escape(BASELINE)}</b> {html.escape(r.outputs[BASELINE])}<br>'
        f"<b>{html.escape(method)}</b> {word_diff_html(r.outputs[BASELINE], r.outputs[method])}</div></div>"
        for r in changed[:n]
    ]
    return f"<h3>{len(changed)} changed utterances (first {min(n, len(changed))}, largest edits first)</h3>" + "".join(blocks)


def render(
    rows: Sequence[ReportRow],
    *,
    title: str,
    methods: Sequence[str] | None = None,
    summary: dict[str, object] | None = None,
    n_extremes: int = 20,
) -> str:
    """The whole report as one HTML string (tables, charts, diffs)."""
    methods = list(methods or dict.fromkeys(m for r in rows for m in r.outputs))
    compared = [m for m in methods if m != BASELINE]
    parts = [f"<h1>{html.escape(title)}</h1>",
             f'<p class="meta">{len(rows)} utterances · generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC</p>']
    if summary:
        items = "".join(f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(str(v))}</td></tr>" for k, v in summary.items())
        parts.append(f'<section><h2>Summary</h2><table class="summary">{items}</table></section>')
    if any(r.reference is not None for r in rows):
        table = wer_table(rows, methods)
        parts.append(f'<section><h2>WER</h2>{_table_html(table, methods)}<figure class="chart">{wer_chart(table, methods)}</figure></section>')
        per = {m: changes(rows, m) for m in compared}
        counts = {m: outcome_counts(c) for m, c in per.items()}
        if counts:
            heads = "".join(f"<tr><td>{html.escape(m)}</td><td>{c['helped']}</td><td>{c['hurt']}</td><td>{c['neutral']}</td></tr>" for m, c in counts.items())
            parts.append('<section><h2>Helped / hurt / neutral</h2><table class="outcomes"><tr><th>method</th><th>helped</th><th>hurt</th><th>neutral</th></tr>'
                         f'{heads}</table><figure class="chart">{outcome_chart(counts)}</figure></section>')
        for m, c in per.items():
            parts.append(f"<h2>{html.escape(m)}: wins and regressions</h2>" + _extremes_html(c, m, n_extremes))
    else:
        for m in compared:
            parts.append(f"<section><h2>{html.escape(m)}</h2>{_unreferenced_html(rows, m, n_extremes)}</section>")
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{_CSS}</style></head><body>{''.join(parts)}</body></html>")


def write(path: str | Path, rows: Sequence[ReportRow], **kwargs: object) -> Path:
    """Render and write atomically (a half-written report is never left behind)."""
    import os

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".partial")
    tmp.write_text(render(rows, **kwargs), encoding="utf-8")  # type: ignore[arg-type]
    os.replace(tmp, path)
    return path



def rows_from_batch_output(path: str | Path, *, dataset: str, limit: int = 20_000) -> tuple[list[ReportRow], int]:
    """Report rows from a correct-batch JSONL output (first `limit` records); also returns the records seen.

    Error records are counted by the batch summary, not shown as diffs.
    """
    from cascade.types import BatchRecord

    rows: list[ReportRow] = []
    seen = 0
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            seen += 1
            if len(rows) >= limit:
                continue
            rec = BatchRecord.model_validate_json(line)
            if rec.corrected is None:
                continue
            notes = {"status": rec.status} if rec.status != "ok" else {}
            if rec.fallback_reason:
                notes["fallback"] = rec.fallback_reason
            rows.append(ReportRow(dataset=dataset, id=rec.id, reference=rec.reference,
                                  outputs={BASELINE: rec.original, rec.method or "corrected": rec.corrected},
                                  notes=notes))
    return rows, seen
