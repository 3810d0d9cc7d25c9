"""Wire types of the ASR service: OpenAI's audio fields in, OpenAI's shapes (or cascade records) out.

Requests convert themselves to engine options (`to_asr_options`), the way vLLM's
TranscriptionRequest converts itself to sampling params.
"""

from __future__ import annotations

import json
import logging
import zlib
from collections.abc import AsyncIterator
from typing import Literal

from fastapi.responses import JSONResponse, PlainTextResponse, Response
from openai.types.audio import (
    TranscriptionSegment, TranscriptionTextDeltaEvent, TranscriptionTextDoneEvent, TranscriptionVerbose,
    TranscriptionWord,
)
from pydantic import BaseModel, ConfigDict, Field, model_validator

from cascade.config import AsrOptions, ModelAliases, Settings, SubtitleOptions
from cascade.types import Correction, CorrectionMode, Hallucination, Hypothesis, InvalidInput, Segment, Task, Transcript

logger = logging.getLogger(__name__)

ResponseFormat = Literal["json", "text", "srt", "vtt", "verbose_json"]
DEFAULT_MODEL_NAMES = ModelAliases().transcription
"""Model names that mean "the service's configured model" (what stock OpenAI clients send: pipecat's
OpenAISTTService defaults to gpt-transcribe, Open WebUI to whisper-1); service.model_aliases.transcription."""


def aliased_model(requested: str, base: AsrOptions, task: Task, aliases: ModelAliases | None = None) -> str | None:
    """The model an alias stands for (None: `requested` is not an alias): the configured recogniser, or for a
    translation on an English-only one the default multilingual model (OpenAI translates with whisper-1)."""
    from cascade import models

    aliases = aliases or ModelAliases()
    if requested not in aliases.transcription:
        return None
    spec = models.REGISTRY.get(base.model)
    if task == "translate" and spec is not None and not spec.multilingual:
        return aliases.translation
    return base.model


class TranscriptionForm(BaseModel):
    """Form fields of /v1/audio/transcriptions and /v1/audio/translations (the file comes separately)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    model: str = "whisper-1"
    """A bundled Whisper name (tiny.en, base), a CTranslate2 directory, or whisper-1 for the configured model."""
    language: str | None = None
    """ISO-639-1 code of the input audio; None detects it."""
    prompt: str | None = None
    """Text that conditions the decoder (Whisper's initial prompt)."""
    response_format: ResponseFormat = "json"
    temperature: float = Field(0.0, ge=0.0, le=1.0)
    timestamp_granularities: list[Literal["word", "segment"]] = Field(
        default_factory=lambda: ["segment"], alias="timestamp_granularities[]")
    stream: bool = False
    """True answers server-sent events: `transcript.text.delta` per decoded window, then `transcript.text.done`."""
    n_best: int | None = Field(None, ge=1, le=32)
    """Extension (extra_body): hypotheses kept per segment; returned in verbose_json and `transcript`."""
    correct: CorrectionMode = "none"
    """Extension (extra_body): LLM rescoring or generative error correction of each segment's N-best."""
    seed: int | None = Field(None, ge=0, lt=2**32 - 1)
    """Extension (extra_body): seed of the temperature fallback's sampling; None: the service's asr.seed."""
    hallucinations: Literal["flag", "drop", "keep"] | None = None
    """Extension (extra_body): invented segments flagged (verbose_json), dropped from text/srt/vtt, or kept unchecked;
    None: the service's asr.hallucinations."""
    include: list[Literal["logprobs"]] = Field(default_factory=list, alias="include[]")
    """OpenAI's include[]=logprobs: each token of the text with its log-prob under Whisper's decoder (json only, as
    OpenAI; cascade.asr.logprobs reads the 1-best again over each segment's audio)."""

    @model_validator(mode="after")
    def _check(self) -> TranscriptionForm:
        if self.stream and self.response_format not in ("json", "text"):
            raise ValueError("stream: streamed transcriptions are events; use response_format json or text")
        if "logprobs" in self.include and (self.response_format != "json" or self.stream or self.correct != "none"):
            raise ValueError("include[]: logprobs come with response_format=json only, not streamed, and without "
                             "correct (they are the recogniser's, of its own 1-best)")
        if "word" in self.timestamp_granularities and self.response_format != "verbose_json":
            raise ValueError("timestamp_granularities[]: word timestamps need response_format=verbose_json")
        for name in sorted(set(self.model_extra or {}) - {"file"}):
            logger.warning("ignoring unknown field %r", name)
        return self

    @property
    def extended(self) -> bool:
        """True when the caller asked for a cascade extension (so the reply carries the full record)."""
        return self.n_best is not None or self.correct != "none"

    def to_asr_options(self, base: AsrOptions, task: Task, aliases: ModelAliases | None = None) -> AsrOptions:
        """The engine options: the service's configured ones with this request's fields laid on top."""
        update: dict = {"task": task, "temperature": self.temperature,
                        "word_timestamps": "word" in self.timestamp_granularities}
        update["model"] = aliased_model(self.model, base, task, aliases) or self.model
        if self.language:
            update["language"] = self.language
        if self.prompt:
            update["initial_prompt"] = self.prompt
        if self.seed is not None:
            update["seed"] = self.seed
        if self.hallucinations is not None:
            update["hallucinations"] = self.hallucinations
        if self.n_best is not None:
            update["n_best"] = self.n_best
            update["nbest_beam_size"] = max(base.nbest_beam_size, self.n_best)
        return validated_options({**base.model_dump(), **update})


def validated_options(data: dict) -> AsrOptions:
    """AsrOptions with its validators run; a bad combination is the caller's 400, naming the field."""
    from pydantic import ValidationError

    try:
        return AsrOptions.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or None
        raise InvalidInput(f"{where or 'options'}: {err['msg']}", param=where) from exc


def parse_options(raw: str | None, base: AsrOptions) -> AsrOptions:
    """/v1/nbest's `options` form field: AsrOptions as JSON, laid over the service's own.

    The service keeps its runtime fields (device, compute type, threads): a remote caller
    chooses what to decode, not how this machine runs it.
    """
    if not raw:
        return base
    try:
        given = json.loads(raw)
    except ValueError as exc:
        raise InvalidInput(f"options: not valid JSON ({exc})", param="options") from exc
    if not isinstance(given, dict):
        raise InvalidInput("options: expected a JSON object of AsrOptions fields", param="options")
    runtime = {k: getattr(base, k) for k in ("device", "compute_type", "cpu_threads")}
    return validated_options({**base.model_dump(), **given, **runtime})


class VerboseSegment(TranscriptionSegment):
    """OpenAI's segment plus cascade's N-best and correction (extra keys stock clients ignore)."""

    nbest: list[Hypothesis] | None = None
    correction: Correction | None = None
    hallucination: Hallucination | None = None


def _compression_ratio(text: str) -> float:
    data = text.encode("utf-8")
    return round(len(data) / max(1, len(zlib.compress(data))), 3) if data else 0.0


def to_verbose(t: Transcript, temperature: float, words: bool) -> TranscriptionVerbose:
    segments = [
        VerboseSegment(
            id=s.id, seek=int(s.start * 100), start=s.start, end=s.end, text=s.text,
            tokens=list(s.nbest.best.tokens or ()) if s.nbest.best else [],
            temperature=temperature if s.temperature is None else s.temperature,  # the fallback's, when it ran
            avg_logprob=s.avg_logprob or 0.0,
            compression_ratio=_compression_ratio(s.text) if s.compression_ratio is None else s.compression_ratio,
            no_speech_prob=s.no_speech_prob or 0.0, nbest=list(s.nbest.hypotheses), correction=s.correction,
            hallucination=s.hallucination)
        for s in t.segments
    ]
    word_list = [TranscriptionWord(word=w.word, start=w.start, end=w.end) for s in t.segments for w in s.words or ()]
    return TranscriptionVerbose(task=t.task, language=t.language or "", duration=t.duration, text=t.text,
                                segments=segments, words=word_list if words else None)


def delta_event(segment: Segment, first: bool, extended: bool) -> TranscriptionTextDeltaEvent:
    """One decoded window as OpenAI's delta (deltas concatenate to the done text); extension fields:
    `segment` (id, start, end) always, `nbest` and `correction` when the caller asked for them."""
    body: dict = {"type": "transcript.text.delta", "delta": segment.text if first else " " + segment.text,
                  "segment": {"id": segment.id, "start": segment.start, "end": segment.end}}
    if extended:
        body["nbest"] = [h.model_dump(mode="json") for h in segment.nbest.hypotheses]
        body["correction"] = segment.correction.model_dump(mode="json") if segment.correction else None
    return TranscriptionTextDeltaEvent.model_validate(body)


def done_event(t: Transcript, extended: bool) -> TranscriptionTextDoneEvent:
    """The whole text; with extensions, the Transcript record itself under `transcript`."""
    body: dict = {"type": "transcript.text.done", "text": t.text}
    if extended:
        body["transcript"] = t.model_dump(mode="json")
    return TranscriptionTextDoneEvent.model_validate(body)


async def transcription_events(items: AsyncIterator[Segment | Transcript], extended: bool) -> AsyncIterator[BaseModel]:
    """AsrServing.stream's segments and transcript as OpenAI's events; the done text is the deltas joined."""
    text = ""
    async for item in items:
        if isinstance(item, Segment):
            if not item.text.strip():
                continue
            event = delta_event(item, not text, extended)
            text += event.delta
            yield event
        else:
            yield done_event(item.model_copy(update={"text": text}), extended)


class NBestEvent(BaseModel):
    """One event of /v1/nbest with stream=true: a decoded window's Segment, or (last) the whole Transcript."""

    type: Literal["segment", "transcript"]
    segment: Segment | None = None
    transcript: Transcript | None = None


async def nbest_events(items: AsyncIterator[Segment | Transcript]) -> AsyncIterator[NBestEvent]:
    async for item in items:
        if isinstance(item, Segment):
            yield NBestEvent(type="segment", segment=item)
        else:
            yield NBestEvent(type="transcript", transcript=item)


def render_transcript(t: Transcript, form: TranscriptionForm, subtitles: SubtitleOptions | None = None, *,
                      drop_invented: bool = False, logprobs: list[tuple[str, float]] | None = None) -> Response:
    """The response in the requested format; extensions add the whole Transcript record to json; srt/vtt cues are
    cut with `subtitles` (the service's configured settings.subtitles). `drop_invented` (hallucinations=drop) leaves
    segments flagged as invented out of text/srt/vtt; json and verbose_json keep them, with their flag."""
    from cascade.formats import transcript as formats

    fmt = form.response_format
    if drop_invented and fmt in ("text", "srt", "vtt"):
        t = t.without_invented()
    if fmt == "text":
        return PlainTextResponse(t.text + "\n")
    if fmt in ("srt", "vtt"):
        return PlainTextResponse(formats.render(t, fmt, subtitles), media_type="text/plain")
    if fmt == "verbose_json":
        body = to_verbose(t, form.temperature, "word" in form.timestamp_granularities)
        return JSONResponse(body.model_dump(mode="json", exclude_none=True, serialize_as_any=True))
    body: dict = {"text": t.text, "usage": {"type": "duration", "seconds": t.duration}}
    if logprobs is not None:  # OpenAI's Transcription.logprobs
        body["logprobs"] = [{"token": tok, "logprob": round(lp, 6), "bytes": list(tok.encode("utf-8"))}
                            for tok, lp in logprobs]
    if form.extended:
        body["transcript"] = t.model_dump(mode="json")
    return JSONResponse(body)


def decoded_for(form: TranscriptionForm, settings: Settings, options: AsrOptions) -> AsrOptions:
    """The options decoding the 1-best alone when nothing reads the alternatives: neither the reply (N-best asked
    for in json/verbose_json or its stream) nor the correction (cascade.correct.reads_alternatives)."""
    from cascade.asr import best_only
    from cascade.correct import reads_alternatives

    shown = form.n_best is not None and form.response_format in ("json", "verbose_json")
    return options if shown or reads_alternatives(settings, form.correct) else best_only(options)
