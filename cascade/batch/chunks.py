"""One chunk of batch records corrected and rendered as journal lines (shared by the local and Ray engines)."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from cascade import correct
from cascade.config import Settings
from cascade.correct import Corrector
from cascade.formats.records import Item
from cascade.types import BackendUnavailable, BatchRecord, CandidateScore, Correction, InvalidInput, NBest

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------- correctors


def lazy_corrector(method: str, settings: Settings) -> Corrector | None:
    """The corrector (cascade.correct), built (the LLM loaded) only when a record first needs it."""
    if method == "none":
        return None
    available = correct.available()
    if method not in available:
        raise InvalidInput(f"unknown correction mode {method!r}; expected one of {', '.join(available)}", param="correct")
    return _Lazy(method, settings)


@dataclass
class _Lazy:
    mode: str
    settings: Settings
    built: Corrector | None = None

    @property
    def needs_llm(self) -> bool:
        return correct.needs_llm(self.settings, self.mode)

    def correct(self, nbests: Iterable[NBest]) -> Iterator[Correction]:
        if self.built is None:
            self.built = correct.build_corrector(self.settings, self.mode)
        return self.built.correct(nbests)


def needs_llm(item: Item, method: str) -> bool:
    return method != "none" and item.utterance is not None and any(t.strip() for t in item.utterance.nbest.texts)


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


def journal_record(item: Item, method: str, corr: Correction | None) -> BatchRecord:
    """One output record: id, original, corrected, method, status, fallback_reason, scores (+ context)."""
    utt = item.utterance
    original = (item.raw if utt is None else (utt.nbest.best.text if utt.nbest.best else "")) or ""
    fields: dict[str, Any] = {"id": item.id, "original": original, "corrected": None, "changed": False,
                              "method": method, "status": "error", "fallback_reason": None, "scores": ()}
    if item.error is not None:
        fields["error"] = item.error
    elif corr is None:
        empty = method != "none"
        fields.update(corrected=original, status="fallback" if empty else "ok",
                      fallback_reason="empty hypothesis" if empty else None)
    else:
        fields.update(corrected=corr.text, changed=corr.text.strip() != original.strip(), method=corr.method,
                      status=corr.status, fallback_reason=corr.fallback_reason, chosen=corr.chosen,
                      scores=tuple(CandidateScore(text=s.text, am=_r(s.am), lm=_r(s.lm), combined=_r(s.combined),
                                                  source=s.source) for s in corr.scores))
    if utt is not None and "systems" in item.layout:  # --join: each recogniser's own text, by name
        fields["systems"] = dict(zip(item.layout["systems"], utt.nbest.texts))
    elif utt is not None and len(utt.nbest.hypotheses) > 1:
        fields["hypotheses"] = utt.nbest.texts
    if utt is not None and utt.reference is not None:
        fields["reference"] = utt.reference
    if item.layout and "systems" not in item.layout:
        fields["layout"] = item.layout
    return BatchRecord(**fields)


@dataclass
class ChunkResult:
    """A chunk's journal lines (one write) and its counts; plain data so it pickles/ships to Ray."""

    data: bytes
    n: int
    changed: int
    fallbacks: int
    errors: int


def process_chunk(items: list[Item], method: str, corrector: Corrector | None) -> ChunkResult:
    """Correct the chunk's LLM-bound records in one batch and render every record as a journal line."""
    llm = [it for it in items if needs_llm(it, method)]
    fixes: dict[int, Correction | str] = {}
    if llm:
        assert corrector is not None
        fixes = dict(zip((it.pos for it in llm), _correct_batch(corrector, [it.utterance.nbest for it in llm])))
    lines, changed, fallbacks, errors = [], 0, 0, 0
    for it in items:
        fix = fixes.get(it.pos)
        if isinstance(fix, str):  # the LLM failed on this record alone
            it, fix = it.model_copy(update={"error": fix}), None
        rec = journal_record(it, method, fix)
        changed += rec.changed
        fallbacks += rec.status in ("fallback", "unavailable")
        errors += rec.status == "error"
        lines.append(rec.line())
    return ChunkResult(b"".join(lines), len(items), changed, fallbacks, errors)


def _correct_batch(corrector: Corrector, nbests: list[NBest]) -> list[Correction | str]:
    """One call for the batch; if it raises, retry record by record so one bad record is one error."""
    try:
        out = list(corrector.correct(nbests))
        if len(out) != len(nbests):
            raise RuntimeError(f"corrector returned {len(out)} results for {len(nbests)} inputs")
        return list(out)
    except BackendUnavailable:
        raise
    except Exception as exc:  # noqa: BLE001 - isolate the failing record
        logger.warning("batch of %d failed (%s); retrying one by one", len(nbests), exc)
    results: list[Correction | str] = []
    for nb in nbests:
        try:
            results.append(next(iter(corrector.correct([nb]))))
        except BackendUnavailable:
            raise
        except Exception as exc:  # noqa: BLE001
            results.append(f"correction failed: {type(exc).__name__}: {exc}".splitlines()[0])
    return results


def worker_settings(settings: Settings, workers: int) -> Settings:
    """Give each worker an equal share of the cores unless threads were set explicitly."""
    if settings.llm.threads or workers <= 1:
        return settings
    threads = max(1, (os.cpu_count() or 1) // workers)
    return settings.model_copy(update={"llm": settings.llm.model_copy(update={"threads": threads})})
