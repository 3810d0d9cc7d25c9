"""Segments that read as invented rather than heard: Whisper's hallucinations, flagged (or dropped).

Four signals, each cheap and each from what the decode already produced (no second model):

- phrase: the segment is, starts or ends with a phrase Whisper is known to invent on non-speech
  (cascade/data/hallucinations.txt: the "Bag of Hallucinations" of arXiv:2501.11378 and the generic
  phrases of "Careless Whisper", arXiv:2402.08021); an everyday one ("there we go") only where Whisper
  also leans towards no speech, since people say those too;
- repetition: it loops (an n-gram repeated back to back over most of it, or faster-whisper's
  compression ratio still above its threshold after the last temperature);
- no_speech: Whisper's own no-speech probability is high and it is unsure of the words it wrote
  (faster-whisper skips a window only when both are past its thresholds; this catches the rest);
- disagreement: the segment came from the sampled fallback and the window's other samples share
  almost none of its words (the audio did not constrain the text).

Where the sampled fallback wrote a known phrase or a loop, the window's beam result and its other
samples are tried first: the first of them that is neither replaces the segment's text, and the
segment is not flagged (`Hallucination.replaced` keeps what was invented). Thresholds were chosen
on speechocean762 dev (benchmarks/asr_trust.py).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from difflib import SequenceMatcher
from importlib import resources

from cascade.config import AsrOptions
from cascade.types import Hallucination, HallucinationReason, Hypothesis

NO_SPEECH_PROB = 0.6
"""no_speech: Whisper's no-speech probability at least this (faster-whisper's own threshold; on dev, real speech
stays below it: at most 0.45 over librispeech-test-other dev, 0.29 over speechocean762 dev)..."""
NO_SPEECH_LOGPROB = -0.9
"""...and the segment's average token log-prob at most this (or its mean word probability at most 0.45); faster-whisper
itself drops a window only below -1.0. Not higher: the last words of real/LJ050-0131.wav, cut off mid-sentence
("In this regard", said), come with no-speech 0.84 and log-prob -0.75."""
NO_SPEECH_WORD_PROB = 0.45
AGREEMENT = 0.25
"""disagreement: no other sample of the window shares more than a quarter of its words with the segment (on
speechocean762 dev the windows that sample mostly have another sample with the same words: max overlap 0.67-1.0)."""
MIN_SAMPLES = 3
"""disagreement needs at least this many other samples to judge by."""
PHRASE_NO_SPEECH = 0.5
"""An everyday listed phrase ("there we go", "what are you doing": BoH holds what Whisper writes over noise, and
people say some of it) counts only with this no-speech probability (above real speech on dev: at most 0.45);
video boilerplate and sound words always count."""
BOILERPLATE = re.compile(r"\b(watching|watch tv|subscri\w*|subtitle\w*|caption\w*|videos?|channel|www|https?|com|org|gov|"
                         r"transcri\w*|amara)\b")
EDGE_CHARS = 15
"""A phrase this long also counts where it starts or ends a segment..."""
INSIDE_CHARS = 25
"""...and one this long anywhere in it."""


def normal(text: str) -> str:
    """The phrase list's normal form: lower case, anything but a-z/0-9 a space, spaces collapsed."""
    return " ".join(re.sub(r"[^a-z0-9]+", " ", (text or "").lower()).split())


@functools.cache
def phrases() -> frozenset[str]:
    """The known invented phrases (package data, sources in its header)."""
    text = resources.files("cascade").joinpath("data/hallucinations.txt").read_text(encoding="utf-8")
    return frozenset(line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#"))


def known_phrase(text: str) -> str | None:
    """The longest known phrase the text is, starts or ends with (or holds, when long), else None."""
    words = normal(text)
    if not words:
        return None
    if words in phrases():
        return words
    padded = f" {words} "
    found = [p for p in phrases() if len(p) >= EDGE_CHARS and f" {p} " in padded
             and (len(p) >= INSIDE_CHARS or words.startswith(p + " ") or words.endswith(" " + p))]
    return max(found, key=len) if found else None


def always_invented(phrase: str) -> bool:
    """Video/website boilerplate or a single sound word ("woof", "beeping"): invented wherever it turns up."""
    return " " not in phrase or BOILERPLATE.search(phrase) is not None


def loops(text: str) -> bool:
    """An n-gram (n <= 4) repeated back to back at least 3 times (a word: 4) over at least half the words."""
    words = normal(text).split()
    for n in range(1, 5):
        need = 4 if n == 1 else 3
        for start in range(len(words) - n * need + 1):
            gram, count = words[start : start + n], 1
            while words[start + count * n : start + (count + 1) * n] == gram:
                count += 1
            if count >= need and count * n * 2 >= len(words):
                return True
    return False


def similarity(a: str, b: str) -> float:
    """Word overlap of two texts (difflib ratio over their normalised words)."""
    x, y = normal(a).split(), normal(b).split()
    if not x and not y:
        return 1.0
    return SequenceMatcher(None, x, y, autojunk=False).ratio()


@dataclass(frozen=True)
class Evidence:
    """What else the window said over one segment's stretch: the other samples' pieces and the beam's piece."""

    samples: tuple[Hypothesis, ...] = ()
    """The other samples of the sampled call faster-whisper kept, best score first (duplicates kept)."""
    beam: Hypothesis | None = None
    """The window's beam-search result over this segment (rejected by the fallback's thresholds)."""


def reasons(text: str, *, no_speech_prob: float | None, avg_logprob: float | None, word_probs: list[float] | None,
            looped: bool, evidence: Evidence | None) -> tuple[list[HallucinationReason], str | None]:
    """Every signal that says the text is invented, and the known phrase it holds."""
    found: list[HallucinationReason] = []
    phrase = known_phrase(text)
    if phrase is not None and (always_invented(phrase) or (no_speech_prob or 0.0) >= PHRASE_NO_SPEECH):
        found.append("phrase")
    else:
        phrase = None
    if looped or loops(text):
        found.append("repetition")
    if no_speech_prob is not None and no_speech_prob >= NO_SPEECH_PROB:
        unsure = avg_logprob is not None and avg_logprob <= NO_SPEECH_LOGPROB
        if word_probs:
            unsure = unsure or sum(word_probs) / len(word_probs) <= NO_SPEECH_WORD_PROB
        if unsure:
            found.append("no_speech")
    if evidence is not None and len(evidence.samples) >= MIN_SAMPLES:
        if max(similarity(text, h.text) for h in evidence.samples) <= AGREEMENT:
            found.append("disagreement")
    return found, phrase


def check(seg, hyps: tuple[Hypothesis, ...], evidence: Evidence | None, options: AsrOptions,
          looped: bool) -> tuple[tuple[Hypothesis, ...], Hallucination | None]:
    """The segment's hypotheses (a clean one first, when the sampled text was invented) and its flag."""
    if options.hallucinations == "keep":
        return hyps, None
    words = [w.probability for w in seg.words or ()] or None
    found, phrase = reasons(hyps[0].text, no_speech_prob=seg.no_speech_prob, avg_logprob=seg.avg_logprob,
                            word_probs=words, looped=looped, evidence=evidence)
    if not found:
        return hyps, None
    flag = Hallucination(reasons=tuple(found), phrase=phrase)
    if evidence is not None and ("phrase" in found or "repetition" in found):
        clean = _clean(evidence)
        if clean is not None:
            rest = tuple(h for h in hyps if normal(h.text) != normal(clean.text))
            return (clean, *rest)[: max(options.n_best, 1)], flag.model_copy(update={"replaced": hyps[0].text})
    return hyps, flag


def _clean(evidence: Evidence) -> Hypothesis | None:
    """The beam result, else the best-scored other sample, that is neither a known phrase nor a loop."""
    for hyp in ((evidence.beam,) if evidence.beam is not None else ()) + evidence.samples:
        if normal(hyp.text) and known_phrase(hyp.text) is None and not loops(hyp.text):
            return hyp
    return None


def window_evidence(clone, tokenizer, call, calls) -> dict[tuple[int, ...], Evidence]:
    """Evidence for each segment of a window whose kept decode was sampled, keyed by the segment's tokens
    (as faster-whisper gives them); {} for a beam-search window."""
    from cascade.asr.decode import own_sequences
    from cascade.asr.segments import cut_points

    if call is None or call.temperature == 0:
        return {}
    own = own_sequences(call)
    best = own[0][0]
    beam = next((c for c in calls if c.temperature == 0 and c.result.sequences_ids), None)
    out = {}
    for a, b in cut_points(clone, tokenizer, best):
        if not tokenizer.decode(best[a:b]).strip():
            continue
        samples = tuple(sorted((_piece(tokenizer, best, (a, b), toks, lp) for toks, lp in own[1:]),
                               key=lambda h: -(h.avg_logprob or 0.0)))
        beam_piece = None
        if beam is not None:
            toks, lp = own_sequences(beam)[0]
            beam_piece = _piece(tokenizer, best, (a, b), toks, lp)
        out[tuple(best[a:b])] = Evidence(samples=samples, beam=beam_piece)
    return out


def _piece(tokenizer, best: list[int], span: tuple[int, int], tokens: list[int], per_token: float) -> Hypothesis:
    """What another decode of the window says over the 1-best's span (aligned on text tokens, as segments.py does)."""
    from cascade.asr.segments import _mapper, text_tokens

    best_text, other = text_tokens(tokenizer, best), text_tokens(tokenizer, tokens)
    start, end = len(text_tokens(tokenizer, best[: span[0]])), len(text_tokens(tokenizer, best[: span[1]]))
    at = _mapper(best_text, other)
    part = tuple(other[at(start) : at(end)])
    return Hypothesis(text=" ".join(tokenizer.decode(list(part)).split()), am_score=per_token * len(part),
                      avg_logprob=per_token, tokens=part)
