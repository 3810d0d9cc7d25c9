"""What streaming buys on the gateway's OpenAI routes, measured with the stock openai client on loopback.

    python benchmarks/openai_stream.py [--repeats 3]

One `cascade serve gateway` with every stage in-process (tiny.en, SmolLM2, piper), and a second
gateway that reaches the three over HTTP at the first one's URL (the relay), so forwarding costs
show too. For each route, the streamed call's time to its first useful piece against the whole
answer of the same call not streamed (medians over --repeats, streamed and whole alternating):

- transcription of 54 s of speech (five utterances, 2 Whisper windows): first `transcript.text.delta`
  vs the non-streamed json answer;
- chat (greedy, 48 tokens): first content chunk vs the non-streamed completion;
- speech (three sentences): first mp3 byte (streamed) vs the whole flac body.

Prints ONE JSON line. Timings depend on machine load: compare the ratios, not the seconds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
from openai import OpenAI

from services.common.testing import launch, wait_ready

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
ENV = {"OMP_NUM_THREADS": "1", "CASCADE_LLM__THREADS": "1", "CASCADE_ASR__CPU_THREADS": "1"}
TEXT = "Good morning to you. The weather is lovely today. Shall we take a walk by the river?"
MESSAGES = [{"role": "user", "content": "Tell me about the sea in three sentences."}]


def long_clip(out: Path) -> Path:
    """54 s of five different utterances (repeated text would trip Whisper's compression-ratio fallback)."""
    from cascade.audio import load_audio

    files = [DATA / "real" / "jfk.flac", DATA / "real" / "LJ050-0131.wav",
             *(DATA / "librispeech-test-other" / "audio" / f"1688-142285-000{i}.flac" for i in range(3))]
    gap = np.zeros(16000, dtype="float32")
    sf.write(out, np.concatenate([x for f in files for x in (load_audio(f), gap)]), 16000)
    return out


def transcription(client: OpenAI, clip: Path) -> tuple[float, float]:
    data = clip.read_bytes()
    t = time.perf_counter()
    first = None
    for event in client.audio.transcriptions.create(file=("a.flac", data), model="whisper-1", stream=True):
        first = first if first is not None else time.perf_counter() - t
    t = time.perf_counter()
    client.audio.transcriptions.create(file=("a.flac", data), model="whisper-1")
    return first, time.perf_counter() - t


def chat(client: OpenAI) -> tuple[float, float]:
    t = time.perf_counter()
    first = None
    for chunk in client.chat.completions.create(model="smollm2", messages=MESSAGES, max_tokens=48, stream=True):
        if first is None and chunk.choices and chunk.choices[0].delta.content:
            first = time.perf_counter() - t
    t = time.perf_counter()
    client.chat.completions.create(model="smollm2", messages=MESSAGES, max_tokens=48)
    return first, time.perf_counter() - t


def speech(client: OpenAI) -> tuple[float, float]:
    t = time.perf_counter()
    with client.audio.speech.with_streaming_response.create(model="tts-1", voice="alloy", input=TEXT) as resp:
        first = None
        for _ in resp.iter_bytes(1024):
            first = first if first is not None else time.perf_counter() - t
    t = time.perf_counter()
    client.audio.speech.create(model="tts-1", voice="alloy", input=TEXT, response_format="flac")
    return first, time.perf_counter() - t


def measure(client: OpenAI, clip: Path, repeats: int) -> dict:
    out = {}
    for name, fn in (("transcription", lambda: transcription(client, clip)), ("chat", lambda: chat(client)),
                     ("speech", lambda: speech(client))):
        fn()  # warm-up (first LLM use loads it)
        runs = [fn() for _ in range(repeats)]
        first, whole = statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)
        out[name] = {"first_s": round(first, 3), "whole_s": round(whole, 3), "first_over_whole": round(first / whole, 3)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    logs = Path(tempfile.mkdtemp(prefix="openai-stream-"))
    local = wait_ready(launch("gateway", log_dir=logs, env=ENV), 300)
    relay = wait_ready(launch("gateway", log_dir=logs, env=ENV,
                              args=("--asr-url", local.url, "--llm-url", local.url, "--tts-url", local.url)))
    try:
        clip = long_clip(logs / "five.flac")
        figures = {}
        for name, svc in (("local", local), ("relay", relay)):
            client = OpenAI(base_url=svc.url + "/v1", api_key="unused", max_retries=0, timeout=600)
            figures[name] = measure(client, clip, args.repeats)
        relay_cost = {k: round(figures["relay"][k]["whole_s"] / figures["local"][k]["whole_s"], 3) for k in figures["local"]}
        print(json.dumps({"repeats": args.repeats, **figures, "relay_over_local_whole": relay_cost}))
    finally:
        relay.stop()
        local.stop()


if __name__ == "__main__":
    main()
