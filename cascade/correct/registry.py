"""The registry of correctors and `build_corrector`, the one place that loads an LLM for correction.

A corrector turns N-best lists into Corrections, in input order, one per list (an empty list
yields status "error"). Each mode registers a factory `(settings, backend) -> Corrector` and says
whether it needs the LLM under given settings; `build_corrector` loads the backend only then.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Protocol, get_args, runtime_checkable

from cascade.config import Settings
from cascade.llm import LlmBackend, load_backend
from cascade.types import Correction, CorrectionMode, InvalidInput, NBest

MODES: tuple[str, ...] = get_args(CorrectionMode)


@runtime_checkable
class Corrector(Protocol):
    mode: str
    needs_llm: bool
    """Whether this corrector calls the LLM (False: it never loaded one)."""

    def correct(self, nbests: Iterable[NBest]) -> Iterator[Correction]:
        """One Correction per list, in input order; work (and errors) happen during iteration."""
        ...


Factory = Callable[[Settings, LlmBackend | None], Corrector]
NeedsLlm = Callable[[Settings], bool]

_REGISTRY: dict[str, tuple[Factory, NeedsLlm]] = {}


def register(mode: str, *, needs_llm: bool | NeedsLlm) -> Callable[[Factory], Factory]:
    """Register the factory of `mode` (one of CorrectionMode); `needs_llm` may depend on the settings."""
    if mode not in MODES:
        raise ValueError(f"{mode!r} is not a CorrectionMode ({', '.join(MODES)})")
    needs: NeedsLlm = needs_llm if callable(needs_llm) else (lambda _s, _n=bool(needs_llm): _n)

    def deco(factory: Factory) -> Factory:
        _REGISTRY[mode] = (factory, needs)
        return factory

    return deco


def _entry(mode: str) -> tuple[Factory, NeedsLlm]:
    if mode not in _REGISTRY:
        raise InvalidInput(f"unknown correction mode {mode!r}; expected one of {', '.join(available())}", param="correct")
    return _REGISTRY[mode]


def available() -> list[str]:
    """Registered modes, in CorrectionMode order (the package's __init__ registers the built-ins)."""
    return [m for m in MODES if m in _REGISTRY]


def needs_llm(settings: Settings, mode: str | None = None) -> bool:
    """Whether correcting with `mode` (default settings.correct.mode) loads the LLM."""
    return _entry(mode or settings.correct.mode)[1](settings)


def reads_alternatives(settings: Settings, mode: str | None = None, *, style: str = "cased") -> bool:
    """Whether `mode` can return anything but the 1-best of a list of `style` ("cased": our own Whisper output).

    False lets a decoder skip the wide N-best decode (the spoken turn does): `none`; `rerank` with a model that
    has no weights for the style (the shipped one has plain and cased weights); `rescore` at λ 0 there."""
    mode = mode or settings.correct.mode
    if mode == "none":
        return False
    if mode == "rerank":
        from cascade.ger.rerank import load_model

        model = load_model(settings.rerank.model)
        return style in model.weights or (model.domain_text is not None and "domain" in model.weights)
    if mode == "rescore":
        from cascade.ger.rescore import for_style

        return for_style(settings.rescore, style).lam > 0
    return True


def load_llm(settings: Settings) -> LlmBackend:
    """The LLM backend correction uses (cached per options; the adapter is passed per call)."""
    return load_backend(settings.llm, settings.home)


def build_corrector(settings: Settings, mode: str | None = None, *, backend: LlmBackend | None = None) -> Corrector:
    """The corrector for `mode` (default settings.correct.mode), with the LLM loaded only when it needs one.

    Pass `backend` to share an already loaded LLM (a service's, a remote one); it is ignored by modes
    that need none. A missing adapter or model fails here, before any list is corrected.
    """
    mode = mode or settings.correct.mode
    factory, needs = _entry(mode)
    if not needs(settings):
        return factory(settings, None)
    if settings.correct.adapter and settings.llm.backend != "openai":
        from cascade.llm.hf_backend import adapter_dir

        adapter_dir(settings.correct.adapter)
    return factory(settings, backend if backend is not None else load_llm(settings))
