"""Subtitle cues people can read as they are: SRT and VTT cut from word timestamps.

A Whisper segment can run 30 s; a cue must not. Cues follow the words' times (faster-whisper's
word alignment) and the conventions of whisperX and broadcast subtitling (SubtitleOptions: at
most two lines of 42 characters, at most 7 s on screen):

- a new cue starts after a sentence ends and after a pause of `pause_s` between two words;
- text that would outgrow one cue's lines or duration is cut where cutting costs least: after a
  clause punctuation mark, at Whisper's own segment boundaries, at a pause; between two running
  words only when it must, and never leaving a one-word stub when a balanced cut exists;
- a cue's lines are balanced (two lines of similar width, not a full one and a stub).

A segment without word times (word timestamps off, or a correction changed its words) gets
word times spread over its span by character count, so the same rules cut it. pysubs2 writes
the files.
"""

from __future__ import annotations

import re

import math
from collections.abc import Sequence

from cascade.config import SubtitleOptions
from cascade.types import Cue, Segment, Transcript, Word

SENTENCE_END = (".", "?", "!", "…", "。", "？", "！")
CLAUSE_END = (",", ";", ":", "—", "–", "、", "，")
ABBREVIATIONS = frozenset({"mr.", "mrs.", "ms.", "dr.", "st.", "vs.", "e.g.", "i.e.", "no.", "jr.", "sr."})
NO_SPACE_LANGUAGES = ("ja", "zh", "yue")
"""Languages written without spaces: their words are joined directly (as whisperX does)."""
MIN_GAP_S = 0.15
"""Gaps between words shorter than this are alignment noise, not pauses."""


def cues(t: Transcript, options: SubtitleOptions | None = None) -> list[Cue]:
    """The transcript's words grouped into cues that respect the options' limits."""
    o = options or SubtitleOptions()
    joiner = "" if t.language in NO_SPACE_LANGUAGES else " "
    words, segment_ends = timed_words(t.segments, joiner)
    groups = _group(words, segment_ends, o, joiner)
    out: list[Cue] = []
    for n, group in enumerate(groups):
        first, last = words[group[0]], words[group[-1]]
        start = first.start
        following = words[groups[n + 1][0]].start if n + 1 < len(groups) else max(t.duration, last.end)
        end = min(max(last.end, start + o.min_duration_s), start + o.max_duration_s, following)
        lines = wrap([words[i].word for i in group], o.max_line_width, o.max_line_count, joiner)
        out.append(Cue(start=round(start, 3), end=round(end, 3), lines=tuple(lines)))
    return out


def timed_words(segments: Sequence[Segment], joiner: str = " ") -> tuple[list[Word], set[int]]:
    """Every word of the shown text with its times, and the indices of the words that end a segment.

    joiner "" (a language without spaces): the text is compared without spaces and spread per character.
    """
    words: list[Word] = []
    ends: set[int] = set()
    for seg in segments:
        own = [w for w in seg.words or () if w.word.strip()]
        shown = joiner.join(seg.text.split())
        if not own or joiner.join(w.word.strip() for w in own) != shown:
            own = _spread(seg, shown.split() if joiner else list(shown))
        for w in own:  # alignment can step back a little across segments: keep times monotonic
            start = max(w.start, words[-1].start if words else 0.0)
            words.append(w.model_copy(update={"word": w.word.strip(), "start": start, "end": max(w.end, start)}))
        if own:
            ends.add(len(words) - 1)
    return words, ends


def _spread(seg: Segment, tokens: list[str]) -> list[Word]:
    """Word times spread over the segment by character count (no alignment for this text)."""
    total = sum(len(tok) + 1 for tok in tokens) or 1
    span = max(seg.end - seg.start, 0.0)
    out, done = [], 0
    for tok in tokens:
        start = seg.start + span * done / total
        done += len(tok) + 1
        out.append(Word(start=start, end=seg.start + span * (done - 1) / total, word=tok, probability=0.0))
    return out


def _group(words: list[Word], ends: set[int], o: SubtitleOptions, joiner: str) -> list[list[int]]:
    """Word indices per cue: the text between hard breaks (sentence ends, pauses), each cut by _split."""
    groups: list[list[int]] = []
    start = 0
    for i in range(1, len(words) + 1):
        if i == len(words) or _hard_break(words[i - 1], words[i], o):
            groups += _split(start, i, words, ends, o, joiner)
            start = i
    return groups


def _ends_sentence(word: str) -> bool:
    return word.endswith(SENTENCE_END) and word.lower() not in ABBREVIATIONS


def _hard_break(prev: Word, nxt: Word, o: SubtitleOptions) -> bool:
    return _ends_sentence(prev.word) or nxt.start - prev.end >= o.pause_s


def _fits(ws: list[Word], o: SubtitleOptions, joiner: str) -> bool:
    if ws[-1].end - ws[0].start > o.max_duration_s:
        return False
    return len(_greedy([w.word for w in ws], o.max_line_width, joiner)) <= o.max_line_count


def _split(lo: int, hi: int, words: list[Word], ends: set[int], o: SubtitleOptions, joiner: str) -> list[list[int]]:
    """words[lo:hi] cut into cues that fit, at the cheapest break points (dynamic programming).

    Each cue costs 1, plus its break point (punctuation, a segment boundary or a pause are cheap,
    a break between two running words dear), plus how far it is from full (no one-word stubs).
    """
    best: dict[int, tuple[float, int]] = {lo: (0.0, lo)}
    for i in range(lo + 1, hi + 1):
        options = []
        for j in range(i - 1, lo - 1, -1):
            if i - j > 1 and not _fits(words[j:i], o, joiner):
                break  # a longer cue cannot fit either
            options.append((best[j][0] + _cue_cost(j, i, hi, words, ends, o, joiner), j))
        best[i] = min(options)
    cuts, i = [], hi
    while i > lo:
        j = best[i][1]
        cuts.append(list(range(j, i)))
        i = j
    return cuts[::-1]


def _cue_cost(j: int, i: int, hi: int, words: list[Word], ends: set[int], o: SubtitleOptions, joiner: str) -> float:
    chars = len(joiner.join(w.word for w in words[j:i]))
    fill = min(max(chars / (o.max_line_width * o.max_line_count), (words[i - 1].end - words[j].start) / o.max_duration_s), 1.0)
    return 1.0 + (_break_cost(i - 1, words, ends) if i < hi else 0.0) + 2.0 * (1.0 - fill) ** 2


def _break_cost(k: int, words: list[Word], ends: set[int]) -> float:
    """What cutting between words k and k+1 costs: cheap after a clause mark, at Whisper's segment end, at a pause."""
    cost = 0.5 if words[k].word.endswith(CLAUSE_END) else 5.0
    if k in ends:
        cost = min(cost, 1.0)
    gap = words[k + 1].start - words[k].end
    if gap >= MIN_GAP_S:
        cost = min(cost, 3.0 - 2.5 * min(gap, 1.0))
    return cost


def _greedy(tokens: list[str], width: int, joiner: str) -> list[str]:
    lines: list[str] = []
    line = ""
    for tok in tokens:
        if line and len(line) + len(joiner) + len(tok) > width:
            lines.append(line)
            line = tok
        else:
            line = f"{line}{joiner}{tok}" if line else tok
    return lines + [line] if line else lines


def wrap(tokens: list[str], width: int, count: int, joiner: str = " ") -> list[str]:
    """The tokens as at most `count` lines of at most `width` characters, balanced in width.

    More lines than `count` come back only when the tokens cannot fit (cues() never asks for that).
    """
    lines = _greedy(tokens, width, joiner)
    if len(lines) <= 1 or len(lines) > count:
        return lines
    total = len(joiner.join(tokens))
    for target in range(math.ceil(total / len(lines)), width + 1):
        trial = _greedy(tokens, target, joiner)
        if len(trial) <= len(lines):
            return trial
    return lines


def _safe(line: str) -> str:
    """pysubs2 reads text as SSA: braces are override tags and backslashes escapes; '-->' breaks SRT."""
    return line.replace("{", "(").replace("}", ")").replace("\\", "/").replace("-->", "->")


def _subs(t: Transcript, options: SubtitleOptions | None):
    import pysubs2

    subs = pysubs2.SSAFile()
    for cue in cues(t, options):
        text = r"\N".join(_safe(line) for line in cue.lines)
        subs.append(pysubs2.SSAEvent(start=round(cue.start * 1000), end=round(cue.end * 1000), text=text))
    return subs


def to_srt(t: Transcript, options: SubtitleOptions | None = None) -> str:
    return _subs(t, options).to_string("srt")


_VTT_CUE_NUMBER = re.compile(r"^\d+\n(?=\d[\d:.]* --> )", re.MULTILINE)


def to_vtt(t: Transcript, options: SubtitleOptions | None = None) -> str:
    """WebVTT without cue numbers (pysubs2 writes them; OpenAI's and Whisper's VTT have none)."""
    return _VTT_CUE_NUMBER.sub("", _subs(t, options).to_string("vtt"))
