"""Spoken-turn latency: per-stage seconds and time to first audio, streamed vs the naive sequential turn.

Utterances of about 5 s are synthesized with piper from Harvard sentences (two sentences
each, from ../shared/data/text), so the input is speech the recogniser can follow. Each
utterance runs through the same stages twice, in alternating order: streamed (TTS starts
on the first reply sentence while the rest is generated) and sequential (the peer: reply
fully generated, then fully synthesized); then live (cascade.live.replay: 20 ms frames paced
at real time, windows decoded while "spoken", the VAD's trailing silence ends the turn, the
reply speculated at the last pause). Streamed and sequential times run from the moment the
whole utterance is handed over; live times (`ttfa_live_s`) from the arrival of the last
frame the VAD calls speech, so they include the silence wait (live.silence_ms) that a real
spoken turn needs before it knows the user is done. Also the TTS real-time factor per engine
(piper, espeak; coqui in its own venv when it exists, on an untrained VITS of the default
architecture size, since no pretrained Coqui model can be downloaded here).

The Realtime API's first audio (`ttfa_realtime_s`): the same utterances streamed at real time to a real
gateway's /v1/realtime by the official openai client, from the last appended audio of the utterance to the
first response.output_audio.delta. Turns cut early (`early_cut`): on real recordings with pauses inside
(LibriSpeech test-other and speechocean762 clips of --cut-split; dev for choosing the thresholds, test for
reporting), the share of clips in which an inner pause would end the turn: the live turn's rule (the silence
its words ask for, cascade.live.endpoint.wait_ms) beside the previous one-step rule (600 ms after any reading
>= -3.5) and the pause alone at silence_ms and at 600 ms, all from one pass of LiveTurn over each clip (every
pause's window decoded and read); and how long finished utterances wait.

With a neighbour (`--beside-whisper`): only the live turns, while a second process on the same machine runs
faster-whisper tiny.en over a shared clip in a loop (a box shared with another service, e.g. docker-compose's
CPU profile); its clips per second are reported too. Run it under each OpenMP wait policy to compare
(`OMP_WAIT_POLICY=PASSIVE ...`: both processes inherit it).

piper samples noise (VITS), so the same sentences sound a little different on every run unless onnxruntime's random
generator is seeded: `--seed` (default 0) seeds it before any model loads, so every run speaks the same utterances
(and Whisper hears the same words); `--seed -1` draws anew, as runs before the fifth round did.

Prints ONE JSON line. Run: ~/.cache/cascade/venv/bin/python benchmarks/turn_latency.py [--n 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
HARVARD = DATA / "text" / "harvard-sentences.txt"
COQUI_PY = Path("~/.cache/cascade/venv-coqui/bin/python").expanduser()
RTF_TEXT = "The birch canoe slid on the smooth planks. Glue the sheet to the dark blue background. It's easy to tell the depth of a well."


def utterances(n: int, home: Path):
    """(text, 16 kHz samples) pairs of about 5 s: two Harvard sentences spoken by piper."""
    import numpy as np

    from cascade.config import TtsOptions
    from cascade.tts import synthesize_all

    lines = HARVARD.read_text().splitlines()[200:]
    out = []
    for i in range(n):
        text = " ".join(lines[2 * i : 2 * i + 2])
        chunk = synthesize_all(text, TtsOptions(sample_rate=16000), home=home)
        out.append((text, np.frombuffer(chunk.pcm, dtype="<i2").astype(np.float32) / 32768.0))
    return out


def rtf(engine: str, home: Path, reps: int = 3) -> float:
    from cascade.config import TtsOptions
    from cascade.tts import synthesize_all

    options = TtsOptions(engine=engine)
    synthesize_all("Warm up.", options, home=home)
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        audio = synthesize_all(RTF_TEXT, options, home=home)
        best = min(best, (time.perf_counter() - start) / audio.duration)
    return round(best, 4)


def coqui_rtf() -> float:
    """Run inside the Coqui venv: RTF of an untrained default-size VITS through the user-checkpoint path."""
    import torch
    from TTS.config.shared_configs import BaseAudioConfig
    from TTS.tts.configs.shared_configs import CharactersConfig
    from TTS.tts.configs.vits_config import VitsArgs, VitsConfig
    from TTS.tts.models.vits import Vits

    chars = CharactersConfig(
        characters_class="TTS.tts.models.vits.VitsCharacters", pad="_", eos="", bos="", blank=None,
        characters="abcdefghijklmnopqrstuvwxyz", punctuations=".,!?'- ", phonemes=None, is_unique=True, is_sorted=True,
    )
    config = VitsConfig(model_args=VitsArgs(init_discriminator=False, use_sdp=False), audio=BaseAudioConfig(
        sample_rate=22050, fft_size=1024, win_length=1024, hop_length=256, num_mels=80, do_trim_silence=False),
        use_phonemes=False, text_cleaner="english_cleaners", characters=chars)
    model = Vits(config)
    with torch.no_grad():  # about 6 frames per character, like a trained English voice
        model.duration_predictor.proj.weight.zero_()
        model.duration_predictor.proj.bias.fill_(1.8)
    out = Path(tempfile.mkdtemp())
    torch.save({"model": model.state_dict(), "config": config.to_dict()}, out / "best_model.pth")
    config.save_json(str(out / "config.json"))
    from cascade.config import TtsOptions
    from cascade.tts import synthesize_all

    options = TtsOptions(engine="coqui", coqui_model=str(out))
    synthesize_all("Warm up.", options, home=out)
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        audio = synthesize_all(RTF_TEXT, options, home=out)
        best = min(best, (time.perf_counter() - start) / audio.duration)
    return round(best, 4)


def run_coqui_rtf() -> float | None:
    if not COQUI_PY.exists():
        return None
    proc = subprocess.run([str(COQUI_PY), __file__, "--coqui-rtf"], capture_output=True, text=True, timeout=900, check=False,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    if proc.returncode != 0:
        print(proc.stderr[-2000:], file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])["coqui_rtf"]


def _median(rows: list[dict], key: str) -> float:
    return round(statistics.median(r[key] for r in rows), 3)


def live_turn(turn, samples, options, detector=None) -> dict:
    """One paced live replay: its `done` timings (seconds from the end of speech)."""
    from cascade.live import replay

    done = None
    for event in replay(turn, samples, options, pace=True, detector=detector):
        if event.type == "error":
            raise RuntimeError(event.message)
        done = event if event.type == "done" else done
    return {k: v for k, v in done.timings.items() if k != "asr_windows"}


# --------------------------------------------------------------------------- beside another Whisper process

def neighbour(clip: Path) -> None:
    """The neighbour process: faster-whisper tiny.en (beam 5, as the project's default) over `clip` until SIGTERM;
    prints `ready` once loaded, then its clips per second."""
    import signal

    from faster_whisper import WhisperModel

    from cascade.audio import load_audio
    from cascade.config import load_settings
    from cascade.models import whisper_dir

    model = WhisperModel(str(whisper_dir("tiny.en", load_settings().home)), device="cpu", compute_type="int8")
    samples = load_audio(clip)
    done, began = 0, time.perf_counter()

    def stop(*_: object) -> None:
        print(json.dumps({"clips_per_s": round(done / (time.perf_counter() - began), 3)}), flush=True)
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    print("ready", flush=True)
    began = time.perf_counter()
    while True:
        list(model.transcribe(samples, beam_size=5)[0])
        done += 1


def beside_whisper(n: int) -> dict:
    """The live turns' first audio while a neighbour process decodes Whisper on the same cores."""
    from cascade.config import load_settings
    from cascade.live import build_detector
    from cascade.pipeline import build_turn

    settings = load_settings()
    turn, detector = build_turn(settings), build_detector(settings)
    data = utterances(n + 1, settings.home)
    live_turn(turn, data[0][1], settings.live, detector)  # warm-up, before the neighbour starts
    clip = next(iter(sorted((DATA / "librispeech-test-other").rglob("*.flac"))))
    proc = subprocess.Popen([sys.executable, __file__, "--neighbour", str(clip)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready", "the neighbour did not start"
        time.sleep(2.0)
        rows = [live_turn(turn, samples, settings.live, detector) for _, samples in data[1:]]
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=60)
    return {"utterances": n, "ttfa_live_beside_whisper_s": _median(rows, "first_audio"),
            "decode_s": _median(rows, "asr_last"), "neighbour": json.loads(out.strip().splitlines()[-1]),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(default)")}


# --------------------------------------------------------------------------- turns cut early (real recordings)


def cut_clips(split: str, n_ocean: int, n_libri: int | None = None) -> list[tuple[str, str, Path]]:
    """Real recordings with pauses inside: the LibriSpeech test-other clips of `split` and every k-th
    speechocean762 clip of `split` (non-native read speech, many hesitations)."""
    out = []
    for line in (DATA / "librispeech-test-other" / "manifest.jsonl").read_text().splitlines():
        r = json.loads(line)
        if r["split"] == split:
            out.append(("librispeech", r["id"], DATA / "librispeech-test-other" / r["audio"]))
    out = out[:n_libri]
    rows = [r for r in map(json.loads, (DATA / "speechocean762" / "manifest.jsonl").read_text().splitlines())
            if r["split"] == split]
    step = max(len(rows) // max(n_ocean, 1), 1)
    out += [("speechocean762", r["id"], DATA / "speechocean762" / r["audio"]) for r in rows[::step][:n_ocean]]
    return out


def pauses(turn, detector, options, samples) -> list[dict]:
    """Every pause the live turn decodes a window at (LiveTurn itself, unpaced, each reading waited for): its
    length up to the next speech frame (None: the clip's final silence) and the reading of the words before it."""
    import numpy as np

    from cascade.live import FRAME, LiveTurn

    never = options.model_copy(update={"silence_ms": 10**9, "quick_silence_ms": 10**9, "max_silence_ms": 10**9,
                                       "speculate": False})
    live = LiveTurn(turn, never, detector=detector, reply=False)
    seen = []
    submit = live._submit
    live._submit = lambda start, end: seen.append(submit(start, end)) or seen[-1]
    try:
        audio = np.concatenate([samples, np.zeros(16000, np.float32)])
        for i in range(0, len(audio), 320):
            live.feed(audio[i : i + 320])
            live.wait_reading()
        probs = np.asarray(live._probs)
    finally:
        live.close()
    speech = np.nonzero(probs >= options.threshold)[0]
    out = []
    for w in seen:
        if w.end_logprob is None:
            continue
        first_silent = w.end // FRAME - int(options.pause_ms * options.sample_rate / 1000 / FRAME)
        later = speech[speech >= w.end // FRAME]
        length = float((later[0] - first_silent) * FRAME * 1000 / options.sample_rate) if len(later) else None
        words = [k.result[0].text.strip() for k in live.windows if k.end <= w.start and k.result] + [
            w.result[0].text.strip() if w.result else ""]
        out.append({"pause_ms": length, "logprob": w.end_logprob, "text": " ".join(t for t in words if t)})
    return out


def cut_rates(records: list[dict], options, read: bool = True) -> dict:
    """Share of clips a rule cuts early (some inner pause ends the turn) and, with readings, the share of whole
    utterances whose words read unfinished (they wait max_silence_ms) and how long finished utterances wait (the
    silence their final words ask for, endpoint.wait_ms). read False: the pause alone (silence_ms)."""
    from cascade.live.endpoint import wait_ms

    cut = late = 0
    waits = []
    for clip in records:
        inner = [p for p in clip["pauses"] if p["pause_ms"] is not None]
        final = [p for p in clip["pauses"] if p["pause_ms"] is None]
        if not read:
            cut += any(p["pause_ms"] >= options.silence_ms for p in inner)
            continue
        cut += any(p["pause_ms"] >= wait_ms(p["logprob"], options, bool(p["text"].strip())) for p in inner)
        if final:
            waits.append(wait_ms(final[-1]["logprob"], options, bool(final[-1]["text"].strip())))
            late += final[-1]["logprob"] < options.end_logprob
    n = max(len(records), 1)
    return {"early_cut_rate": round(cut / n, 3),
            **({"unfinished_end_rate": round(late / n, 3), "finished_wait_ms_mean": round(statistics.mean(waits)),
                "finished_wait_ms_median": round(statistics.median(waits))} if read and waits else {})}


def early_cuts(split: str, n_ocean: int, records_out: Path | None = None, records_in: Path | None = None,
               n_libri: int | None = None, reread: bool = False) -> dict:
    """How often a turn is cut early on real recordings with pauses: the live turn's rule (pause + reading)
    vs the pause alone (the same silence_ms), from the same pauses and readings. `reread`: records' words read
    again by the current reader (its readings change, the decoded words and pauses do not)."""
    from cascade.audio import load_audio
    from cascade.config import load_settings
    from cascade.live import build_detector
    from cascade.pipeline import build_turn

    settings = load_settings()
    live = settings.live
    if records_in is not None:  # the pauses and readings of an earlier pass: only the rules are applied again
        records = [json.loads(line) for line in records_in.read_text().splitlines() if line.strip()]
        if reread:
            detector = build_detector(settings)
            for clip in records:  # as LiveTurn._read: no history, clamped at -99
                clip["pauses"] = [{**p, "logprob": max(detector.logprob(p["text"]), -99.0)} for p in clip["pauses"]]
    else:
        turn, detector = build_turn(settings), build_detector(settings)
        records = []
        out = records_out.open("w") if records_out is not None else None
        for corpus, cid, path in cut_clips(split, n_ocean, n_libri):
            records.append({"corpus": corpus, "id": cid, "pauses": pauses(turn, detector, live, load_audio(path))})
            if out is not None:  # clip by clip: a long pass can be stopped and read back with --from-records
                out.write(json.dumps(records[-1]) + "\n")
                out.flush()
    inner = [p for r in records for p in r["pauses"] if p["pause_ms"] is not None]
    return {
        "split": split, "clips": len(records), "inner_pauses_decoded": len(inner),
        "rule": {k: getattr(live, k) for k in ("quick_silence_ms", "quick_logprob", "silence_ms", "end_logprob",
                                                "max_silence_ms")},
        "llm": cut_rates(records, live),
        "end_reading": live.end_reading,
        **({"llm_one_step_600ms": cut_rates(records, live.model_copy(update={  # the third round's rule, on its own scale
            "silence_ms": 600, "end_logprob": -3.5, "quick_logprob": -3.5, "quick_silence_ms": 600}))}
           if live.end_reading == "logprob" else {}),
        "pause_only": cut_rates(records, live, read=False),
        "pause_only_600ms": cut_rates(records, live.model_copy(update={"silence_ms": 600}), read=False),
        **{f"{c}_clips": sum(r["corpus"] in c for r in records) for c in ("librispeech", "speechocean762")},
    }


# --------------------------------------------------------------------------- the Realtime API's first audio


def realtime_ttfa(data: list, env: dict[str, str]) -> dict:
    """Each utterance streamed at real time (24 kHz pcm16, 20 ms appends) to a real gateway's /v1/realtime with
    the official openai client: seconds from the last appended audio of the utterance (its end of speech) to the
    first response.output_audio.delta. The first utterance warms the gateway up and is not counted."""
    import asyncio
    import base64

    import numpy as np
    from openai import AsyncOpenAI

    from cascade.audio import resample
    from services.common.testing import launch, wait_ready

    async def one(port: int, samples) -> float:
        pcm = (np.clip(resample(samples, 16000, 24000), -1, 1) * 32767).astype("<i2").tobytes()
        step = 960
        client = AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused")
        async with client.realtime.connect(model="gpt-realtime") as conn:
            await conn.recv()
            spoken: list[float] = []

            async def send() -> None:
                t0 = time.perf_counter()
                chunks = [pcm[i : i + step] for i in range(0, len(pcm), step)] + [b"\0" * step] * 150
                for k, chunk in enumerate(chunks):
                    await conn.input_audio_buffer.append(audio=base64.b64encode(chunk).decode())
                    if k * step >= len(pcm) and not spoken:
                        spoken.append(time.perf_counter())
                    await asyncio.sleep(max(t0 + (k + 1) * 0.02 - time.perf_counter(), 0))

            sender = asyncio.ensure_future(send())
            try:
                async for event in conn:
                    if event.type == "error":
                        raise RuntimeError(event.error.message)
                    if event.type == "response.output_audio.delta":
                        return time.perf_counter() - spoken[0]
            finally:
                sender.cancel()
        raise RuntimeError("no audio")

    log_dir = Path(tempfile.mkdtemp())
    gw = wait_ready(launch("gateway", log_dir=log_dir, env=env), 600)
    try:
        asyncio.run(one(gw.port, data[0][1]))
        times = [asyncio.run(one(gw.port, samples)) for _, samples in data]
    finally:
        gw.stop()
    return {"ttfa_realtime_s": round(statistics.median(times), 3), "ttfa_realtime_all_s": [round(t, 3) for t in times]}


def turns(n: int, live: bool = True) -> dict:
    from cascade.config import load_settings
    from cascade.pipeline import build_turn

    settings = load_settings()
    turn = build_turn(settings)
    data = utterances(n, settings.home)
    turn.run(data[0][1], stream=True)  # warm-up: every model loaded before timing
    rows: dict[str, list[dict]] = {"streamed": [], "sequential": []}
    for i, (_, samples) in enumerate(data):
        order = ("streamed", "sequential") if i % 2 == 0 else ("sequential", "streamed")
        for mode in order:
            r = turn.run(samples, stream=mode == "streamed")
            rows[mode].append({**r.timings, "ttfa": r.time_to_first_audio,
                               "first_sentence": r.reply.first_sentence_s or 0.0,
                               "reply_words": len(r.reply.text.split()), "speech_s": r.speech.duration})
    if live:
        from cascade.live import build_detector

        detector = build_detector(settings)
        pause_only = settings.live.model_copy(update={"end_of_turn": "pause", "silence_ms": 600})
        live_turn(turn, data[0][1], settings.live, detector)  # warm-up of the VAD and the live path
        rows["live"], rows["live_pause_only"] = [], []
        for i, (_, samples) in enumerate(data):  # the peer: the words not read, 600 ms of silence (the old default)
            order = ("live", "live_pause_only") if i % 2 == 0 else ("live_pause_only", "live")
            for mode in order:
                rows[mode].append(live_turn(turn, samples, settings.live if mode == "live" else pause_only, detector))
    summary = {mode: {k: _median(v, k) for k in v[0]} for mode, v in rows.items()}
    return {
        "utterances": n,
        "utterance_s": round(statistics.mean(len(s) / 16000 for _, s in data), 2),
        "config": {"asr": settings.asr.model, "n_best": settings.asr.n_best, "beam": settings.asr.beam_size,
                   "correction": settings.chat.correct, "llm": f"{settings.llm.backend}:{settings.llm.model}",
                   "max_reply_tokens": settings.chat.max_reply_tokens, "max_sentences": settings.chat.max_sentences,
                   "tts": settings.tts.engine, "live_silence_ms": settings.live.silence_ms,
                   "live_quick_silence_ms": settings.live.quick_silence_ms, "live_quick_logprob": settings.live.quick_logprob,
                   "live_pause_ms": settings.live.pause_ms, "live_cut_ms": settings.live.cut_ms,
                   "live_speculate": settings.live.speculate, "live_early_reply": settings.live.early_reply,
                   "live_end_of_turn": settings.live.end_of_turn, "live_max_silence_ms": settings.live.max_silence_ms,
                   "live_end_logprob": settings.live.end_logprob, "encoder_min_s": settings.chat.encoder_min_s,
                   "first_clause_words": settings.chat.first_clause_words,
                   "first_phrase_words": settings.chat.first_phrase_words},
        **summary,
        **({"ttfa_live_s": summary["live"]["first_audio"],
            "ttfa_live_all_s": [r["first_audio"] for r in rows["live"]],
            "end_logprob_all": [r["end_logprob"] for r in rows["live"]],
            "ttfa_live_pause_only_s": summary["live_pause_only"]["first_audio"],
            "ttfa_live_minus_silence_wait_s": round(summary["live"]["first_audio"] - settings.live.quick_silence_ms / 1000, 3),
            "goal_live_met": summary["live"]["first_audio"] <= 1.0} if live else {}),
        "ttfa_ratio_sequential_over_streamed": round(summary["sequential"]["ttfa"] / summary["streamed"]["ttfa"], 2),
        "goal_ttfa_s": 1.0,
        "goal_met": summary["streamed"]["ttfa"] <= 1.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5, help="utterances (each run streamed and sequential)")
    parser.add_argument("--coqui-rtf", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--neighbour", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--beside-whisper", action="store_true", help="only the live turns, beside a second process "
                        "decoding Whisper on the same cores (compare OMP_WAIT_POLICY settings)")
    parser.add_argument("--no-live", action="store_true", help="skip the live (WebSocket-path) turns")
    parser.add_argument("--no-rtf", action="store_true", help="skip the TTS real-time factors")
    parser.add_argument("--no-realtime", action="store_true", help="skip the Realtime API's time to first audio")
    parser.add_argument("--no-cuts", action="store_true", help="skip the early-cut rate on real recordings")
    parser.add_argument("--cuts-only", action="store_true", help="only the early-cut rate")
    parser.add_argument("--cut-split", default="test", choices=["dev", "test"], help="split of the recordings (dev: choices)")
    parser.add_argument("--cut-n", type=int, default=60, help="speechocean762 clips of the split (every k-th)")
    parser.add_argument("--cut-libri", type=int, help="LibriSpeech test-other clips of the split (default: all)")
    parser.add_argument("--cut-records", type=Path, help="write each clip's pauses and readings here (JSON lines)")
    parser.add_argument("--from-records", type=Path, help="apply the configured rule to the pauses and readings of records "
                        "written by --cut-records (no decoding)")
    parser.add_argument("--reread", action="store_true", help="--from-records: read the records' words again with the "
                        "current end-of-turn reader")
    parser.add_argument("--seed", type=int, default=0, help="onnxruntime's seed: piper speaks the same utterances on "
                        "every run (-1: unseeded)")
    args = parser.parse_args()
    if args.seed >= 0:
        import onnxruntime

        onnxruntime.set_seed(args.seed)
    if args.coqui_rtf:
        print(json.dumps({"coqui_rtf": coqui_rtf()}))
        return
    if args.neighbour:
        neighbour(args.neighbour)
        return
    if args.beside_whisper:
        print(json.dumps({**beside_whisper(args.n), "cpus": os.cpu_count()}))
        return
    from cascade.config import load_settings

    home = load_settings().home
    if args.cuts_only:
        result = {"early_cut": early_cuts(args.cut_split, args.cut_n, args.cut_records, args.from_records, args.cut_libri,
                                        args.reread),
                  "load_avg_1m": round(os.getloadavg()[0], 2)}
        print(json.dumps(result))
        return
    result = turns(args.n, live=not args.no_live)
    if not args.no_realtime:
        result.update(realtime_ttfa(utterances(args.n, home), {}))
    if not args.no_cuts:
        result["early_cut"] = early_cuts(args.cut_split, args.cut_n, args.cut_records, n_libri=args.cut_libri)
    if not args.no_rtf:
        result["tts_rtf"] = {"piper": rtf("piper", home), "espeak": rtf("espeak", home),
                             "coqui_vits_untrained": run_coqui_rtf()}
    result["cpus"] = os.cpu_count()
    result["load_avg_1m"] = round(os.getloadavg()[0], 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
