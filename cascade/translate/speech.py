"""Speech translation helped by the LLM: N-best fusion (GenTranslate) and a two-stage path.

Direct path: Whisper's translate task yields an N-best list of English translations per
segment. `rescore` picks one with (1-λ)·AM + λ·LM; `ger` lets the LLM fuse the list into one
translation (GenTranslate: the N-best holds information beam search's top-1 drops) with the
prompt `translate/fusion` and exactly the guards of transcription GER (cascade.ger.correct:
first line, token cap, distance from every candidate, score gate, fallback with a reason).

Via transcript: Whisper transcribes in the source language with N-best, cascade.ger corrects
that list (none/rescore/ger), and the LLM translates the corrected text (prompt
`translate/source`). Its output is guarded too (first line, token cap, length ratio, "not
translated"); a rejected output falls back to Whisper's own translation of the same window
(English targets) or to the source text, and says why.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from cascade import metrics, prompts
from cascade.config import GerOptions, RescoreOptions, Settings, TranslateOptions
from cascade.llm.base import LlmBackend
from cascade.types import Correction, InvalidInput, NBest, Record, StageInfo, Transcript, Unsupported

logger = logging.getLogger(__name__)

Method = Literal["none", "rescore", "ger"]

LANGUAGE_NAMES = {
    "en": "English", "de": "German", "fr": "French", "es": "Spanish", "pt": "Portuguese", "it": "Italian",
    "nl": "Dutch", "pl": "Polish", "ru": "Russian", "uk": "Ukrainian", "cs": "Czech", "sv": "Swedish",
    "da": "Danish", "no": "Norwegian", "fi": "Finnish", "tr": "Turkish", "ar": "Arabic", "he": "Hebrew",
    "hi": "Hindi", "zh": "Chinese", "ja": "Japanese", "ko": "Korean", "el": "Greek", "ro": "Romanian",
    "hu": "Hungarian", "ca": "Catalan", "vi": "Vietnamese", "id": "Indonesian",
}


def language_name(code: str | None) -> str:
    return LANGUAGE_NAMES.get(code or "", code or "the source language")


def known_language(code: str) -> bool:
    """A language code Whisper's tokenizer knows (the project's list of language codes)."""
    from faster_whisper.tokenizer import _LANGUAGE_CODES

    return code in _LANGUAGE_CODES


def check_request(cfg: Settings) -> None:
    """Refuse what the chosen path cannot do before any audio is decoded (target, source language, model)."""
    from cascade.asr import prepare

    t, asr = cfg.translate, cfg.asr
    if not known_language(t.target):
        raise InvalidInput(f"unknown target language code {t.target!r}", param="to")
    if t.target != "en" and not t.via_transcript:
        raise Unsupported(
            f"Whisper translates speech only into English, not {t.target!r}: "
            f"add --via-transcript to transcribe first and let the LLM translate into {t.target!r}",
            param="to",
        )
    if asr.language is not None and not known_language(asr.language):
        raise InvalidInput(f"unknown source language code {asr.language!r}: Whisper does not know it", param="language")
    whisper = prepare(asr, cfg.home)  # English-only models refuse task=translate here
    if t.via_transcript and not whisper.model.is_multilingual and (t.target == "en" or asr.language not in (None, "en")):
        raise Unsupported(
            f"model {asr.model!r} is English-only: it cannot transcribe other languages to translate (use --model base)",
            param="model",
        )


def stage_options(cfg: Settings) -> tuple[GerOptions, RescoreOptions]:
    """GER/rescore options for translation lists: the fusion prompt and the translate overrides (tuned on dev)."""
    t = cfg.translate
    ger = cfg.ger.model_copy(update={"prompt": t.fusion_prompt})
    if t.max_edit_distance is not None:
        ger = ger.model_copy(update={"max_edit_distance": t.max_edit_distance})
    rescore = cfg.rescore if t.lam is None else cfg.rescore.model_copy(update={"lam": t.lam})
    return ger, rescore


# --------------------------------------------------------------------------- direct path (fusion)


def correct_translations(
    nbests: Iterable[NBest], backend: LlmBackend | None, *, method: Method, ger: GerOptions,
    rescore: RescoreOptions, batch_size: int = 8, adapter: str | None = None,
) -> Iterator[Correction]:
    """Rescore or fuse translation N-best lists (cascade.ger.correct_many; `ger` labelled "fusion")."""
    from cascade.ger import correct_many

    for c in correct_many(nbests, backend, method=method, ger=ger, rescore=rescore, batch_size=batch_size, adapter=adapter):
        yield c.model_copy(update={"method": "fusion"}) if method == "ger" else c


# --------------------------------------------------------------------------- via transcript


_LABEL = re.compile(
    r"^\s*(?:(?:(?:the|an?)\s+)?(?:\w+\s+)?translation(?:\s+is)?\s*:|(?:in\s+)?[A-Z][a-z]+\s*:|"
    r"(?:this|the)\s+(?:sentence|text)\s+translates\s+(?:in)?to\s+\w+\s+as\s*:?)\s*",
    re.I,
)


def _clean(raw: str, source: str, log: dict[str, Any]) -> str:
    """First line, tags and quotes stripped (GER's cleaner) after dropping a "Translation:" style label."""
    from cascade.ger import guards

    first = next((ln for ln in (raw or "").splitlines() if ln.strip()), "")
    unlabelled = _LABEL.sub("", first, count=1)
    log["label_stripped"] = unlabelled != first
    return guards.clean_output(unlabelled, [source], log)


def check_translation(raw: str, source: str, cap: int, n_tokens: int | None, options: TranslateOptions,
                      log: dict[str, Any], same_language: bool) -> str:
    """Guards on an LLM translation of `source`; returns the cleaned text or raises guards.Rejected."""
    from cascade.ger.guards import Rejected

    out = _clean(raw, source, log)
    log.update(tokens=n_tokens, token_cap=cap)
    if not out:
        raise Rejected("empty_output")
    if n_tokens is not None and n_tokens >= cap and "\n" not in raw.strip():  # the answer line itself was cut
        raise Rejected("hit_token_cap")
    src_words = metrics.normalize(source).split() or source.split()
    out_words = metrics.normalize(out).split() or out.split()
    ratio = len(out_words) / max(len(src_words), 1)
    log.update(length_ratio=round(ratio, 3), max_length_ratio=options.max_length_ratio)
    if ratio > options.max_length_ratio or ratio < 1 / options.max_length_ratio:
        raise Rejected("length_ratio")
    if not same_language:
        vocab = set(src_words)
        overlap = sum(w in vocab for w in out_words) / max(len(out_words), 1)
        log.update(source_overlap=round(overlap, 3), max_source_overlap=options.max_source_overlap)
        if overlap > options.max_source_overlap:
            raise Rejected("not_translated")
    return out


def translate_texts(
    sources: Sequence[str], backend: LlmBackend, options: TranslateOptions, *, source_language: str | None,
    fallbacks: Sequence[str | None] | None = None,
) -> list[Correction]:
    """LLM translation of source-language texts, one guarded Correction each (method "translate").

    `fallbacks` (e.g. Whisper's own translation) replace rejected outputs; without one the source
    text is returned with status "fallback".
    """
    from cascade.ger.correct import RESPONSE_END
    from cascade.ger.guards import Rejected

    ref = prompts.prompt_ref(options.source_prompt)
    variables = dict(source_name=language_name(source_language), target_name=language_name(options.target))
    rendered = [prompts.render(options.source_prompt, source=s, **variables)[0] for s in sources]
    caps = [max(options.min_new_tokens, int(options.max_new_tokens_factor * backend.count_tokens(s))) for s in sources]
    t0 = time.perf_counter()
    todo = [i for i, s in enumerate(sources) if s.strip()]
    # no "\n" stop: SmolLM2 often opens with a blank line, which a "\n" stop turns into an empty answer
    raws = dict(zip(todo, backend.generate([rendered[i] for i in todo], max_tokens=max(caps, default=1), stop=[RESPONSE_END])))
    info = StageInfo(stage="translate", model=getattr(backend, "name", None), seconds=(time.perf_counter() - t0) / max(len(todo), 1),
                     options=options.model_dump(), prompt_name=ref.name, prompt_hash=ref.hash)
    out = []
    for i, source in enumerate(sources):
        raw, log = raws.get(i, ""), {"decoding": "greedy"}
        fallback = (fallbacks[i] if fallbacks else None) or source
        try:
            tokens = backend.count_tokens(raw) if raw else None
            text = check_translation(raw, source, caps[i], tokens, options, log, source_language == options.target)
        except Rejected as rej:
            log["accepted"] = False
            out.append(Correction(text=fallback, method="translate", status="fallback", fallback_reason=rej.reason,
                                  guards=log, raw_output=raw, source=source, info=info))
            continue
        log["accepted"] = True
        out.append(Correction(text=text, method="translate", changed=True, guards=log, raw_output=raw, source=source, info=info))
    return out


def _direct_texts(transcript: Transcript, cfg: Settings) -> list[str | None] | None:
    """Whisper's own English translation of each window of the transcript's file (fallback of the LLM)."""
    from cascade.asr import transcribe_all

    if cfg.translate.target != "en" or transcript.source is None or not Path(transcript.source).is_file():
        return None
    options = cfg.asr.model_copy(update={"task": "translate", "language": transcript.language})
    return _align(transcript, transcribe_all(transcript.source, options, home=cfg.home))


def via_transcript(transcript: Transcript, backend: LlmBackend, cfg: Settings, *, method: Method,
                   fallbacks: Sequence[str | None] | None = None) -> Transcript:
    """Correct a source-language transcript's segments with cascade.ger, then translate them with the LLM.

    `fallbacks`: Whisper's translation per segment, if the caller has it (else decoded when needed).
    """
    from cascade.ger import correct_many

    source = transcript
    if method != "none":
        corrections = correct_many((s.nbest for s in transcript.segments), backend, method=method, ger=cfg.ger,
                                   rescore=cfg.rescore, batch_size=cfg.correct.batch_size, adapter=cfg.correct.adapter)
        source = transcript.with_corrections(corrections)
    texts = [s.text for s in source.segments]
    translations = translate_texts(texts, backend, cfg.translate, source_language=transcript.language)
    if any(c.status == "fallback" for c in translations):
        fallbacks = fallbacks if fallbacks is not None else _direct_texts(transcript, cfg)
        if fallbacks is not None:
            translations = [c.model_copy(update={"text": f}) if c.status == "fallback" and f else c
                            for c, f in zip(translations, fallbacks)]
    return source.with_corrections(translations).model_copy(update={"task": "translate"})


def translate_step(transcript: Transcript, *, method: Method, cfg: Settings, backend: LlmBackend) -> Transcript:
    """Fuse/rescore a translation transcript's N-best lists, or (via_transcript) correct and translate a source one."""
    if not transcript.segments:
        return transcript
    if cfg.translate.via_transcript:
        return via_transcript(transcript, backend, cfg, method=method)
    if method == "none":
        return transcript
    ger, rescore = stage_options(cfg)
    corrections = correct_translations((s.nbest for s in transcript.segments), backend, method=method, ger=ger,
                                       rescore=rescore, batch_size=cfg.correct.batch_size, adapter=cfg.correct.adapter)
    return transcript.with_corrections(corrections)


# --------------------------------------------------------------------------- evaluation (BLEU / chrF)


class TranslationItem(Record):
    """One utterance to translate with its reference translation (a manifest line)."""

    id: str
    audio: str
    reference: str
    language: str | None = None
    split: str | None = None


class MethodScore(Record):
    method: str
    bleu: float
    chrf: float
    seconds_per_utt: float
    """ASR + LLM seconds per utterance for this method (the direct N-best decode is shared by none/rescore/ger)."""
    changed: int = 0
    """Utterances whose output differs from Whisper's 1-best translation."""
    fallbacks: int = 0
    reasons: dict[str, int] = Field(default_factory=dict)
    """Why the guards rejected LLM outputs (fallback_reason -> count)."""
    outputs: tuple[str, ...] = ()


class TranslationEval(Record):
    n: int
    target: str
    model: str
    llm: str | None
    methods: tuple[MethodScore, ...]


def load_manifest(path: str | Path, *, split: str | None = None, target: str = "en") -> list[TranslationItem]:
    """Manifest JSONL lines with `audio` and `translation` (fleurs style); lines already in `target` are skipped."""
    from cascade.formats.hyporadise import jsonl_records

    path = Path(path)
    items = []
    for n, row in jsonl_records(path):
        if not isinstance(row, dict) or not isinstance(row.get("translation"), str) or "audio" not in row:
            raise InvalidInput(f"{path}:{n}: a translation manifest line needs 'audio' and 'translation'", param="manifest")
        if (split and row.get("split") != split) or row.get("lang") == target:
            continue
        audio = Path(row["audio"]) if Path(row["audio"]).is_absolute() else path.parent / row["audio"]
        items.append(TranslationItem(id=str(row.get("id", n)), audio=str(audio), reference=row["translation"],
                                     language=row.get("lang"), split=row.get("split")))
    if not items:
        raise InvalidInput(f"{path}: no utterances to translate (split={split!r})", param="manifest")
    return items


def _decode(items: Sequence[TranslationItem], cfg: Settings, task: str) -> tuple[list[Transcript], float]:
    from cascade.asr import transcribe_all

    t0 = time.perf_counter()
    out = [transcribe_all(it.audio, cfg.asr.model_copy(update={"task": task, "language": it.language}), home=cfg.home)
           for it in items]
    return out, time.perf_counter() - t0


def _score(method: str, refs: list[str], outs: list[Transcript], base: list[str], seconds: float) -> MethodScore:
    texts = [t.text for t in outs]
    rejected = [s.correction.fallback_reason or s.correction.status for t in outs for s in t.segments
                if s.correction is not None and s.correction.status != "ok"]
    reasons = {r: rejected.count(r) for r in sorted(set(rejected))}
    return MethodScore(method=method, bleu=round(metrics.bleu(refs, texts), 2), chrf=round(metrics.chrf(refs, texts), 2),
                       seconds_per_utt=round(seconds / max(len(refs), 1), 3), changed=sum(a != b for a, b in zip(texts, base)),
                       fallbacks=len(rejected), reasons=reasons, outputs=tuple(texts))


def evaluate(items: Sequence[TranslationItem], cfg: Settings, methods: Sequence[str] = ("none", "rescore", "ger", "via"),
             *, via_method: Method = "none") -> TranslationEval:
    """BLEU/chrF of Whisper's 1-best translation (none) beside rescoring, fusion (ger) and the two-stage path (via)."""
    from cascade import llm

    refs = [it.reference for it in items]
    direct, asr_s = _decode(items, cfg, "translate")
    base = [t.text for t in direct]
    backend = llm.load_backend(cfg.llm, cfg.home) if set(methods) - {"none"} else None
    ger, rescore = stage_options(cfg)
    scores = []
    for method in methods:
        t0 = time.perf_counter()
        if method == "via":
            source, via_asr = _decode(items, cfg, "transcribe")
            via_cfg = cfg.model_copy(update={"translate": cfg.translate.model_copy(update={"via_transcript": True})})
            outs = [via_transcript(t, backend, via_cfg, method=via_method, fallbacks=_align(t, d)) for t, d in zip(source, direct)]
            scores.append(_score("via", refs, outs, base, time.perf_counter() - t0))
            continue
        outs = direct if method == "none" else [
            t.with_corrections(correct_translations((s.nbest for s in t.segments), backend, method=method,  # type: ignore[arg-type]
                                                      ger=ger, rescore=rescore, batch_size=cfg.correct.batch_size))
            for t in direct]
        scores.append(_score(method, refs, outs, base, time.perf_counter() - t0 + asr_s))
    return TranslationEval(n=len(items), target=cfg.translate.target, model=cfg.asr.model,
                           llm=getattr(backend, "name", None), methods=tuple(scores))


def _align(source: Transcript, direct: Transcript) -> list[str | None]:
    by_start = {round(s.start, 2): s.text for s in direct.segments}
    return [by_start.get(round(s.start, 2)) for s in source.segments]


def report_rows(report: TranslationEval) -> list[tuple[str, str, str, str, str, str]]:
    """Table rows for `cascade eval --task translate`: method, BLEU, chrF (delta vs the 1-best), s/utt, changed, fallbacks."""
    base = report.methods[0]
    rows = []
    for m in report.methods:
        delta = "" if m is base else f" ({m.bleu - base.bleu:+.2f} / {m.chrf - base.chrf:+.2f})"
        why = ", ".join(f"{k} {v}" for k, v in m.reasons.items())
        rows.append((m.method if m.method != "none" else "1-best", f"{m.bleu:.2f}", f"{m.chrf:.2f}{delta}",
                     f"{m.seconds_per_utt:.2f}", str(m.changed), f"{m.fallbacks} {why}".strip()))
    return rows
