"""Typed settings: one options object per stage, loaded at the edges.

Precedence (highest first): explicit overrides (CLI flags) > CASCADE_* env
variables (nested with "__", e.g. CASCADE_ASR__BEAM_SIZE=3) > the YAML file
(configs/default.yaml, or CASCADE_CONFIG) > the defaults below. Library code
receives these objects; it never reads the environment itself.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from cascade.types import CorrectionMode, InvalidInput

_USERINFO = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^/\s@]+@", re.I)
_SECRET_QUERY = re.compile(r"(?P<key>[?&;](?:[\w.-]*(?:token|key|secret|password|passwd|pwd|signature|sig|auth)"
                           r"[\w.-]*)=)[^&#\s\"']+", re.I)
_BEARER = re.compile(r"(?P<key>\bbearer\s+)[\w.~+/=-]+", re.I)


def redact(text: str) -> str:
    """`text` with URL credentials (user:pass@), secret query values (?token=...) and bearer tokens masked.

    Settings hold such URLs (service.*_url, llm.base_url); this runs wherever one or an upstream's
    message is echoed: /readyz, metric labels, fallback reasons, StageInfo, logs.
    """
    text = _USERINFO.sub(r"\g<scheme>***@", text)
    text = _SECRET_QUERY.sub(r"\g<key>***", text)
    return _BEARER.sub(r"\g<key>***", text)


PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = Path(__file__).resolve().parent / "_configs" / "default.yaml"
"""configs/default.yaml of the checkout (cascade/_configs links to it), shipped inside the wheel."""


class Options(BaseModel):
    """Base of the per-stage options: frozen, unknown keys rejected; vary with model_copy(update=...)."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class AsrOptions(Options):
    model: str = "tiny.en"
    """Bundled model name (see `cascade models list`) or a path to a CTranslate2 Whisper directory."""
    task: Literal["transcribe", "translate"] = "transcribe"
    language: str | None = None
    """ISO code; None detects it from the first 30 s."""
    detect_language_per_segment: bool = False
    """With language None on a multilingual model: detect it again in every window (mixed-language audio)."""
    n_best: int = Field(5, ge=1, le=32)
    beam_size: int = Field(5, ge=1, le=32)
    temperature: float = Field(0.0, ge=0.0, le=1.0)
    """First decoding temperature; a window that fails the thresholds below is decoded again hotter."""
    temperature_increment: float | None = Field(0.2, gt=0.0, le=1.0)
    """Fallback step up to 1.0 (faster-whisper's 0.0, 0.2, ..., 1.0); None: one decode, no fallback."""
    compression_ratio_threshold: float | None = 2.4
    """Above it (gzip ratio of the text) a window is repetitive: fall back; still above at 1.0: flagged 'looped'."""
    log_prob_threshold: float | None = -1.0
    no_speech_threshold: float | None = 0.6
    best_of: int = Field(5, ge=1, le=32)
    """Samples per sampled (temperature > 0) decode; they are that window's N-best."""
    nbest_beam_size: int = Field(10, ge=1, le=32)
    """Beam of the decode that fills the N-best (chosen on dev); the 1-best is beam_size's, as faster-whisper's."""
    nbest_search: Literal["segments", "window"] = "segments"
    """Where the alternatives come from. segments: a beam started at each segment's own start timestamp (the text
    before it as the previous-text prompt, timestamps suppressed after the start), the window's segments in one
    batched call (decode.segment_starts); window: one wide decode of the window plus prefix-forced decodes per
    segment (nbest_per_segment; O(window²) decoding steps). librispeech-test-other dev, tiny.en: the 20 clips as one
    file o_nb 4.26 vs 5.59, distinct 3.11 vs 2.39 per segment, CPU 2.3x vs 5.0x the 1-best's; clip by clip o_nb
    5.59 vs 5.32 (one word); 100 speechocean762 dev clips the same lists (one segment each)."""
    nbest_per_segment: bool = True
    """search window: one wide decode per window serves its segments; True: a later segment it leaves short of n_best
    gets its own, forced through the 1-best's text before it (librispeech-test-other dev, tiny.en,
    beam 10: 4.13 vs 3.55 distinct per segment, o_nb 5.59 vs 5.85, CPU 1.50x vs 1.43x faster-whisper's;
    a decode for every segment: 4.16, 5.59, 1.70x)."""
    nbest_redecode_below: int = Field(32, ge=1, le=32)
    """With nbest_per_segment: a segment gets its own decode only when the window's left it fewer hypotheses than
    this (or n_best; the shipped config: 2, the 1-best alone). The forced prefix costs as many decoding steps as it has tokens, so on long audio
    these decodes dominate; librispeech-test-other dev, 20 clips as one file: CPU 70.3 -> 49.2 s, o_nb 6.12 -> 5.59,
    distinct 2.42 -> 2.39 per segment (clip by clip: o_nb 5.32 both, distinct 3.87 -> 3.71) against n_best (5)."""
    length_penalty: float = 1.0
    patience: float = 1.0
    max_new_tokens: int | None = Field(None, ge=1, le=448)
    initial_prompt: str | None = None
    condition_on_previous_text: bool = True
    vad_filter: bool = False
    vad_min_silence_ms: int = Field(500, ge=0)
    chunk_length: int = Field(30, ge=1, le=30)
    """Maximum segment length in seconds (Whisper's window)."""
    batched: bool = False
    """Decode Silero-VAD chunks `batch_size` at a time (faster-whisper's BatchedInferencePipeline, with timestamps
    and the temperature fallback done as the sequential loop does them, `batch_timestamps`; no conditioning on the
    previous chunk); N-best per chunk."""
    batch_size: int = Field(8, ge=1, le=64)
    """Chunks per batched CTranslate2 call (batched mode)."""
    batch_chunk_s: int = Field(30, ge=1, le=30)
    """Batched mode: Silero VAD merges speech into chunks of at most this many seconds (the pipeline's own: 30). Dev,
    1-best WER as one file, sequential / batched 30 / 25 / 20 / 18 / 15 s: librispeech-test-other 7.71 / 6.91 / 6.65 /
    7.18 / 7.98 / 8.51, speechocean762 (100 clips) 50.85 / 51.58 / 50.61 / 49.64 / 47.69 / 50.12: no trend beyond
    noise, and shorter chunks cost more encoder passes (20 s: 1.30x faster-whisper's batched CPU on the long file)."""
    batch_timestamps: bool = True
    """Batched mode: decode chunks with Whisper's timestamp tokens (segments within a chunk; the speech after the
    decode's last opened segment is decoded in one more batched call; a chunk failing the fallback thresholds is
    decoded again hotter, as sequential). False: the pipeline's own no-timestamp decode, one segment per chunk, which
    skips whole sentences in long chunks. Dev 1-best WER as one file, sequential / these / the pipeline's:
    speechocean762 (400 clips) 30.18 / 31.03 / 36.16, librispeech-test-other 7.98 / 8.51 / 8.78."""
    batch_context: bool = False
    """Batched mode: condition each chunk on the text before it, as the sequential loop does. The chunks are split
    into `batch_sections` runs of neighbours decoded in lockstep: a batch holds chunk k of every run, each with its
    run's text so far as the previous-text prompt (only each run's first chunk has none). Output is buffered until
    the last batch. Off: on dev it helps only with few runs (near-sequential batches) and costs CPU. 1-best WER as
    one file, batched / with context (runs) / sequential: librispeech-test-other (20 clips, 5 chunks) 8.51 / 7.71 (1),
    9.04 (2), 8.24 (3) / 7.98; speechocean762 (400 clips, ~50 chunks) 30.85 / 32.28 (8), 31.47 (2) / 30.09, there
    at about 1.8x the CPU (prompts copied into the output, loops, fallbacks)."""
    batch_sections: int = Field(0, ge=0, le=64)
    """batch_context: runs of neighbouring chunks (fewer runs: more context, smaller batches). 0: as many runs as
    keep at least 4 chunks each, at most batch_size (a file of under 8 chunks is one run, a chunk per call)."""
    pack_clips: int = Field(8, ge=1, le=64)
    """Batched mode, many short files, 1-best: up to this many clips share one Whisper window of at most `pack_s`
    seconds, `pack_gap_s` of silence between them (cascade.asr.packed); a clip whose text cannot be given to it
    alone is decoded again on its own. 1: a window per clip. The N-best keeps a window per clip."""
    pack_s: float = Field(30.0, gt=0, le=30)
    pack_gap_s: float = Field(2.0, ge=0, le=10)
    pack_clip_s: float = Field(15.0, gt=0, le=30)
    """Clips longer than this are not packed."""
    word_timestamps: bool = False
    without_timestamps: bool = False
    """False: segments are cut at Whisper's timestamp tokens, as faster-whisper's transcribe() does."""
    encoder_min_s: float | None = Field(None, ge=1.0, le=30.0)
    """None: every window is encoded as Whisper's 30 s (faster-whisper). A number: a window holding less audio
    is encoded at its own length plus 1 s, at least this long (whisper.cpp's audio_ctx; the encoder's time falls
    with it, the decoder attends to fewer frames). Only with without_timestamps (timestamp tokens read the 30 s
    grid); the spoken turn uses it (chat.encoder_min_s)."""
    max_duration_s: float = Field(3 * 3600.0, gt=0)
    """Longer audio is refused (TooLarge) rather than queued for hours."""
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    compute_type: str = "int8"
    cpu_threads: int = Field(0, ge=0)
    """0 lets CTranslate2 pick."""
    seed: int | None = Field(0, ge=0, lt=2**32 - 1)
    """Seed of the temperature fallback's sampling, derived per window (cascade.asr.seeded): the same audio and
    options give the same transcript on every run, alone or beside other requests; None: unseeded (faster-whisper)."""
    hallucinations: Literal["flag", "drop", "keep"] = "flag"
    """Segments that read as invented (known phrases, loops, no speech, samples that disagree; cascade.asr.hallucination):
    flag marks them in json/verbose_json; drop also leaves them out of txt/srt/vtt/tsv; keep does not check."""

    @model_validator(mode="after")
    def _check(self) -> AsrOptions:
        if self.n_best > max(self.beam_size, self.nbest_beam_size):
            raise ValueError(f"n_best ({self.n_best}) must not exceed nbest_beam_size ({self.nbest_beam_size})")
        if self.encoder_min_s is not None and self.reads_time_grid:
            raise ValueError("encoder_min_s needs without_timestamps and no word_timestamps (both read Whisper's 30 s grid)")
        return self

    @property
    def reads_time_grid(self) -> bool:
        """Whether the decode reads times on Whisper's 30 s grid (timestamp tokens or word timestamps): the
        encoder must then read the whole window (encoder_min_s is refused)."""
        return not self.without_timestamps or self.word_timestamps


class SubtitleOptions(Options):
    """How SRT/VTT cues are cut from word timestamps (conventions of whisperX and broadcast subtitling:
    at most two lines of 42 characters, shown for at most 7 s)."""

    max_line_width: int = Field(42, ge=8, le=200)
    """Characters per line; a single longer word gets a line of its own."""
    max_line_count: int = Field(2, ge=1, le=10)
    max_duration_s: float = Field(7.0, gt=0.5, le=60.0)
    """Longest time one cue stays on screen."""
    pause_s: float = Field(1.0, gt=0.0)
    """A silence at least this long between two words always starts a new cue."""
    min_duration_s: float = Field(0.8, ge=0.0)
    """A shorter cue is held longer, up to the next cue's start, so it can be read."""


class CorrectOptions(Options):
    """How a transcript is corrected, the same for every entry point (CLI, pipeline, services, batch)."""

    mode: CorrectionMode = "rerank"
    """none, rescore, rerank, ger, rover, fusion (several systems' outputs) or translate (translation lists)."""
    adapter: str | None = None
    """The GER LoRA adapter: a peft directory (local backends) or the name a vLLM-style server serves it under."""
    batch_size: int = Field(8, ge=1, le=4096)
    """N-best lists per corrector call (one LLM batch); batch correction also resumes at this granularity."""


class LlmOptions(Options):
    backend: Literal["transformers", "ct2", "openai"] = "transformers"
    """transformers for code that builds LlmOptions itself (tests, training); the shipped configs/default.yaml
    sets ct2, the faster CPU backend with the same scores in float32."""
    model: str = "smollm2"
    """Bundled LLM name, a local HF model directory, or (openai backend) the served model name."""
    base_url: str | None = None
    """OpenAI-compatible server root, e.g. http://127.0.0.1:8001/v1 (openai backend)."""
    api_key: SecretStr | None = None
    timeout_s: float = Field(60.0, gt=0)
    max_retries: int = Field(2, ge=0)
    batch_size: int = Field(8, ge=1)
    threads: int = Field(0, ge=0)
    """Intra-op threads on CPU (torch, CTranslate2); 0 keeps the library's default."""
    compute_type: Literal["int8", "float32"] = "float32"
    """ct2 backend: float32 (the transformers backend's numbers exactly, so everything tuned on them holds; with
    GER drafts 0.27x its GER time) or int8 (faster decoding; log-probs move ~0.1 nat/token: re-tune margins,
    λ and the reranker on dev first); each is converted once into CASCADE_HOME."""
    reply_compute_type: Literal["int8", "float32"] | None = None
    """ct2 backend: the compute type of streamed replies (cascade.respond, the spoken turn); None: compute_type.
    No margin or weight was tuned on a reply's log-probs, so int8 (1.3-2x float32's tokens/s) changes nothing tuned;
    but a streamed chat completion then differs from the whole one (generate stays in compute_type)."""
    ct2_keep_adapters: int = Field(4, ge=1)
    """ct2 backend: merged-adapter conversions kept in CASCADE_HOME/models/ct2 (the most recently used; a
    float32 one is 514 MB); older ones are deleted after a new conversion. Base models' are always kept."""


class RescoreOptions(Options):
    lam: float = Field(0.0, ge=0.0, le=1.0)
    """λ in (1-λ)·AM + λ·LM; 0 keeps the recogniser's own ranking. Tuned on dev with `cascade tune`."""
    length_norm: Literal["none", "tokens", "words"] = "tokens"
    use_am: bool = True
    rank_prior: float = Field(0.1, ge=0.0)
    """When a list has no AM scores, AM_i = -rank_prior·i (rank i from 0): the recogniser's order as a prior."""
    profile: str = "auto"
    """Which λ/length normalisation applies: "auto" picks `profiles[<style>]` by the style detected in each list's
    text ("plain": lower case without punctuation, HyPoradise/Kaldi style; "cased": our own Whisper output);
    "none" uses lam/length_norm above as given (what an explicit --lam does); another name picks that profile."""
    profiles: dict[str, RescoreProfile] = Field(default_factory=dict)
    """Named profiles (configs/default.yaml; `cascade tune` writes them to a user config)."""


class RescoreProfile(Options):
    """λ and length normalisation chosen on dev for one input style (see RescoreOptions.profile)."""

    lam: float = Field(0.0, ge=0.0, le=1.0)
    length_norm: Literal["none", "tokens", "words"] = "tokens"
    note: str | None = None
    """Where the values came from (dev data, figures)."""


class RerankOptions(Options):
    """The trained N-best reranker (cascade.ger.rerank): `--correct rerank`, and GER's starting point."""

    model: str = "smollm2-mwer"
    """A shipped reranker (cascade/rerankers/<name>) or a directory holding model.json (`cascade train-rerank`)."""
    margin: float | None = None
    """Keep the 1-best unless the reranker's choice beats it by this much; None: the model's own dev-chosen margin."""
    ger_base: bool = True
    """GER starts from the reranked best (its guards compare against it) instead of the rescored best."""
    second_model: str | None = "base"
    """The second recogniser (a bundled name or a CTranslate2 Whisper directory) that reads every hypothesis of a
    transcript, teacher-forced over its audio, when the reranker's weights use its score (the am2 features,
    cascade.asr.logprobs.second_scores; the shipped cased weights do: speechocean762 dev out of fold, children 33.44 ->
    30.77 and adults 34.78 -> 33.80 % WER against the same reranker without it, at about 1.3-1.7x the tiny.en decode's
    time); None: never read (those features are then 0: cheaper). Lists without audio (HyPoradise files) never have it."""


RescoreOptions.model_rebuild()


class GerOptions(Options):
    prompt: str = "ger/hyporadise"
    """Prompt template name under prompts/ (without .jinja)."""
    max_new_tokens_factor: float = Field(1.5, gt=0)
    """Token cap relative to the longest hypothesis."""
    max_edit_distance: float = Field(0.3, ge=0.0)
    """Reject outputs whose word edit distance to every hypothesis exceeds this fraction."""
    score_gate: bool = True
    """Reject outputs whose combined AM+LM score falls below the rescored best's."""
    score_margin: float = 0.0
    constrained: bool = False
    """Snap the output to the nearest hypothesis."""
    output_am_penalty: float = Field(0.5, ge=0.0)
    """AM of an LLM output = the nearest hypothesis' AM minus this per differing word (score gate)."""
    min_new_tokens: int = Field(16, ge=1)
    """Floor of the token cap (short hypotheses still get room for a fix)."""
    max_changed_words: int | None = 1
    """With an adapter: reject outputs more than this many word edits away from the rescored best
    (None: no limit). Chosen on dev together with posterior_margin."""
    posterior_margin: float | None = 8.0
    """With an adapter, the trained GER model judges its own change: an output that differs from the
    rescored best is kept only when its log-probability as the answer (prompt-conditioned, under the
    adapter, in nats) beats the best's by this margin. It replaces the AM+LM score gate there, which at
    λ = 0 can never prefer a change. None: the score gate also with an adapter. The default is what
    benchmarks/ger_accuracy.py chose on dev for the shipped adapter (the most cautious setting tried:
    no margin made the dev split better without making a dev set worse)."""
    adapter_gate: bool = True
    """An adapter that ships its own gate (gate.json beside its weights, chosen on held-out dev speakers, e.g.
    ger-own) is judged by that posterior margin and max changed words instead of the two above. False: the two
    above for every adapter."""
    adapter_picks: bool | None = None
    """With the reranked best as GER's base: may an adapter's output be another hypothesis than the reranker's pick
    (its posterior gate judges it)? None: only an adapter that ships its own gate (chosen that way); zero-shot GER
    never."""


class TtsOptions(Options):
    engine: Literal["piper", "coqui", "espeak"] = "piper"
    voice: str = "en_US-joe-medium"
    speed: float = Field(1.0, gt=0.25, le=4.0)
    sample_rate: int | None = None
    """Resample output to this rate; None keeps the engine's."""
    format: Literal["wav", "flac", "mp3", "opus", "aac", "pcm"] = "wav"
    coqui_model: str | None = None
    """Path to a Coqui checkpoint (model file or directory with config.json)."""
    speaker: str | None = None
    language: str | None = None
    threads: int = Field(1, ge=0)
    """Intra-op threads of the piper engine (onnxruntime); 0 = all cores. One leaves the other core to the
    LLM while a streamed turn generates and speaks at once."""


class ChatOptions(Options):
    prompt: str = "chat/assistant"
    max_reply_tokens: int = Field(60, ge=1, le=1024)
    history_turns: int = Field(6, ge=0)
    persona: str = "a concise, friendly voice assistant"
    max_sentences: int = Field(2, ge=1, le=20)
    """Reply length cap stated in the prompt (the token cap above enforces it)."""
    first_clause_words: int = Field(4, ge=0, le=50)
    """A streamed reply speaks its first sentence's first clause (up to a , ; or : with at least this many words
    before it) while the LLM writes the rest; 0: whole sentences only."""
    first_phrase_words: int = Field(8, ge=0, le=50)
    """...and a first sentence with no clause mark once this many words are written: up to its last phrase break
    (before and, to, that, with, ...; tts.text.first_clause), so a long first sentence does not hold back the first
    audio (benchmarks/turn_latency.py); 0: only at clause marks."""
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    stream: bool = True
    """Speak the first reply sentence while the rest is generated (False: the naive sequential turn)."""
    vad_filter: bool = True
    """The spoken turn decodes with Silero VAD whatever asr.vad_filter says: without it Whisper turns silence
    into "you", and a voice agent must not answer silence."""
    without_timestamps: bool = True
    """The spoken turn decodes without Whisper's timestamp tokens (its windows are short and nothing reads times
    inside them; a segment spans its window): dev WER speechocean762 40.34 -> 37.39 (334 clips), LibriSpeech
    test-other 7.71 -> 7.18 (20), the decode ~8 % shorter (docs/guides/voice-agent.md)."""
    reply_compute_type: Literal["int8", "float32"] | None = "int8"
    """ct2 backend: the compute type the spoken turn decodes its reply in (None: llm.reply_compute_type). Nothing
    tuned reads a reply's log-probs, and int8 brings the live turn's first audio from 1.31 to 1.08 s (docs/guides/voice-agent.md);
    the OpenAI chat endpoint keeps llm.reply_compute_type, so its stream equals its whole completion."""
    encoder_min_s: float | None = Field(15.0, ge=1.0, le=30.0)
    """Its decode encodes a window at the audio's own length (at least this long; asr.encoder_min_s), not 30 s:
    decode 0.40 -> 0.21 s a clip; dev WER speechocean762 37.39 -> 35.49 (every speaker fold better), LibriSpeech
    test-other 7.18 -> 9.57 (20 clips); None: 30 s (docs/guides/voice-agent.md)."""
    correct: CorrectionMode = "none"
    """The spoken turn's correction (chat, /v1/voice/turn, /v1/live, Realtime); correct.mode is for transcripts.
    none: Whisper's 1-best, decoded without the wide N-best (a spoken turn waits for every stage: with the
    shipped reranker's cased weights, rerank reads the 5-best, +0.5-1.1 s before first audio at load 6 on 2
    cores); any other mode decodes the N-best and corrects it before the reply."""
    reply_threads: int = Field(1, ge=0)
    """CPU threads of the spoken turn's reply LLM (0: llm.threads): one leaves a core to Whisper and piper, which
    run beside it in a turn (2 cores: first audio 0.89 vs 1.03 s with the default threads)."""

    def turn_asr(self, asr: AsrOptions) -> AsrOptions:
        """The ASR options a spoken turn runs with."""
        turn = asr.model_copy(update={"vad_filter": self.vad_filter, "without_timestamps": self.without_timestamps})
        return turn.model_copy(update={"encoder_min_s": None if turn.reads_time_grid else self.encoder_min_s})

    def turn_llm(self, llm: LlmOptions) -> LlmOptions:
        """The LLM options a spoken turn's reply runs with (a backend of their own: the scoring one is untouched)."""
        update: dict = {"threads": self.reply_threads} if self.reply_threads and llm.backend != "openai" else {}
        if llm.backend == "ct2" and self.reply_compute_type is not None:
            update["reply_compute_type"] = self.reply_compute_type
        return llm.model_copy(update=update) if update else llm


class LiveOptions(Options):
    """The live turn (cascade.live): audio decoded while it arrives, the end of speech found by Silero VAD."""

    sample_rate: int = 16000
    """The only rate accepted: 16 kHz mono PCM16 (what Whisper and Silero take; no resampling in the loop)."""
    threshold: float = Field(0.5, gt=0.0, lt=1.0)
    """Silero speech probability at or above which a 32 ms frame is speech (faster-whisper's default)."""
    neg_threshold: float | None = Field(None, gt=0.0, lt=1.0)
    """Below it a frame is silence; None: threshold - 0.15, as faster-whisper."""
    silence_ms: int = Field(1200, ge=100, le=5000)
    """Trailing silence that ends the user's turn when the words so far read as finished (end_of_turn), and
    after any words with end_of_turn pause (1.2 s: JFK's pauses inside his sentence last up to 1.1 s)."""
    quick_silence_ms: int = Field(450, ge=100, le=5000)
    """...shortened to this (never above silence_ms) after words that read as finished for sure (quick_logprob)."""
    quick_logprob: float = Field(0.1, le=5.0)
    """The reading (end_reading) at or above which the words are finished for sure. margin 0.1, chosen on dev
    recordings (270 clips; JFK's misheard fragment "And so am I fellow Americans." reads -0.21); with logprob
    use -1.5 (chosen with end_logprob and the two silences: fewer turns cut early than 600 ms after any reading
    >= -3.5, 3.0 vs 3.3 %)."""
    end_reading: Literal["logprob", "margin"] = "margin"
    """How the end-of-turn reader reads the words (cascade.live.endpoint). logprob: log p(end) under the reply's
    chat template. margin: log p(end) - log max p(any other next token), under a system line saying the message
    is a live transcript that may stop mid-sentence (prompts/live/end_of_turn.jinja); the same one pass. On dev
    recordings (speechocean762 + LibriSpeech test-other dev, 270 clips) at quick_logprob 0.1 vs logprob at -1.5:
    finished utterances ending after quick_silence_ms 44 -> 56 %, better in each of 5 speaker folds, the same
    turns cut early (8 of 270), those read unfinished (max_silence_ms) 7 -> 1; fresh records of the current decode
    (189 of 270 clips new): 42 -> 54 % (5/5 folds), cut early 11 -> 10, unfinished 6 -> 1."""
    end_of_turn: Literal["llm", "pause"] = "llm"
    """llm: a pause ends the turn after silence_ms only if the LLM reads the words so far as a finished message
    (cascade.live.endpoint), else after max_silence_ms; pause: silence_ms alone (as before)."""
    max_silence_ms: int = Field(2000, ge=100, le=10000)
    """Trailing silence that ends the turn even though its words read as unfinished."""
    end_logprob: float = Field(-7.0, le=0.0)
    """log p(the sentence or message ends | words) at or above which the words read as finished: chosen on dev
    recordings (LibriSpeech test-other and speechocean762 dev: the fewest turns cut early, then the fewest
    finished turns kept waiting max_silence_ms)."""
    barge_in_ms: int = Field(256, ge=0, le=5000)
    """Speech this long while a reply is being spoken interrupts it (its audio stops, the response is
    cancelled); 0: never."""
    pause_ms: int = Field(128, ge=32, le=5000)
    """A pause this long (shorter than silence_ms) closes a window: it is decoded while the user goes on speaking,
    and the speculated reply starts on it."""
    cut_ms: int = Field(250, ge=32, le=5000)
    """A window decoded at a pause is kept, when the user goes on, only if the pause lasted this long (and the
    window commit_s): a shorter pause may fall inside a phrase. A dropped window is decoded again, longer."""
    commit_s: float = Field(8.0, ge=0.0, le=30.0)
    """Until the open window is this long it is decoded again, whole, at each pause (a short turn is decoded as
    one piece, as offline: Whisper sees the whole sentence); then it is kept and the next window starts."""
    max_window_s: float = Field(12.0, ge=1.0, le=30.0)
    """A window that reaches this without a pause is cut (Whisper sees at most 30 s)..."""
    cut_search_s: float = Field(1.0, gt=0.0, le=5.0)
    """...at its least speech-like frame (lowest Silero probability) of the last `cut_search_s` seconds."""
    pad_ms: int = Field(300, ge=0, le=2000)
    """Audio kept before the first speech frame (the onset Silero reports a little late)."""
    max_turn_s: float = Field(120.0, gt=0)
    """Longer speech is ended as if the speaker had paused (a stuck microphone cannot hold a slot forever)."""
    max_frame_bytes: int = Field(64000, ge=2)
    """Larger binary messages are refused (2 s of PCM16 at 16 kHz)."""
    speculate: bool = True
    """Correct and start the reply at a window-closing pause; the events are held until the end of speech is
    confirmed and dropped if the user goes on (the reply's latency hides behind the silence wait)."""
    early_reply: bool = False
    """With speculate: the reply starts on Whisper's 1-best of the last window while its N-best and the
    correction are made; kept if the corrected text is that 1-best, else made again (in-process ASR only).
    Off: with a correction that keeps the 1-best the turn decodes no N-best, so there is nothing to overlap;
    with one that reads it (rescore) the LLM and piper slowed the N-best decode more than they saved (docs/guides/voice-agent.md)."""
    max_sessions: int = Field(2, ge=1)
    """Gateway: live WebSocket sessions served at once (each holds its slot until it closes)."""


class LoraTrainConfig(Options):
    base: str = "smollm2"
    r: int = Field(16, ge=1)
    alpha: int = Field(16, ge=1)
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    lr: float = Field(2e-4, gt=0)
    epochs: float = Field(2.0, gt=0)
    batch_size: int = Field(8, ge=1)
    max_length: int = Field(256, ge=16)
    seed: int = 0
    prompt: str = "ger/hyporadise"
    eval_every: int = Field(50, ge=1)
    save_every: int = Field(50, ge=1)
    patience: int = Field(3, ge=0)
    """Early stopping: evaluations without dev-loss improvement before stopping (0 disables)."""
    target: Literal["reference", "composable", "oracle"] = "composable"
    """Training target: the reference; the reference only when every word of it occurs in some
    hypothesis, else the oracle hypothesis (never teaches inventing words); or always the oracle."""
    dev_fraction: float = Field(0.08, ge=0.0, lt=0.5)
    """Share of the data held out (by a seeded shuffle) for dev loss / early stopping."""
    max_steps: int | None = Field(None, ge=1)
    """Stop after this many optimizer steps (None: run the epochs)."""
    threads: int = Field(0, ge=0)
    """torch intra-op threads; 0 keeps torch's default."""
    layers: int | None = Field(None, ge=1)
    """Put LoRA only on the top N transformer layers (backward stops there: much cheaper on CPU); None: all."""


class SynthOptions(Options):
    """How `cascade make-nbest` turns text into degraded speech (seeded, recorded per example)."""

    engines: tuple[Literal["piper", "espeak"], ...] = ("piper", "espeak")
    espeak_voices: tuple[str, ...] = ("en-us", "en-gb", "en-gb-scotland", "en-029", "en-gb-x-rp", "en-gb-x-gbclan")
    snr_db: tuple[float, ...] = (0.0, 5.0, 10.0, 15.0, 20.0)
    clean_fraction: float = Field(0.15, ge=0.0, le=1.0)
    """Share of examples left undegraded (so the data also holds lists whose 1-best is right)."""
    p_speed: float = Field(0.4, ge=0.0, le=1.0)
    p_telephone: float = Field(0.25, ge=0.0, le=1.0)
    p_reverb: float = Field(0.3, ge=0.0, le=1.0)
    seed: int = 0


class ModelAliases(Options):
    """Model names stock clients send, and what they mean here (responses report the real model)."""

    chat: tuple[str, ...] = ("default", "gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano", "gpt-4o", "gpt-4o-mini",
                             "gpt-4", "gpt-4-turbo", "gpt-3.5-turbo", "gpt-5", "gpt-5-mini", "gpt-5-nano")
    """The configured LLM under any service.strict_models (LiveKit's default is gpt-4.1, pipecat's gpt-4.1/4o)."""
    transcription: tuple[str, ...] = ("whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe", "gpt-transcribe",
                                      "gpt-4o-transcribe-diarize", "whisper-large-v3", "whisper-large-v3-turbo",
                                      "default", "")
    """The configured recogniser (asr.model). Other unknown names stay 404: they may be paths."""
    translation: str = "base"
    """What an alias means on /v1/audio/translations when asr.model is English-only (OpenAI translates with
    whisper-1): the bundled multilingual Whisper."""


class ServiceSettings(Options):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    api_key: SecretStr | None = None
    max_upload_mb: float = Field(25.0, gt=0)
    max_audio_s: float = Field(600.0, gt=0)
    max_concurrency: int = Field(2, ge=1)
    max_queue: int = Field(8, ge=0)
    """Requests waiting per model beyond max_concurrency; one more gets 429 with Retry-After."""
    queue_timeout_s: float = Field(30.0, gt=0)
    """A waiter that gets no slot within this time is answered 503 with Retry-After."""
    asr_batch_window_ms: float | None = Field(10.0, ge=0)
    """ASR service: transcription requests with the same options decode together, up to asr.batch_size in one
    batched call (the clips of at most 30 s): the one that gets a model slot waits this long, then takes those
    still waiting for one (services/asr/batching.py). None: each request alone."""
    asr_batch_pack: bool = False
    """ASR service, batched 1-best requests: their clips share Whisper windows (asr.pack_clips, cascade.asr.packed)
    instead of each being decoded as alone; faster, but a clip's text then depends on the clips beside it."""
    connect_timeout_s: float = Field(3.0, gt=0)
    """Connect timeout of the gateway's clients to remote stages (fail fast when one is down)."""
    asr_url: str | None = None
    """Remote stage URLs for the gateway; None runs that stage in-process."""
    llm_url: str | None = None
    tts_url: str | None = None
    request_timeout_s: float = Field(60.0, gt=0)
    """Total deadline of one call to a remote stage (connect, retries, every read): a stage that
    answers too slowly, even byte by byte, is treated as down and the answer degrades."""
    allow_model_paths: bool = False
    """Let HTTP callers name a server-side model directory as `model`; off: only configured and
    bundled names are served (a client cannot load arbitrary files or multiply queues)."""
    max_prompt_tokens: int | None = Field(None, ge=16)
    """LLM service: prompts longer than this many tokens are refused with 400; None: the model's context window
    (SmolLM2: 8,192) less the reply's token cap."""
    strict_models: bool = False
    """True: a chat `model` that is neither served nor in model_aliases.chat is 404 (OpenAI's behaviour); False:
    every unserved chat name means the configured LLM, so frameworks' defaults (gpt-4.1, gpt-4o-mini) just work."""
    model_aliases: ModelAliases = Field(default_factory=lambda: ModelAliases())


class BatchOptions(Options):
    """Batch correction of existing ASR output (`cascade correct-batch`)."""

    workers: int = Field(1, ge=1, le=256)
    """Local processes (each loads its own LLM once) or Ray actors."""
    engine: Literal["local", "ray"] = "local"
    fsync_interval_s: float = Field(1.0, ge=0.0)
    """Seconds between fsyncs of the journal (0: after every batch); every write holds whole records."""
    ray_address: str | None = None
    """Ray cluster to join (ray://host:10001 or host:6379); None uses RAY_ADDRESS or starts a local one."""
    ray_shard_batches: int = Field(64, ge=1)
    """Batches per JSONL input shard handed to Ray Data."""


class FusionOptions(Options):
    """Multi-system fusion (`correct-batch --join`, POST /v1/fuse)."""

    method: Literal["rover", "rescore", "rerank", "ger"] = "rover"
    """How `correct-batch --join` fuses with --mode fusion: vote, pick a candidate (by agreement + LM, or by the
    trained reranker), or let the LLM write."""
    normalize: bool = True
    """Vote on normalised words (cascade.metrics.normalize), so 'Mr.'/'mister' and '7'/'seven' agree."""
    prompt: str = "fusion/systems"
    """Prompt template for LLM fusion (method ger)."""
    lm_weight: float = Field(0.0, ge=0.0)
    """Weight of the LLM log-prob per word against system agreement when picking a candidate; tuned on dev."""
    min_agreement_gain: float = 0.0
    """LLM output is kept only if it agrees with the systems at least this much more than ROVER's output."""
    reranker: str = "fusion-mwer"
    """Trained fusion reranker (method rerank): shipped name in cascade/rerankers/ or a directory with model.json."""
    rerank_margin: float | None = None
    """A candidate replaces the estimated best system's text only when it scores this much higher; None: the model's
    dev-chosen margin."""
    weights: dict[str, float] | None = None
    """Vote weight of each system by name (`--weights`; or estimated from the whole joined input by `correct-batch
    --join`, cascade.fusion.reliability): weights ROVER's votes, the agreement and reranker features, and names the
    fallback (the highest weight). None: equal votes (SCTK's majority vote) and ROVER's output as the fallback."""
    fallback: Literal["best", "rover"] = "best"
    """With weights: what fusion keeps when nothing beats it, the best system's text or the weighted ROVER output
    (`correct-batch --join` chooses: ROVER where the reference-free estimate ranks it above the best system)."""
    tail_vote: float = Field(0.25, ge=0.0, le=1.0)
    """What a system's silence after its last word counts in ROVER's vote, times its weight: a recogniser that
    stopped early says little about the words it never reached (1: a full vote, SCTK's; 0: it abstains there).
    Azure and Watson stop early on the same long utterances and, counted in full, outvote the system that heard the
    end (dev, weighted, DeepSpeech+Azure+Watson 14.19 -> 7.02 % WER, all four 5.94 -> 5.72). Chosen on dev
    (every subset of >= 2 systems, and each speaker half): 0.25 is best in all three, 0 close, 0.75 and 1 far worse;
    above 0, a trusted system that stops keeps two poor ones from adding words after it."""
    best_bonus: float = Field(0.25, ge=0.0)
    """With weights: added to the vote of the system estimated best, so that where two pairs of systems split a slot
    the pair with that system wins (their summed weights differ by less than the estimates' noise). Chosen on dev
    (speaker halves, tail_vote 0.25): 0.1-0.25 best, 0.5 close, 1 makes that system outvote two others; the speaker
    half where DeepSpeech and Google are estimated alike gains most (all four 6.28 -> 5.71 %)."""
    estimate_weights: bool = True
    """`correct-batch --join` estimates each system's reliability from the joined input (no references) unless
    `weights` are given."""
    systems: tuple[str, ...] = ()
    """The joined systems' names in the order given (set by --join): each joined list's hypotheses, in order."""
    absent: dict[str, tuple[str, ...]] = {}
    """Utterance id -> the joined systems with no output for it (set by --join), so the others keep their names."""


class TranslateOptions(Options):
    """Speech translation (`cascade translate --to`, `cascade eval --task translate`)."""

    target: str = "en"
    """Target language (ISO code). Whisper's translate task yields English only; others need via_transcript."""
    via_transcript: bool = False
    """Transcribe in the source language, correct, then let the LLM translate (instead of Whisper's translate task)."""
    fusion_prompt: str = "translate/fusion"
    """Prompt for fusing a translation N-best list (GenTranslate); also the prompt to train translation adapters on."""
    source_prompt: str = "translate/source"
    """Prompt for the LLM translation of a transcript (via_transcript)."""
    lam: float | None = Field(None, ge=0.0, le=1.0)
    """λ for rescoring translation N-best lists; None uses rescore.lam."""
    max_edit_distance: float | None = Field(None, ge=0.0)
    """Fusion guard (word edit distance to the nearest candidate); None uses ger.max_edit_distance."""
    fusion_lam: float = Field(0.0, ge=0.0, le=1.0)
    """Fusion gate: weight of the LLM's log-prob per token against Whisper's (AM) in the gate score."""
    fusion_margin: float | None = None
    """Fusion gate: the LLM's fused translation replaces Whisper's own 1-best only when its gate score beats the
    1-best's by more than this; None keeps Whisper's translation. Chosen on FLEURS dev so that dev BLEU never drops
    (`benchmarks/translate_accuracy.py --choose-gate`): with the bundled 135M LLM no gate paid on dev, hence None."""
    max_new_tokens_factor: float = Field(2.0, gt=0)
    """via_transcript: token cap relative to the source text's tokens."""
    min_new_tokens: int = Field(16, ge=1)
    max_length_ratio: float = Field(2.5, gt=1.0)
    """via_transcript guard: output/source word ratio above this (or below its inverse) is rejected."""
    max_source_overlap: float = Field(0.5, ge=0.0, le=1.0)
    """via_transcript guard: an output whose words are mostly the source's is rejected as not translated."""


class Settings(BaseSettings):
    """Everything configurable, one nested object per stage."""

    model_config = SettingsConfigDict(
        env_prefix="CASCADE_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    home: Path = Path("~/.cache/cascade").expanduser()
    """CASCADE_HOME: where assembled/converted models and the demo sample are cached."""
    correct: CorrectOptions = CorrectOptions()
    asr: AsrOptions = AsrOptions()
    subtitles: SubtitleOptions = SubtitleOptions()
    llm: LlmOptions = LlmOptions()
    rescore: RescoreOptions = RescoreOptions()
    rerank: RerankOptions = RerankOptions()
    ger: GerOptions = GerOptions()
    tts: TtsOptions = TtsOptions()
    chat: ChatOptions = ChatOptions()
    live: LiveOptions = LiveOptions()
    train: LoraTrainConfig = LoraTrainConfig()
    service: ServiceSettings = ServiceSettings()
    batch: BatchOptions = BatchOptions()
    fusion: FusionOptions = FusionOptions()
    translate: TranslateOptions = TranslateOptions()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _YamlSource(settings_cls))


class _YamlSource(PydanticBaseSettingsSource):
    """The file named by CASCADE_CONFIG; else the shipped configs/default.yaml with the user's config
    ($CASCADE_HOME/config.yaml, what `cascade tune` writes) laid on top."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:  # pragma: no cover
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        if os.environ.get("CASCADE_CONFIG"):
            return read_yaml(Path(os.environ["CASCADE_CONFIG"]))
        user = user_config_path()
        return _deep_merge(read_yaml(DEFAULT_CONFIG), read_yaml(user) if user.exists() else {})


def user_config_path() -> Path:
    """Where tuned settings are written: $CASCADE_HOME/config.yaml (never into the installed package)."""
    home = Path(os.environ.get("CASCADE_HOME") or "~/.cache/cascade").expanduser()
    return home / "config.yaml"


def read_yaml(path: Path) -> dict[str, Any]:
    if not path.exists():
        if path == DEFAULT_CONFIG:
            return {}
        raise InvalidInput(f"config file not found: {path}", param="config")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise InvalidInput(f"config file {path} is not valid YAML: {exc}", param="config") from exc
    if not isinstance(data, dict):
        raise InvalidInput(f"config file {path} must hold a mapping", param="config")
    return data


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def load_settings(overrides: dict[str, Any] | None = None) -> Settings:
    """Build Settings from YAML + env, then apply nested overrides (e.g. {"asr": {"n_best": 3}}).

    Overrides are merged per stage so a CLI flag changes one field, not the whole section.
    """
    from pydantic import ValidationError

    try:
        base = Settings()
        if not overrides:
            return base
        merged = _deep_merge(base.model_dump(), {k: v for k, v in overrides.items() if v is not None})
        return Settings.model_validate(merged)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise InvalidInput(f"invalid setting {where}: {err['msg']}", param=where) from exc


def save_yaml(settings_section: dict[str, Any], path: Path) -> None:
    """Merge a section (e.g. {"rescore": {"lam": 0.3}}) into a YAML config file."""
    current = read_yaml(path) if path.exists() else {}
    path.write_text(yaml.safe_dump(_deep_merge(current, settings_section), sort_keys=True))
