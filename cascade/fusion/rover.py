"""ROVER: align several recognisers' word strings into one network and vote per slot.

This follows NIST SCTK `rover -m meth1 -a 1.0` (majority vote) step by step so
the two agree word for word: the systems are merged one at a time into a word
transition network by dynamic programming over network arcs with rover's own
costs (insert/delete 3, substitute 4, match 0, anything against a null arc 1,
skipping a null arc 0.001) and rover's tie-breaking (substitution first, then
deletion, then insertion; the first arc in list order among equals). Each slot
then keeps the word seen most often, the earliest-added on ties, and a winning
null drops the slot. kaldialign (a maintained aligner) scores the agreement
features used by fusion; the network DP is here because no library aligns a
string against a network with rover's costs.

`nist_rover` runs SCTK's own `rover` binary on the same input (CTM files) for
comparison and as a baseline.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from cascade.types import BackendUnavailable, InvalidInput, Record

logger = logging.getLogger(__name__)

NULL = "@"
"""rover's null word: a system said nothing in this slot."""
_HEAD = None
"""The null head arc every network starts with (rover's add_null_network_heads)."""
INS_DEL, SUB, NULL_SUB, NULL_SKIP, NULL_NULL = 3.0, 4.0, 1.0, 0.001, 1.0


class RoverResult(Record):
    """The voted word string and the network it came from (one tuple of words per slot, system order)."""

    text: str
    words: tuple[str, ...]
    slots: tuple[tuple[str, ...], ...]
    votes: tuple[int, ...]
    """How many systems agreed with each output word."""
    weak: float = 0.0
    """Share of the slots (output words and dropped ones) won without a strict majority of the (weighted) votes."""


def tokens(text: str) -> list[str]:
    """Plain rover tokens: lower case, punctuation dropped (apostrophes inside words kept)."""
    text = re.sub(r"[^\w\s']|_", " ", text.lower())
    return [t.strip("'") for t in text.split() if t.strip("'")]


def rover(hypotheses: Sequence[Sequence[str] | str], weights: Sequence[float] | None = None, *,
          tail: float = 1.0) -> RoverResult:
    """Majority-vote ROVER over the systems' word lists (strings are split with `tokens`).

    A system with no words takes part as a single null word, as it must in rover's CTM input.
    `weights` (one per system, cascade.fusion.reliability) make each vote count that much; None or
    equal weights give SCTK's majority vote exactly. The alignment never depends on them.

    `tail`: what a system's silence after its last word counts, times its weight (1: a full vote, as SCTK
    casts it; 0: it abstains there). A recogniser that stopped early (Azure and Watson cut long LibriSpeech
    utterances short, the same ones) says little about the words it never reached; counted in full, two
    truncating systems outvote one that heard the end (FusionOptions.tail_vote)."""
    systems = [(tokens(h) if isinstance(h, str) else list(h)) or [NULL] for h in hypotheses]
    if not systems:
        raise InvalidInput("rover needs at least one hypothesis", param="hypotheses")
    if weights is not None and len(weights) != len(systems):
        raise InvalidInput(f"rover got {len(weights)} weights for {len(systems)} systems", param="weights")
    network = _network(tuple(tuple(s) for s in systems))
    slots = [slot for slot, _ in network]
    out, votes, weak = [], [], 0
    every = [1.0] * len(systems) if weights is None else [float(w) for w in weights]
    orders = [[n, *range(n), *range(n + 1, len(systems))] if n else list(range(len(systems))) for _, n in network]
    last = [-1] * len(systems)  # each system's last slot with a word
    if tail != 1.0:
        for s, ((slot, _), order) in enumerate(zip(network, orders)):
            for pos, k in enumerate(order):
                if slot[pos] != NULL:
                    last[k] = s
    for s, ((slot, n), order) in enumerate(zip(network, orders)):
        # a slot inserted by system n lists n's word first, then the n systems before it (as rover does)
        w = [every[k] * (tail if s > last[k] and tail != 1.0 else 1.0) for k in order]
        word, count, mass = _vote(slot, None if weights is None and tail == 1.0 else w)
        weak += mass * 2 <= sum(w) + 1e-9
        if word != NULL:
            out.append(word)
            votes.append(count)
    return RoverResult(text=" ".join(out), words=tuple(out), slots=tuple(slots), votes=tuple(votes),  # type: ignore[arg-type]
                       weak=weak / max(len(slots), 1))


@functools.lru_cache(maxsize=8192)
def _network(systems: tuple[tuple[str, ...], ...]) -> tuple[tuple[tuple[str, ...], int], ...]:
    """The aligned network (each slot's words, and the system that inserted it: 0 for the first's) of these systems.
    Cached: fusion votes on the same utterance more than once (weighted, plain, as a candidate's feature)."""
    network: list[list[str | None]] = [[_HEAD]] + [[w] for w in systems[0]]
    born: dict[int, int] = {}
    for n, words in enumerate(systems[1:], start=1):
        _merge(network, words, n, born)
    return tuple((tuple(slot), born.get(id(slot), 0)) for slot in network[1:])  # type: ignore[misc]


def _vote(slot: Sequence[str], weights: Sequence[float] | None = None) -> tuple[str, int, float]:
    """meth1 with alpha=1: the word with the most occurrences (summed weights); the first such in slot
    order on ties. Returns the word, how many systems wrote it and their summed weight."""
    counts: dict[str, int] = {}
    mass: dict[str, float] = {}
    for k, word in enumerate(slot):
        counts[word] = counts.get(word, 0) + 1
        mass[word] = mass.get(word, 0.0) + (1.0 if weights is None else weights[k])
    best = max(mass.values())
    word = next(w for w in mass if mass[w] >= best - 1e-9)
    return word, counts[word], mass[word]


_F32 = struct.Struct("f")


def _f32(x: float) -> float:
    """Round to single precision: rover keeps its DP costs in C floats, and ties depend on it."""
    return _F32.unpack(_F32.pack(x))[0]


def _wwd(a: str | None, b: str | None) -> float:
    """rover's word-to-word distance (wwd_WORD_rover without sync tags or optional deletions)."""
    if b is None:
        return NULL_SKIP if a == NULL else INS_DEL
    if a is None:
        return NULL_SKIP if b == NULL else INS_DEL
    if a == NULL and b == NULL:
        return NULL_NULL
    if a == b:
        return 0.0
    if a == NULL or b == NULL:
        return NULL_SUB
    return SUB


def _merge(network: list[list[str | None]], words: Sequence[str], iteration: int, born: dict[int, int]) -> None:
    """Align `words` against the network (rover's Network_dpalign_n_networks step) and add them to it."""
    cells = _fill(network, words)
    last = len(network) - 1
    end_k = min(range(len(network[last])), key=lambda k: (cells[last][k][len(words)][0], k))
    ops: list[tuple[str, int, int, int]] = []
    s, k, j = last, end_k, len(words)
    while s > 0 or j > 0:
        _, bs, bk, bj = cells[s][k][j]
        op = "ins" if (bs, bk) == (s, k) else ("del" if bj == j else "sub")
        ops.append((op, s, k, j))
        s, k, j = bs, bk, bj
    slot_objs = list(network)  # stable references: positions shift as slots are inserted
    for op, s, _k, j in ops:
        slot = slot_objs[s]
        if op == "sub":
            slot.append(words[j - 1])
        elif op == "del":
            slot.append(NULL)
        else:
            at = next(i for i, x in enumerate(network) if x is slot) + 1
            network.insert(at, [words[j - 1]] + [NULL] * iteration)
            born[id(network[at])] = iteration


Cell = tuple[float, int, int, int]
"""(cost, back slot, back arc, back word index)."""


def _fill(network: list[list[str | None]], words: Sequence[str]) -> list[list[list[Cell]]]:
    """The DP table cell[slot][arc][j] over network arcs x word positions, as rover fills it."""
    m = len(words)
    cells: list[list[list[Cell]]] = [[[(0.0, -1, -1, -1)] * (m + 1)]]
    for j in range(1, m + 1):  # margin: insertions before the first slot
        cells[0][0][j] = (_f32(cells[0][0][j - 1][0] + _wwd(None, words[j - 1])), 0, 0, j - 1)
    for s in range(1, len(network)):
        prev = cells[s - 1]
        best = [_argmin(prev, j) for j in range(m + 1)]  # the same for every arc of this slot
        row: list[list[Cell]] = []
        for arc in network[s]:
            col: list[Cell] = [(0.0, 0, 0, 0)] * (m + 1)
            pk = best[0]
            col[0] = (_f32(prev[pk][0][0] + _wwd(arc, None)), s - 1, pk, 0)
            gone = _wwd(arc, None)
            for j in range(1, m + 1):
                ins = _f32(col[j - 1][0] + _wwd(None, words[j - 1]))
                dk, sk = best[j], best[j - 1]
                dele = _f32(prev[dk][j][0] + gone)
                sub = _f32(prev[sk][j - 1][0] + _wwd(arc, words[j - 1]))
                if sub <= dele and sub <= ins:
                    col[j] = (sub, s - 1, sk, j - 1)
                elif dele < ins:
                    col[j] = (dele, s - 1, dk, j)
                else:
                    col[j] = (ins, s, len(row), j - 1)
            row.append(col)
        cells.append(row)
    return cells


def _argmin(arcs: list[list[Cell]], j: int) -> int:
    """First arc (list order) with the strictly lowest cost at word position j."""
    best = 0
    for k in range(1, len(arcs)):
        if arcs[k][j][0] < arcs[best][j][0]:
            best = k
    return best


# --------------------------------------------------------------------------- SCTK's rover


def sctk_rover_path() -> str | None:
    """SCTK's `rover` binary: on PATH, or where Debian's sctk package puts it."""
    found = shutil.which("rover")
    if found:
        return found
    debian = Path("/usr/lib/sctk/bin/rover")
    return str(debian) if debian.is_file() and os.access(debian, os.X_OK) else None


def write_ctm(path: Path, utterances: Mapping[str, Sequence[str]]) -> None:
    """One CTM per system: `<utt> 1 <start> <dur> <word> 1.0`, words spread evenly over 10 s.

    Even spacing leaves no common silence, so rover aligns each utterance as one chunk.
    """
    with path.open("w", encoding="utf-8") as fh:
        for utt in sorted(utterances):
            words = list(utterances[utt]) or [NULL]
            step = 10.0 / max(len(words), 1)
            for i, word in enumerate(words):
                fh.write(f"{utt} 1 {i * step:.3f} {step:.3f} {word} 1.0\n")


def read_ctm(path: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if len(parts) >= 5 and not line.startswith(";;"):
            out.setdefault(parts[0], []).append(parts[4])
    return out


def nist_rover(systems: Sequence[Mapping[str, Sequence[str]]], *, workdir: Path | None = None) -> dict[str, str]:
    """Run SCTK `rover -m meth1 -a 1.0 -c 0.0` on each system's {utterance id: words}; {id: voted text}.

    Every system must list the same ids (an empty list where it said nothing: written as rover's null word).
    """
    binary = sctk_rover_path()
    if binary is None:
        raise BackendUnavailable("SCTK's rover is not installed (Debian package `sctk`)")
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        args = [binary]
        for i, system in enumerate(systems):
            ctm = Path(tmp) / f"sys{i}.ctm"
            write_ctm(ctm, system)
            args += ["-h", str(ctm), "ctm"]
        out = Path(tmp) / "rover.ctm"
        args += ["-o", str(out), "-m", "meth1", "-a", "1.0", "-c", "0.0"]
        proc = subprocess.run(args, capture_output=True, text=True, check=False)
        if proc.returncode != 0 or not out.exists():
            raise BackendUnavailable(f"rover failed ({proc.returncode}): {(proc.stderr or proc.stdout).strip()[-300:]}")
        voted = read_ctm(out)
    ids = set().union(*(s.keys() for s in systems))
    return {utt: " ".join(voted.get(utt, [])) for utt in ids}
