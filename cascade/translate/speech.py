"""Speech translation helped by the LLM: N-best fusion (GenTranslate) and a two-stage path.

Direct path: Whisper's translate task yields an N-best list of English translations per
segment. `rescore` picks one with (1-λ)·AM + λ·LM; `ger` lets the LLM fuse the list into one
translation (GenTranslate: the N-best holds information beam search's top-1 drops) with the
prompt `translate/fusion` and the text guards of transcription GER (cascade.ger.correct: first
line, token cap, distance from every candidate); then a gate chosen on dev (translate.fusion_lam,
fusion_margin; `choose_gate`) must prefer the LLM's text over Whisper's own 1-best, which comes
back otherwise (never a rescored alternative), with the reason: fusion pays or keeps Whisper's.

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

from more_itertools import chunked
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
    rescore: RescoreOptions, batch_size: int = 8, adapter: str | None = None, gate: TranslateOptions | None = None,
) -> Iterator[Correction]:
    """Rescore or fuse translation N-best lists (cascade.ger.correct_many; `ger` labelled "fusion").

    Fusion pays or keeps Whisper's translation: GER's text guards apply, then the translation gate (`gate`:
    fusion_lam, fusion_margin, chosen on dev) must prefer the LLM's text over Whisper's own 1-best; anything
    else returns that 1-best (never a rescored alternative), saying why."""
    from cascade.ger import correct_many

    if method != "ger":
        yield from correct_many(nbests, backend, method=method, ger=ger, rescore=rescore, batch_size=batch_size,
                                adapter=adapter)
        return
    gate = gate or TranslateOptions()
    open_ger = ger.model_copy(update={"score_gate": False})  # the translation gate below replaces GER's
    plain = rescore.model_copy(update={"profile": "none", "lam": 0.0})  # GER's base: Whisper's own ranking
    for batch in chunked(nbests, batch_size):
        yield from _gated(batch, backend, open_ger, plain, adapter, gate)


def _gated(batch: list[NBest], backend: LlmBackend | None, ger: GerOptions, rescore: RescoreOptions,
           adapter: str | None, gate: TranslateOptions) -> list[Correction]:
    from cascade.ger import correct_many

    fused = list(correct_many(batch, backend, method="ger", ger=ger, rescore=rescore, batch_size=len(batch), adapter=adapter))
    feats = gate_features(batch, fused, backend, gate.fusion_lam)
    out = []
    for nb, c, f in zip(batch, fused, feats):
        c = c.model_copy(update={"method": "fusion"})
        whisper = nb.texts[0] if nb.hypotheses else c.text
        if c.status == "error" or c.text == whisper:
            out.append(c.model_copy(update={"text": whisper, "chosen": 0 if nb.hypotheses else None, "changed": False}))
            continue
        reason = c.fallback_reason
        if c.status == "ok":
            gain = gate_gain(f, gate.fusion_lam)
            c = c.model_copy(update={"guards": {**c.guards, "gate_gain": None if gain is None else round(gain, 4),
                                                "gate_margin": gate.fusion_margin, "gate_lam": gate.fusion_lam}})
            if gate.fusion_margin is not None and gain is not None and gain > gate.fusion_margin:
                out.append(c)
                continue
            reason = "gate_closed" if gate.fusion_margin is None else "below_gate"
        out.append(c.model_copy(update={"text": whisper, "chosen": 0, "changed": False, "status": "fallback",
                                        "fallback_reason": reason or "kept_whisper"}))
    return out


def gate_features(batch: Sequence[NBest], fused: Sequence[Correction], backend: LlmBackend | None,
                  lam: float) -> list[tuple[float, float, float | None, float | None] | None]:
    """(AM of the LLM's text, AM of Whisper's 1-best, their LLM log-probs per token when lam > 0) per list;
    None where the LLM's text did not pass GER's text guards. AM of the LLM's text is GER's estimate (the nearest
    hypothesis' AM less a penalty per differing word)."""
    from cascade.ger.rescore import score_texts

    rows: list[tuple[float, float, float | None, float | None] | None] = []
    texts = []
    for nb, c in zip(batch, fused):
        llm = c.scores[-1] if c.status == "ok" and c.scores and c.scores[-1].source == "llm" else None
        first = c.scores[0] if c.scores else None
        if llm is None or first is None or llm.am is None or first.am is None:
            rows.append(None)
            continue
        rows.append((llm.am, first.am, None, None))
        texts += [llm.text, nb.texts[0]]
    if lam > 0 and texts and backend is not None:
        lm = score_texts(texts, backend)
        for k, (row, c, nb) in enumerate(zip(rows, fused, batch)):
            if row is not None:
                a, b = lm.get(c.scores[-1].text), lm.get(nb.texts[0])
                rows[k] = (row[0], row[1], a.logprob / max(a.n_tokens, 1) if a else None,
                           b.logprob / max(b.n_tokens, 1) if b else None)
    return rows


def gate_gain(row: tuple[float, float, float | None, float | None] | None, lam: float) -> float | None:
    """Gate score of the LLM's text minus Whisper's 1-best's: (1-λ)·ΔAM + λ·ΔLM (None: no LLM text to gate)."""
    if row is None:
        return None
    am_out, am_first, lm_out, lm_first = row
    if lam > 0 and (lm_out is None or lm_first is None):
        return None
    return (1 - lam) * (am_out - am_first) + (lam * (lm_out - lm_first) if lam > 0 else 0.0)  # type: ignore[operator]


def gate_rows(outs: Sequence[Transcript], backend: LlmBackend | None) -> tuple[list, list, list]:
    """From fused transcripts (gate closed or not): per utterance, per segment, the gate features (with LM terms),
    Whisper's 1-best and the LLM's guarded text (the 1-best where GER's text guards rejected it), for choose_gate."""
    from cascade.ger.rescore import score_texts

    rows, base, fused, texts = [], [], [], []
    for t in outs:
        r_u, b_u, f_u = [], [], []
        for seg in t.segments:
            c, first = seg.correction, seg.nbest.texts[0] if seg.nbest.hypotheses else seg.text
            llm = c.scores[-1] if c is not None and c.scores and c.scores[-1].source == "llm" else None
            ok = llm is not None and llm.am is not None and c.scores[0].am is not None  # type: ignore[union-attr]
            r_u.append((llm.am, c.scores[0].am, llm.text, first) if ok else None)  # type: ignore[union-attr]
            b_u.append(first)
            f_u.append(llm.text if ok else first)  # type: ignore[union-attr]
            texts += [llm.text, first] if ok else []  # type: ignore[union-attr]
        rows.append(r_u), base.append(b_u), fused.append(f_u)
    lm = score_texts(texts, backend) if texts and backend is not None else {}

    def per_token(text: str) -> float | None:
        sc = lm.get(text)
        return sc.logprob / max(sc.n_tokens, 1) if sc else None

    rows = [[None if r is None else (r[0], r[1], per_token(r[2]), per_token(r[3])) for r in r_u] for r_u in rows]
    return rows, base, fused


def apply_gate(rows: Sequence[Sequence[Any]], base: Sequence[Sequence[str]], fused: Sequence[Sequence[str]],
               lam: float, margin: float | None) -> list[str]:
    """Each utterance's translation under the gate (λ, margin): the LLM's text per segment where it passes."""
    out = []
    for r_u, b_u, f_u in zip(rows, base, fused):
        segs = [f if margin is not None and (g := gate_gain(r, lam)) is not None and g > margin else b
                for r, b, f in zip(r_u, b_u, f_u)]
        out.append(" ".join(x for x in segs if x))
    return out


def choose_gate(rows: Sequence[Sequence[tuple[float, float, float | None, float | None] | None]],
                base: Sequence[Sequence[str]], fused: Sequence[Sequence[str]], refs: Sequence[str],
                lams: Sequence[float] = (0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0),
                margins: Sequence[float] = (0.0, 0.1, 0.25, 0.5, 1.0, 2.0)) -> dict[str, Any]:
    """The gate (λ, margin) with the highest corpus BLEU on these (dev) utterances, never below Whisper's own;
    ties keep the gate that changes fewer utterances (no gate at all: margin None). `rows`/`base`/`fused` are per
    utterance, per segment: gate features, Whisper's 1-best and the LLM's text."""
    def texts(lam: float, margin: float | None) -> list[str]:
        return apply_gate(rows, base, fused, lam, margin)

    keep = texts(0.0, None)
    base_bleu = metrics.bleu(list(refs), keep)
    best: dict[str, Any] = {"lam": 0.0, "margin": None, "bleu": base_bleu, "changed": 0}
    for lam in lams:
        for margin in margins:
            got = texts(lam, margin)
            bleu, changed = metrics.bleu(list(refs), got), sum(a != b for a, b in zip(got, keep))
            if bleu > best["bleu"] + 1e-6 or (abs(bleu - best["bleu"]) <= 1e-6 and changed < best["changed"]):
                best = {"lam": lam, "margin": margin, "bleu": bleu, "changed": changed}
    return {**best, "bleu": round(best["bleu"], 2), "whisper_bleu": round(base_bleu, 2)}


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
                                       rescore=rescore, batch_size=cfg.correct.batch_size, adapter=cfg.correct.adapter,
                                       gate=cfg.translate)
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
    transcripts: tuple[Transcript, ...] = Field((), exclude=True)
    """The method's transcripts with their corrections (to choose the fusion gate on dev); not serialised."""


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
                       fallbacks=len(rejected), reasons=reasons, outputs=tuple(texts), transcripts=tuple(outs))


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
                                                      ger=ger, rescore=rescore, batch_size=cfg.correct.batch_size,
                                                      gate=cfg.translate))
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
