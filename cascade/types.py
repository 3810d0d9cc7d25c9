"""Records shared by every stage and service.

One type per concept: the CLI, the library and the HTTP services pass these
same objects (services use them as request/response bodies). They are frozen
so a result handed to a caller can never change under it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Record(BaseModel):
    """Base of every result record: immutable, unknown fields rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid")


# --------------------------------------------------------------------------- errors


class CascadeError(Exception):
    """Base of the errors cascade raises; services map subclasses to HTTP status codes."""

    status_code = 500
    error_type = "internal_error"

    def __init__(self, message: str, *, param: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param


class InvalidInput(CascadeError):
    """The caller's input is wrong (bad file, malformed record, bad option): HTTP 400."""

    status_code = 400
    error_type = "invalid_request_error"


class AudioDecodeError(InvalidInput):
    """The bytes are not audio any decoder here can read: HTTP 415."""

    status_code = 415


class TooLarge(InvalidInput):
    """Upload or audio duration above a configured cap: HTTP 413."""

    status_code = 413


class ModelNotFound(InvalidInput):
    """Unknown model name, missing model package or a path that holds no model: HTTP 404."""

    status_code = 404
    error_type = "model_not_found"


class Unsupported(CascadeError):
    """A valid request this model/engine cannot serve (e.g. translate on an English-only model)."""

    status_code = 501
    error_type = "unsupported"


class BackendUnavailable(CascadeError):
    """A backend (LLM/TTS service, engine) is down or overloaded: HTTP 503."""

    status_code = 503
    error_type = "backend_unavailable"


class Cancelled(CascadeError):
    """The caller gave up (client disconnected): work stopped early; HTTP 499 (nginx's convention)."""

    status_code = 499
    error_type = "client_closed_request"


# --------------------------------------------------------------------------- provenance


class StageInfo(Record):
    """What ran in one stage: echoed with every result so metrics read provenance, not flags."""

    stage: str
    model: str | None = None
    seconds: float = 0.0
    options: dict[str, Any] = Field(default_factory=dict)
    prompt_name: str | None = None
    prompt_hash: str | None = None
    versions: dict[str, str] = Field(default_factory=dict)


# --------------------------------------------------------------------------- ASR


Task = Literal["transcribe", "translate"]


class Word(Record):
    start: float
    end: float
    word: str
    probability: float


class Hypothesis(Record):
    """One entry of an N-best list."""

    text: str
    am_score: float | None = None
    """Sum of token log-probabilities under the acoustic model (Whisper), if known."""
    avg_logprob: float | None = None
    """am_score divided by the number of tokens (length-normalised)."""
    tokens: tuple[int, ...] | None = None
    second_score: float | None = None
    """Sum of the text's token log-probabilities under a second recogniser, teacher-forced over the same audio
    (cascade.asr.logprobs.second_scores; the reranker's am2 features), if read."""
    second_tokens: int | None = None
    """How many tokens second_score sums (the second recogniser's own tokenisation of the text)."""


class NBest(Record):
    """Ranked hypotheses for one stretch of audio (or one utterance of a text corpus)."""

    hypotheses: tuple[Hypothesis, ...]
    language: str | None = None
    start: float = 0.0
    end: float | None = None
    id: str | None = None

    @property
    def best(self) -> Hypothesis | None:
        return self.hypotheses[0] if self.hypotheses else None

    @property
    def texts(self) -> list[str]:
        return [h.text for h in self.hypotheses]

    @classmethod
    def from_texts(cls, texts: list[str], scores: list[float] | None = None, **kw: Any) -> NBest:
        scores = scores if scores is not None else [None] * len(texts)
        return cls(hypotheses=tuple(Hypothesis(text=t, am_score=s) for t, s in zip(texts, scores)), **kw)


class Utterance(Record):
    """An N-best list with its reference (evaluation/training data, batch input)."""

    id: str
    nbest: NBest
    reference: str | None = None
    source: str | None = None
    """Where it came from (data set, file, generator), for provenance."""
    speaker: str | None = None
    """Who spoke it, when known: a trainer's out-of-fold splits keep one speaker's lists in one fold."""


CorrectionMode = Literal["none", "rescore", "rerank", "ger", "rover", "fusion", "translate"]
"""Every way a transcript can be corrected (cascade.correct has one corrector per mode)."""
CorrectionStatus = Literal["ok", "fallback", "unavailable", "error"]


class CandidateScore(Record):
    """Scores of one candidate (a hypothesis, or the LLM's output) as the corrector saw them."""

    text: str
    am: float | None = None
    lm: float | None = None
    combined: float | None = None
    source: Literal["hypothesis", "llm", "rover"] = "hypothesis"


class Correction(Record):
    """The outcome of rescoring/GER/fusion for one N-best list."""

    text: str
    method: CorrectionMode
    status: CorrectionStatus = "ok"
    chosen: int | None = None
    """Index of the hypothesis returned (None when the LLM's own text was kept)."""
    changed: bool = False
    """True when `text` differs from the 1-best."""
    scores: tuple[CandidateScore, ...] = ()
    fallback_reason: str | None = None
    guards: dict[str, Any] = Field(default_factory=dict)
    """Each guard's decision, e.g. {"edit_distance": 0.12, "max_edit_distance": 0.3}."""
    raw_output: str | None = None
    source: str | None = None
    """Translation via transcript: the (corrected) source-language text the LLM translated."""
    info: StageInfo | None = None


class SystemText(Record):
    """What one recogniser wrote for an utterance (input to multi-system fusion)."""

    system: str
    text: str


class FusionInput(Record):
    """One utterance as several recognisers wrote it, in the order the systems were given.

    A system with no output for the utterance is absent, not an empty string.
    """

    id: str | None = None
    outputs: tuple[SystemText, ...]
    reference: str | None = None


class FusionRequest(Record):
    """Body of the LLM service's POST /v1/fuse: one utterance and how to fuse it."""

    input: FusionInput
    method: Literal["rover", "rescore", "rerank", "ger"] = "rover"
    adapter: str | None = None


SegmentFlag = Literal["looped", "low_logprob"]
HallucinationReason = Literal["phrase", "repetition", "no_speech", "disagreement"]


class Hallucination(Record):
    """Why a segment reads as invented rather than heard (cascade.asr.hallucination)."""

    reasons: tuple[HallucinationReason, ...]
    """phrase: a known invented phrase (cascade/data/hallucinations.txt); repetition: it loops; no_speech: Whisper
    itself thinks there is no speech and is unsure of the words; disagreement: its samples share almost no words."""
    phrase: str | None = None
    """The known invented phrase it contains, normalised."""
    replaced: str | None = None
    """The sampled fallback's invented text, when a clean hypothesis of the same window (its beam result or another
    sample) replaced it: the segment's text is then that hypothesis, and the segment is not flagged."""


class Segment(Record):
    """A stretch of audio with its N-best list and (optionally) its correction."""

    id: int
    start: float
    end: float
    text: str
    """The text shown to users: the corrected text if a correction ran, else the 1-best."""
    nbest: NBest
    correction: Correction | None = None
    avg_logprob: float | None = None
    no_speech_prob: float | None = None
    words: tuple[Word, ...] | None = None
    temperature: float | None = None
    """The decoding temperature whose result was kept (0: beam search; higher: a fallback's sample)."""
    compression_ratio: float | None = None
    """gzip ratio of the window's 1-best text; above the threshold the window repeats itself."""
    flags: tuple[SegmentFlag, ...] = ()
    """What the fallback could not fix: 'looped' (still repetitive at the last temperature),
    'low_logprob' (average log-prob still below the threshold)."""
    hallucination: Hallucination | None = None
    """Set when the segment reads as invented (asr.hallucinations flag or drop)."""

    @property
    def invented(self) -> bool:
        """Flagged as invented and not replaced: what asr.hallucinations=drop leaves out of text and subtitles."""
        return self.hallucination is not None and self.hallucination.replaced is None


class Cue(Record):
    """One subtitle: what is shown from start to end, as the lines it is shown in."""

    start: float
    end: float
    lines: tuple[str, ...]

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


class AsrInfo(Record):
    """What a transcription ran with (returned beside the segment iterator)."""

    language: str | None
    language_probability: float | None = None
    duration: float
    duration_after_vad: float | None = None
    task: Task = "transcribe"
    model: str
    options: dict[str, Any] = Field(default_factory=dict)
    versions: dict[str, str] = Field(default_factory=dict)


class Transcript(Record):
    """A whole file's result."""

    text: str
    segments: tuple[Segment, ...]
    language: str | None
    language_probability: float | None = None
    """Whisper's probability of the detected language (1.0 when given or the model is English-only)."""
    task: Task = "transcribe"
    model: str
    duration: float
    source: str | None = None
    stages: tuple[StageInfo, ...] = ()

    def without_invented(self) -> Transcript:
        """This transcript less its segments flagged as invented (asr.hallucinations=drop, text-like outputs)."""
        kept = tuple(s for s in self.segments if not s.invented)
        if len(kept) == len(self.segments):
            return self
        return self.model_copy(update={"segments": kept, "text": " ".join(s.text for s in kept)})

    def with_corrections(self, corrections: Iterable[Correction]) -> Transcript:
        """This transcript with each segment's Correction kept and its corrected text shown."""
        segments = tuple(s.model_copy(update={"correction": c, "text": c.text or s.text})
                         for s, c in zip(self.segments, corrections, strict=True))
        return self.model_copy(update={"segments": segments, "text": " ".join(s.text for s in segments)})


# --------------------------------------------------------------------------- TTS / turn


class AudioChunk(Record):
    """A piece of mono 16-bit PCM audio (little-endian)."""

    pcm: bytes
    sample_rate: int
    text: str | None = None
    """The text this chunk speaks, when synthesized sentence by sentence."""

    @property
    def duration(self) -> float:
        return len(self.pcm) / 2 / self.sample_rate


class ChatMessage(Record):
    role: Literal["system", "user", "assistant"]
    content: str


class Reply(Record):
    """The assistant's answer in a spoken turn, as the sentences it was spoken in."""

    text: str
    sentences: tuple[str, ...]
    finish_reason: Literal["stop", "length", "empty"] = "stop"
    """"length": the token cap cut the reply (an unfinished last sentence is dropped, not spoken)."""
    first_sentence_s: float | None = None
    """Seconds from the start of generation to the first complete sentence."""
    info: StageInfo | None = None


class SpeechInfo(Record):
    """What the TTS stage produced (the audio itself travels beside this record, see TurnResult.audio)."""

    engine: str
    model: str
    sample_rate: int
    duration: float
    chunks: int
    first_chunk_s: float | None = None
    """Seconds from the start of the TTS stage to its first audio chunk."""
    real_time_factor: float | None = None
    """Synthesis seconds (excluding waits for reply sentences) per second of audio."""
    info: StageInfo | None = None


class BatchRecord(Record):
    """One line of a batch correction's output (the JSONL journal): what every output format is rendered from.

    Written with only the fields that apply (model_dump(exclude_unset=True)), one JSON object a line."""

    id: str
    original: str
    """The input's 1-best (or its raw line when it could not be read)."""
    corrected: str | None
    changed: bool
    method: str
    status: CorrectionStatus
    fallback_reason: str | None
    scores: tuple[CandidateScore, ...] = ()
    error: str | None = None
    chosen: int | None = None
    hypotheses: tuple[str, ...] | None = None
    reference: str | None = None
    systems: dict[str, str] | None = None
    """--join: each recogniser's own text, by name."""
    layout: dict[str, Any] | None = None
    """What the input format needs to be written back (cue timing and lines, blank lines)."""

    @property
    def final_text(self) -> str:
        return self.original or "" if self.corrected is None else self.corrected

    def line(self) -> bytes:
        return (self.model_dump_json(exclude_unset=True) + "\n").encode("utf-8")


class CorrectedTranscript(Record):
    """The correction stage's output: one Correction per ASR segment and the joined text."""

    text: str
    corrections: tuple[Correction, ...]
    method: CorrectionMode
    info: StageInfo | None = None


class TurnResult(Record):
    """One spoken turn: speech in -> transcript -> correction -> reply -> speech out, with timings.

    All times are seconds from the end of the user's utterance (when the turn was handed the audio).
    """

    transcript: Transcript
    correction: CorrectedTranscript
    reply: Reply
    speech: SpeechInfo
    timings: dict[str, float]
    """Wall-clock seconds per stage: asr, correct, reply, tts (overlapping when streamed), total."""
    time_to_first_audio: float | None
    streamed: bool
    audio: AudioChunk | None = Field(default=None, exclude=True, repr=False)
    """The reply's audio (not serialised: services send it as the response body)."""


# --------------------------------------------------------------------------- the live turn (cascade.live)


class LivePartial(Record):
    """The recogniser's text so far, sent each time a window (audio up to a pause) has been decoded."""

    type: Literal["partial"] = "partial"
    text: str
    window: int
    """Index of the window just decoded (0, 1, ...)."""
    audio_s: float
    """Seconds of the user's audio covered by the decoded windows."""
    decode_s: float
    """Wall seconds the window's decode took."""


class LiveFinal(Record):
    """The end of the user's speech: the whole transcript (windows joined) and its correction."""

    type: Literal["final"] = "final"
    text: str
    """The corrected text the reply answers."""
    transcript: Transcript
    correction: CorrectedTranscript
    degraded: dict[str, str] = Field(default_factory=dict)
    """Stage -> reason for a stage that was down (e.g. llm: correction fell back to the 1-best)."""


class LiveReplyDelta(Record):
    """One sentence of the reply, as soon as the LLM has completed it."""

    type: Literal["reply.delta"] = "reply.delta"
    text: str
    index: int


class LiveAudio(Record):
    """A chunk of reply speech: on the wire this header is followed by one binary message of `bytes` PCM16."""

    type: Literal["audio"] = "audio"
    index: int
    sample_rate: int
    bytes: int
    text: str | None = None
    """The sentence (piece) this chunk speaks."""
    chunk: AudioChunk | None = Field(default=None, exclude=True, repr=False)


class LiveDone(Record):
    """The turn is over; times are seconds from the end of speech (the arrival of the last speech frame)."""

    type: Literal["done"] = "done"
    transcript: str
    reply: str
    timings: dict[str, float]
    """endpoint (the end of speech declared), final, first_sentence, first_audio, total; asr_windows, asr_wait
    (waited for decodes after the end), asr_last (the last window's decode), early_reply (1: the 1-best's reply kept)."""
    time_to_first_audio: float | None
    degraded: dict[str, str] = Field(default_factory=dict)
    interrupted: bool = False
    """The user spoke over the reply (barge-in): its audio stopped there; `reply` is what was sent."""


class LiveError(Record):
    """Something the client must know: a bad start message or frame (the server then closes), a stage down."""

    type: Literal["error"] = "error"
    message: str
    code: str = "invalid_request_error"
    param: str | None = None


LiveEvent = LivePartial | LiveFinal | LiveReplyDelta | LiveAudio | LiveDone | LiveError
