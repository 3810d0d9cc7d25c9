"""The built-in correctors, one per CorrectionMode, registered with cascade.correct.registry."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from more_itertools import chunked

from cascade import ger
from cascade.config import Settings
from cascade.correct.registry import register
from cascade.ger.rescore import needs_llm as rescore_needs_llm
from cascade.llm import LlmBackend
from cascade.types import Correction, NBest


@dataclass(frozen=True)
class _Built:
    """A corrector for one mode with its settings and the backend build_corrector loaded (None: it needs none)."""

    mode: str
    settings: Settings
    backend: LlmBackend | None

    @property
    def needs_llm(self) -> bool:
        return self.backend is not None


class GerCorrector(_Built):
    """none / rescore / rerank / ger: cascade.ger.correct_many with the settings' options and the one adapter
    (GER starts from the reranked best when settings.rerank.ger_base)."""

    def correct(self, nbests: Iterable[NBest]) -> Iterator[Correction]:
        s = self.settings
        return ger.correct_many(nbests, self.backend, method=self.mode, ger=s.ger, rescore=s.rescore,  # type: ignore[arg-type]
                                batch_size=s.correct.batch_size, adapter=s.correct.adapter, rerank=s.rerank)


@register("none", needs_llm=False)
def _none(settings: Settings, backend: LlmBackend | None) -> GerCorrector:
    return GerCorrector("none", settings, None)


@register("rescore", needs_llm=lambda s: rescore_needs_llm(s.rescore))
def _rescore(settings: Settings, backend: LlmBackend | None) -> GerCorrector:
    """λ = 0 (for every style profile) keeps the recogniser's own ranking: no LLM is loaded."""
    return GerCorrector("rescore", settings, backend)


@register("rerank", needs_llm=True)
def _rerank(settings: Settings, backend: LlmBackend | None) -> GerCorrector:
    """The trained reranker (settings.rerank.model); a missing model fails here, before any list."""
    from cascade.ger.rerank import load_model

    load_model(settings.rerank.model)
    return GerCorrector("rerank", settings, backend)


@register("ger", needs_llm=True)
def _ger(settings: Settings, backend: LlmBackend | None) -> GerCorrector:
    return GerCorrector("ger", settings, backend)


class FusionCorrector(_Built):
    """rover / fusion: each list holds one hypothesis per recogniser (cascade.fusion.fuse)."""

    def correct(self, nbests: Iterable[NBest]) -> Iterator[Correction]:
        from cascade.fusion.fuse import fuse_many, nbest_input

        s = self.settings
        method = "rover" if self.mode == "rover" else s.fusion.method

        def run(batch: list[NBest]) -> Iterator[Correction]:
            return fuse_many([nbest_input(nb, options=s.fusion) for nb in batch], method, options=s.fusion, backend=self.backend,  # type: ignore[arg-type]
                             ger=s.ger, adapter=s.correct.adapter, batch_size=len(batch))

        return in_batches(nbests, s.correct.batch_size, run, self.mode)


def in_batches(nbests: Iterable[NBest], size: int, run: Callable[[list[NBest]], Iterable[Correction]],
               mode: str) -> Iterator[Correction]:
    """`run` on batches of `size` non-empty lists, in input order; an empty list yields status "error"."""
    for batch in chunked(nbests, size):
        yield from _batch(batch, run, mode)


def _batch(batch: list[NBest], run: Callable[[list[NBest]], Iterable[Correction]], mode: str) -> Iterator[Correction]:
    valid = [nb for nb in batch if nb.hypotheses]
    done = iter(run(valid) if valid else ())
    for nb in batch:
        yield next(done) if nb.hypotheses else Correction(text="", method=mode, status="error",  # type: ignore[arg-type]
                                                          fallback_reason="empty N-best list")


@register("rover", needs_llm=False)
def _rover(settings: Settings, backend: LlmBackend | None) -> FusionCorrector:
    return FusionCorrector("rover", settings, None)


def _fusion_needs_llm(s: Settings) -> bool:
    """ger always; rescore with an LM weight; rerank when its model weighs LLM features (the shipped one does not)."""
    from cascade.fusion.fuse import needs_llm

    return needs_llm(s.fusion.method, s.fusion)


@register("fusion", needs_llm=_fusion_needs_llm)
def _fusion(settings: Settings, backend: LlmBackend | None) -> FusionCorrector:
    return FusionCorrector("fusion", settings, backend)


@dataclass(frozen=True)
class TranslationCorrector:
    """translate: fuse a translation N-best list into one translation (GenTranslate; the translate prompt)."""

    settings: Settings
    backend: LlmBackend | None
    mode: str = "translate"
    needs_llm: bool = True

    def correct(self, nbests: Iterable[NBest]) -> Iterator[Correction]:
        from cascade.translate.speech import correct_translations, stage_options

        s = self.settings
        g, r = stage_options(s)
        return correct_translations(nbests, self.backend, method="ger", ger=g, rescore=r,
                                    batch_size=s.correct.batch_size, adapter=s.correct.adapter, gate=s.translate)


@register("translate", needs_llm=True)
def _translate(settings: Settings, backend: LlmBackend | None) -> TranslationCorrector:
    return TranslationCorrector(settings, backend)
