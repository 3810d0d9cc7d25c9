"""Transcripts you can reproduce and trust: identical output across runs, invented segments flagged.

    nice -n 5 python benchmarks/asr_trust.py [--limit 60] [--scan 200] [--sampled 20] [--runs 3] [--full] [--dump FILE]

1. Determinism: the speechocean762 dev clips on which faster-whisper's temperature fallback samples
   (searched among the first `--scan` dev clips with faster-whisper's defaults, once, and cached in
   CASCADE_HOME/benchmarks/asr_trust-sampling-*.json; --full: all 1,000),
   transcribed `--runs` times in one process with the shipped options (seeded) and with asr.seed None
   (unseeded, as faster-whisper), and with faster-whisper itself; `identical` is the share of clips whose
   every run equals the first (cascade: the whole Transcript's segments, N-best included; faster-whisper:
   its segment texts).
2. Flags: speechocean762 dev and test and librispeech-test-other (first `--limit` utterances of each;
   --full: all), per 1,000 utterances: segments flagged (cascade: its own flags; faster-whisper with and
   without its Silero VAD: the same text-level signals, phrase/repetition/no-speech, applied to its
   segments), and known invented phrases (cascade/data/hallucinations.txt) that the reference does not hold,
   in the text a user reads (cascade: with hallucinations=drop, which leaves flagged segments out).
3. Words lost: WER with drop vs keep (cascade, the same decode: drop only leaves flagged segments out of the
   text), and reference words that keep got right and drop lost, per 1,000 reference words.

Every choice (thresholds in cascade/asr/hallucination.py) was made on dev; test is reported only.
`--dump FILE` writes every cascade segment's signals as JSONL (what the thresholds were chosen from).
WER with cascade.metrics (whisper-normalizer, jiwer). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from cascade.asr import best_only, load_model, transcribe_all
from cascade.asr import hallucination as hal
from cascade.asr.decode import faster_whisper_kwargs
from cascade.audio import load_audio
from cascade.config import load_settings
from cascade.metrics import word_errors

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def rows(name: str, limit: int | None) -> list[dict]:
    if name == "ls-other":
        folder, split = DATA / "librispeech-test-other", None
    else:
        folder, split = DATA / "speechocean762", name.split("-")[1]
    out = []
    for line in (folder / "manifest.jsonl").read_text().splitlines():
        r = json.loads(line)
        if split is None or r["split"] == split:
            out.append({"id": r["id"], "ref": r["text"], "path": folder / r["audio"]})
    return out[:limit]


def sampling_clips(whisper, home: Path, model: str, scan: int | None) -> list[str]:
    """Dev clips (of the first `scan`) whose faster-whisper decode falls back to sampling (a segment's temperature
    > 0), found once and cached in CASCADE_HOME."""
    cache = home / "benchmarks" / f"asr_trust-sampling-{Path(model).name}-{scan or 'all'}.json"
    if cache.exists():
        return json.loads(cache.read_text())
    found = []
    for r in rows("so-dev", scan):
        segments, _ = whisper.transcribe(load_audio(r["path"]), beam_size=5)
        if any(s.temperature > 0 for s in segments):
            found.append(r["id"])
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(found))
    return found


def determinism(whisper, options, home: Path, ids: list[str], runs: int) -> dict:
    by_id = {r["id"]: r for r in rows("so-dev", None)}
    audio = {i: load_audio(by_id[i]["path"]) for i in ids}
    fw_kwargs = faster_whisper_kwargs(options)

    def cascade_run(opts):
        return [[s.model_dump(mode="json") for s in transcribe_all(audio[i], opts, home=home).segments] for i in ids]

    def fw_run():
        return [[s.text for s in whisper.transcribe(audio[i], **fw_kwargs)[0]] for i in ids]

    out = {}
    for name, run in (("cascade", lambda: cascade_run(options)),
                      ("cascade_unseeded", lambda: cascade_run(options.model_copy(update={"seed": None}))),
                      ("faster_whisper", fw_run)):
        started = time.perf_counter()
        results = [run() for _ in range(runs)]
        same = sum(all(r[k] == results[0][k] for r in results[1:]) for k in range(len(ids)))
        out[name] = {"identical": round(same / max(len(ids), 1), 4), "seconds_per_run": round((time.perf_counter() - started) / runs, 1)}
    other = cascade_run(options.model_copy(update={"seed": options.seed + 1}))
    first = cascade_run(options)
    out["another_seed_differs"] = sum(a != b for a, b in zip(first, other))
    return out


def _invented(text: str, ref: str) -> int:
    """Known invented phrases in the text that the reference does not say."""
    phrase = hal.known_phrase(text)
    return int(phrase is not None and f" {phrase} " not in f" {hal.normal(ref)} ")


def flags(whisper, options, home: Path, name: str, limit: int | None, dump, peers: bool = True) -> dict:
    data = rows(name, limit)
    keep, drop, refs = [], [], []
    flagged = invented_keep = invented_drop = 0
    fw = {"fw": [0, 0], "fw_vad": [0, 0]}
    for r in data:
        audio = load_audio(r["path"])
        t = transcribe_all(audio, best_only(options), home=home)
        refs.append(r["ref"])
        keep.append(t.text)
        drop.append(t.without_invented().text)
        flagged += sum(s.invented for s in t.segments)
        invented_keep += sum(_invented(s.text, r["ref"]) for s in t.segments)
        invented_drop += sum(_invented(s.text, r["ref"]) for s in t.segments if not s.invented)
        if dump is not None:
            for s in t.segments:
                dump.write(json.dumps({"set": name, "id": r["id"], "ref": r["ref"], "text": s.text,
                                       "temperature": s.temperature, "no_speech_prob": s.no_speech_prob,
                                       "avg_logprob": s.avg_logprob, "hallucination": s.hallucination and s.hallucination.model_dump(),
                                       "signals": _signals.pop(s.id, None)}) + "\n")
        _signals.clear()
        for key, vad in (("fw", False), ("fw_vad", True)) if peers else ():
            segments, _ = whisper.transcribe(audio, beam_size=5, vad_filter=vad)
            for s in segments:
                found, _ = hal.reasons(s.text, no_speech_prob=s.no_speech_prob, avg_logprob=s.avg_logprob,
                                       word_probs=None, looped=False, evidence=None)
                fw[key][0] += bool(found)
                fw[key][1] += _invented(s.text, r["ref"])
    n = max(len(data), 1)
    k, d = word_errors(refs, keep), word_errors(refs, drop)
    per_k = lambda x: round(1000 * x / n, 1)  # noqa: E731
    return {
        "utterances": len(data),
        "cascade": {"flagged_per_1k": per_k(flagged), "invented_phrases_per_1k_keep": per_k(invented_keep),
                    "invented_phrases_per_1k_drop": per_k(invented_drop),
                    "wer_keep": round(100 * k.rate, 2), "wer_drop": round(100 * d.rate, 2),
                    "words_lost_per_1k_ref_words": round(1000 * (k.hits - d.hits) / max(k.ref_len, 1), 2)},
        "faster_whisper": {"flagged_per_1k": per_k(fw["fw"][0]), "invented_phrases_per_1k": per_k(fw["fw"][1])},
        "faster_whisper_vad": {"flagged_per_1k": per_k(fw["fw_vad"][0]), "invented_phrases_per_1k": per_k(fw["fw_vad"][1])},
    }


_signals: dict[int, dict] = {}


def _recording_signals() -> None:
    """--dump: record each segment's raw signal values (the thresholds are chosen from them)."""
    import cascade.asr as asr

    original = asr.check

    def check(seg, hyps, evidence, options, looped):
        sims = [hal.similarity(hyps[0].text, h.text) for h in evidence.samples] if evidence is not None else []
        words = [w.probability for w in seg.words or ()]
        _signals[len(_signals)] = {"max_sim": max(sims) if sims else None, "samples": len(sims),
                                   "phrase": hal.known_phrase(hyps[0].text), "loops": hal.loops(hyps[0].text),
                                   "looped": looped, "word_prob": sum(words) / len(words) if words else None,
                                   "beam": evidence.beam.text if evidence is not None and evidence.beam else None}
        return original(seg, hyps, evidence, options, looped)

    asr.check = check


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=60, help="utterances per set for the flag figures")
    parser.add_argument("--sampled", type=int, default=20, help="sampling dev clips for the determinism figures")
    parser.add_argument("--scan", type=int, default=200, help="dev clips searched for ones that sample (cached)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--full", action="store_true", help="every utterance and every sampling clip")
    parser.add_argument("--sets", default="so-dev,so-test,ls-other")
    parser.add_argument("--dump", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--skip-determinism", action="store_true")
    parser.add_argument("--no-peers", action="store_true", help="cascade alone (no faster-whisper runs)")
    args = parser.parse_args()
    settings = load_settings()
    home = settings.home
    options = settings.asr.model_copy(update={"cpu_threads": args.threads, "hallucinations": "flag"})
    whisper = load_model(options, home)
    limit = None if args.full else args.limit
    out: dict = {"model": options.model, "seed": options.seed, "load": os.getloadavg()[0]}
    started = time.perf_counter()
    if not args.skip_determinism:
        ids = sampling_clips(whisper, home, options.model, None if args.full else args.scan)
        chosen = ids if args.full else ids[: args.sampled]
        out["sampling_dev_clips"] = {"found": len(ids), "used": len(chosen)}
        out["determinism"] = determinism(whisper, options, home, chosen, args.runs) if chosen else None
    dump = None
    if args.dump is not None:
        _recording_signals()
        dump = args.dump.open("w", encoding="utf-8", buffering=1)
    for name in filter(None, args.sets.split(",")):
        out[name] = flags(whisper, options, home, name, limit, dump, peers=not args.no_peers)
    out["thresholds"] = {"no_speech_prob": hal.NO_SPEECH_PROB, "no_speech_logprob": hal.NO_SPEECH_LOGPROB,
                         "agreement": hal.AGREEMENT}
    out["seconds"] = round(time.perf_counter() - started, 1)
    out["load_end"] = os.getloadavg()[0]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
